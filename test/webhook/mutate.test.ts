// mutatePod/admitPod, the pure core: every decision the webhook makes about one pod.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import jsonpatch from 'fast-json-patch';
import { parseWebhookConfig, type WebhookConfig } from '../../src/config/webhook.ts';
import { admitPod, type MutationResult } from '../../src/webhook/mutate.ts';
import type { Pod } from '../../src/webhook/pod.ts';

const BASE = `
webhook: { tls: { certFile: /tls/tls.crt, keyFile: /tls/tls.key } }
sidecar: { image: registry.example/spiffe-connector:0.1.0 }
`;

function config(
  defaults = `
defaults:
  trustDomain: cluster.example
  jwt: { exchangeUrl: "https://issuer.spiffe-connector.svc:8443/token" }
  aws: { region: eu-west-1 }
  gcp: { projectId: my-project, workloadIdentityProvider: projects/42/locations/global/workloadIdentityPools/pool/providers/spiffe }
`,
): WebhookConfig {
  return parseWebhookConfig(BASE + defaults);
}

const P = 'spiffe-connector.io/';

function pod(
  annotations: Record<string, string>,
  spec: Partial<Pod['spec']> = {},
  labels?: Record<string, string>,
): Pod {
  return {
    metadata: { name: 'p', annotations, ...(labels ? { labels } : {}) },
    spec: { containers: [{ name: 'app', image: 'app:1' }], ...spec },
  };
}

function admit(p: Pod, c: WebhookConfig = config()): MutationResult {
  return admitPod(p, { config: c, randomSecret: () => 'per-pod-secret-0123456789' });
}

function deniedMessage(r: MutationResult): string {
  assert.equal(r.outcome, 'denied');
  return r.outcome === 'denied' ? r.denied : '';
}

function injected(r: MutationResult): Extract<MutationResult, { outcome: 'injected' }> {
  assert.equal(r.outcome, 'injected', r.outcome === 'denied' ? r.denied : '');
  return r as Extract<MutationResult, { outcome: 'injected' }>;
}

const AWS = { [`${P}inject`]: 'true', [`${P}aws-role-arn`]: 'arn:aws:iam::111122223333:role/app' };

test('pods that do not ask are left alone, even with broken spiffe-connector annotations', () => {
  assert.equal(admit(pod({})).outcome, 'not-requested');
  assert.equal(
    admit(pod({ [`${P}inject`]: 'false', [`${P}aws-role-arn`]: 'nonsense', [`${P}typo`]: 'x' })).outcome,
    'not-requested',
  );
});

test('the inject label works like the annotation; an unreadable inject value is denied', () => {
  assert.equal(
    admit(pod({ [`${P}aws-role-arn`]: AWS[`${P}aws-role-arn`] as string }, {}, { [`${P}inject`]: 'true' })).outcome,
    'injected',
  );
  assert.equal(deniedMessage(admit(pod({ [`${P}inject`]: 'yes' }))), `${P}inject: must be "true" or "false"`);
});

test('a pod that names no cloud is told which annotations serve one', () => {
  assert.match(
    deniedMessage(admit(pod({ [`${P}inject`]: 'true' }))),
    /^spiffe-connector\.io\/inject: configure at least one cloud.*aws-role-arn.*gcp-workload-identity-provider.*azure-client-id.*gcp-service-account/,
  );
});

test('clouds that need JWT-SVIDs are denied when the cluster has no issuer exchange; GCP falls back to X.509', () => {
  const noIssuer = config(`
defaults:
  trustDomain: cluster.example
  gcp: { projectId: my-project }
`);
  assert.match(
    deniedMessage(admit(pod(AWS), noIssuer)),
    /^spiffe-connector\.io\/aws-role-arn: AWS federation needs JWT-SVIDs, and this cluster has no issuer exchange configured/,
  );
  const gcp = injected(
    admit(
      pod({
        [`${P}inject`]: 'true',
        [`${P}gcp-workload-identity-provider`]: 'projects/7/locations/global/workloadIdentityPools/pool/providers/x509',
      }),
      noIssuer,
    ),
  );
  assert.equal(gcp.config.spiffe.jwt, undefined);
  assert.equal(gcp.config.gcp?.projectNumber, '7');
});

test('a required value missing from both the pod and the cluster defaults names the annotation and the default', () => {
  const msg = deniedMessage(
    admit(pod({ [`${P}inject`]: 'true', [`${P}azure-client-id`]: '11111111-1111-1111-1111-111111111111' })),
  );
  assert.equal(
    msg,
    `${P}azure-tenant-id: is required (set it on the pod, or as the cluster default defaults.azure.tenantId)`,
  );
});

test('the GCP service account alone uses the cluster default provider', () => {
  const r = injected(
    admit(pod({ [`${P}inject`]: 'true', [`${P}gcp-service-account`]: 'app@my-project.iam.gserviceaccount.com' })),
  );
  assert.equal(
    r.config.gcp?.workloadIdentityProvider,
    'projects/42/locations/global/workloadIdentityPools/pool/providers/spiffe',
  );
  assert.equal(r.config.gcp?.projectNumber, '42');
});

test('every problem is listed at once', () => {
  const msg = deniedMessage(
    admit(pod({ ...AWS, [`${P}aws-region`]: 'mars', [`${P}ops-port`]: '99999', [`${P}log-level`]: 'loud' })),
  );
  assert.match(msg, /ops-port: must be a port number, 1-65535/);
  const msg2 = deniedMessage(admit(pod({ ...AWS, [`${P}aws-region`]: 'mars', [`${P}log-level`]: 'loud' })));
  assert.match(msg2, /spiffe-connector\.io\/aws-region: must be an AWS region/);
  assert.match(msg2, /spiffe-connector\.io\/log-level: /);
});

