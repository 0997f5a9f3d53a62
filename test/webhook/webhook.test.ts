// The webhook as a black box: AdmissionReview fixtures over real HTTPS → the JSON patch out, applied
// with a JSON-patch library, and the resulting Pod checked against the Kubernetes schemas.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import jsonpatch from 'fast-json-patch';
import { parseSidecarConfig } from '../../src/config/load.ts';
import { appEnvironment } from '../../src/env.ts';
import { MALFORMED_TARGETS, sendTarget } from '../helpers/http.ts';
import { validateK8sObject } from '../helpers/k8s-schema.ts';
import { podReview, startHarness, WEBHOOK_CONFIG } from './harness.ts';

const run = promisify(execFile);
const fixture = async (name: string): Promise<Record<string, any>> =>
  JSON.parse(await readFile(new URL(`./fixtures/${name}`, import.meta.url), 'utf8'));

interface Response {
  uid: string;
  allowed: boolean;
  patchType?: string;
  patch?: string;
  warnings?: string[];
  status?: { code: number; message: string };
  auditAnnotations?: Record<string, string>;
}

function responseOf(json: unknown, uid: string): Response {
  const body = json as { apiVersion: string; kind: string; response: Response };
  assert.equal(body.apiVersion, 'admission.k8s.io/v1');
  assert.equal(body.kind, 'AdmissionReview');
  assert.equal(body.response.uid, uid, 'the response echoes the request uid');
  return body.response;
}

function applied(pod: unknown, response: Response): any {
  assert.equal(response.patchType, 'JSONPatch');
  const ops = JSON.parse(Buffer.from(response.patch ?? '', 'base64').toString('utf8'));
  // validateOperation=true: every op must apply to the document as sent (no missing parents, no bad indexes).
  return jsonpatch.applyPatch(structuredClone(pod), ops, true, false).newDocument;
}

async function assertValidPod(pod: unknown): Promise<void> {
  assert.deepEqual(await validateK8sObject(pod), [], 'the patched Pod passes the Kubernetes schema');
}

function sidecarOf(pod: any): any {
  const sidecar = (pod.spec.initContainers ?? []).find((c: any) => c.name === 'spiffe-connector');
  assert.ok(sidecar, 'the sidecar is an init container');
  return sidecar;
}

function envValue(container: any, name: string): string | undefined {
  return container.env?.find((e: any) => e.name === name)?.value;
}

