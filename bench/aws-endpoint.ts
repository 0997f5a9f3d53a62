// The container-credentials endpoint of the real sidecar (`spiffe-connector run`, AWS configured, against
// the local OIDC signer and fake STS) beside a bare node:http server serving the same bytes, in one run.
// Also: process start to /readyz 200, and idle RSS beside a bare Node process. Targets (issue 2): ≥0.4 of
// bare throughput, p99 < 5 ms, ≤15 MB above bare Node, ready < 1 s.
// The sidecar runs as production does (bin/spiffe-connector.js → dist/ from `npm run build`, the image's
// NODE_OPTIONS); BENCH_ENTRY=src/main.ts and BENCH_NODE_OPTIONS="..." override (see sidecarForm in lib.ts).
// Usage: node bench/aws-endpoint.ts [seconds per run, default 10] [rounds, default 3]
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FakeSts } from '../src/dev/fake-sts.ts';
import { DevOidcSigner } from '../src/dev/oidc-signer.ts';
import { bareNodeRss, compare, formEnv, freePort, mb, printLoad, runLoad, sidecarForm, sleep, spawnNode, startBareServer, waitFor, type LoadResult } from './lib.ts';

const seconds = Number(process.argv[2] ?? 10);
const rounds = Number(process.argv[3] ?? 3);
const ROLE_ARN = 'arn:aws:iam::111122223333:role/app';
const AUDIENCE = 'sts.amazonaws.com';
const root = fileURLToPath(new URL('..', import.meta.url));
const form = await sidecarForm();

const signer = await DevOidcSigner.start();
const sts = await FakeSts.start({
  providers: [{ issuer: signer.issuer, audiences: [AUDIENCE] }],
  roles: [{ arn: ROLE_ARN, issuer: signer.issuer, audience: AUDIENCE, maxSessionDurationSeconds: 43200 }],
});
const dir = await mkdtemp(join(tmpdir(), 'spiffe-connector-bench-'));
const stateDir = join(dir, 'state');
await mkdir(stateDir);
await writeFile(join(dir, 'jwt-svid'), await signer.sign({ sub: 'spiffe://example.org/ns/bench/sa/app', aud: AUDIENCE, ttlSeconds: 4 * 3600 }));
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
`,
);

const env = formEnv(form, Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AWS_'))));
const started = performance.now();
const sidecar = spawnNode([...form.nodeArgs, form.entry, 'run', '--config', join(dir, 'config.yaml')], { env, cwd: root });
try {
  await waitFor(async () => {
    if (sidecar.child.exitCode !== null) throw new Error(`the sidecar exited: ${sidecar.output()}`);
    const res = await fetch(`http://127.0.0.1:${opsPort}/readyz`).catch(() => undefined);
    return res?.status === 200 ? true : undefined;
  }, '/readyz 200');
  const readyMs = performance.now() - started;

  const token = await readFile(join(stateDir, 'aws-container-token'), 'utf8');
  const url = `http://127.0.0.1:${metadataPort}/v1/credentials`;
  const sample = await fetch(url, { headers: { authorization: token } });
  const body = Buffer.from(await sample.arrayBuffer());
  if (sample.status !== 200) throw new Error(`the endpoint answered ${sample.status}: ${body.toString()}`);

  await sleep(2_000);
  const [sidecarRss, bareRss] = [await sidecar.rss(), await bareNodeRss()];

  const bare = await startBareServer(body, { 'content-type': 'application/json' });
  try {
    const warm = Math.min(3, seconds);
    await runLoad({ label: 'warm-up bare', url: bare.url, durationSeconds: warm });
    await runLoad({ label: 'warm-up sidecar', url, headers: { authorization: token }, durationSeconds: warm });
    const [baseline, ours] = (await compare(
      [
        { label: 'bare node:http (same bytes)', url: bare.url, pid: bare.pid },
        { label: 'GET /v1/credentials', url, headers: { authorization: token }, pid: sidecar.pid },
      ],
      { rounds, durationSeconds: seconds },
    )) as [LoadResult, LoadResult];
    console.log(`\nAWS container-credentials endpoint, ${body.length}-byte body, 32 connections, median of ${rounds} interleaved ${seconds} s runs, Node ${process.version}`);
    console.log(`sidecar: ${form.label}`);
    printLoad([baseline, ours], baseline);
    console.log(`throughput ratio ${(ours.rps / baseline.rps).toFixed(2)} (target ≥ 0.40); p99 ${ours.p99} ms (target < 5 ms)`);
    if (ours.cpuUsPerRequest !== undefined && baseline.cpuUsPerRequest !== undefined) {
      console.log(`server CPU per request: ${ours.cpuUsPerRequest.toFixed(1)} µs vs ${baseline.cpuUsPerRequest.toFixed(1)} µs bare (ratio ${(baseline.cpuUsPerRequest / ours.cpuUsPerRequest).toFixed(2)}; steadier than req/s when the machine is shared)`);
    }
    console.log(`process start → /readyz 200: ${Math.round(readyMs)} ms (target < 1000 ms)`);
    console.log(`idle RSS: sidecar ${mb(sidecarRss)}, bare node ${mb(bareRss)}, difference ${mb(sidecarRss - bareRss)} (target ≤ 15 MB)`);
  } finally {
    await bare.stop();
  }
} finally {
  await sidecar.stop();
  await sts.close();
  await signer.close();
  await rm(dir, { recursive: true, force: true });
}