test('host network, Windows, port clashes and unknown skip-containers are denied with the annotation to change', () => {
  assert.match(deniedMessage(admit(pod(AWS, { hostNetwork: true }))), /hostNetwork/);
  assert.match(deniedMessage(admit(pod(AWS, { os: { name: 'windows' } }))), /Linux/);
  assert.equal(
    deniedMessage(admit(pod(AWS, { containers: [{ name: 'app', ports: [{ containerPort: 9090 }] }] }))),
    `${P}ops-port: port 9090 is declared by container "app"; set ${P}ops-port to a free port`,
  );
  assert.match(
    deniedMessage(admit(pod({ ...AWS, [`${P}metadata-port`]: '9090' }))),
    /metadata and ops ports must differ/,
  );
  assert.equal(
    deniedMessage(admit(pod({ ...AWS, [`${P}skip-containers`]: 'app, sidecar-typo' }))),
    `${P}skip-containers: names no container of this pod: sidecar-typo`,
  );
});

test("the pod's own csi-driver-spiffe volume is reused and its fs-group becomes the sidecar's group", () => {
  const volumes = [
    {
      name: 'svid',
      csi: {
        driver: 'spiffe.csi.cert-manager.io',
        readOnly: true,
        volumeAttributes: { 'spiffe.csi.cert-manager.io/fs-group': '2000' },
      },
    },
  ];
  const r = injected(admit(pod(AWS, { volumes })));
  const added = r.patch.filter((op) => op.path.startsWith('/spec/volumes'));
  assert.deepEqual(
    added.map((op) => (op.value as { name: string }).name),
    ['spiffe-connector-state'],
  );
  const sidecar = r.patch.find((op) => op.path === '/spec/initContainers')?.value as Array<Record<string, any>>;
  assert.equal(sidecar[0]?.['securityContext'].runAsGroup, 2000);
  assert.equal(sidecar[0]?.['volumeMounts'][0].name, 'svid');
  assert.deepEqual(r.warnings, []);

  const noGroup = injected(
    admit(pod(AWS, { volumes: [{ name: 'svid', csi: { driver: 'spiffe.csi.cert-manager.io' } }] })),
  );
  assert.match(noGroup.warnings[0] ?? '', /sets no spiffe\.csi\.cert-manager\.io\/fs-group/);
  const podGroup = injected(
    admit(
      pod(AWS, {
        volumes: [{ name: 'svid', csi: { driver: 'spiffe.csi.cert-manager.io' } }],
        securityContext: { fsGroup: 3000 },
      }),
    ),
  );
  assert.deepEqual(podGroup.warnings, []);
  const sc = (
    podGroup.patch.find((op) => op.path === '/spec/initContainers')?.value as Array<Record<string, any>> | undefined
  )?.[0]?.['securityContext'];
  assert.equal(sc.runAsGroup, 3000);
});

test("the token files (0640) are readable through the fsGroup: a pod without one gets the sidecar's group, one with it keeps it", () => {
  const fsGroupOps = (r: Extract<MutationResult, { outcome: 'injected' }>) =>
    r.patch.filter((op) => op.path.startsWith('/spec/securityContext'));
  assert.deepEqual(fsGroupOps(injected(admit(pod(AWS)))), [
    { op: 'add', path: '/spec/securityContext', value: { fsGroup: 65532 } },
  ]);
  assert.deepEqual(fsGroupOps(injected(admit(pod(AWS, { securityContext: { runAsNonRoot: true } })))), [
    { op: 'add', path: '/spec/securityContext/fsGroup', value: 65532 },
  ]);
  assert.deepEqual(fsGroupOps(injected(admit(pod(AWS, { securityContext: { fsGroup: 3000 } })))), []);
  // The group of the pod's own csi-driver-spiffe volume is the sidecar's group, so it is the one given.
  const volumes = [
    {
      name: 'svid',
      csi: {
        driver: 'spiffe.csi.cert-manager.io',
        volumeAttributes: { 'spiffe.csi.cert-manager.io/fs-group': '2000' },
      },
    },
  ];
  assert.deepEqual(fsGroupOps(injected(admit(pod(AWS, { volumes })))), [
    { op: 'add', path: '/spec/securityContext', value: { fsGroup: 2000 } },
  ]);
  // OpenShift (no fixed runAsUser): the SCC gives the pod an fsGroup from the namespace's range; a fixed one would be refused.
  const openshift = parseWebhookConfig(
    BASE.replace(
      'sidecar: { image: registry.example/spiffe-connector:0.1.0 }',
      'sidecar: { image: registry.example/spiffe-connector:0.1.0, runAsUser: null }',
    ) +
      `
defaults:
  trustDomain: cluster.example
  jwt: { exchangeUrl: "https://issuer.spiffe-connector.svc:8443/token" }
  aws: { region: eu-west-1 }
`,
  );
  assert.deepEqual(fsGroupOps(injected(admit(pod(AWS), openshift))), []);
});

test('/metrics is on the pod loopback by default, pod-wide only when annotated; its port is checked like the others', () => {
  const r = injected(admit(pod(AWS)));
  assert.equal(r.config.server.opsAddress, '0.0.0.0:9090');
  assert.equal(r.config.server.metricsAddress, '127.0.0.1:9091');
  assert.equal(
    injected(admit(pod({ ...AWS, [`${P}metrics-port`]: '9300' }))).config.server.metricsAddress,
    '127.0.0.1:9300',
  );
  assert.equal(
    injected(admit(pod({ ...AWS, [`${P}metrics-pod-wide`]: 'true' }))).config.server.metricsAddress,
    '0.0.0.0:9091',
  );
  // Pod-wide on the probes port: one listener for both.
  assert.equal(
    injected(admit(pod({ ...AWS, [`${P}metrics-pod-wide`]: 'true', [`${P}metrics-port`]: '9090' }))).config.server
      .metricsAddress,
    '0.0.0.0:9090',
  );
  assert.match(
    deniedMessage(admit(pod({ ...AWS, [`${P}metrics-port`]: '9090' }))),
    /metrics-port: the ops and metrics ports must differ \(both 9090\)/,
  );
  assert.match(
    deniedMessage(admit(pod({ ...AWS, [`${P}metrics-port`]: '8181' }))),
    /metrics-port: the metadata and metrics ports must differ/,
  );
  const taken = pod(AWS, { containers: [{ name: 'app', image: 'app:1', ports: [{ containerPort: 9091 }] }] });
  assert.match(deniedMessage(admit(taken)), /metrics-port: port 9091 is declared by container "app"/);
});

