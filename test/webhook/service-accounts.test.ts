// The webhook reading the pod's ServiceAccount annotations from a stand-in API server (kube-api-standin.ts)
// the in-cluster way: KUBERNETES_SERVICE_HOST/PORT, the token file as a bearer token, the CA file. Pods are
// posted as AdmissionReviews over HTTPS and the patched pod is checked as the API server would apply it.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import jsonpatch from 'fast-json-patch';
import { ManualClock } from '../../src/base/clock.ts';
import { parseSidecarConfig } from '../../src/config/load.ts';
import { validateK8sObject } from '../helpers/k8s-schema.ts';
import { type Harness, podReview, startHarness, WEBHOOK_CONFIG } from './harness.ts';
import { type KubeApiStandin, startKubeApiStandin } from './kube-api-standin.ts';

const WEBHOOK_USER = 'system:serviceaccount:spiffe-connector:spiffe-connector-webhook';
const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.webhook-projected-token.sig';

interface Setup {
  readonly api: KubeApiStandin;
  readonly h: Harness;
  readonly clock: ManualClock;
  readonly tokenFile: string;
}

async function setup(t: TestContext, extra: { lookups?: string; sidecar?: string } = {}): Promise<Setup> {
  const api = await startKubeApiStandin();
  t.after(() => api.close());
  api.tokens.set(TOKEN, WEBHOOK_USER);
  api.canGet.add(WEBHOOK_USER);
  const dir = await mkdtemp(join(tmpdir(), 'webhook-sa-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const tokenFile = join(dir, 'token');
  const caFile = join(dir, 'ca.crt');
  await writeFile(tokenFile, TOKEN);
  await writeFile(caFile, api.caPem);
  const clock = new ManualClock(Date.parse('2026-06-01T00:00:00Z'));
  const lookups = `  serviceAccounts: { enabled: true, tokenFile: ${tokenFile}, caFile: ${caFile}, cacheSeconds: 30${extra.lookups ?? ''} }\n`;
  const h = await startHarness(t, {
    clock,
    env: api.env,
    configText: (cert, key) => {
      let text = WEBHOOK_CONFIG(cert, key).replace('  drainSeconds: 0\n', `  drainSeconds: 0\n${lookups}`);
      if (extra.sidecar) text = text.replace('sidecar:\n', `sidecar:\n${extra.sidecar}`);
      return text;
    },
  });
  return { api, h, clock, tokenFile };
}

interface Response {
  allowed: boolean;
  patch?: string;
  warnings?: string[];
  status?: { code: number; message: string };
}

async function admit(h: Harness, pod: unknown, namespace = 'shop'): Promise<{ response: Response; out?: any }> {
  const { status, json } = await h.post(podReview(pod, namespace));
  assert.equal(status, 200);
  const response = (json as { response: Response }).response;
  if (!response.patch) return { response };
  const ops = JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8'));
  const out = jsonpatch.applyPatch(structuredClone(pod), ops, true, false).newDocument;
  assert.deepEqual(await validateK8sObject(out), [], 'the patched Pod passes the Kubernetes schema');
  return { response, out };
}

function sidecarConfigOf(out: any) {
  const sidecar = out.spec.initContainers.find((c: any) => c.name === 'spiffe-connector');
  assert.ok(sidecar, 'the sidecar is injected');
  const text = sidecar.env.find((e: any) => e.name === 'SPIFFE_CONNECTOR_CONFIG').value;
  return parseSidecarConfig(text, 'SPIFFE_CONNECTOR_CONFIG');
}

const pod = (
  annotations?: Record<string, string>,
  serviceAccountName = 'orders',
  extra: Record<string, unknown> = {},
) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { generateName: 'orders-', namespace: 'shop', ...(annotations ? { annotations } : {}) },
  spec: { serviceAccountName, containers: [{ name: 'app', image: 'registry.example/orders:1.4.2' }], ...extra },
});

