// The Azure managed-identity endpoints of the real sidecar (`spiffe-connector run` with AWS, Google and Azure
// all configured, against the local OIDC signer and the AWS, Google and Entra stand-ins) beside a bare
// node:http server serving the same bytes, in one run; idle RSS beside a bare Node process, and idle RSS with
// AWS and Google only, to show what Azure (@azure/identity, loaded only when configured) adds. Targets (issue 4): ≥0.4 of bare
// throughput, p99 < 5 ms, ≤25 MB above bare Node with all three clouds.
// The sidecar runs as production does (bin/spiffe-connector.js → dist/ from `npm run build`, the image's
// NODE_OPTIONS); BENCH_ENTRY=src/main.ts and BENCH_NODE_OPTIONS="..." override (see sidecarForm in lib.ts).
// Usage: node bench/azure-endpoint.ts [seconds per run, default 10] [rounds, default 3]
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DevCa } from '../src/dev/dev-ca.ts';
import { FakeEntra, ENTRA_FEDERATION_AUDIENCE } from '../src/dev/fake-entra.ts';
import { FakeGcp } from '../src/dev/fake-gcp.ts';
import { FakeSts } from '../src/dev/fake-sts.ts';
import { DevOidcSigner } from '../src/dev/oidc-signer.ts';
import { bareNodeRss, compare, formEnv, freePort, mb, printLoad, runLoad, sidecarForm, sleep, spawnNode, startBareServer, waitFor, type LoadResult } from './lib.ts';

const seconds = Number(process.argv[2] ?? 10);
const rounds = Number(process.argv[3] ?? 3);
const SPIFFE_ID = 'spiffe://example.org/ns/bench/sa/app';
const ROLE_ARN = 'arn:aws:iam::111122223333:role/app';
const AWS_AUDIENCE = 'sts.amazonaws.com';
const POOL = 'projects/123456789012/locations/global/workloadIdentityPools/spiffe-pool';
const PROVIDER = `${POOL}/providers/spiffe`;
const GCP_AUDIENCE = `//iam.googleapis.com/${PROVIDER}`;
const SERVICE_ACCOUNT = 'app@my-project.iam.gserviceaccount.com';
const TENANT_ID = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const CLIENT_ID = '11111111-2222-3333-4444-555555555555';
const RESOURCE = 'https://storage.azure.com';
const root = fileURLToPath(new URL('..', import.meta.url));
const form = await sidecarForm();

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
const dir = await mkdtemp(join(tmpdir(), 'spiffe-connector-bench-'));
const stateDir = join(dir, 'state');
await mkdir(stateDir);
await writeFile(join(dir, 'entra-ca.pem'), entra.caPem);
await writeFile(join(dir, 'jwt-svid'), await signer.sign({ sub: SPIFFE_ID, aud: [AWS_AUDIENCE, GCP_AUDIENCE, ENTRA_FEDERATION_AUDIENCE], ttlSeconds: 4 * 3600 }));

const AWS = `aws:
  roleArn: ${ROLE_ARN}
  region: eu-west-1
  stsEndpoint: ${sts.url}
`;
const GCP = `gcp:
  projectId: my-project
  projectNumber: "123456789012"
  workloadIdentityProvider: ${PROVIDER}
  serviceAccount: ${SERVICE_ACCOUNT}
  stsEndpoint: ${google.url}
  iamCredentialsEndpoint: ${google.url}
`;
const AZURE = `azure:
  tenantId: ${TENANT_ID}
  clientId: ${CLIENT_ID}
  authorityHost: ${entra.authorityHost}
  caFile: ${join(dir, 'entra-ca.pem')}
  warmResources: [${RESOURCE}]
`;

interface Sidecar {
  readonly node: ReturnType<typeof spawnNode>;
  readonly metadataPort: number;
}