test('injected pods get only the surfaces with a per-container secret; IMDS, Azure IMDS and MSI_ENDPOINT only when annotated', () => {
  const AZURE = {
    [`${P}azure-client-id`]: '11111111-1111-1111-1111-111111111111',
    [`${P}azure-tenant-id`]: '00000000-0000-0000-0000-000000000000',
  };
  const envOf = (r: Extract<MutationResult, { outcome: 'injected' }>): string[] => {
    const op = r.patch.find((o) => o.path === '/spec/containers/0/env');
    return ((op?.value as Array<{ name: string }> | undefined) ?? []).map((e) => e.name);
  };
  const plain = injected(admit(pod({ ...AWS, ...AZURE })));
  assert.equal(plain.config.aws?.imds, false);
  assert.equal(plain.config.aws?.containerCredentials, true);
  assert.deepEqual(
    [plain.config.azure?.appService, plain.config.azure?.imds, plain.config.azure?.msi],
    [true, false, false],
  );
  const env = envOf(plain);
  for (const name of [
    'AWS_CONTAINER_CREDENTIALS_FULL_URI',
    'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE',
    'IDENTITY_ENDPOINT',
    'IDENTITY_HEADER',
  ])
    assert.ok(env.includes(name), name);
  for (const name of ['AWS_EC2_METADATA_SERVICE_ENDPOINT', 'MSI_ENDPOINT', 'AZURE_POD_IDENTITY_AUTHORITY_HOST'])
    assert.ok(!env.includes(name), `${name} is not injected by default`);

  const asked = injected(
    admit(pod({ ...AWS, ...AZURE, [`${P}aws-imds`]: 'true', [`${P}azure-imds`]: 'true', [`${P}azure-msi`]: 'true' })),
  );
  assert.deepEqual([asked.config.aws?.imds, asked.config.azure?.imds, asked.config.azure?.msi], [true, true, true]);
  const askedEnv = envOf(asked);
  for (const name of ['AWS_EC2_METADATA_SERVICE_ENDPOINT', 'MSI_ENDPOINT', 'AZURE_POD_IDENTITY_AUTHORITY_HOST'])
    assert.ok(askedEnv.includes(name), name);
});

test('volume names taken by the pod get a suffix', () => {
  const r = injected(
    admit(
      pod(AWS, {
        volumes: [
          { name: 'spiffe-connector-state', emptyDir: {} },
          { name: 'spiffe-connector-svid', emptyDir: {} },
        ],
      }),
    ),
  );
  assert.deepEqual(
    r.patch.filter((op) => op.path === '/spec/volumes/-').map((op) => (op.value as { name: string }).name),
    ['spiffe-connector-svid-1', 'spiffe-connector-state-1'],
  );
});

test('each app container gets the env and the read-only token mount, whether it has env and mounts or not', () => {
  const r = injected(
    admit(
      pod(AWS, {
        containers: [
          { name: 'a', env: [{ name: 'X', value: '1' }], volumeMounts: [{ name: 'v', mountPath: '/v' }] },
          { name: 'b' },
          { name: 'c', volumeMounts: [{ name: 'mine', mountPath: '/var/run/spiffe-connector' }] },
        ],
      }),
    ),
  );
  const paths = r.patch.map((op) => op.path);
  assert.ok(paths.includes('/spec/containers/0/env/-'));
  assert.ok(paths.includes('/spec/containers/0/volumeMounts/-'));
  assert.ok(paths.includes('/spec/containers/1/env'));
  assert.ok(paths.includes('/spec/containers/1/volumeMounts'));
  assert.ok(!paths.some((p) => p.startsWith('/spec/containers/2/volumeMounts')));
  assert.deepEqual(r.warnings, [
    'container "c": /var/run/spiffe-connector is already mounted; the token files are not mounted there',
  ]);
});

test('warnings never carry injected values (the Azure identity header is a secret)', () => {
  const r = injected(
    admit(
      pod(
        {
          [`${P}inject`]: 'true',
          [`${P}azure-client-id`]: '11111111-1111-1111-1111-111111111111',
          [`${P}azure-tenant-id`]: '00000000-0000-0000-0000-000000000000',
        },
        { containers: [{ name: 'app', env: [{ name: 'IDENTITY_HEADER', value: 'mine' }] }] },
      ),
    ),
  );
  assert.equal(r.config.azure?.identityHeader, 'per-pod-secret-0123456789');
  assert.deepEqual(r.warnings, ['container "app": IDENTITY_HEADER is set explicitly and was left as it is']);
  assert.ok(!r.warnings.join().includes('per-pod-secret'));
});

test('an injected pod is recognised by its sidecar container and patched no further', () => {
  assert.equal(
    admit(pod(AWS, { initContainers: [{ name: 'spiffe-connector', restartPolicy: 'Always' }] })).outcome,
    'already-injected',
  );
});

