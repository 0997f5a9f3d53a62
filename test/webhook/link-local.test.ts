// The webhook's link-local mode (annotation link-local): what it adds to a pod — the NET_ADMIN-only init container
// before the sidecar, the safe sysctl for port 80, metadata.google.internal in hostAliases, the per-pod relative URI
// in the sidecar config and the app's env — every patched pod checked against the Kubernetes schemas, and what it
// refuses.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import jsonpatch from 'fast-json-patch';
import { parseSidecarConfig } from '../../src/config/load.ts';
import { parseWebhookConfig, type WebhookConfig } from '../../src/config/webhook.ts';
import { appEnvironment } from '../../src/env.ts';
import { AdmissionCache } from '../../src/webhook/admission-cache.ts';
import { admitPod, type MutationResult } from '../../src/webhook/mutate.ts';
import type { Pod } from '../../src/webhook/pod.ts';
import { validateK8sObject } from '../helpers/k8s-schema.ts';

const P = 'spiffe-connector.io/';
const INIT_IMAGE = 'registry.example/spiffe-connector-link-local:0.1.0';

function config(initImage: string | null = INIT_IMAGE): WebhookConfig {
  return parseWebhookConfig(`
webhook: { tls: { certFile: /tls/tls.crt, keyFile: /tls/tls.key } }
sidecar:
  image: registry.example/spiffe-connector:0.1.0
${initImage === null ? '' : `  linkLocalInitImage: ${initImage}\n`}defaults:
  trustDomain: cluster.example
  jwt: { exchangeUrl: "https://issuer.spiffe-connector.svc:8443/token" }
  aws: { region: eu-west-1 }
  gcp: { projectId: my-project, workloadIdentityProvider: projects/42/locations/global/workloadIdentityPools/pool/providers/spiffe }
  azure: { tenantId: 00000000-0000-0000-0000-000000000000 }
`);
}

const ALL = {
  [`${P}inject`]: 'true',
  [`${P}link-local`]: 'true',
  [`${P}aws-role-arn`]: 'arn:aws:iam::111122223333:role/app',
  [`${P}aws-imds`]: 'true',
  [`${P}gcp-service-account`]: 'app@my-project.iam.gserviceaccount.com',
  [`${P}azure-client-id`]: '11111111-1111-1111-1111-111111111111',
  [`${P}azure-imds`]: 'true',
};

function pod(annotations: Record<string, string>, spec: Partial<Pod['spec']> = {}): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', namespace: 'default', annotations },
    spec: { containers: [{ name: 'app', image: 'app:1' }], ...spec },
  };
}

let n = 0;
function admit(p: Pod, c: WebhookConfig = config()): MutationResult {
  return admitPod(p, { config: c, randomSecret: () => `per-pod-secret-${String(++n).padStart(20, '0')}` });
}

function injected(r: MutationResult): Extract<MutationResult, { outcome: 'injected' }> {
  assert.equal(r.outcome, 'injected', r.outcome === 'denied' ? r.denied : '');
  return r as Extract<MutationResult, { outcome: 'injected' }>;
}

function denied(r: MutationResult): string {
  assert.equal(r.outcome, 'denied');
  return r.outcome === 'denied' ? r.denied : '';
}

/** The pod as the API server stores it after the patch; every op must apply to the pod as sent. */
async function patched(p: Pod, r: MutationResult): Promise<any> {
  const ops = JSON.parse(JSON.stringify(injected(r).patch));
  const out = jsonpatch.applyPatch(structuredClone(p), ops, true, false).newDocument;
  assert.deepEqual(await validateK8sObject(out), [], 'the patched Pod passes the Kubernetes schema');
  return out;
}

function envOf(container: any): Record<string, string> {
  return Object.fromEntries((container.env ?? []).map((e: any) => [e.name, e.value]));
}

