// charts/spiffe-connector rendered by Helm itself (render.ts) with the defaults and with each example values
// file; every object checked against the Kubernetes (cert-manager, prometheus-operator) schemas; the configs
// the chart writes parsed by the programs' own config code; values.schema.json checked with ajv; the example
// pods injected by the webhook core.

import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Ajv } from 'ajv';
import { isMap, parseAllDocuments, parseDocument, type YAMLMap } from 'yaml';
import { parseIssuerConfig } from '../../src/config/issuer.ts';
import { parseWebhookConfig } from '../../src/config/webhook.ts';
import { admitPod } from '../../src/webhook/mutate.ts';
import type { Pod } from '../../src/webhook/pod.ts';
import { preloadSchemas, validateK8sObject } from '../helpers/k8s-schema.ts';
import { CHART_DIR, type Rendered, renderer } from './render.ts';

const EXAMPLES = new URL('../../examples/', import.meta.url).pathname;
const NAMESPACE = 'spiffe-connector';

type Obj = Record<string, any>;

async function exampleValues(): Promise<string[]> {
  return (await readdir(EXAMPLES)).filter((f) => /^values-.*\.yaml$/.test(f)).sort();
}

async function yamlFile(path: string): Promise<Obj> {
  return parseDocument(await readFile(path, 'utf8')).toJS() as Obj;
}

/** Helm's coalescing of user values over the chart's: maps merge, null deletes, the rest replaces. */
function coalesce(base: Obj, over: Obj): Obj {
  const out: Obj = structuredClone(base);
  for (const [k, v] of Object.entries(over)) {
    if (v === null) delete out[k];
    else if (
      v &&
      typeof v === 'object' &&
      !Array.isArray(v) &&
      out[k] &&
      typeof out[k] === 'object' &&
      !Array.isArray(out[k])
    )
      out[k] = coalesce(out[k], v);
    else out[k] = v;
  }
  return out;
}

function find(r: Rendered, kind: string, name?: string): Obj[] {
  return r.documents
    .map((d) => d.object as Obj)
    .filter((o) => o['kind'] === kind && (name === undefined || o['metadata']?.name === name));
}

function one(r: Rendered, kind: string, name: string): Obj {
  const found = find(r, kind, name);
  assert.equal(found.length, 1, `one ${kind} ${name}`);
  return found[0] as Obj;
}