test('the sidecar reads back exactly the config the webhook validated (hot path skips the YAML library)', async () => {
  const { parseSidecarConfig } = await import('../../src/config/load.ts');
  const { toYaml } = await import('../../src/webhook/sidecar-config.ts');
  const all = {
    ...AWS,
    [`${P}aws-session-duration`]: '7200',
    [`${P}aws-imds`]: 'false',
    [`${P}gcp-service-account`]: 'app@my-project.iam.gserviceaccount.com',
    [`${P}azure-client-id`]: '11111111-1111-1111-1111-111111111111',
    [`${P}azure-tenant-id`]: '00000000-0000-0000-0000-000000000000',
    [`${P}metadata-port`]: '18181',
    [`${P}log-level`]: 'debug',
  };
  for (let i = 0; i < 2; i++) {
    // Twice: the second admission comes from the validated-config cache.
    const r = injected(admit(pod(all)));
    const sidecar = (
      r.patch.find((op) => op.path === '/spec/initContainers')?.value as Array<Record<string, any>> | undefined
    )?.[0];
    const text = sidecar?.['env'][0].value as string;
    assert.deepEqual(parseSidecarConfig(text, 'SPIFFE_CONNECTOR_CONFIG'), r.config);
    assert.equal(r.config.aws?.sessionDurationSeconds, 7200);
    assert.equal(r.config.aws?.imds, false);
  }
  const odd = {
    a: 'quote " and \\ backslash',
    b: 'line\nbreak',
    c: '#not a comment',
    d: 'yes',
    e: '0123',
    f: 'ü ☃',
    'g-h': 1.5,
    i: true,
    j: {},
  };
  const { parse } = await import('yaml');
  assert.deepEqual(parse(toYaml(odd)), odd);
});

test('the sidecar config YAML round-trips every kind of scalar the webhook writes', async () => {
  const { toYaml } = await import('../../src/webhook/sidecar-config.ts');
  const { parse } = await import('yaml');
  const values = {
    url: 'https://issuer.spiffe-connector.svc:8443/token',
    arn: 'arn:aws:iam::111122223333:role/app',
    path: '/var/run/spiffe-connector',
    addr: '127.0.0.1:8181',
    any: '0.0.0.0:9090',
    num: '123456789012',
    float: '1.5',
    exp: '1e3',
    hex: '0x1F',
    oct: '0o17',
    bool: 'true',
    no: 'No',
    nul: 'null',
    tilde: '~',
    email: 'app@my-project.iam.gserviceaccount.com',
    provider: 'projects/1/locations/global/workloadIdentityPools/p/providers/x',
    guid: '00000000-0000-0000-0000-000000000000',
    audience: 'api://AzureADTokenExchange',
    gcpAud: '//iam.googleapis.com/projects/1/x',
    colonSpace: 'a: b',
    hash: 'a #b',
    dash: '- x',
    star: '*x',
    amp: '&x',
    bang: '!x',
    pct: '%x',
    at: '@x',
    tick: '`x',
    quote: "'x",
    dq: '"x',
    brace: '{x}',
    bracket: '[x]',
    comma: 'a,b',
    q: '?x',
    pipe: '|x',
    gt: '>x',
    empty: '',
    space: ' x',
    trailing: 'x ',
    dot: '.5',
    inf: '.inf',
    nan: '.NaN',
    header: 'abc-_DEF012',
    b64: 'YWJj+/=',
    n: 42,
    t: false,
  };
  assert.deepEqual(parse(toYaml(values)), values);
});

test('workload-api serves the SPIFFE Workload API to the app on a socket in the token directory', () => {
  const c = config(`
defaults:
  trustDomain: cluster.example
  jwt: { exchangeUrl: "https://issuer.spiffe-connector.svc:8443/token" }
  workloadApiJwksUrl: https://oidc.example.org/spiffe
  aws: { region: eu-west-1 }
`);
  const r = injected(admit(pod({ ...AWS, [`${P}workload-api`]: 'true' }), c));
  assert.equal(r.config.server.workloadApiSocket, '/var/run/spiffe-connector/workload-api.sock');
  assert.equal(r.config.server.workloadApiJwksUrl, 'https://oidc.example.org/spiffe');
  const env = r.patch
    .filter((op) => op.path === '/spec/containers/0/env')
    .flatMap((op) => op.value as Array<{ name: string; value: string }>);
  assert.ok(
    env.some(
      (e) => e.name === 'SPIFFE_ENDPOINT_SOCKET' && e.value === 'unix:///var/run/spiffe-connector/workload-api.sock',
    ),
    JSON.stringify(env),
  );
  // The socket (0660) is reached through the fsGroup the webhook gives a pod that has none.
  assert.deepEqual(r.patch.find((op) => op.path === '/spec/securityContext')?.value, { fsGroup: 65532 });
  assert.deepEqual(r.warnings, []);
  assert.deepEqual(
    injected(admit(pod({ ...AWS, [`${P}workload-api`]: 'true' }, { securityContext: { fsGroup: 2000 } }), c)).warnings,
    [],
  );
  assert.equal(
    deniedMessage(admit(pod({ ...AWS, [`${P}workload-api`]: 'maybe' }), c)),
    `${P}workload-api: must be "true" or "false"`,
  );
});