test('a pod with no annotations whose ServiceAccount is annotated gets the sidecar, with the token as the bearer', async (t) => {
  const { api, h } = await setup(t);
  api.put({
    namespace: 'shop',
    name: 'orders',
    annotations: {
      'spiffe-connector.io/inject': 'true',
      'spiffe-connector.io/aws-role-arn': 'arn:aws:iam::111122223333:role/orders',
      'kubectl.kubernetes.io/last-applied-configuration': '{"a":"b"}',
    },
  });
  const { response, out } = await admit(h, pod());
  assert.equal(response.allowed, true);
  assert.equal(sidecarConfigOf(out).aws?.roleArn, 'arn:aws:iam::111122223333:role/orders');
  const got = api.requests.filter((r) => r.path === '/api/v1/namespaces/shop/serviceaccounts/orders');
  assert.equal(got.length, 1);
  assert.equal(got[0]?.method, 'GET');
  assert.equal(got[0]?.authorization, `Bearer ${TOKEN}`);
});

test("a pod's annotations override its ServiceAccount's, key by key", async (t) => {
  const { api, h } = await setup(t);
  api.put({
    namespace: 'shop',
    name: 'orders',
    annotations: {
      'spiffe-connector.io/inject': 'true',
      'spiffe-connector.io/aws-role-arn': 'arn:aws:iam::111122223333:role/from-account',
      'spiffe-connector.io/aws-region': 'us-east-2',
    },
  });
  const { out } = await admit(
    h,
    pod({ 'spiffe-connector.io/aws-role-arn': 'arn:aws:iam::111122223333:role/from-pod' }),
  );
  const config = sidecarConfigOf(out);
  assert.equal(config.aws?.roleArn, 'arn:aws:iam::111122223333:role/from-pod');
  assert.equal(config.aws?.region, 'us-east-2', 'what the pod does not set comes from the ServiceAccount');

  // inject "false" on the pod opts it out of its ServiceAccount's injection.
  const { response } = await admit(h, pod({ 'spiffe-connector.io/inject': 'false' }));
  assert.equal(response.allowed, true);
  assert.equal(response.patch, undefined);
});

test('the ServiceAccount lookup is cached for cacheSeconds, then asked again', async (t) => {
  const { api, h, clock } = await setup(t);
  api.put({
    namespace: 'shop',
    name: 'orders',
    annotations: {
      'spiffe-connector.io/inject': 'true',
      'spiffe-connector.io/aws-role-arn': 'arn:aws:iam::111122223333:role/a',
    },
  });
  await admit(h, pod());
  await admit(h, pod());
  assert.equal(api.requests.length, 1, 'the second pod of the account reuses the answer');
  api.put({
    namespace: 'shop',
    name: 'orders',
    annotations: {
      'spiffe-connector.io/inject': 'true',
      'spiffe-connector.io/aws-role-arn': 'arn:aws:iam::111122223333:role/b',
    },
  });
  await clock.advance(31_000);
  const { out } = await admit(h, pod());
  assert.equal(api.requests.length, 2);
  assert.equal(sidecarConfigOf(out).aws?.roleArn, 'arn:aws:iam::111122223333:role/b');
});

test('a ServiceAccount that does not exist (404) leaves the pod to its own annotations', async (t) => {
  const { api, h } = await setup(t);
  const { response, out } = await admit(
    h,
    pod(
      {
        'spiffe-connector.io/inject': 'true',
        'spiffe-connector.io/aws-role-arn': 'arn:aws:iam::111122223333:role/orders',
      },
      'missing',
    ),
  );
  assert.equal(response.allowed, true);
  assert.equal(sidecarConfigOf(out).aws?.roleArn, 'arn:aws:iam::111122223333:role/orders');
  assert.equal(api.requests[0]?.path, '/api/v1/namespaces/shop/serviceaccounts/missing');
  // A pod that asks for nothing is still left alone.
  const plain = await admit(h, pod(undefined, 'missing'));
  assert.equal(plain.response.allowed, true);
  assert.equal(plain.response.patch, undefined);
});