const INIT_SECURITY = {
  runAsUser: 0,
  runAsGroup: 0,
  runAsNonRoot: false,
  readOnlyRootFilesystem: true,
  allowPrivilegeEscalation: false,
  privileged: false,
  capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

test('link-local: a NET_ADMIN-only init container before the sidecar, the port-80 sysctl, hostAliases, and the env pointing at 169.254.x', async () => {
  const p = pod(ALL);
  const r = admit(p);
  const out = await patched(p, r);
  const names = out.spec.initContainers.map((c: any) => c.name);
  assert.deepEqual(names, ['spiffe-connector-link-local', 'spiffe-connector']);
  const init = out.spec.initContainers[0];
  assert.equal(init.image, INIT_IMAGE);
  assert.deepEqual(init.command, ['/usr/local/bin/link-local-init']);
  assert.deepEqual(init.args, ['169.254.169.254', '169.254.170.2']);
  assert.deepEqual(init.securityContext, INIT_SECURITY);
  assert.equal(init.restartPolicy, undefined, 'a plain init container: it runs to completion before the sidecar');
  assert.equal(init.volumeMounts, undefined, 'it mounts nothing');
  assert.equal(init.env, undefined, 'it gets no credentials environment');
  // Only that container holds a capability; the sidecar stays restricted.
  const sidecar = out.spec.initContainers[1];
  assert.deepEqual(sidecar.securityContext.capabilities, { drop: ['ALL'] });
  assert.equal(sidecar.securityContext.runAsNonRoot, true);
  assert.deepEqual(out.spec.securityContext.sysctls, [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '80' }]);
  assert.deepEqual(out.spec.hostAliases, [{ ip: '169.254.169.254', hostnames: ['metadata.google.internal'] }]);

  // The sidecar's config: link-local on, and a per-pod relative URI it serves.
  const text = sidecar.env.find((e: any) => e.name === 'SPIFFE_CONNECTOR_CONFIG').value;
  const sidecarConfig = parseSidecarConfig(text);
  assert.equal(sidecarConfig.server.linkLocal, true);
  const relative = sidecarConfig.aws?.containerRelativeUri ?? '';
  assert.match(relative, /^\/v2\/credentials\/per-pod-secret-\d{20}$/);
  assert.deepEqual(sidecarConfig, injected(r).config, 'the text reads back as the config the webhook validated');

  // The app's env: what `env` prints for that config, pointing at the link-local addresses.
  const env = envOf(out.spec.containers[0]);
  assert.deepEqual(
    Object.entries(env).filter(([k]) => k !== 'IDENTITY_HEADER'),
    appEnvironment(sidecarConfig).filter(([k]) => k !== 'IDENTITY_HEADER'),
  );
  assert.equal(env['AWS_CONTAINER_CREDENTIALS_RELATIVE_URI'], relative);
  assert.equal(
    env['AWS_CONTAINER_CREDENTIALS_FULL_URI'],
    undefined,
    'RELATIVE_URI wins in every SDK: FULL_URI would go unread',
  );
  assert.equal(env['AWS_EC2_METADATA_SERVICE_ENDPOINT'], 'http://169.254.169.254');
  assert.equal(env['GCE_METADATA_HOST'], '169.254.169.254');
  assert.equal(env['GCE_METADATA_IP'], '169.254.169.254');
  assert.equal(env['AZURE_POD_IDENTITY_AUTHORITY_HOST'], undefined, 'Azure SDKs find IMDS at 169.254.169.254 unaided');
  assert.equal(
    env['IDENTITY_ENDPOINT'],
    'http://127.0.0.1:8181/msi/token',
    'the secret-carrying surfaces stay on loopback',
  );
  assert.equal(env['NO_PROXY'], '127.0.0.1,localhost,::1,169.254.169.254,169.254.170.2,metadata.google.internal');
});

test("link-local with init-containers: the init container and the sidecar go first, the pod's init containers after them get the env", async () => {
  const p = pod(
    { ...ALL, [`${P}init-containers`]: 'true' },
    { initContainers: [{ name: 'migrate', image: 'migrate:1' }] },
  );
  const out = await patched(p, admit(p));
  assert.deepEqual(
    out.spec.initContainers.map((c: any) => c.name),
    ['spiffe-connector-link-local', 'spiffe-connector', 'migrate'],
  );
  assert.match(
    envOf(out.spec.initContainers[2])['AWS_CONTAINER_CREDENTIALS_RELATIVE_URI'] ?? '',
    /^\/v2\/credentials\//,
  );
  assert.equal(out.spec.initContainers[0].env, undefined);
});

