// Idle RSS of the sidecar as production runs it (bin/spiffe-connector.js → the built dist/, with the
// image's NODE_OPTIONS) for AWS only, AWS + Google and all three clouds, each beside a bare Node process
// measured in the same round; rounds interleaved, medians reported. Targets: ≤15 / ≤20 / ≤25 MB above bare
// (issues 2, 3, 4). Run `npm run build` first.
// Usage: node bench/rss.ts [rounds, default 3] [--entry FILE]... [--node-options "FLAGS"]... [--settle MS] [--detail]
//   --entry         what to start (default bin/spiffe-connector.js; src/main.ts runs the sources)
//   --node-options  NODE_OPTIONS for the sidecar (default: the Dockerfile's ENV NODE_OPTIONS; "" for none)
//   Both repeat: every entry × every NODE_OPTIONS is a variant, all measured in the same interleaved rounds.
//   --detail        also print V8 heap figures of each sidecar (read through a preloaded module)
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DevCa } from '../src/dev/dev-ca.ts';
import { FakeEntra, ENTRA_FEDERATION_AUDIENCE } from '../src/dev/fake-entra.ts';
import { FakeGcp } from '../src/dev/fake-gcp.ts';
import { FakeSts } from '../src/dev/fake-sts.ts';
import { DevOidcSigner } from '../src/dev/oidc-signer.ts';
import { freePort, imageNodeOptions, mb, median, sleep, spawnNode, waitFor } from './lib.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { entry: { type: 'string', multiple: true }, 'node-options': { type: 'string', multiple: true }, settle: { type: 'string' }, detail: { type: 'boolean' } },
});
const rounds = Number(positionals[0] ?? 3);
const settleMs = Number(values.settle ?? 3_000);
const entries = values.entry ?? ['bin/spiffe-connector.js'];
const nodeOptionSets = values['node-options'] ?? [await imageNodeOptions()];
const variants = entries.flatMap((entry) => nodeOptionSets.map((nodeOptions) => ({ entry, nodeOptions, label: `${entry} ${JSON.stringify(nodeOptions)}` })));
type Variant = (typeof variants)[number];
if (entries.includes('bin/spiffe-connector.js') && !existsSync(join(root, 'dist/main.js'))) throw new Error('no dist/main.js: run `npm run build` first');

/** Preloaded with --detail: on SIGUSR2 print process.memoryUsage() and V8's heap spaces as one line. */
const PROBE = `
const v8 = require('node:v8');
process.on('SIGUSR2', () => {
  const m = process.memoryUsage();
  const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, s.physical_space_size]));
  const code = v8.getHeapCodeStatistics();
  const out = {
    'heap used': m.heapUsed,
    'heap committed': v8.getHeapStatistics().total_physical_size,
    'young gen': spaces.new_space + spaces.new_large_object_space,
    'old gen': spaces.old_space + spaces.large_object_space,
    'code+trusted': spaces.code_space + spaces.code_large_object_space + spaces.trusted_space + spaces.trusted_large_object_space,
    'bytecode+code': code.code_and_metadata_size + code.bytecode_and_metadata_size,
    'source text': code.external_script_source_size,
    external: m.external,
    'V8 malloc': v8.getHeapStatistics().malloced_memory,
  };
  process.stderr.write('PROBE ' + JSON.stringify(out) + '\\n');
});
`;

const SPIFFE_ID = 'spiffe://example.org/ns/bench/sa/app';
const ROLE_ARN = 'arn:aws:iam::111122223333:role/app';
const AWS_AUDIENCE = 'sts.amazonaws.com';
const POOL = 'projects/123456789012/locations/global/workloadIdentityPools/spiffe-pool';
const PROVIDER = `${POOL}/providers/spiffe`;
const SERVICE_ACCOUNT = 'app@my-project.iam.gserviceaccount.com';
const TENANT_ID = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const CLIENT_ID = '11111111-2222-3333-4444-555555555555';

const signer = await DevOidcSigner.start();
const sts = await FakeSts.start({
  providers: [{ issuer: signer.issuer, audiences: [AWS_AUDIENCE] }],
  roles: [{ arn: ROLE_ARN, issuer: signer.issuer, audience: AWS_AUDIENCE, maxSessionDurationSeconds: 43200 }],
});
const google = await FakeGcp.start({
  providers: [{ name: PROVIDER, issuer: signer.issuer }],
  serviceAccounts: [{ email: SERVICE_ACCOUNT, impersonators: [`principalSet://iam.googleapis.com/${POOL}/*`] }],
});
const entra = await FakeEntra.start({
  tenantId: TENANT_ID,
  ca: await DevCa.create({ trustDomain: 'entra.bench' }),
  applications: [{ clientId: CLIENT_ID, federatedCredentials: [{ issuer: signer.issuer, subject: SPIFFE_ID }] }],
});
const dir = await mkdtemp(join(tmpdir(), 'spiffe-connector-rss-'));
await writeFile(join(dir, 'entra-ca.pem'), entra.caPem);
await writeFile(join(dir, 'jwt-svid'), await signer.sign({ sub: SPIFFE_ID, aud: [AWS_AUDIENCE, `//iam.googleapis.com/${PROVIDER}`, ENTRA_FEDERATION_AUDIENCE], ttlSeconds: 4 * 3600 }));
const probe = join(dir, 'probe.cjs');
await writeFile(probe, PROBE);