test('a failed lookup denies the pod with a message that says what failed and why', async (t) => {
  const { api, h, tokenFile } = await setup(t);
  api.put({ namespace: 'shop', name: 'orders', annotations: { 'spiffe-connector.io/inject': 'true' } });

  // No RBAC: the API server's 403 Status, and the hint at the ClusterRole.
  api.canGet.delete(WEBHOOK_USER);
  let { response } = await admit(h, pod());
  assert.equal(response.allowed, false);
  assert.match(response.status?.message ?? '', /cannot read ServiceAccount shop\/orders/);
  assert.match(
    response.status?.message ?? '',
    /403: serviceaccounts "orders" is forbidden: User "system:serviceaccount:spiffe-connector:spiffe-connector-webhook" cannot get/,
  );
  assert.match(response.status?.message ?? '', /get on serviceaccounts/);
  assert.doesNotMatch(
    response.status?.message ?? '',
    new RegExp(TOKEN.replace(/\./g, '\\.')),
    'the token never reaches a message',
  );

  // A token the API server does not know: 401.
  api.canGet.add(WEBHOOK_USER);
  await writeFile(tokenFile, 'a-token-the-api-server-never-issued');
  ({ response } = await admit(h, pod()));
  assert.equal(response.allowed, false);
  assert.match(response.status?.message ?? '', /401: Unauthorized \(its ServiceAccount token was refused\)/);
  assert.doesNotMatch(response.status?.message ?? '', /never-issued/);

  // The kubelet rotated the token file: the next lookup reads it again and succeeds (failures are not cached).
  await writeFile(tokenFile, `${TOKEN}\n`);
  ({ response } = await admit(h, pod({ 'spiffe-connector.io/aws-role-arn': 'arn:aws:iam::111122223333:role/orders' })));
  assert.equal(response.allowed, true);
  assert.ok(response.patch);

  // The API server unreachable.
  await api.close();
  // A pod that opts out is admitted untouched without asking.
  const optOut = await admit(h, pod({ 'spiffe-connector.io/inject': 'false' }, 'another'));
  assert.equal(optOut.response.allowed, true);
  assert.equal(optOut.response.patch, undefined);
  ({ response } = await admit(h, pod(undefined, 'another')));
  assert.equal(response.allowed, false);
  assert.match(
    response.status?.message ?? '',
    /cannot read ServiceAccount shop\/another.*cannot reach the API server at 127\.0\.0\.1:\d+ \((ECONNREFUSED|ECONNRESET|EPIPE)\)/,
  );
  const metrics = await h.get('/metrics');
  assert.match(metrics.text, /spiffe_connector_webhook_service_account_lookups_total\{outcome="error"\} 3/);
});

test('a slow API server is given up on after timeoutSeconds, within the admission deadline', async (t) => {
  const { api, h } = await setup(t, { lookups: ', timeoutSeconds: 0.3' });
  api.put({ namespace: 'shop', name: 'orders', annotations: { 'spiffe-connector.io/inject': 'true' } });
  api.delayMs = 5_000;
  const started = Date.now();
  const { response } = await admit(h, pod());
  assert.ok(Date.now() - started < 4_000, 'answered well before the API server would have');
  assert.equal(response.allowed, false);
  assert.match(response.status?.message ?? '', /did not answer within 0\.3 s/);
});