test('the admission cache gives every pod a fresh secret and never serves a pod that carries the placeholder', async () => {
  const { AdmissionCache } = await import('../../src/webhook/admission-cache.ts');
  const cache = new AdmissionCache(2);
  let n = 0;
  const context = { config: config(), randomSecret: () => `fresh-secret-${String(++n).padStart(8, '0')}` };
  const azure = {
    [`${P}inject`]: 'true',
    [`${P}azure-client-id`]: '11111111-1111-1111-1111-111111111111',
    [`${P}azure-tenant-id`]: '00000000-0000-0000-0000-000000000000',
  };
  const a = cache.admit(pod(azure), context);
  const b = cache.admit(pod(azure), context);
  assert.match(a.patchJson ?? '', /fresh-secret-00000001/);
  assert.match(b.patchJson ?? '', /fresh-secret-00000002/);
  assert.doesNotMatch(`${a.patchJson}${b.patchJson}`, /placeholder/);
  // A pod that itself contains the placeholder text is admitted directly (its own content is never rewritten).
  const tricky = pod(azure, {
    containers: [{ name: 'app', env: [{ name: 'X', value: 'spiffe-connector.per-pod-secret.placeholder' }] }],
  });
  const c = cache.admit(tricky, context);
  assert.match(c.patchJson ?? '', /fresh-secret-00000003/);
  // Denials and skips are cached as they are.
  assert.equal(cache.admit(pod({ [`${P}inject`]: 'yes' }), context).result.outcome, 'denied');
  assert.equal(cache.admit(pod({}), context).result.outcome, 'not-requested');
});

test('sidecar.runAsUser null leaves the user to the platform (OpenShift restricted-v2), still non-root', () => {
  const c = parseWebhookConfig(`
webhook: { tls: { certFile: /tls/tls.crt, keyFile: /tls/tls.key } }
sidecar: { image: registry.example/spiffe-connector:0.1.0, runAsUser: null }
defaults: { trustDomain: cluster.example, jwt: { exchangeUrl: "https://issuer.spiffe-connector.svc:8443/token" }, aws: { region: eu-west-1 } }
`);
  const r = injected(
    admit(pod({ [`${P}inject`]: 'true', [`${P}aws-role-arn`]: 'arn:aws:iam::111122223333:role/a' }), c),
  );
  const add = r.patch.find((op) => op.path.startsWith('/spec/initContainers'));
  const value = add?.value as Array<Record<string, any>> | Record<string, any>;
  const sidecar = Array.isArray(value) ? value[0] : value;
  assert.equal(sidecar?.['securityContext'].runAsNonRoot, true);
  assert.equal('runAsUser' in (sidecar?.['securityContext'] ?? {}), false);
  assert.equal(sidecar?.['securityContext'].runAsGroup, 65532);
});

test('aws-legacy-token: the app gets the literal AWS_CONTAINER_AUTHORIZATION_TOKEN, the sidecar config the same per-pod token', async () => {
  const { parseSidecarConfig } = await import('../../src/config/load.ts');
  const token = 'legacy-token-0123456789abcdefghijklmnopqrstuvwxyz';
  const r = injected(
    admitPod(pod({ ...AWS, [`${P}aws-legacy-token`]: 'true' }), { config: config(), randomSecret: () => token }),
  );
  const env = r.patch
    .filter((op) => op.path === '/spec/containers/0/env')
    .flatMap((op) => op.value as Array<{ name: string; value: string }>);
  assert.equal(env.find((e) => e.name === 'AWS_CONTAINER_AUTHORIZATION_TOKEN')?.value, token);
  // The file stays for the SDKs that read it (the same value: Java v2 prefers the literal, the others the file).
  assert.equal(
    env.find((e) => e.name === 'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE')?.value,
    '/var/run/spiffe-connector/aws-container-token',
  );
  const add = r.patch.find((op) => op.path.startsWith('/spec/initContainers'));
  const value = add?.value as Array<Record<string, any>> | Record<string, any>;
  const sidecar = Array.isArray(value) ? value[0] : value;
  const text =
    ((sidecar?.['env'] ?? []) as Array<{ name: string; value: string }>).find(
      (e) => e.name === 'SPIFFE_CONNECTOR_CONFIG',
    )?.value ?? '';
  assert.equal(parseSidecarConfig(text).aws?.containerAuthorizationToken, token);
  assert.equal(r.config.aws?.containerAuthorizationToken, token);

  // Off by default: no literal token anywhere.
  const plain = injected(admit(pod(AWS)));
  assert.doesNotMatch(JSON.stringify(plain.patch), /AWS_CONTAINER_AUTHORIZATION_TOKEN"|containerAuthorizationToken/);
  assert.equal(
    deniedMessage(admit(pod({ ...AWS, [`${P}aws-legacy-token`]: 'yes' }))),
    `${P}aws-legacy-token: must be "true" or "false"`,
  );
});

test('the admission cache gives the AWS token and the Azure identity header each their own fresh value per pod', async () => {
  const { AdmissionCache } = await import('../../src/webhook/admission-cache.ts');
  const { parseSidecarConfig } = await import('../../src/config/load.ts');
  const cache = new AdmissionCache(2);
  let n = 0;
  const context = { config: config(), randomSecret: () => `fresh-secret-${String(++n).padStart(24, '0')}` };
  const both = {
    ...AWS,
    [`${P}aws-legacy-token`]: 'true',
    [`${P}azure-client-id`]: '11111111-1111-1111-1111-111111111111',
    [`${P}azure-tenant-id`]: '00000000-0000-0000-0000-000000000000',
  };
  const seen = new Set<string>();
  for (let i = 0; i < 2; i++) {
    const patch = JSON.parse(cache.admit(pod(both), context).patchJson ?? '[]') as Array<{
      path: string;
      value: unknown;
    }>;
    const env = patch
      .filter((op) => op.path === '/spec/containers/0/env')
      .flatMap((op) => op.value as Array<{ name: string; value: string }>);
    const sidecar = patch.find((op) => op.path.startsWith('/spec/initContainers'))?.value as
      | Array<Record<string, any>>
      | Record<string, any>;
    const first = Array.isArray(sidecar) ? sidecar[0] : sidecar;
    const sidecarConfig = parseSidecarConfig(
      ((first?.['env'] ?? []) as Array<{ name: string; value: string }>)[0]?.value ?? '',
    );
    const token = env.find((e) => e.name === 'AWS_CONTAINER_AUTHORIZATION_TOKEN')?.value ?? '';
    const header = env.find((e) => e.name === 'IDENTITY_HEADER')?.value ?? '';
    assert.match(token, /^fresh-secret-/);
    assert.match(header, /^fresh-secret-/);
    assert.notEqual(token, header);
    assert.equal(sidecarConfig.aws?.containerAuthorizationToken, token);
    assert.equal(sidecarConfig.azure?.identityHeader, header);
    seen.add(token).add(header);
  }
  assert.equal(seen.size, 4, 'no two pods share a secret');
});

test('metadata-port-80: the sidecar also serves 127.0.0.1:80 and the pod gets the safe sysctl that allows it, never a capability', () => {
  const r = injected(admit(pod({ ...AWS, [`${P}metadata-port-80`]: 'true' })));
  assert.equal(r.config.server.metadataPort80, true);
  assert.deepEqual(r.patch.find((op) => op.path === '/spec/securityContext')?.value, {
    fsGroup: 65532,
    sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '80' }],
  });
  assert.doesNotMatch(JSON.stringify(r.patch), /NET_BIND_SERVICE|NET_ADMIN|privileged"?:\s*true/);
  // A pod with its own securityContext keeps it; the sysctl is appended.
  const own = injected(
    admit(
      pod(
        { ...AWS, [`${P}metadata-port-80`]: 'true' },
        { securityContext: { fsGroup: 2000, sysctls: [{ name: 'kernel.shm_rmid_forced', value: '1' }] } },
      ),
    ),
  );
  assert.deepEqual(
    own.patch.filter((op) => op.path.startsWith('/spec/securityContext')),
    [
      {
        op: 'add',
        path: '/spec/securityContext/sysctls/-',
        value: { name: 'net.ipv4.ip_unprivileged_port_start', value: '80' },
      },
    ],
  );
  // Already low enough: nothing added.
  const low = injected(
    admit(
      pod(
        { ...AWS, [`${P}metadata-port-80`]: 'true' },
        { securityContext: { fsGroup: 2000, sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }] } },
      ),
    ),
  );
  assert.deepEqual(
    low.patch.filter((op) => op.path.startsWith('/spec/securityContext')),
    [],
  );
  // Higher, or a container on port 80: denied with the annotation named.
  assert.match(
    deniedMessage(
      admit(
        pod(
          { ...AWS, [`${P}metadata-port-80`]: 'true' },
          { securityContext: { sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '1024' }] } },
        ),
      ),
    ),
    /^spiffe-connector\.io\/metadata-port-80: the pod sets net\.ipv4\.ip_unprivileged_port_start to 1024/,
  );
  assert.match(
    deniedMessage(
      admit(
        pod(
          { ...AWS, [`${P}metadata-port-80`]: 'true' },
          { containers: [{ name: 'web', image: 'nginx', ports: [{ containerPort: 80 }] }] },
        ),
      ),
    ),
    /^spiffe-connector\.io\/metadata-port-80: port 80 is declared by container "web"/,
  );
  // Off by default: no sysctl.
  assert.doesNotMatch(JSON.stringify(injected(admit(pod(AWS))).patch), /sysctls/);
});