async function checkRendered(r: Rendered, values: Obj): Promise<void> {
  // Every object is valid for the API server (types, required fields, enums, no unknown fields).
  await preloadSchemas(r.documents.map((d) => d.object));
  for (const doc of r.documents) assert.deepEqual(await validateK8sObject(doc.object), [], `${doc.template}`);
  const ids = r.documents.map((d) => `${(d.object as Obj)['kind']}/${(d.object as Obj)['metadata']?.name}`);
  assert.equal(new Set(ids).size, ids.length, 'no two objects share a kind and name');
  for (const o of r.documents.map((d) => d.object as Obj)) {
    if (
      !['MutatingWebhookConfiguration', 'ClusterRole', 'ClusterRoleBinding', 'CertificateRequestPolicy'].includes(
        o['kind'],
      )
    ) {
      assert.equal(
        o['metadata'].namespace,
        NAMESPACE,
        `${o['kind']} ${o['metadata'].name} is in the release namespace`,
      );
    }
  }

  // The chart's own pods: non-root, read-only root filesystem, nothing to escalate, an API token only to read ServiceAccounts.
  const openshift = values['openshift'] === true;
  for (const deployment of find(r, 'Deployment')) {
    const spec = deployment['spec'].template.spec;
    const isWebhook = deployment['metadata'].name.endsWith('-webhook');
    assert.equal(spec.automountServiceAccountToken, isWebhook && values['webhook'].serviceAccounts.enabled === true);
    assert.equal(spec.securityContext.runAsNonRoot, true);
    // OpenShift's restricted-v2 SCC assigns the user and fsGroup from the namespace's range: none may be fixed.
    assert.equal('runAsUser' in spec.securityContext, !openshift, 'pod runAsUser');
    assert.equal('fsGroup' in spec.securityContext, !openshift, 'pod fsGroup');
    assert.deepEqual(
      spec.imagePullSecrets,
      values['imagePullSecrets'].length > 0 ? values['imagePullSecrets'] : undefined,
    );
    const component = isWebhook ? values['webhook'] : values['issuer'];
    assert.equal(spec.priorityClassName, component.priorityClassName || undefined);
    for (const [i, wanted] of (component.topologySpreadConstraints as Obj[]).entries()) {
      const got = spec.topologySpreadConstraints[i];
      assert.equal(got.topologyKey, wanted['topologyKey']);
      assert.deepEqual(
        got.labelSelector,
        wanted['labelSelector'] ?? deployment['spec'].selector,
        'a constraint without a selector selects this component',
      );
    }
    for (const v of component.extraVolumes as Obj[])
      assert.ok(
        spec.volumes.some((x: Obj) => x.name === v['name']),
        `extra volume ${v['name']}`,
      );
    for (const m of component.extraVolumeMounts as Obj[])
      assert.ok(
        spec.containers[0].volumeMounts.some((x: Obj) => x.mountPath === m['mountPath']),
        `extra mount ${m['mountPath']}`,
      );
    for (const e of component.extraEnv as Obj[])
      assert.ok(
        spec.containers[0].env.some((x: Obj) => x.name === e['name']),
        `extra env ${e['name']}`,
      );
    for (const c of spec.containers) {
      assert.equal(c.securityContext.runAsNonRoot, true);
      assert.equal('runAsUser' in c.securityContext, !openshift, 'container runAsUser');
      assert.equal(c.securityContext.readOnlyRootFilesystem, true);
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      assert.deepEqual(c.securityContext.capabilities, { drop: ['ALL'] });
      assert.equal(c.securityContext.seccompProfile.type, 'RuntimeDefault');
    }
    // Each mounted ConfigMap is rendered here or named by a value; each Secret comes from a Certificate, the chart or a value.
    const certificateSecrets = find(r, 'Certificate').map((c) => c['spec'].secretName);
    const extra = new Set((component.extraVolumes as Obj[]).map((v) => v['name']));
    for (const v of spec.volumes) {
      if (extra.has(v.name)) continue;
      if (v.configMap)
        assert.ok(
          find(r, 'ConfigMap', v.configMap.name).length === 1 ||
            v.configMap.name === values['issuer'].bundle.configMapName,
          `ConfigMap ${v.configMap.name}`,
        );
      if (v.secret) {
        const s = v.secret.secretName;
        assert.ok(
          certificateSecrets.includes(s) ||
            find(r, 'Secret', s).length === 1 ||
            [values['issuer'].tls.existingSecret, values['issuer'].keys.existingSecret].includes(s),
          `Secret ${s}`,
        );
      }
    }
    for (const pdb of find(r, 'PodDisruptionBudget', deployment['metadata'].name)) {
      assert.deepEqual(pdb['spec'].selector.matchLabels, deployment['spec'].selector.matchLabels);
    }
  }

  // The webhook: a Service for the MutatingWebhookConfiguration, the CA injected from its Certificate.
  const prefix = (values['fullnameOverride'] as string) || 'spiffe-connector';
  const webhookName = `${prefix}-webhook`;
  const deployment = one(r, 'Deployment', webhookName);
  assert.equal(deployment['spec'].replicas, values['webhook'].replicaCount);
  const mwc = one(r, 'MutatingWebhookConfiguration', prefix);
  const hook = mwc['webhooks'][0];
  assert.equal(hook.reinvocationPolicy, 'IfNeeded');
  assert.equal(hook.sideEffects, 'None');
  assert.equal(hook.failurePolicy, values['webhook'].failurePolicy);
  assert.deepEqual(hook.rules, [
    { operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' },
  ]);
  assert.ok(
    hook.namespaceSelector.matchExpressions[0].values.includes(NAMESPACE),
    'the webhook never intercepts its own namespace',
  );
  assert.equal(mwc['metadata'].annotations['cert-manager.io/inject-ca-from'], `${NAMESPACE}/${webhookName}`);
  const certificate = one(r, 'Certificate', webhookName);
  assert.ok(certificate['spec'].dnsNames.includes(`${hook.clientConfig.service.name}.${NAMESPACE}.svc`));
  const service = one(r, 'Service', hook.clientConfig.service.name);
  const servicePort = service['spec'].ports.find((p: Obj) => p.port === hook.clientConfig.service.port);
  assert.ok(servicePort);
  assert.ok(deployment['spec'].template.spec.containers[0].ports.some((p: Obj) => p.name === servicePort.targetPort));
  assert.deepEqual(service['spec'].selector, deployment['spec'].selector.matchLabels);

  // The config files the chart writes are accepted by the programs' own config code.
  const webhookConfig = parseWebhookConfig(
    one(r, 'ConfigMap', webhookName)['data']['webhook.yaml'],
    'rendered webhook.yaml',
  );
  assert.equal(webhookConfig.defaults.trustDomain, String(values['trustDomain']).replace(/^spiffe:\/\//, ''));
  const registry = values['global']?.imageRegistry || values['image'].registry;
  assert.ok(
    webhookConfig.sidecar.image.startsWith(`${registry}/${values['image'].repository}`),
    webhookConfig.sidecar.image,
  );
  assert.equal(webhookConfig.sidecar.runAsUser, openshift ? null : values['sidecar'].runAsUser);
  assert.equal(webhookConfig.sidecar.serveInitContainers, values['sidecar'].serveInitContainers);
  // Link-local mode's init image: the value, or the image's repository with -link-local at the image's tag.
  const initImage = webhookConfig.sidecar.linkLocalInitImage ?? '';
  if (values['sidecar'].linkLocalInitImage) assert.equal(initImage, values['sidecar'].linkLocalInitImage);
  else if (!values['image'].digest)
    assert.equal(initImage, webhookConfig.sidecar.image.replace(/:([^:/]+)$/, '-link-local:$1'));
  else assert.ok(initImage.startsWith(`${registry}/${values['image'].repository}-link-local:`), initImage);
  assert.equal(
    deployment['spec'].template.spec.containers[0].image,
    webhookConfig.sidecar.image,
    "the sidecar runs the webhook's image",
  );
  // ServiceAccount lookups: the config, the token, and RBAC that allows get on serviceaccounts and nothing else.
  assert.equal(webhookConfig.webhook.serviceAccounts.enabled, values['webhook'].serviceAccounts.enabled);
  assert.equal(
    webhookConfig.webhook.serviceAccounts.onError,
    values['webhook'].failurePolicy === 'Fail' ? 'deny' : 'podAnnotationsOnly',
  );
  if (values['webhook'].serviceAccounts.enabled) {
    const role = one(r, 'ClusterRole', webhookName);
    assert.deepEqual(role['rules'], [{ apiGroups: [''], resources: ['serviceaccounts'], verbs: ['get'] }]);
    const binding = one(r, 'ClusterRoleBinding', webhookName);
    assert.deepEqual(binding['subjects'], [
      { kind: 'ServiceAccount', name: deployment['spec'].template.spec.serviceAccountName, namespace: NAMESPACE },
    ]);
  }
  // Metrics on a plain-HTTP port of their own, named "metrics" on the pod and the Service.
  assert.equal(webhookConfig.webhook.metricsAddress, `0.0.0.0:${values['webhook'].metricsPort}`);
  assert.ok(
    deployment['spec'].template.spec.containers[0].ports.some(
      (p: Obj) => p.name === 'metrics' && p.containerPort === values['webhook'].metricsPort,
    ),
  );
  assert.ok(service['spec'].ports.some((p: Obj) => p.name === 'metrics' && p.targetPort === 'metrics'));
  for (const kind of ['ServiceMonitor', 'PodMonitor']) {
    const wanted = values['metrics'][kind === 'ServiceMonitor' ? 'serviceMonitor' : 'podMonitor'].enabled;
    const monitors = find(r, kind);
    assert.equal(monitors.length, wanted ? (values['issuer'].enabled ? 2 : 1) : 0, kind);
    for (const m of monitors) {
      const endpoint = (m['spec'].endpoints ?? m['spec'].podMetricsEndpoints)[0];
      const selected = (labels: Obj | undefined): boolean =>
        Object.entries(m['spec'].selector.matchLabels as Obj).every(([k, v]) => labels?.[k] === v);
      const target =
        kind === 'ServiceMonitor'
          ? find(r, 'Service').find((x) => selected(x['metadata'].labels))
          : find(r, 'Deployment').find((d) => selected(d['spec'].template.metadata.labels));
      assert.ok(target, `${kind} ${m['metadata'].name} selects something`);
      const ports = kind === 'ServiceMonitor' ? target['spec'].ports : target['spec'].template.spec.containers[0].ports;
      assert.ok(
        ports.some((p: Obj) => p.name === endpoint.port),
        `${kind} ${m['metadata'].name} scrapes a port that exists`,
      );
    }
  }
  const args = deployment['spec'].template.spec.containers[0].args;
  assert.deepEqual(args.slice(0, 2), ['webhook', '--config']);

  if (values['issuer'].enabled) {
    const issuerName = `${prefix}-issuer`;
    const issuerConfig = parseIssuerConfig(
      one(r, 'ConfigMap', issuerName)['data']['issuer.yaml'],
      'rendered issuer.yaml',
    );
    assert.equal(issuerConfig.issuer.url, values['issuer'].url);
    assert.equal(issuerConfig.issuer.trustDomain, String(values['trustDomain']).replace(/^spiffe:\/\//, ''));
    // Sidecars exchange at the issuer Service (unless pointed elsewhere), whose certificate names that host.
    const url = new URL(webhookConfig.defaults.jwt.exchangeUrl ?? '');
    const issuerService = one(r, 'Service', issuerName);
    if (!values['defaults'].jwt.exchangeUrl) {
      assert.equal(url.hostname, `${issuerName}.${NAMESPACE}.svc`);
      assert.ok(issuerService['spec'].ports.some((p: Obj) => p.port === Number(url.port) && p.targetPort === 'token'));
    }
    assert.equal(
      webhookConfig.defaults.workloadApiJwksUrl,
      values['defaults'].workloadApiJwksUrl || values['issuer'].url,
      'Workload API JWT bundles come from the issuer',
    );
    if (values['issuer'].tls.mode === 'certManager' && !values['defaults'].jwt.exchangeUrl) {
      assert.ok(one(r, 'Certificate', issuerName)['spec'].dnsNames.includes(url.hostname));
    }
    // Signing keys: never made by the chart. certManager: a Certificate's private key, of the kind the algorithm needs,
    // rotated by cert-manager, mounted as tls.key alone, the replaced key kept by the issuer.
    assert.equal(find(r, 'Secret').length, 0, 'the chart renders no Secret');
    const keysVolume = one(r, 'Deployment', issuerName)['spec'].template.spec.volumes.find(
      (v: Obj) => v.name === 'keys',
    );
    if (values['issuer'].keys.source === 'certManager') {
      const key = one(r, 'Certificate', `${issuerName}-signing-key`)['spec'];
      assert.deepEqual(
        key.privateKey,
        issuerConfig.issuer.algorithm === 'RS256'
          ? { algorithm: 'RSA', size: 2048, encoding: 'PKCS8', rotationPolicy: 'Always' }
          : { algorithm: 'ECDSA', size: 256, encoding: 'PKCS8', rotationPolicy: 'Always' },
      );
      assert.equal(keysVolume.secret.secretName, key.secretName);
      assert.deepEqual(keysVolume.secret.items, [{ key: 'tls.key', path: 'tls.key' }]);
      assert.equal(issuerConfig.issuer.retainReplacedKey, true);
      assert.ok(
        issuerConfig.issuer.keyActivationDelaySeconds > issuerConfig.issuer.discoveryMaxAgeSeconds,
        'a new key waits out the cached JWKS',
      );
    } else {
      assert.equal(keysVolume.secret.secretName, values['issuer'].keys.existingSecret);
      assert.equal(issuerConfig.issuer.retainReplacedKey, false);
    }
    if (values['issuer'].ingress.enabled) {
      const ingress = one(r, 'Ingress', issuerName);
      const issuerUrl = new URL(values['issuer'].url);
      assert.equal(ingress['spec'].rules[0].host, values['issuer'].ingress.host || issuerUrl.hostname);
      assert.equal(ingress['spec'].rules[0].http.paths[0].path, `${issuerUrl.pathname.replace(/\/$/, '')}/.well-known`);
      assert.equal(ingress['spec'].rules[0].http.paths[0].backend.service.port.name, 'discovery');
    }
  } else {
    assert.equal(find(r, 'Deployment', `${prefix}-issuer`).length, 0);
  }
  assert.match(r.notes, /Next steps/);
}

const renderCases = async (): Promise<Array<{ name: string; files: string[] }>> => [
  { name: 'the default values', files: [] },
  ...(await exampleValues()).map((f) => ({ name: `examples/${f}`, files: [join(EXAMPLES, f)] })),
  {
    name: 'every optional value set (test/chart/values/everything.yaml)',
    files: [new URL('./values/everything.yaml', import.meta.url).pathname],
  },
  {
    name: 'OpenShift (test/chart/values/openshift.yaml)',
    files: [new URL('./values/openshift.yaml', import.meta.url).pathname],
  },
];

for (const c of await renderCases()) {
  test(`renders with ${c.name}: every object is valid`, async (t) => {
    const r = await renderer();
    if ('skip' in r) return t.skip(r.skip);
    const defaults = await yamlFile(join(CHART_DIR, 'values.yaml'));
    let values = defaults;
    for (const f of c.files) values = coalesce(values, await yamlFile(f));
    await checkRendered(await r.render({ valuesFiles: c.files, notes: true }), values);
  });
}

test('missing required values stop the render with a message naming them', async (t) => {
  const r = await renderer();
  if ('skip' in r) return t.skip(r.skip);
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(join(tmpdir(), 'chart-values-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'v.yaml');
  await writeFile(file, 'issuer: { enabled: true, tls: { issuerRef: { name: internal-ca } } }\n');
  await assert.rejects(r.render({ valuesFiles: [file] }), /issuer\/url/);
  await writeFile(file, 'issuer: { enabled: true, url: "https://oidc.example.org" }\n');
  await assert.rejects(r.render({ valuesFiles: [file] }), /issuer\.tls\.issuerRef\.name is required/);
});

test('the example pods are injected by the webhook with the matching example values', async (t) => {
  const r = await renderer();
  if ('skip' in r) return t.skip(r.skip);
  for (const [cloud, file] of [
    ['aws', 'pod-aws.yaml'],
    ['gcp', 'pod-gcp.yaml'],
    ['azure', 'pod-azure.yaml'],
    ['aws', 'serviceaccount-aws.yaml'],
    ['aws', 'pod-aws-per-container.yaml'],
  ] as const) {
    const rendered = await r.render({ valuesFiles: [join(EXAMPLES, `values-${cloud}.yaml`)] });
    const config = parseWebhookConfig(one(rendered, 'ConfigMap', 'spiffe-connector-webhook')['data']['webhook.yaml']);
    const docs = parseAllDocuments(await readFile(join(EXAMPLES, file), 'utf8')).map((d) => d.toJS() as Obj);
    for (const doc of docs) assert.deepEqual(await validateK8sObject(doc), [], `examples/${file}`);
    const workload = docs.find((d) => d['kind'] === 'Pod' || d['kind'] === 'Deployment') as Obj;
    const pod = (
      workload['kind'] === 'Pod'
        ? workload
        : {
            apiVersion: 'v1',
            kind: 'Pod',
            ...workload['spec'].template,
            metadata: { ...workload['spec'].template.metadata, generateName: 'x-' },
          }
    ) as Pod;
    // The API server sends it to the webhook: the rendered matchConditions want the inject annotation or label.
    assert.ok(
      'spiffe-connector.io/inject' in { ...pod.metadata?.annotations, ...pod.metadata?.labels },
      `examples/${file} reaches the webhook`,
    );
    const account = docs.find(
      (d) => d['kind'] === 'ServiceAccount' && d['metadata'].name === pod.spec.serviceAccountName,
    );
    const annotations = account?.['metadata'].annotations as Record<string, string> | undefined;
    const result = admitPod(
      pod,
      { config, randomSecret: () => 'identity-header-for-the-example' },
      annotations ? { name: `shop/${account?.['metadata'].name}`, annotations } : undefined,
    );
    assert.equal(result.outcome, 'injected', result.outcome === 'denied' ? result.denied : file);
    if (result.outcome === 'injected') assert.ok(result.config[cloud as 'aws' | 'gcp' | 'azure'], `${cloud} is served`);
  }
});

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
const validateValues = ajv.compile(JSON.parse(await readFile(join(CHART_DIR, 'values.schema.json'), 'utf8')));

test('values.schema.json accepts the defaults and every example', async () => {
  const defaults = await yamlFile(join(CHART_DIR, 'values.yaml'));
  assert.ok(validateValues(defaults), JSON.stringify(validateValues.errors));
  for (const f of await exampleValues()) {
    const merged = coalesce(defaults, await yamlFile(join(EXAMPLES, f)));
    assert.ok(validateValues(merged), `${f}: ${JSON.stringify(validateValues.errors)}`);
  }
  const everything = coalesce(defaults, await yamlFile(new URL('./values/everything.yaml', import.meta.url).pathname));
  assert.ok(validateValues(everything), JSON.stringify(validateValues.errors));
});

test('values.schema.json refuses bad values', async () => {
  const defaults = await yamlFile(join(CHART_DIR, 'values.yaml'));
  const bad: Array<[string, Obj]> = [
    ['an unknown failure policy', { webhook: { failurePolicy: 'Sometimes' } }],
    ['a misspelt key', { webhook: { replicas: 3 } }],
    ['a trust domain with capitals and spaces', { trustDomain: 'My Domain' }],
    ['the issuer without its URL', { issuer: { enabled: true } }],
    ['an http issuer URL', { issuer: { url: 'http://oidc.example.org' } }],
    ['a port out of range', { defaults: { metadataPort: 70000 } }],
    ['a bad quantity', { sidecar: { resources: { limits: { memory: 'lots' } } } }],
    ['a root sidecar', { sidecar: { runAsUser: 0 } }],
    ['an unknown algorithm', { issuer: { algorithm: 'HS256' } }],
    ['a malformed GCP provider', { defaults: { gcp: { workloadIdentityProvider: 'pool/provider' } } }],
    [
      'a Roles Anywhere trust anchor that is not one',
      { defaults: { aws: { trustAnchorArn: 'arn:aws:iam::111122223333:role/x' } } },
    ],
    [
      'an unquoted project number (Helm would print it as a float)',
      { defaults: { gcp: { projectNumber: 123456789012 } } },
    ],
    ['matchConditions neither a boolean nor auto', { webhook: { matchConditions: 'yes' } }],
    ['a signing key source the chart does not know (it never generates one)', { issuer: { keys: { source: 'helm' } } }],
    ['the removed keys.generate', { issuer: { keys: { generate: true } } }],
    ['a ServiceAccount lookup with no time to answer', { webhook: { serviceAccounts: { timeoutSeconds: 0 } } }],
    ['a ServiceMonitor interval that is not a duration', { metrics: { serviceMonitor: { interval: 'often' } } }],
    ['an API server CIDR that is not one', { networkPolicy: { apiServer: { cidrs: ['10.0.0.1'] } } }],
  ];
  for (const [what, over] of bad) assert.equal(validateValues(coalesce(defaults, over)), false, what);
});

test('every values.yaml key is commented', async () => {
  const doc = parseDocument(await readFile(join(CHART_DIR, 'values.yaml'), 'utf8'));
  const missing: string[] = [];
  const walk = (map: YAMLMap, path: string): void => {
    map.items.forEach((pair, i) => {
      const key = String((pair.key as { value?: unknown }).value ?? pair.key);
      const comment =
        (pair.key as { commentBefore?: string }).commentBefore ?? (i === 0 ? map.commentBefore : undefined);
      if (!comment) missing.push(`${path}${key}`);
      // Free-form Kubernetes values (resources) are documented as a whole.
      if (isMap(pair.value) && key !== 'resources') walk(pair.value, `${path}${key}.`);
    });
  };
  walk(doc.contents as YAMLMap, '');
  assert.deepEqual(missing, []);
});
