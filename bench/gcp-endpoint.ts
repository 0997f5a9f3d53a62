// The GCE metadata token endpoint of the real sidecar (`spiffe-connector run`, AWS and Google configured,
// against the local OIDC signer and the AWS and Google stand-ins) beside a bare node:http server serving
// the same bytes, in one run; idle RSS beside a bare Node process. Targets (issue 3): ≥0.4 of bare
// throughput, p99 < 5 ms, ≤20 MB above bare Node.
// The sidecar runs as production does (bin/spiffe-connector.js → dist/ from `npm run build`, the image's
// NODE_OPTIONS); BENCH_ENTRY=src/main.ts and BENCH_NODE_OPTIONS="..." override (see sidecarForm in lib.ts).
// Usage: node bench/gcp-endpoint.ts [seconds per run, default 10] [rounds, default 3]
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FakeGcp } from '../src/dev/fake-gcp.ts';
import { FakeSts } from '../src/dev/fake-sts.ts';
import { DevOidcSigner } from '../src/dev/oidc-signer.ts';
import { bareNodeRss, compare, formEnv, freePort, mb, printLoad, runLoad, sidecarForm, sleep, spawnNode, startBareServer, waitFor, type LoadResult } from './lib.ts';

const seconds = Number(process.argv[2] ?? 10);
const rounds = Number(process.argv[3] ?? 3);
const ROLE_ARN = 'arn:aws:iam::111122223333:role/app';
const AWS_AUDIENCE = 'sts.amazonaws.com';
const POOL = 'projects/123456789012/locations/global/workloadIdentityPools/spiffe-pool';
const PROVIDER = `${POOL}/providers/spiffe`;
const GCP_AUDIENCE = `//iam.googleapis.com/${PROVIDER}`;
const SERVICE_ACCOUNT = 'app@my-project.iam.gserviceaccount.com';
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
const dir = await mkdtemp(join(tmpdir(), 'spiffe-connector-bench-'));
const stateDir = join(dir, 'state');
await mkdir(stateDir);
await writeFile(join(dir, 'jwt-svid'), await signer.sign({ sub: 'spiffe://example.org/ns/bench/sa/app', aud: [AWS_AUDIENCE, GCP_AUDIENCE], ttlSeconds: 4 * 3600 }));
const metadataPort = await freePort();
const opsPort = await freePort();
await writeFile(
  join(dir, 'config.yaml'),
  `spiffe:
  trustDomain: example.org
  jwt: { file: ${join(dir, 'jwt-svid')} }
server:
  metadataAddress: 127.0.0.1:${metadataPort}
  opsAddress: 127.0.0.1:${opsPort}
  stateDir: ${stateDir}
log: { level: warn }
aws:
  roleArn: ${ROLE_ARN}
  region: eu-west-1
  stsEndpoint: ${sts.url}
gcp:
  projectId: my-project
  projectNumber: "123456789012"
  workloadIdentityProvider: ${PROVIDER}
  serviceAccount: ${SERVICE_ACCOUNT}
  stsEndpoint: ${google.url}
  iamCredentialsEndpoint: ${google.url}
`,
);

const env = formEnv(form, Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AWS_') && !k.startsWith('GCE_') && !k.startsWith('GOOGLE_'))));
const sidecar = spawnNode([...form.nodeArgs, form.entry, 'run', '--config', join(dir, 'config.yaml')], { env, cwd: root });
try {
  await waitFor(async () => {
    if (sidecar.child.exitCode !== null) throw new Error(`the sidecar exited: ${sidecar.output()}`);
    const res = await fetch(`http://127.0.0.1:${opsPort}/readyz`).catch(() => undefined);
    return res?.status === 200 ? true : undefined;
  }, '/readyz 200');

  const url = `http://127.0.0.1:${metadataPort}/computeMetadata/v1/instance/service-accounts/default/token`;
  const headers = { 'Metadata-Flavor': 'Google' };
  const sample = await fetch(url, { headers });
  const body = Buffer.from(await sample.arrayBuffer());
  if (sample.status !== 200) throw new Error(`the endpoint answered ${sample.status}: ${body.toString()}`);

  await sleep(2_000);
  const [sidecarRss, bareRss] = [await sidecar.rss(), await bareNodeRss()];

  const bare = await startBareServer(body, { 'content-type': 'application/json', 'metadata-flavor': 'Google', server: 'Metadata Server for VM' });
  try {
    const warm = Math.min(3, seconds);
    await runLoad({ label: 'warm-up bare', url: bare.url, durationSeconds: warm });
    await runLoad({ label: 'warm-up sidecar', url, headers, durationSeconds: warm });
    const [baseline, ours] = (await compare(
      [
        { label: 'bare node:http (same bytes)', url: bare.url, pid: bare.pid },
        { label: 'GET …/default/token', url, headers, pid: sidecar.pid },
      ],
      { rounds, durationSeconds: seconds },
    )) as [LoadResult, LoadResult];
    console.log(`\nGCE metadata token endpoint, ${body.length}-byte body, 32 connections, median of ${rounds} interleaved ${seconds} s runs, Node ${process.version}`);
    console.log(`sidecar: ${form.label}`);
    printLoad([baseline, ours], baseline);
    console.log(`throughput ratio ${(ours.rps / baseline.rps).toFixed(2)} (target ≥ 0.40); p99 ${ours.p99} ms (target < 5 ms)`);
    if (ours.cpuUsPerRequest !== undefined && baseline.cpuUsPerRequest !== undefined) {
      console.log(`server CPU per request: ${ours.cpuUsPerRequest.toFixed(1)} µs vs ${baseline.cpuUsPerRequest.toFixed(1)} µs bare (ratio ${(baseline.cpuUsPerRequest / ours.cpuUsPerRequest).toFixed(2)}; steadier than req/s when the machine is shared)`);
    }
    console.log(`idle RSS (AWS + Google configured): sidecar ${mb(sidecarRss)}, bare node ${mb(bareRss)}, difference ${mb(sidecarRss - bareRss)} (target ≤ 20 MB)`);
  } finally {
    await bare.stop();
  }
} finally {
  await sidecar.stop();
  await google.close();
  await sts.close();
  await signer.close();
  await rm(dir, { recursive: true, force: true });
}
