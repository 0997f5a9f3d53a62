// A role per container through the webhook, as a black box: AdmissionReviews over HTTPS (with ServiceAccount
// lookups against the stand-in API server), the JSON patch applied as the API server applies it, the Pod checked
// against the Kubernetes schemas. Container `api` gets role/api and a client id of its own, `worker` role/worker,
// `web` the pod's: each its own env, and its own token directory mounted into it alone.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { promisify } from 'node:util';
import jsonpatch from 'fast-json-patch';
import { parseSidecarConfig } from '../../src/config/load.ts';
import { appEnvironment } from '../../src/env.ts';
import { validateK8sObject } from '../helpers/k8s-schema.ts';
import { MAIN } from '../helpers/sidecar.ts';
import { type Harness, podReview, startHarness, WEBHOOK_CONFIG } from './harness.ts';
import { type KubeApiStandin, startKubeApiStandin } from './kube-api-standin.ts';

const run = promisify(execFile);
const P = 'spiffe-connector.io/';
const WEBHOOK_USER = 'system:serviceaccount:spiffe-connector:spiffe-connector-webhook';
const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.webhook-projected-token.sig';
const POD_ROLE = 'arn:aws:iam::111122223333:role/orders';
const API_ROLE = 'arn:aws:iam::111122223333:role/api';
const WORKER_ROLE = 'arn:aws:iam::111122223333:role/worker';
const POD_CLIENT = '11111111-1111-1111-1111-111111111111';
const API_CLIENT = '22222222-2222-2222-2222-222222222222';