test('aws-extra-roles and gcp-extra-service-accounts: the profiles and accounts reach the sidecar, AWS_CONFIG_FILE the app; bad ones are denied by name', () => {
  const envOf = (r: Extract<MutationResult, { outcome: 'injected' }>): Array<{ name: string; value: string }> =>
    (r.patch.find((o) => o.path === '/spec/containers/0/env')?.value as
      | Array<{ name: string; value: string }>
      | undefined) ?? [];
  const r = injected(
    admit(
      pod({
        ...AWS,
        [`${P}aws-extra-roles`]:
          'reports=arn:aws:iam::111122223333:role/reports, audit=arn:aws:iam::111122223333:role/audit',
        [`${P}gcp-service-account`]: 'app@my-project.iam.gserviceaccount.com',
        [`${P}gcp-extra-service-accounts`]: 'reports@my-project.iam.gserviceaccount.com',
      }),
    ),
  );
  assert.deepEqual(
    r.config.aws?.extraRoles.map((x) => [x.name, x.roleArn]),
    [
      ['reports', 'arn:aws:iam::111122223333:role/reports'],
      ['audit', 'arn:aws:iam::111122223333:role/audit'],
    ],
  );
  assert.deepEqual(r.config.gcp?.extraServiceAccounts, ['reports@my-project.iam.gserviceaccount.com']);
  const configFile = envOf(r).find((e) => e.name === 'AWS_CONFIG_FILE')?.value ?? '';
  const tokenFile = envOf(r).find((e) => e.name === 'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE')?.value ?? '';
  assert.ok(
    configFile !== '' &&
      configFile.slice(0, configFile.lastIndexOf('/')) === tokenFile.slice(0, tokenFile.lastIndexOf('/')),
    'the profiles are beside the token file, in the mounted state dir',
  );

  assert.match(
    deniedMessage(admit(pod({ ...AWS, [`${P}aws-extra-roles`]: 'reports' }))),
    /aws-extra-roles: must be NAME=ROLE_ARN/,
  );
  assert.match(
    deniedMessage(admit(pod({ ...AWS, [`${P}aws-extra-roles`]: 'default=arn:aws:iam::111122223333:role/x' }))),
    /aws-extra-roles.*must not be "default"/,
  );
  assert.match(
    deniedMessage(admit(pod({ ...AWS, [`${P}aws-extra-roles`]: 'r=not-an-arn' }))),
    /aws-extra-roles.*must be an IAM role ARN/,
  );
});

/** The pod as the API server stores it after applying the patch (RFC 6902, every op validated). */
function patched(p: Pod, r: Extract<MutationResult, { outcome: 'injected' }>): Record<string, any> {
  return jsonpatch.applyPatch(structuredClone(p), structuredClone(r.patch) as never, true, false).newDocument;
}