test('with onError podAnnotationsOnly a failed lookup injects from the pod alone, with a warning', async (t) => {
  const { api, h } = await setup(t, { lookups: ', onError: podAnnotationsOnly' });
  api.canGet.delete(WEBHOOK_USER);
  const { response, out } = await admit(
    h,
    pod({
      'spiffe-connector.io/inject': 'true',
      'spiffe-connector.io/aws-role-arn': 'arn:aws:iam::111122223333:role/orders',
    }),
  );
  assert.equal(response.allowed, true);
  assert.equal(sidecarConfigOf(out).aws?.roleArn, 'arn:aws:iam::111122223333:role/orders');
  assert.ok(
    response.warnings?.some((w) =>
      /cannot read ServiceAccount shop\/orders.*injected from the pod's own annotations only/.test(w),
    ),
    String(response.warnings),
  );
});

test("a typo in a ServiceAccount's annotation is denied, naming the ServiceAccount", async (t) => {
  const { api, h } = await setup(t);
  api.put({
    namespace: 'shop',
    name: 'orders',
    annotations: { 'spiffe-connector.io/inject': 'true', 'spiffe-connector.io/aws-role-arm': 'x' },
  });
  const { response } = await admit(h, pod());
  assert.equal(response.allowed, false);
  assert.match(
    response.status?.message ?? '',
    /spiffe-connector\.io\/aws-role-arm: unknown annotation \(did you mean spiffe-connector\.io\/aws-role-arn\?.*\(annotation of ServiceAccount shop\/orders\)/,
  );
});

test('init containers are served when asked: the sidecar first, and they get the environment and the token mount', async (t) => {
  const { api, h } = await setup(t);
  api.put({
    namespace: 'shop',
    name: 'orders',
    annotations: {
      'spiffe-connector.io/inject': 'true',
      'spiffe-connector.io/aws-role-arn': 'arn:aws:iam::111122223333:role/orders',
    },
  });
  const initContainers = [{ name: 'migrate', image: 'registry.example/migrate:1' }];
  const withInit = pod({ 'spiffe-connector.io/init-containers': 'true' }, 'orders', { initContainers });
  const { out } = await admit(h, withInit);
  assert.deepEqual(
    out.spec.initContainers.map((c: any) => c.name),
    ['spiffe-connector', 'migrate'],
  );
  const migrate = out.spec.initContainers[1];
  assert.ok(
    migrate.env.some(
      (e: any) => e.name === 'AWS_CONTAINER_CREDENTIALS_FULL_URI' || e.name === 'AWS_EC2_METADATA_SERVICE_ENDPOINT',
    ),
    JSON.stringify(migrate.env),
  );
  assert.deepEqual(migrate.volumeMounts, [
    { name: 'spiffe-connector-state', mountPath: '/var/run/spiffe-connector', readOnly: true },
  ]);

  // Not asked: the sidecar after the pod's init containers, which get nothing.
  const { out: plain } = await admit(h, pod(undefined, 'orders', { initContainers }));
  assert.deepEqual(
    plain.spec.initContainers.map((c: any) => c.name),
    ['migrate', 'spiffe-connector'],
  );
  assert.equal(plain.spec.initContainers[0].env, undefined);
});

test('sidecar.serveInitContainers makes serving init containers the default; the annotation still turns it off', async (t) => {
  const { api, h } = await setup(t, { sidecar: '  serveInitContainers: true\n' });
  api.put({
    namespace: 'shop',
    name: 'orders',
    annotations: {
      'spiffe-connector.io/inject': 'true',
      'spiffe-connector.io/aws-role-arn': 'arn:aws:iam::111122223333:role/orders',
    },
  });
  const initContainers = [{ name: 'migrate', image: 'registry.example/migrate:1' }];
  const { out } = await admit(h, pod(undefined, 'orders', { initContainers }));
  assert.deepEqual(
    out.spec.initContainers.map((c: any) => c.name),
    ['spiffe-connector', 'migrate'],
  );
  const { out: off } = await admit(
    h,
    pod({ 'spiffe-connector.io/init-containers': 'false' }, 'orders', { initContainers }),
  );
  assert.deepEqual(
    off.spec.initContainers.map((c: any) => c.name),
    ['migrate', 'spiffe-connector'],
  );
});