/** What `spiffe-connector env --config FILE` prints for the config the sidecar was given. */
async function envCommand(dir: string, configText: string): Promise<Array<[string, string]>> {
  const file = join(dir, `sidecar-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(file, configText);
  const { stdout } = await run(process.execPath, [
    new URL('../../src/main.ts', import.meta.url).pathname,
    'env',
    '--config',
    file,
  ]);
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]);
}

test('a plain annotated pod gets the native sidecar, both volumes, the env and the token mount', async (t) => {
  const h = await startHarness(t);
  const pod = await fixture('plain-pod.json');
  const review = podReview(pod, 'shop');
  const { status, json } = await h.post(review);
  assert.equal(status, 200);
  const response = responseOf(json, (review['request'] as { uid: string }).uid);
  assert.equal(response.allowed, true);
  assert.equal(response.warnings, undefined);
  assert.deepEqual(response.auditAnnotations, {
    'spiffe-id': 'spiffe://cluster.example/ns/shop/sa/orders',
    clouds: 'aws',
  });

  const out = applied(pod, response);
  await assertValidPod(out);

  const sidecar = sidecarOf(out);
  assert.equal(sidecar.restartPolicy, 'Always', 'a native sidecar');
  assert.equal(sidecar.image, 'registry.example/spiffe-connector:0.1.0');
  assert.deepEqual(sidecar.args, ['run']);
  assert.deepEqual(sidecar.startupProbe.httpGet, { path: '/readyz', port: 9090, scheme: 'HTTP' });
  assert.deepEqual(sidecar.readinessProbe.httpGet, { path: '/readyz', port: 9090, scheme: 'HTTP' });
  assert.deepEqual(sidecar.securityContext, {
    runAsNonRoot: true,
    runAsUser: 65532,
    runAsGroup: 65532,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    privileged: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  });
  assert.deepEqual(
    sidecar.resources,
    { requests: { cpu: '10m', memory: '96Mi' }, limits: { memory: '192Mi' } },
    'the default covers the idle RSS bench/rss.ts measures (63-72 MB idle, 80 MB after a load)',
  );

  const csi = out.spec.volumes.find((v: any) => v.csi);
  assert.deepEqual(csi, {
    name: 'spiffe-connector-svid',
    csi: {
      driver: 'spiffe.csi.cert-manager.io',
      readOnly: true,
      volumeAttributes: { 'spiffe.csi.cert-manager.io/fs-group': '65532' },
    },
  });
  assert.deepEqual(
    out.spec.volumes.find((v: any) => v.emptyDir),
    { name: 'spiffe-connector-state', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
  );
  assert.deepEqual(sidecar.volumeMounts, [
    { name: 'spiffe-connector-svid', mountPath: '/var/run/secrets/spiffe.io', readOnly: true },
    { name: 'spiffe-connector-state', mountPath: '/var/run/spiffe-connector' },
  ]);

  // The sidecar's config is what the annotations and cluster defaults say, as the sidecar itself parses it.
  const configText = envValue(sidecar, 'SPIFFE_CONNECTOR_CONFIG');
  assert.ok(configText);
  const config = parseSidecarConfig(configText, 'SPIFFE_CONNECTOR_CONFIG');
  assert.equal(config.spiffe.trustDomain, 'cluster.example');
  assert.equal(config.spiffe.x509?.dir, '/var/run/secrets/spiffe.io');
  assert.equal(config.spiffe.jwt?.exchange?.url, 'https://spiffe-connector-issuer.spiffe-connector.svc:8443/token');
  assert.equal(config.aws?.roleArn, 'arn:aws:iam::111122223333:role/orders');
  assert.equal(config.aws?.region, 'eu-west-1');
  assert.equal(config.gcp, undefined);
  assert.equal(config.azure, undefined);

  // The app container is told exactly what `spiffe-connector env` prints for that config.
  const app = out.spec.containers[0];
  const injected = app.env.map((e: any) => [e.name, e.value]);
  assert.deepEqual(
    injected,
    appEnvironment(config).map(([k, v]) => [k, v]),
  );
  assert.deepEqual(injected, await envCommand(h.dir, configText));
  assert.ok(injected.some(([k]: [string, string]) => k === 'AWS_CONTAINER_CREDENTIALS_FULL_URI'));
  assert.deepEqual(app.volumeMounts, [
    { name: 'spiffe-connector-state', mountPath: '/var/run/spiffe-connector', readOnly: true },
  ]);
  assert.deepEqual(app.ports, pod['spec'].containers[0].ports, 'everything else is left as it was');
});

test('env the user set explicitly is left alone and reported; other init containers and skipped containers are untouched', async (t) => {
  const h = await startHarness(t);
  const pod = await fixture('explicit-env.json');
  const review = podReview(pod, 'analytics');
  const response = responseOf((await h.post(review)).json, (review['request'] as { uid: string }).uid);
  assert.equal(response.allowed, true);
  const out = applied(pod, response);
  await assertValidPod(out);

  const app = out.spec.containers[0];
  assert.equal(envValue(app, 'AWS_REGION'), 'us-east-2', 'the explicit value stays');
  assert.equal(app.env.filter((e: any) => e.name === 'AWS_REGION').length, 1, 'and is not duplicated');
  assert.equal(envValue(app, 'NO_PROXY'), 'internal.example');
  assert.ok(envValue(app, 'GCE_METADATA_HOST'), 'the rest of the environment is added');
  assert.deepEqual(response.warnings, [
    'container "app": AWS_REGION is set explicitly and was left as it is',
    'container "app": NO_PROXY is set explicitly and was left as it is (it must include 127.0.0.1, or proxied SDK calls miss the metadata endpoints)',
  ]);
  assert.deepEqual(app.volumeMounts, [
    { name: 'data', mountPath: '/data' },
    { name: 'spiffe-connector-state', mountPath: '/var/run/spiffe-connector', readOnly: true },
  ]);

  // Every other injected variable is what `env` prints.
  const config = parseSidecarConfig(
    envValue(sidecarOf(out), 'SPIFFE_CONNECTOR_CONFIG') ?? '',
    'SPIFFE_CONNECTOR_CONFIG',
  );
  const expected = appEnvironment(config).filter(([k]) => k !== 'AWS_REGION' && k !== 'NO_PROXY');
  assert.deepEqual(
    app.env.slice(2).map((e: any) => [e.name, e.value]),
    expected.map(([k, v]) => [k, v]),
  );
  assert.equal(config.gcp?.projectNumber, '123456789012', 'the project number comes from the provider name');
  assert.equal(config.gcp?.serviceAccount, 'reports@my-project.iam.gserviceaccount.com');

  const shipper = out.spec.containers[1];
  assert.deepEqual(shipper, pod['spec'].containers[1], 'a skipped container is untouched');
  assert.deepEqual(out.spec.initContainers[0], pod['spec'].initContainers[0], 'other init containers are untouched');
  assert.equal(out.spec.initContainers.length, 2);
  assert.equal(
    out.spec.initContainers[1].name,
    'spiffe-connector',
    'the sidecar starts after the pod’s own init containers',
  );
  assert.deepEqual(
    out.spec.volumes.map((v: any) => v.name),
    ['data', 'spiffe-connector-svid', 'spiffe-connector-state'],
  );
});

test('an already injected pod gets an empty patch (reinvocation)', async (t) => {
  const h = await startHarness(t);
  const pod = await fixture('plain-pod.json');
  const first = podReview(pod, 'shop');
  const injected = applied(pod, responseOf((await h.post(first)).json, (first['request'] as { uid: string }).uid));

  const again = podReview(injected, 'shop');
  const response = responseOf((await h.post(again)).json, (again['request'] as { uid: string }).uid);
  assert.equal(response.allowed, true);
  assert.equal(response.patch, undefined);
  assert.equal(response.patchType, undefined);
  assert.equal(response.warnings, undefined);
});

test('an invalid annotation denies the pod with a message naming the annotation and the problem', async (t) => {
  const h = await startHarness(t);
  const pod = await fixture('bad-annotation.json');
  const review = podReview(pod, 'shop');
  const response = responseOf((await h.post(review)).json, (review['request'] as { uid: string }).uid);
  assert.equal(response.allowed, false);
  assert.equal(response.patch, undefined);
  assert.equal(response.status?.code, 400);
  assert.match(
    response.status?.message ?? '',
    /spiffe-connector\.io\/aws-session-duration: must be a whole number of seconds/,
  );

  // Once the number is fixed, the role ARN is checked by the sidecar's own schema.
  pod['metadata'].annotations['spiffe-connector.io/aws-session-duration'] = '3600';
  const second = podReview(pod, 'shop');
  const r2 = responseOf((await h.post(second)).json, (second['request'] as { uid: string }).uid);
  assert.equal(r2.allowed, false);
  assert.equal(
    r2.status?.message,
    'spiffe-connector.io/aws-role-arn: must be an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)',
  );

  pod['metadata'].annotations['spiffe-connector.io/aws-role-arn'] = 'arn:aws:iam::111122223333:role/billing';
  pod['metadata'].annotations['spiffe-connector.io/aws-sesion-duration'] = '3600';
  const third = podReview(pod, 'shop');
  const r3 = responseOf((await h.post(third)).json, (third['request'] as { uid: string }).uid);
  assert.equal(r3.allowed, false);
  assert.match(
    r3.status?.message ?? '',
    /^spiffe-connector\.io\/aws-sesion-duration: unknown annotation \(did you mean spiffe-connector\.io\/aws-session-duration\?/,
  );
});

test("a Deployment's pod template (generateName, namespace only in the request) is injected", async (t) => {
  const h = await startHarness(t);
  const deployment = await fixture('deployment.json');
  // What the ReplicaSet controller creates: the template, a generateName, no name, no namespace in the object.
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { ...deployment['spec'].template.metadata, generateName: 'ledger-6d4cf56db6-' },
    spec: deployment['spec'].template.spec,
  };
  const review = podReview(pod, 'finance');
  const response = responseOf((await h.post(review)).json, (review['request'] as { uid: string }).uid);
  assert.equal(response.allowed, true, response.status?.message);
  assert.equal(response.auditAnnotations?.['spiffe-id'], 'spiffe://cluster.example/ns/finance/sa/ledger');
  const out = applied(pod, response);
  await assertValidPod(out);
  assert.equal(out.metadata.name, undefined);
  assert.equal(out.metadata.generateName, 'ledger-6d4cf56db6-');

  const config = parseSidecarConfig(
    envValue(sidecarOf(out), 'SPIFFE_CONNECTOR_CONFIG') ?? '',
    'SPIFFE_CONNECTOR_CONFIG',
  );
  assert.equal(
    config.server.metadataAddress,
    '127.0.0.1:18181',
    'the metadata-port annotation moves off the app’s port',
  );
  assert.equal(config.azure?.clientId, '11111111-2222-3333-4444-555555555555');
  assert.equal(
    config.azure?.tenantId,
    '00000000-0000-0000-0000-000000000000',
    'the tenant comes from the cluster defaults',
  );
  assert.equal(config.azure?.identityHeader, 'test-identity-header-0001', 'a per-pod identity header');
  const app = out.spec.containers[0];
  assert.equal(envValue(app, 'IDENTITY_HEADER'), 'test-identity-header-0001', 'the app and the sidecar agree on it');
  assert.deepEqual(
    app.env.map((e: any) => [e.name, e.value]),
    appEnvironment(config).map(([k, v]) => [k, v]),
  );
  assert.deepEqual(
    await envCommand(h.dir, envValue(sidecarOf(out), 'SPIFFE_CONNECTOR_CONFIG') ?? ''),
    app.env.map((e: any) => [e.name, e.value]),
  );

  // The whole Deployment with the patched template is valid too.
  const patchedDeployment = structuredClone(deployment);
  patchedDeployment['spec'].template.spec = out.spec;
  assert.deepEqual(await validateK8sObject(patchedDeployment), []);
});

test('pods without the annotation, other kinds and other operations pass untouched', async (t) => {
  const h = await startHarness(t);
  const pod = await fixture('plain-pod.json');
  delete pod['metadata'].annotations['spiffe-connector.io/inject'];
  for (const review of [
    podReview(pod, 'shop'),
    podReview(await fixture('plain-pod.json'), 'shop', 'UPDATE'),
    {
      ...podReview(pod, 'shop'),
      request: {
        ...(podReview(pod, 'shop')['request'] as object),
        uid: 'u-cm',
        kind: { group: '', version: 'v1', kind: 'ConfigMap' },
      },
    },
  ]) {
    const uid = (review['request'] as { uid: string }).uid;
    const response = responseOf((await h.post(review)).json, uid);
    assert.equal(response.allowed, true);
    assert.equal(response.patch, undefined);
  }
});

test('malformed requests get HTTP errors, not a crash', async (t) => {
  const h = await startHarness(t);
  assert.equal((await h.post('{not json')).status, 400);
  assert.equal(
    (await h.post({ apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: { uid: 'x' } })).status,
    400,
  );
  assert.equal((await h.post({ hello: 'world' }, 'text/plain')).status, 415);
  const broken = podReview({ metadata: {}, spec: { containers: 'app' } }, 'shop');
  const response = responseOf((await h.post(broken)).json, (broken['request'] as { uid: string }).uid);
  assert.equal(response.allowed, false);
  assert.match(response.status?.message ?? '', /malformed/);
  assert.equal((await h.get('/healthz')).status, 200);
});

test('health, readiness and metrics are served on the same HTTPS listener', async (t) => {
  const h = await startHarness(t);
  const pod = await fixture('plain-pod.json');
  await h.post(podReview(pod, 'shop'));
  await h.post(podReview(await fixture('bad-annotation.json'), 'shop'));
  assert.deepEqual(await h.get('/healthz'), { status: 200, text: 'ok\n' });
  assert.deepEqual(await h.get('/readyz'), { status: 200, text: 'ready\n' });
  const metrics = await h.get('/metrics');
  assert.equal(metrics.status, 200);
  assert.match(metrics.text, /spiffe_connector_webhook_admissions_total\{outcome="injected"\} 1/);
  assert.match(metrics.text, /spiffe_connector_webhook_admissions_total\{outcome="denied"\} 1/);
  assert.match(metrics.text, /spiffe_connector_webhook_certificate_expiry_timestamp_seconds \d+/);
  assert.doesNotMatch(metrics.text, /arn:aws|test-identity-header/, 'no pod content in metrics');
  assert.equal((await h.get('/nope')).status, 404);
});

test('replicas of one Deployment each get their own identity header, shared only by their own sidecar and app', async (t) => {
  const h = await startHarness(t);
  const deployment = await fixture('deployment.json');
  const headers = new Set<string>();
  for (const suffix of ['a1b2c', 'd3e4f', 'g5h6i']) {
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { ...deployment['spec'].template.metadata, generateName: `ledger-6d4cf56db6-${suffix}` },
      spec: deployment['spec'].template.spec,
    };
    const review = podReview(pod, 'finance');
    const out = applied(pod, responseOf((await h.post(review)).json, (review['request'] as { uid: string }).uid));
    await assertValidPod(out);
    const config = parseSidecarConfig(
      envValue(sidecarOf(out), 'SPIFFE_CONNECTOR_CONFIG') ?? '',
      'SPIFFE_CONNECTOR_CONFIG',
    );
    const header = config.azure?.identityHeader ?? '';
    assert.equal(envValue(out.spec.containers[0], 'IDENTITY_HEADER'), header);
    assert.doesNotMatch(JSON.stringify(out), /placeholder/);
    headers.add(header);
  }
  assert.equal(headers.size, 3);
});

test('malformed request targets get an answer (404, not a 500 or a hang) and the connection is closed', async (t) => {
  const h = await startHarness(t);
  for (const target of MALFORMED_TARGETS) {
    const answer = await sendTarget(h.webhook.port, target, { tls: true });
    assert.match(answer.statusLine ?? 'no answer', /^HTTP\/1\.1 (400|404) /, `GET ${target}`);
    assert.ok(answer.closed, `GET ${target}: closed`);
  }
  assert.equal((await h.get('/healthz')).status, 200);
});

test('webhook.metricsAddress serves /metrics over plain HTTP, and nothing else', async (t) => {
  const h = await startHarness(t, {
    configText: (cert, key) =>
      WEBHOOK_CONFIG(cert, key).replace('  drainSeconds: 0\n', '  drainSeconds: 0\n  metricsAddress: 127.0.0.1:0\n'),
  });
  const pod = await fixture('plain-pod.json');
  await h.post(podReview(pod, 'shop'));
  const base = h.webhook.metricsUrl;
  assert.ok(base?.startsWith('http://127.0.0.1:'), base);
  const metrics = await fetch(`${base}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain/);
  assert.match(await metrics.text(), /spiffe_connector_webhook_admissions_total\{outcome="injected"\} 1/);
  const mutate = await fetch(`${base}/mutate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(podReview(pod, 'shop')),
  });
  assert.equal(mutate.status, 405, 'no admission over plain HTTP');
  await mutate.body?.cancel();
  const other = await fetch(`${base}/readyz`);
  assert.equal(other.status, 404);
  await other.body?.cancel();
});
