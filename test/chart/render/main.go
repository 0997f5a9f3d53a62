// Command render renders a Helm chart's templates the way Helm 3 does (helm/helm pkg/engine): Go
// text/template with sprig's function library minus env/expandenv, Helm's extra functions (toYaml,
// fromYaml, toJson, include, tpl, required, fail, lookup), missingkey=zero with "<no value>" removed,
// partials (_*) not rendered, values coalesced over values.yaml, the output split on "---" lines and
// each document turned into JSON with sigs.k8s.io/yaml, as the API server would read it.
//
// Test tool only (built by test/chart/render.ts with Debian's golang-go and
// golang-github-masterminds-sprig-dev); it prints {"documents":[...],"notes":"..."} as JSON.
//
// Usage: render -chart DIR [-f values.yaml]... [-name RELEASE] [-namespace NS] [-kube-version v1.31.0]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io/ioutil"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"
	"unicode"

	"github.com/Masterminds/sprig/v3"
	"sigs.k8s.io/yaml"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// Metadata mirrors Helm's chart.Metadata (the fields templates read as .Chart.X).
type Metadata struct {
	Name         string            `json:"name"`
	Home         string            `json:"home,omitempty"`
	Sources      []string          `json:"sources,omitempty"`
	Version      string            `json:"version"`
	Description  string            `json:"description,omitempty"`
	Keywords     []string          `json:"keywords,omitempty"`
	Icon         string            `json:"icon,omitempty"`
	APIVersion   string            `json:"apiVersion"`
	AppVersion   string            `json:"appVersion,omitempty"`
	Deprecated   bool              `json:"deprecated,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	KubeVersion  string            `json:"kubeVersion,omitempty"`
	Type         string            `json:"type,omitempty"`
	IsRoot       bool              `json:"-"`
}

// VersionSet and KubeVersion mirror Helm's chartutil capabilities (methods templates call).
type VersionSet []string

func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

type KubeVersion struct {
	Version string
	Major   string
	Minor   string
}

func (kv *KubeVersion) String() string     { return kv.Version }
func (kv *KubeVersion) GitVersion() string { return kv.Version }

type Capabilities struct {
	KubeVersion KubeVersion
	APIVersions VersionSet
	HelmVersion map[string]string
}

// Files mirrors the parts of Helm's engine.files templates use.
type Files map[string][]byte

func (f Files) Get(name string) string { return string(f[name]) }
func (f Files) GetBytes(name string) []byte { return f[name] }

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func readYAMLMap(file string) map[string]interface{} {
	data, err := ioutil.ReadFile(file)
	if err != nil {
		fail("cannot read %s: %v", file, err)
	}
	out := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &out); err != nil {
		fail("cannot parse %s: %v", file, err)
	}
	if out == nil {
		out = map[string]interface{}{}
	}
	return out
}

// coalesce merges src over dst as Helm does for user values over chart defaults: maps merge
// recursively, a null in src deletes the key, anything else replaces.
func coalesce(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				dst[k] = coalesce(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

func toYAML(v interface{}) string {
	data, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

func fromYAML(str string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(str), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromJSON(str string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(str), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func funcMap(t *template.Template) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = toYAML
	f["fromYaml"] = fromYAML
	f["toJson"] = toJSON
	f["fromJson"] = fromJSON
	f["include"] = func(name string, data interface{}) (string, error) {
		var buf strings.Builder
		err := t.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		c, err := t.Clone()
		if err != nil {
			return "", err
		}
		c.Option("missingkey=zero")
		nt, err := c.New(t.Name()).Parse(text)
		if err != nil {
			return "", err
		}
		var buf strings.Builder
		if err := nt.Execute(&buf, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	f["required"] = func(warn string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, fmt.Errorf("%s", warn)
		}
		if s, ok := val.(string); ok && s == "" {
			return val, fmt.Errorf("%s", warn)
		}
		return val, nil
	}
	f["fail"] = func(msg string) (string, error) { return "", fmt.Errorf("%s", msg) }
	// helm template (no cluster): lookup finds nothing.
	f["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	f["getHostByName"] = func(string) string { return "" }
	return f
}

var separator = regexp.MustCompile(`(?m)^---[ \t]*`)

func main() {
	chartDir := flag.String("chart", "", "chart directory")
	release := flag.String("name", "spiffe-connector", "release name")
	namespace := flag.String("namespace", "spiffe-connector", "release namespace")
	kubeVersion := flag.String("kube-version", "v1.31.0", "Kubernetes version for .Capabilities")
	var valueFiles multiFlag
	flag.Var(&valueFiles, "f", "values file (repeatable, later wins)")
	flag.Parse()
	if *chartDir == "" {
		fail("usage: render -chart DIR [-f values.yaml]...")
	}

	var meta Metadata
	chartYAML, err := ioutil.ReadFile(filepath.Join(*chartDir, "Chart.yaml"))
	if err != nil {
		fail("cannot read Chart.yaml: %v", err)
	}
	if err := yaml.Unmarshal(chartYAML, &meta); err != nil {
		fail("cannot parse Chart.yaml: %v", err)
	}
	meta.IsRoot = true

	values := readYAMLMap(filepath.Join(*chartDir, "values.yaml"))
	for _, f := range valueFiles {
		values = coalesce(values, readYAMLMap(f))
	}

	files := Files{}
	templates := map[string]string{}
	err = filepath.Walk(*chartDir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(*chartDir, p)
		rel = filepath.ToSlash(rel)
		data, err := ioutil.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "templates/") {
			templates[path.Join(meta.Name, rel)] = string(data)
		} else if rel != "Chart.yaml" && rel != "values.yaml" {
			files[rel] = data
		}
		return nil
	})
	if err != nil {
		fail("cannot read the chart: %v", err)
	}

	parts := strings.SplitN(strings.TrimPrefix(*kubeVersion, "v"), ".", 3)
	if len(parts) < 2 {
		fail("bad -kube-version %s", *kubeVersion)
	}
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": *release, "Namespace": *namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": &meta,
		"Capabilities": &Capabilities{
			KubeVersion: KubeVersion{Version: *kubeVersion, Major: parts[0], Minor: parts[1]},
			APIVersions: VersionSet{"v1", "apps/v1", "policy/v1", "networking.k8s.io/v1", "admissionregistration.k8s.io/v1",
				"rbac.authorization.k8s.io/v1", "cert-manager.io/v1"},
			HelmVersion: map[string]string{"Version": "v3.16.0"},
		},
		"Files":     files,
		"Subcharts": map[string]interface{}{},
	}

	t := template.New("gotpl")
	t.Option("missingkey=zero")
	t.Funcs(funcMap(t))
	names := make([]string, 0, len(templates))
	for name := range templates {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, err := t.New(name).Parse(templates[name]); err != nil {
			fail("parse error in %s: %v", name, err)
		}
	}

	type document struct {
		Template string      `json:"template"`
		Object   interface{} `json:"object"`
	}
	out := struct {
		Documents []document `json:"documents"`
		Notes     string     `json:"notes"`
	}{Documents: []document{}}
	for _, name := range names {
		if strings.HasPrefix(path.Base(name), "_") {
			continue
		}
		vals := map[string]interface{}{}
		for k, v := range top {
			vals[k] = v
		}
		vals["Template"] = map[string]interface{}{"Name": name, "BasePath": path.Join(meta.Name, "templates")}
		var buf strings.Builder
		if err := t.ExecuteTemplate(&buf, name, vals); err != nil {
			fail("%v", err)
		}
		rendered := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.HasSuffix(name, "NOTES.txt") {
			out.Notes = rendered
			continue
		}
		for _, doc := range separator.Split(strings.TrimLeftFunc(rendered, unicode.IsSpace), -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			j, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				fail("YAML parse error in %s: %v\n%s", name, err, doc)
			}
			var obj interface{}
			if err := json.Unmarshal(j, &obj); err != nil {
				fail("%s: %v", name, err)
			}
			if obj == nil {
				continue // only comments
			}
			out.Documents = append(out.Documents, document{Template: name, Object: obj})
		}
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		fail("%v", err)
	}
}