const CLOUDS = {
  aws: `aws: { roleArn: "${ROLE_ARN}", region: eu-west-1, stsEndpoint: "${sts.url}" }\n`,
  gcp: `gcp:
  projectId: my-project
  projectNumber: "123456789012"
  workloadIdentityProvider: ${PROVIDER}
  serviceAccount: ${SERVICE_ACCOUNT}
  stsEndpoint: ${google.url}
  iamCredentialsEndpoint: ${google.url}
`,
  azure: `azure: { tenantId: ${TENANT_ID}, clientId: ${CLIENT_ID}, authorityHost: "${entra.authorityHost}", caFile: ${join(dir, 'entra-ca.pem')}, warmResources: [https://storage.azure.com] }\n`,
};
const SETS: ReadonlyArray<{ label: string; clouds: ReadonlyArray<keyof typeof CLOUDS>; targetMb: number }> = [
  { label: 'AWS', clouds: ['aws'], targetMb: 15 },
  { label: 'AWS + Google', clouds: ['aws', 'gcp'], targetMb: 20 },
  { label: 'AWS + Google + Azure', clouds: ['aws', 'gcp', 'azure'], targetMb: 25 },
];

interface Sample {
  readonly rss: number;
  readonly detail?: Record<string, number>;
}

/** Starts the sidecar with these clouds, waits for /readyz 200 and `settleMs`, reads its RSS, stops it. */
async function sidecarRss(variant: Variant, name: string, clouds: ReadonlyArray<keyof typeof CLOUDS>): Promise<Sample> {
  const [metadataPort, opsPort] = [await freePort(), await freePort()];
  const state = join(dir, `state-${name}`);
  await mkdir(state, { recursive: true });
  const config = join(dir, `${name}.yaml`);
  await writeFile(
    config,
    `spiffe: { trustDomain: example.org, jwt: { file: ${join(dir, 'jwt-svid')} } }
server: { metadataAddress: "127.0.0.1:${metadataPort}", opsAddress: "127.0.0.1:${opsPort}", stateDir: ${state}, drainSeconds: 0 }
log: { level: warn }
${clouds.map((c) => CLOUDS[c]).join('')}`,
  );
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(AWS_|GCE_|GOOGLE_|AZURE_|IDENTITY_|MSI_|NODE_OPTIONS$)/.test(k)));
  const options = [variant.nodeOptions, values.detail ? `--require=${probe}` : ''].filter(Boolean).join(' ');
  if (options) env['NODE_OPTIONS'] = options;
  const node = spawnNode([join(root, variant.entry), 'run', '--config', config], { env, cwd: root });
  try {
    await waitFor(async () => {
      if (node.child.exitCode !== null) throw new Error(`the sidecar exited: ${node.output()}`);
      const res = await fetch(`http://127.0.0.1:${opsPort}/readyz`).catch(() => undefined);
      return res?.status === 200 ? true : undefined;
    }, `/readyz 200 (${name})`);
    await sleep(settleMs);
    const rss = await node.rss();
    if (!values.detail) return { rss };
    const before = node.output().length;
    node.child.kill('SIGUSR2');
    const line = await waitFor(() => /PROBE (\{.*\})\n/.exec(node.output().slice(before))?.[1], 'the probe');
    return { rss, detail: JSON.parse(line) as Record<string, number> };
  } finally {
    await node.stop();
  }
}

async function bareRss(): Promise<number> {
  const node = spawnNode(['-e', 'setInterval(() => {}, 1 << 30)']);
  try {
    await sleep(settleMs);
    return await node.rss();
  } finally {
    await node.stop();
  }
}

const bare: number[] = [];
const samples = new Map<string, Sample[]>();
const key = (variant: Variant, set: (typeof SETS)[number]): string => `${variant.label}\u0000${set.label}`;
const range = (xs: number[]): string => `[${mb(Math.min(...xs))}–${mb(Math.max(...xs))}]`;
try {
  for (let round = 0; round < rounds; round++) {
    bare.push(await bareRss());
    for (const variant of variants) {
      for (const [i, set] of SETS.entries()) {
        const sample = await sidecarRss(variant, `${round}-${variants.indexOf(variant)}-${i}`, set.clouds);
        samples.set(key(variant, set), [...(samples.get(key(variant, set)) ?? []), sample]);
      }
    }
  }
  const bareMedian = median(bare);
  console.log(`\nIdle RSS, ${rounds} interleaved rounds (medians; min–max in brackets), ${settleMs} ms after /readyz 200, Node ${process.version}`);
  console.log(`bare node (node -e 'setInterval(...)'): ${mb(bareMedian)} ${range(bare)}`);
  console.table(
    variants.flatMap((variant) =>
      SETS.map((set) => {
        const rss = (samples.get(key(variant, set)) ?? []).map((s) => s.rss);
        const above = median(rss) - bareMedian;
        return {
          ...(variants.length > 1 ? { variant: variant.label } : {}),
          clouds: set.label,
          RSS: `${mb(median(rss))} ${range(rss)}`,
          'above bare': mb(above),
          target: `≤ ${set.targetMb} MB`,
          met: above <= set.targetMb * 1024 * 1024 ? 'yes' : 'no',
        };
      }),
    ),
  );
  if (variants.length === 1) console.log(`entry ${variants[0]?.entry}, NODE_OPTIONS ${JSON.stringify(variants[0]?.nodeOptions)}`);
  if (values.detail) {
    const first = samples.values().next().value?.[0]?.detail ?? {};
    console.table(
      variants.flatMap((variant) =>
        SETS.map((set) => ({
          ...(variants.length > 1 ? { variant: variant.label } : {}),
          clouds: set.label,
          ...Object.fromEntries(Object.keys(first).map((k) => [k, mb(median((samples.get(key(variant, set)) ?? []).map((s) => s.detail?.[k] ?? 0)))])),
        })),
      ),
    );
  }
} finally {
  await entra.close();
  await google.close();
  await sts.close();
  await signer.close();
  await rm(dir, { recursive: true, force: true });
}