test("link-local keeps a pod's own hostAliases and a name already taken, and adds no alias without Google", async () => {
  const p = pod(ALL, {
    hostAliases: [{ ip: '10.0.0.1', hostnames: ['db.internal'] }],
    containers: [{ name: 'spiffe-connector-link-local', image: 'app:1' }],
  });
  const out = await patched(p, admit(p));
  assert.deepEqual(out.spec.hostAliases, [
    { ip: '10.0.0.1', hostnames: ['db.internal'] },
    { ip: '169.254.169.254', hostnames: ['metadata.google.internal'] },
  ]);
  assert.equal(out.spec.initContainers[0].name, 'spiffe-connector-link-local-1');
  // Already mapped right: nothing added.
  const mapped = pod(ALL, { hostAliases: [{ ip: '169.254.169.254', hostnames: ['metadata.google.internal'] }] });
  assert.equal((await patched(mapped, admit(mapped))).spec.hostAliases.length, 1);
  // AWS only: no alias (nothing asks for the Google name).
  const aws = pod({
    [`${P}inject`]: 'true',
    [`${P}link-local`]: 'true',
    [`${P}aws-role-arn`]: 'arn:aws:iam::111122223333:role/app',
  });
  const awsOut = await patched(aws, admit(aws));
  assert.equal(awsOut.spec.hostAliases, undefined);
  assert.equal(awsOut.spec.initContainers[0].name, 'spiffe-connector-link-local');
});

test('link-local is refused, naming the annotation, without an init image, with the Google name mapped elsewhere, or a container on port 80', () => {
  assert.match(
    denied(admit(pod(ALL), config(null))),
    /^spiffe-connector\.io\/link-local: this webhook has no link-local init image configured \(sidecar\.linkLocalInitImage/,
  );
  assert.match(
    denied(admit(pod(ALL, { hostAliases: [{ ip: '10.1.2.3', hostnames: ['metadata.google.internal'] }] }))),
    /^spiffe-connector\.io\/link-local: the pod's hostAliases map metadata\.google\.internal to 10\.1\.2\.3/,
  );
  assert.match(
    denied(admit(pod(ALL, { containers: [{ name: 'web', image: 'nginx', ports: [{ containerPort: 80 }] }] }))),
    /^spiffe-connector\.io\/link-local: port 80 is declared by container "web"/,
  );
  assert.match(
    denied(
      admit(
        pod(ALL, { securityContext: { sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '1024' }] } }),
      ),
    ),
    /^spiffe-connector\.io\/link-local: the pod sets net\.ipv4\.ip_unprivileged_port_start to 1024/,
  );
  assert.equal(denied(admit(pod({ ...ALL, [`${P}link-local`]: 'yes' }))), `${P}link-local: must be "true" or "false"`);
});

test('off by default: no capability, no alias, no relative URI anywhere in the patch', () => {
  const { [`${P}link-local`]: _, ...rest } = ALL;
  const r = injected(admit(pod(rest)));
  const text = JSON.stringify(r.patch);
  assert.doesNotMatch(text, /NET_ADMIN|hostAliases|RELATIVE_URI|169\.254|link-local/);
  assert.equal(r.config.server.linkLocal, false);
  assert.equal(r.config.aws?.containerRelativeUri, undefined);
});

test('every pod gets its own relative URI, also through the admission cache (replicas of one Deployment)', () => {
  const cache = new AdmissionCache();
  let k = 0;
  const context = { config: config(), randomSecret: () => `fresh-secret-${String(++k).padStart(30, '0')}` };
  const uris = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const admission = cache.admit(pod(ALL), context);
    const ops = JSON.parse(admission.patchJson ?? '[]') as Array<{ path: string; value: any }>;
    const app = ops.find((o) => o.path === '/spec/containers/0/env')?.value as Array<{ name: string; value: string }>;
    const uri = app.find((e) => e.name === 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI')?.value ?? '';
    assert.match(uri, /^\/v2\/credentials\/fresh-secret-\d{30}$/);
    // The sidecar serves the same path the app is told.
    const sidecar = ops.find((o) => o.path === '/spec/initContainers')?.value[1];
    const config = parseSidecarConfig(sidecar.env[0].value);
    assert.equal(config.aws?.containerRelativeUri, uri);
    uris.add(uri);
  }
  assert.equal(uris.size, 3);
});