async function setup(t: TestContext): Promise<{ api: KubeApiStandin; h: Harness }> {
  const api = await startKubeApiStandin();
  t.after(() => api.close());
  api.tokens.set(TOKEN, WEBHOOK_USER);
  api.canGet.add(WEBHOOK_USER);
  const dir = await mkdtemp(join(tmpdir(), 'webhook-per-container-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'token'), TOKEN);
  await writeFile(join(dir, 'ca.crt'), api.caPem);
  const lookups = `  serviceAccounts: { enabled: true, tokenFile: ${join(dir, 'token')}, caFile: ${join(dir, 'ca.crt')} }\n`;
  const h = await startHarness(t, {
    env: api.env,
    configText: (cert, key) =>
      WEBHOOK_CONFIG(cert, key).replace('  drainSeconds: 0\n', `  drainSeconds: 0\n${lookups}`),
  });
  return { api, h };
}

const pod = (annotations: Record<string, string>, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { generateName: 'orders-', namespace: 'shop', annotations },
  spec: {
    serviceAccountName: 'orders',
    containers: [
      { name: 'api', image: 'registry.example/api:1' },
      { name: 'worker', image: 'registry.example/worker:1', volumeMounts: [{ name: 'scratch', mountPath: '/tmp' }] },
      { name: 'web', image: 'registry.example/web:1' },
    ],
    volumes: [{ name: 'scratch', emptyDir: {} }],
    ...extra,
  },
});

interface Response {
  allowed: boolean;
  patch?: string;
  warnings?: string[];
  status?: { code: number; message: string };
}

async function admit(h: Harness, p: unknown): Promise<{ response: Response; out?: any }> {
  const { status, json } = await h.post(podReview(p, 'shop'));
  assert.equal(status, 200);
  const response = (json as { response: Response }).response;
  if (!response.patch) return { response };
  const ops = JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8'));
  const out = jsonpatch.applyPatch(structuredClone(p), ops, true, false).newDocument;
  assert.deepEqual(await validateK8sObject(out), [], 'the patched Pod passes the Kubernetes schema');
  return { response, out };
}

function deniedMessage(r: { response: Response }): string {
  assert.equal(r.response.allowed, false, 'denied');
  return r.response.status?.message ?? '';
}

const container = (out: any, name: string) => out.spec.containers.find((c: any) => c.name === name);
const envOf = (c: any): Record<string, string> => Object.fromEntries(c.env.map((e: any) => [e.name, e.value]));

const BOTH = {
  [`${P}inject`]: 'true',
  [`${P}aws-role-arn`]: POD_ROLE,
  [`${P}aws-role-arn.api`]: API_ROLE,
  [`${P}aws-role-arn.worker`]: WORKER_ROLE,
  [`${P}azure-client-id`]: POD_CLIENT,
  [`${P}azure-client-id.api`]: API_CLIENT,
};

test('each container with a role of its own gets its own path, token directory and identity header; the others the pod’s', async (t) => {
  const { h } = await setup(t);
  const { response, out } = await admit(h, pod(BOTH));
  assert.equal(response.allowed, true, response.status?.message);
  assert.equal(response.warnings, undefined);
  const sidecar = out.spec.initContainers.find((c: any) => c.name === 'spiffe-connector');
  const configText = sidecar.env.find((e: any) => e.name === 'SPIFFE_CONNECTOR_CONFIG').value as string;
  const config = parseSidecarConfig(configText, 'SPIFFE_CONNECTOR_CONFIG');

  // The sidecar's config: each container's role and token file, each Azure container its own header.
  assert.deepEqual(config.aws?.containers, {
    api: { roleArn: API_ROLE, tokenFile: '/var/run/spiffe-connector-containers/api/aws-container-token' },
    worker: { roleArn: WORKER_ROLE, tokenFile: '/var/run/spiffe-connector-containers/worker/aws-container-token' },
  });
  assert.equal(config.aws?.imds, false);
  assert.equal(config.azure?.containers['api']?.clientId, API_CLIENT);
  const apiHeader = config.azure?.containers['api']?.identityHeader ?? '';
  assert.ok(apiHeader.length >= 16 && apiHeader !== config.azure?.identityHeader, 'a header of its own');

  // Each container is told what `env --container NAME` prints for that config (the same function).
  for (const name of ['api', 'worker', 'web']) {
    const c = container(out, name);
    assert.deepEqual(
      c.env.map((e: any) => [e.name, e.value]),
      appEnvironment(config, undefined, name).map(([k, v]) => [k, v]),
      name,
    );
  }
  const file = join(h.dir, 'sidecar.yaml');
  await writeFile(file, configText);
  const printed = (await run(process.execPath, [MAIN, 'env', '--config', file, '--container', 'api'])).stdout;
  assert.deepEqual(
    printed.trim().split('\n'),
    container(out, 'api').env.map((e: any) => `${e.name}=${e.value}`),
  );

  const api = envOf(container(out, 'api'));
  const worker = envOf(container(out, 'worker'));
  const web = envOf(container(out, 'web'));
  assert.equal(api['AWS_CONTAINER_CREDENTIALS_FULL_URI'], 'http://127.0.0.1:8181/v1/credentials/api');
  assert.equal(
    api['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'],
    '/var/run/spiffe-connector-containers/api/aws-container-token',
  );
  assert.equal(api['IDENTITY_HEADER'], apiHeader);
  assert.equal(api['AZURE_CLIENT_ID'], API_CLIENT);
  assert.equal(worker['AWS_CONTAINER_CREDENTIALS_FULL_URI'], 'http://127.0.0.1:8181/v1/credentials/worker');
  assert.equal(worker['AZURE_CLIENT_ID'], POD_CLIENT, 'no client id of its own: the pod’s');
  assert.equal(worker['IDENTITY_HEADER'], config.azure?.identityHeader);
  assert.equal(web['AWS_CONTAINER_CREDENTIALS_FULL_URI'], 'http://127.0.0.1:8181/v1/credentials');
  assert.equal(web['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'], '/var/run/spiffe-connector/aws-container-token');
  assert.equal(web['IDENTITY_HEADER'], config.azure?.identityHeader);
  for (const other of [worker, web])
    assert.ok(!Object.values(other).includes(apiHeader), 'api’s header is api’s alone');

  // Mounts: a container with its own role sees only its own directory (a subPath of the containers volume,
  // where the sidecar sees it too), not the pod's token directory; the others the pod's, as before.
  assert.deepEqual(
    out.spec.volumes.find((v: any) => v.name === 'spiffe-connector-containers'),
    {
      name: 'spiffe-connector-containers',
      emptyDir: { medium: 'Memory', sizeLimit: '1Mi' },
    },
  );
  assert.deepEqual(container(out, 'api').volumeMounts, [
    {
      name: 'spiffe-connector-containers',
      mountPath: '/var/run/spiffe-connector-containers/api',
      subPath: 'api',
      readOnly: true,
    },
  ]);
  assert.deepEqual(container(out, 'worker').volumeMounts, [
    { name: 'scratch', mountPath: '/tmp' },
    {
      name: 'spiffe-connector-containers',
      mountPath: '/var/run/spiffe-connector-containers/worker',
      subPath: 'worker',
      readOnly: true,
    },
  ]);
  assert.deepEqual(container(out, 'web').volumeMounts, [
    { name: 'spiffe-connector-state', mountPath: '/var/run/spiffe-connector', readOnly: true },
  ]);
  assert.ok(
    sidecar.volumeMounts.some(
      (m: any) =>
        m.name === 'spiffe-connector-containers' &&
        m.mountPath === '/var/run/spiffe-connector-containers' &&
        !m.readOnly,
    ),
    'the sidecar writes every container’s directory',
  );
  // What each container mounts holds its own token file and no other's.
  const mounted = (c: any) =>
    c.volumeMounts.filter((m: any) => m.name.startsWith('spiffe-connector')).map((m: any) => m.mountPath);
  for (const [name, env] of [
    ['api', api],
    ['worker', worker],
    ['web', web],
  ] as const) {
    const token = env['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'] ?? '';
    for (const other of out.spec.containers) {
      const sees = mounted(other).some((path: string) => token.startsWith(`${path}/`));
      assert.equal(sees, other.name === name, `${other.name} and ${name}'s token`);
    }
  }
});

test('per-container annotations on the ServiceAccount apply to its pods; the pod’s own win, container by container', async (t) => {
  const { api, h } = await setup(t);
  api.put({
    namespace: 'shop',
    name: 'orders',
    annotations: {
      [`${P}inject`]: 'true',
      [`${P}aws-role-arn`]: POD_ROLE,
      [`${P}aws-role-arn.api`]: 'arn:aws:iam::111122223333:role/from-account',
      [`${P}aws-role-arn.worker`]: WORKER_ROLE,
    },
  });
  const { response, out } = await admit(h, pod({ [`${P}aws-role-arn.api`]: API_ROLE }));
  assert.equal(response.allowed, true, response.status?.message);
  const sidecar = out.spec.initContainers.find((c: any) => c.name === 'spiffe-connector');
  const config = parseSidecarConfig(sidecar.env[0].value, 'SPIFFE_CONNECTOR_CONFIG');
  assert.equal(config.aws?.containers['api']?.roleArn, API_ROLE, 'the pod’s annotation wins');
  assert.equal(config.aws?.containers['worker']?.roleArn, WORKER_ROLE, 'the account’s applies');
  assert.equal(
    envOf(container(out, 'worker'))['AWS_CONTAINER_CREDENTIALS_FULL_URI'],
    'http://127.0.0.1:8181/v1/credentials/worker',
  );

  // A name on the account that is no container of this pod: denied, saying where it came from (another
  // namespace's account: the lookup cache holds shop/orders).
  const other = { ...pod({}), metadata: { generateName: 'orders-', namespace: 'billing', annotations: {} } };
  api.put({
    namespace: 'billing',
    name: 'orders',
    annotations: { [`${P}inject`]: 'true', [`${P}aws-role-arn`]: POD_ROLE, [`${P}aws-role-arn.apii`]: API_ROLE },
  });
  const { status, json } = await h.post(podReview(other, 'billing'));
  assert.equal(status, 200);
  const denied = (json as { response: Response }).response;
  assert.equal(denied.allowed, false);
  assert.equal(
    denied.status?.message,
    `${P}aws-role-arn.apii: names no container of this pod (its containers: api, worker, web) (annotation of ServiceAccount billing/orders)`,
  );
});

test('bad per-container annotations are denied by name: unknown container, bad value, skipped container, a secretless surface', async (t) => {
  const { h } = await setup(t);
  const base = { [`${P}inject`]: 'true', [`${P}aws-role-arn`]: POD_ROLE };
  assert.equal(
    deniedMessage(await admit(h, pod({ ...base, [`${P}aws-role-arn.nope`]: API_ROLE }))),
    `${P}aws-role-arn.nope: names no container of this pod (its containers: api, worker, web)`,
  );
  assert.match(
    deniedMessage(await admit(h, pod({ ...base, [`${P}aws-role-arn.API`]: API_ROLE }))),
    /^spiffe-connector\.io\/aws-role-arn\.API: "API" is not a container name/,
  );
  assert.match(
    deniedMessage(await admit(h, pod({ ...base, [`${P}aws-role-arn.api`]: 'role/api' }))),
    /^spiffe-connector\.io\/aws-role-arn\.api: must be an IAM role ARN/,
  );
  assert.match(
    deniedMessage(
      await admit(h, pod({ ...base, [`${P}azure-client-id`]: POD_CLIENT, [`${P}azure-client-id.api`]: 'not-a-guid' })),
    ),
    /^spiffe-connector\.io\/azure-client-id\.api: must be the application \(client\) ID, a GUID/,
  );
  assert.equal(
    deniedMessage(await admit(h, pod({ ...base, [`${P}aws-role-arn.api`]: API_ROLE, [`${P}skip-containers`]: 'api' }))),
    `${P}aws-role-arn.api: container "api" is in ${P}skip-containers, which gets no credentials`,
  );
  // The pod's role is still required: the containers without their own get it.
  assert.match(
    deniedMessage(await admit(h, pod({ [`${P}inject`]: 'true', [`${P}aws-role-arn.api`]: API_ROLE }))),
    /^spiffe-connector\.io\/aws-role-arn: is required/,
  );
  // With a surface that answers every process of the pod, a role per container would be no boundary.
  assert.match(
    deniedMessage(await admit(h, pod({ ...base, [`${P}aws-role-arn.api`]: API_ROLE, [`${P}aws-imds`]: 'true' }))),
    /^spiffe-connector\.io\/aws-imds: cannot be on with spiffe-connector\.io\/aws-role-arn\.api: EC2 IMDS carries no per-container secret/,
  );
  assert.match(
    deniedMessage(await admit(h, pod({ ...base, [`${P}aws-role-arn.api`]: API_ROLE, [`${P}workload-api`]: 'true' }))),
    /^spiffe-connector\.io\/workload-api: cannot be on with spiffe-connector\.io\/aws-role-arn\.api: the Workload API hands the pod's JWT-SVIDs/,
  );
  assert.match(
    deniedMessage(
      await admit(
        h,
        pod({
          [`${P}inject`]: 'true',
          [`${P}azure-client-id`]: POD_CLIENT,
          [`${P}azure-client-id.api`]: API_CLIENT,
          [`${P}azure-msi`]: 'true',
        }),
      ),
    ),
    /^spiffe-connector\.io\/azure-msi: cannot be on with spiffe-connector\.io\/azure-client-id\.api: MSI_ENDPOINT carries no per-container secret/,
  );
  // A container that mounts the pod's own SPIFFE volume could take any role: said in a warning.
  const svid = { name: 'svid', csi: { driver: 'spiffe.csi.cert-manager.io', readOnly: true } };
  const withSvid = pod(
    { ...base, [`${P}aws-role-arn.api`]: API_ROLE },
    {
      volumes: [{ name: 'scratch', emptyDir: {} }, svid],
      securityContext: { fsGroup: 2000 },
    },
  );
  (withSvid.spec.containers[2] as Record<string, unknown>)['volumeMounts'] = [
    { name: 'svid', mountPath: '/spiffe', readOnly: true },
  ];
  const warned = await admit(h, withSvid);
  assert.equal(warned.response.allowed, true, warned.response.status?.message);
  assert.deepEqual(warned.response.warnings, [
    'container "web" mounts the SPIFFE volume "svid": with the pod\'s SVID it can take any container\'s role, so the roles per container are no boundary against it',
  ]);
  // The Azure IMDS surface does not matter to AWS roles alone (it serves Azure, where no container has its own).
  const { response } = await admit(
    h,
    pod({
      ...base,
      [`${P}aws-role-arn.api`]: API_ROLE,
      [`${P}azure-client-id`]: POD_CLIENT,
      [`${P}azure-imds`]: 'true',
    }),
  );
  assert.equal(response.allowed, true, response.status?.message);
});

test('replicas of one pod template each get fresh per-container identity headers, never another pod’s or container’s', async (t) => {
  const { h } = await setup(t);
  const headers: string[] = [];
  for (let i = 0; i < 2; i++) {
    const { out } = await admit(h, pod(BOTH));
    headers.push(
      envOf(container(out, 'api'))['IDENTITY_HEADER'] ?? '',
      envOf(container(out, 'web'))['IDENTITY_HEADER'] ?? '',
    );
    const sidecar = out.spec.initContainers.find((c: any) => c.name === 'spiffe-connector');
    const config = parseSidecarConfig(sidecar.env[0].value, 'SPIFFE_CONNECTOR_CONFIG');
    assert.equal(config.azure?.containers['api']?.identityHeader, envOf(container(out, 'api'))['IDENTITY_HEADER']);
  }
  assert.equal(new Set(headers).size, 4, 'four headers: two pods, two identities each');
  for (const header of headers) assert.doesNotMatch(header, /placeholder/);
});

test('examples/pod-aws-per-container.yaml is a valid pod the webhook gives a role per container', async (t) => {
  const { h } = await setup(t);
  const { readFile } = await import('node:fs/promises');
  const { parseAllDocuments } = await import('yaml');
  const text = await readFile(new URL('../../examples/pod-aws-per-container.yaml', import.meta.url), 'utf8');
  const docs = parseAllDocuments(text).map((d) => d.toJS() as Record<string, any>);
  for (const doc of docs) assert.deepEqual(await validateK8sObject(doc), []);
  const example = docs.find((d) => d['kind'] === 'Pod');
  const { response, out } = await admit(h, example);
  assert.equal(response.allowed, true, response.status?.message);
  for (const name of ['api', 'worker'])
    assert.equal(
      envOf(container(out, name))['AWS_CONTAINER_CREDENTIALS_FULL_URI'],
      `http://127.0.0.1:8181/v1/credentials/${name}`,
    );
});

test('a served init container may have a role of its own; without init-containers it names no served container', async (t) => {
  const { h } = await setup(t);
  const annotations = {
    [`${P}inject`]: 'true',
    [`${P}aws-role-arn`]: POD_ROLE,
    [`${P}aws-role-arn.migrate`]: API_ROLE,
  };
  const initContainers = [{ name: 'migrate', image: 'registry.example/migrate:1' }];
  const { response, out } = await admit(
    h,
    pod({ ...annotations, [`${P}init-containers`]: 'true' }, { initContainers }),
  );
  assert.equal(response.allowed, true, response.status?.message);
  const migrate = out.spec.initContainers.find((c: any) => c.name === 'migrate');
  assert.equal(envOf(migrate)['AWS_CONTAINER_CREDENTIALS_FULL_URI'], 'http://127.0.0.1:8181/v1/credentials/migrate');
  assert.deepEqual(migrate.volumeMounts, [
    {
      name: 'spiffe-connector-containers',
      mountPath: '/var/run/spiffe-connector-containers/migrate',
      subPath: 'migrate',
      readOnly: true,
    },
  ]);
  assert.equal(
    deniedMessage(await admit(h, pod(annotations, { initContainers }))),
    `${P}aws-role-arn.migrate: "migrate" is an init container, served only with ${P}init-containers: "true"`,
  );
});
