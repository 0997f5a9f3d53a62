{{/* Names, labels and the image reference shared by every template. */}}

{{- define "spiffe-connector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "spiffe-connector.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's name: <fullname>-<component>, at most 63 characters. */}}
{{- define "spiffe-connector.component" -}}
{{- printf "%s-%s" (include "spiffe-connector.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component -}}
{{- end -}}

{{- define "spiffe-connector.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "spiffe-connector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component (webhook, issuer). */}}
{{- define "spiffe-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spiffe-connector.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* registry/repository:tag (or @digest); global.imageRegistry overrides image.registry. */}}
{{- /* Link-local mode's init image: the value, or the main image's repository with -link-local at its tag. */ -}}
{{- define "spiffe-connector.linkLocalInitImage" -}}
{{- if .Values.sidecar.linkLocalInitImage -}}
{{- .Values.sidecar.linkLocalInitImage -}}
{{- else -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- $registry := default .Values.image.registry .Values.global.imageRegistry -}}
{{- $repository := printf "%s-link-local" .Values.image.repository -}}
{{- if $registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" $registry) $repository -}}
{{- end -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "spiffe-connector.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- $registry := default .Values.image.registry .Values.global.imageRegistry -}}
{{- $repository := .Values.image.repository -}}
{{- if $registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" $registry) $repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "spiffe-connector.webhookServiceAccount" -}}
{{- if .Values.webhook.serviceAccount.create -}}
{{- default (include "spiffe-connector.component" (dict "root" . "component" "webhook")) .Values.webhook.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.webhook.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "spiffe-connector.issuerServiceAccount" -}}
{{- if .Values.issuer.serviceAccount.create -}}
{{- default (include "spiffe-connector.component" (dict "root" . "component" "issuer")) .Values.issuer.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.issuer.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The issuer's in-cluster token endpoint, what sidecars exchange their X.509-SVID at. */}}
{{- define "spiffe-connector.issuerTokenUrl" -}}
{{- printf "https://%s.%s.svc:%d/token" (include "spiffe-connector.component" (dict "root" . "component" "issuer")) .Release.Namespace (int .Values.issuer.service.tokenPort) -}}
{{- end -}}

{{/* The restricted Pod Security profile for the chart's own containers; with openshift=true no fixed user (restricted-v2 assigns one from the namespace's range). */}}
{{- define "spiffe-connector.containerSecurityContext" -}}
runAsNonRoot: true
{{- if not .Values.openshift }}
runAsUser: 65532
{{- end }}
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "spiffe-connector.podSecurityContext" -}}
runAsNonRoot: true
{{- if not .Values.openshift }}
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Topology spread of one component: the values' constraints, each selecting that component's pods when it names no selector. */}}
{{- define "spiffe-connector.topologySpread" -}}
{{- $selector := include "spiffe-connector.selectorLabels" (dict "root" .root "component" .component) | fromYaml -}}
{{- range .constraints }}
{{- $c := . -}}
{{- if not (hasKey $c "labelSelector") }}{{ $c = merge (dict "labelSelector" (dict "matchLabels" $selector)) $c }}{{ end }}
- {{ toYaml $c | nindent 2 | trim }}
{{- end }}
{{- end -}}

{{/* matchConditions on, off or auto (on where the API server has them: beta and on by default from 1.28, GA in 1.30). */}}
{{- define "spiffe-connector.matchConditions" -}}
{{- $m := .Values.webhook.matchConditions -}}
{{- if kindIs "bool" $m -}}
{{- if $m }}true{{ end -}}
{{- else if semverCompare ">=1.28.0-0" .Capabilities.KubeVersion.Version -}}
true
{{- end -}}
{{- end -}}