function sidecarOf(out: Record<string, any>): Record<string, any> {
  const sidecar = (out['spec'].initContainers as Array<Record<string, any>>).find(
    (c) => c['name'] === 'spiffe-connector',
  );
  assert.ok(sidecar, 'the sidecar is injected');
  return sidecar;
}

test('volume names taken with their suffixes too get the next free suffix', () => {
  const p = pod(AWS, {
    volumes: [
      'spiffe-connector-svid',
      'spiffe-connector-svid-1',
      'spiffe-connector-state',
      'spiffe-connector-state-1',
    ].map((name) => ({ name, emptyDir: {} })),
  });
  const out = patched(p, injected(admit(p)));
  assert.deepEqual(out['spec'].volumes.map((v: { name: string }) => v.name).slice(4), [
    'spiffe-connector-svid-2',
    'spiffe-connector-state-2',
  ]);
  assert.deepEqual(
    sidecarOf(out)['volumeMounts'].map((m: { name: string }) => m.name),
    ['spiffe-connector-svid-2', 'spiffe-connector-state-2'],
  );
});

test("a port of the sidecar's declared by any container, among other ports, is denied; other ports are not", () => {
  const withPorts = (...ports: number[]) =>
    pod(AWS, {
      containers: [
        { name: 'app', image: 'app:1', ports: [] },
        { name: 'web', image: 'web:1', ports: ports.map((containerPort) => ({ containerPort })) },
      ],
    });
  assert.equal(
    deniedMessage(admit(withPorts(3000, 8181))),
    `${P}metadata-port: port 8181 is declared by container "web"; set ${P}metadata-port to a free port`,
  );
  assert.match(
    deniedMessage(admit(withPorts(3000, 9090))),
    /^spiffe-connector\.io\/ops-port: port 9090 is declared by container "web"/,
  );
  injected(admit(withPorts(3000, 8080)));
  // metadata-port-80: only a container that declares port 80 is in the way.
  const port80 = { ...AWS, [`${P}metadata-port-80`]: 'true' };
  assert.equal(
    deniedMessage(admit({ ...withPorts(3000, 80), metadata: { name: 'p', annotations: port80 } })),
    `${P}metadata-port-80: port 80 is declared by container "web"`,
  );
  const free = { ...withPorts(3000, 8443), metadata: { name: 'p', annotations: port80 } };
  assert.deepEqual(patched(free, injected(admit(free)))['spec'].securityContext.sysctls, [
    { name: 'net.ipv4.ip_unprivileged_port_start', value: '80' },
  ]);
});

test('metadata-port-80 keeps a sysctl of exactly 80; one the kernel would not read as a whole number up to 80 is denied', () => {
  const withSysctl = (value: string) =>
    pod(
      { ...AWS, [`${P}metadata-port-80`]: 'true' },
      { securityContext: { fsGroup: 2000, sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value }] } },
    );
  assert.deepEqual(
    injected(admit(withSysctl('80'))).patch.filter((op) => op.path.startsWith('/spec/securityContext')),
    [],
  );
  for (const value of ['81', '-1', '1e1', '8O', ' 0'])
    assert.equal(
      deniedMessage(admit(withSysctl(value))),
      `${P}metadata-port-80: the pod sets net.ipv4.ip_unprivileged_port_start to ${value}; the sidecar needs 80 or lower to listen on port 80`,
      value,
    );
});

test("the sidecar's group is the SPIFFE volume's fs-group only when it is a group number, never the root group", () => {
  const svid = (attributes?: Record<string, string>) => ({
    name: 'svid',
    csi: { driver: 'spiffe.csi.cert-manager.io', ...(attributes ? { volumeAttributes: attributes } : {}) },
  });
  const groupOf = (r: Extract<MutationResult, { outcome: 'injected' }>, p: Pod): unknown =>
    sidecarOf(patched(p, r))['securityContext'].runAsGroup;
  for (const fsGroup of ['2000x', 'x2000', '0', '-5']) {
    const p = pod(AWS, { volumes: [svid({ 'spiffe.csi.cert-manager.io/fs-group': fsGroup })] });
    const r = injected(admit(p));
    assert.equal(groupOf(r, p), 65532, fsGroup);
    assert.match(r.warnings[0] ?? '', /sets no spiffe\.csi\.cert-manager\.io\/fs-group/, fsGroup);
  }
  // The pod's fsGroup 0 (root) is not taken either: the sidecar keeps its own group, with the warning.
  const root = pod(AWS, { volumes: [svid()], securityContext: { fsGroup: 0 } });
  const r = injected(admit(root));
  assert.equal(groupOf(r, root), 65532);
  assert.match(r.warnings[0] ?? '', /sets no spiffe\.csi\.cert-manager\.io\/fs-group/);
});

test('the sidecar declares its ops port by name unless a container of the pod already uses that port name', () => {
  const opsPort = (p: Pod) => sidecarOf(patched(p, injected(admit(p))))['ports'];
  const two = (ports: Array<{ containerPort: number; name?: string }>): Pod =>
    pod(AWS, {
      containers: [
        { name: 'app', image: 'app:1', ports },
        { name: 'b', image: 'b:1', ports: [] },
      ],
    });
  assert.deepEqual(opsPort(two([{ containerPort: 3000, name: 'http' }])), [
    { name: 'spiffe-conn-ops', containerPort: 9090, protocol: 'TCP' },
  ]);
  assert.equal(
    opsPort(
      two([
        { containerPort: 3000, name: 'http' },
        { containerPort: 3001, name: 'spiffe-conn-ops' },
      ]),
    ),
    undefined,
    'port names are unique in a pod: the API server would refuse a second one',
  );
});