/** Starts `spiffe-connector run` with these cloud sections and waits for /readyz 200. */
async function startSidecar(name: string, clouds: string): Promise<Sidecar> {
  const metadataPort = await freePort();
  const opsPort = await freePort();
  const state = join(stateDir, name);
  await mkdir(state);
  const config = join(dir, `${name}.yaml`);
  await writeFile(
    config,
    `spiffe:
  trustDomain: example.org
  jwt: { file: ${join(dir, 'jwt-svid')} }
server:
  metadataAddress: 127.0.0.1:${metadataPort}
  opsAddress: 127.0.0.1:${opsPort}
  stateDir: ${state}
log: { level: warn }
${clouds}`,
  );
  const env = formEnv(form, Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(AWS_|GCE_|GOOGLE_|AZURE_|IDENTITY_|MSI_)/.test(k))));
  const node = spawnNode([...form.nodeArgs, form.entry, 'run', '--config', config], { env, cwd: root });
  await waitFor(async () => {
    if (node.child.exitCode !== null) throw new Error(`the sidecar exited: ${node.output()}`);
    const res = await fetch(`http://127.0.0.1:${opsPort}/readyz`).catch(() => undefined);
    return res?.status === 200 ? true : undefined;
  }, `/readyz 200 (${name})`);
  return { node, metadataPort };
}

const all = await startSidecar('all', AWS + GCP + AZURE);
let withoutAzure: Sidecar | undefined;
try {
  const header = (await readFile(join(stateDir, 'all', 'azure-identity-header'), 'utf8')).trim();
  const origin = `http://127.0.0.1:${all.metadataPort}`;
  const appService = { url: `${origin}/msi/token?api-version=2019-08-01&resource=${RESOURCE}`, headers: { 'X-IDENTITY-HEADER': header } };
  const imds = { url: `${origin}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${RESOURCE}`, headers: { Metadata: 'true' } };
  const sample = await fetch(appService.url, { headers: appService.headers });
  const body = Buffer.from(await sample.arrayBuffer());
  if (sample.status !== 200) throw new Error(`the endpoint answered ${sample.status}: ${body.toString()}`);
  const imdsSample = await fetch(imds.url, { headers: imds.headers });
  if (imdsSample.status !== 200) throw new Error(`IMDS answered ${imdsSample.status}`);

  await sleep(2_000);
  const allRss = await all.node.rss();
  withoutAzure = await startSidecar('aws-gcp', AWS + GCP);
  await sleep(2_000);
  const withoutAzureRss = await withoutAzure.node.rss();
  await withoutAzure.node.stop();
  const bareRss = await bareNodeRss();

  const bare = await startBareServer(body, { 'content-type': 'application/json; charset=utf-8' });
  try {
    const warm = Math.min(3, seconds);
    await runLoad({ label: 'warm-up bare', url: bare.url, durationSeconds: warm });
    await runLoad({ label: 'warm-up sidecar', ...appService, durationSeconds: warm });
    const results = await compare(
      [
        { label: 'bare node:http (same bytes)', url: bare.url, pid: bare.pid },
        { label: 'App Service GET /msi/token', ...appService, pid: all.node.pid },
        { label: 'IMDS GET /metadata/identity/oauth2/token', ...imds, pid: all.node.pid },
      ],
      { rounds, durationSeconds: seconds },
    );
    const [baseline, ours, imdsResult] = results as [LoadResult, LoadResult, LoadResult];
    console.log(`\nAzure managed-identity endpoints, ${body.length}-byte App Service body, 32 connections, median of ${rounds} interleaved ${seconds} s runs, Node ${process.version}`);
    console.log(`sidecar: ${form.label}`);
    printLoad(results, baseline);
    for (const r of [ours, imdsResult]) {
      console.log(`${r.label}: throughput ratio ${(r.rps / baseline.rps).toFixed(2)} (target ≥ 0.40); p99 ${r.p99} ms (target < 5 ms)`);
    }
    console.log(`idle RSS: all three clouds ${mb(allRss)}, AWS + Google only ${mb(withoutAzureRss)}, bare node ${mb(bareRss)}; all three − bare ${mb(allRss - bareRss)} (target ≤ 25 MB); Azure adds ${mb(allRss - withoutAzureRss)}`);
    console.log(`Entra stand-in: ${entra.counters.token} token requests, ${entra.counters.issued} issued (the load never reached it)`);
  } finally {
    await bare.stop();
  }
} finally {
  await withoutAzure?.node.stop();
  await all.node.stop();
  await entra.close();
  await google.close();
  await sts.close();
  await signer.close();
  await rm(dir, { recursive: true, force: true });
}