test('a skipped container gets neither the env nor the token mount; the others do', () => {
  const p = pod(
    { ...AWS, [`${P}skip-containers`]: 'b' },
    {
      containers: [
        { name: 'a', image: 'a:1' },
        { name: 'b', image: 'b:1' },
      ],
    },
  );
  const out = patched(p, injected(admit(p)));
  const [a, b] = out['spec'].containers;
  assert.ok(a.env.some((e: { name: string }) => e.name === 'AWS_CONTAINER_CREDENTIALS_FULL_URI'));
  assert.deepEqual(a.volumeMounts, [
    { name: 'spiffe-connector-state', mountPath: '/var/run/spiffe-connector', readOnly: true },
  ]);
  assert.deepEqual(b, { name: 'b', image: 'b:1' });
});

test('init-containers on a pod that has none: the sidecar is its only init container, and unknown names list only the app containers', () => {
  const p = pod({ ...AWS, [`${P}init-containers`]: 'true' });
  const out = patched(p, injected(admit(p)));
  assert.deepEqual(
    out['spec'].initContainers.map((c: { name: string }) => c.name),
    ['spiffe-connector'],
  );
  assert.ok(
    out['spec'].containers[0].env.some((e: { name: string }) => e.name === 'AWS_CONTAINER_CREDENTIALS_FULL_URI'),
  );
  assert.equal(
    deniedMessage(
      admit(
        pod({ ...AWS, [`${P}init-containers`]: 'true', [`${P}aws-role-arn.nope`]: AWS[`${P}aws-role-arn`] as string }),
      ),
    ),
    `${P}aws-role-arn.nope: names no container of this pod (its containers: app)`,
  );
});

test('a role per container: a container that mounts the SPIFFE volume among others is warned of; one that already mounts its own directory keeps it', () => {
  const ROLE = 'arn:aws:iam::111122223333:role/api';
  const p = pod(
    { ...AWS, [`${P}aws-role-arn.api`]: ROLE },
    {
      containers: [
        { name: 'api', image: 'api:1', volumeMounts: [] },
        {
          name: 'web',
          image: 'web:1',
          volumeMounts: [
            { name: 'cache', mountPath: '/cache' },
            { name: 'svid', mountPath: '/spiffe', readOnly: true },
          ],
        },
      ],
      volumes: [
        { name: 'cache', emptyDir: {} },
        { name: 'svid', csi: { driver: 'spiffe.csi.cert-manager.io', readOnly: true } },
      ],
      securityContext: { fsGroup: 2000 },
    },
  );
  assert.deepEqual(injected(admit(p)).warnings, [
    'container "web" mounts the SPIFFE volume "svid": with the pod\'s SVID it can take any container\'s role, so the roles per container are no boundary against it',
  ]);

  const own = '/var/run/spiffe-connector-containers/api';
  const mounted = pod(
    { ...AWS, [`${P}aws-role-arn.api`]: ROLE },
    {
      containers: [{ name: 'api', image: 'api:1', volumeMounts: [{ name: 'mine', mountPath: own }] }],
      volumes: [{ name: 'mine', emptyDir: {} }],
    },
  );
  const r = injected(admit(mounted));
  assert.deepEqual(r.warnings, [`container "api": ${own} is already mounted; its token file is not mounted there`]);
  assert.deepEqual(patched(mounted, r)['spec'].containers[0].volumeMounts, [{ name: 'mine', mountPath: own }]);
});

test("a problem in the pod's own annotation is not blamed on its ServiceAccount, which sets the same key", () => {
  const account = {
    name: 'shop/orders',
    annotations: { [`${P}inject`]: 'true', [`${P}aws-role-arn`]: 'arn:aws:iam::111122223333:role/orders' },
  };
  const r = admitPod(
    pod({ [`${P}aws-role-arn`]: 'role/orders' }),
    {
      config: config(),
      randomSecret: () => 'per-pod-secret-0123456789',
    },
    account,
  );
  const message = deniedMessage(r);
  assert.match(message, /^spiffe-connector\.io\/aws-role-arn: must be an IAM role ARN/);
  assert.doesNotMatch(message, /ServiceAccount/);
  // And one the account alone sets is named as the account's.
  const typo = admitPod(
    pod({}),
    { config: config(), randomSecret: () => 'per-pod-secret-0123456789' },
    {
      name: 'shop/orders',
      annotations: { ...account.annotations, [`${P}aws-region`]: 'mars' },
    },
  );
  assert.match(deniedMessage(typo), /aws-region: .*\(annotation of ServiceAccount shop\/orders\)$/);
});

test('a per-container name that is no container is said to be so, also on a pod with init containers not served', () => {
  const p = pod(
    { ...AWS, [`${P}aws-role-arn.nope`]: AWS[`${P}aws-role-arn`] as string },
    { initContainers: [{ name: 'migrate', image: 'migrate:1' }] },
  );
  assert.equal(deniedMessage(admit(p)), `${P}aws-role-arn.nope: names no container of this pod (its containers: app)`);
});

test('init containers not served are left as they were, and the sidecar after them is the same as in a pod without them', () => {
  const migrate = { name: 'migrate', image: 'migrate:1' };
  const p = pod(AWS, { initContainers: [migrate] });
  const out = patched(p, injected(admit(p)));
  assert.deepEqual(out['spec'].initContainers[0], migrate);
  assert.deepEqual(out['spec'].initContainers[1], sidecarOf(patched(pod(AWS), injected(admit(pod(AWS))))));
});

test('a pod without metadata, a shape the webhook takes, has asked for nothing: admitted as it is, not a crash', () => {
  assert.equal(admit({ spec: { containers: [{ name: 'app', image: 'app:1' }] } }).outcome, 'not-requested');
});
