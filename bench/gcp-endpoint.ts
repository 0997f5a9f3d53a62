// The GCE metadata token endpoint of the real sidecar (`spiffe-connector run`, AWS and Google configured,
// against the local OIDC signer and the AWS and Google stand-ins) beside a bare node:http server serving
// the same bytes, in one run; idle RSS beside a bare Node process. Targets (README.md#measured): ≥0.4 of bare
// throughput, p99 < 5 ms, ≤20 MB above bare Node.
// The sidecar runs as production does (bin/spiffe-connector.js → dist/ from `npm run build`, the image's
// NODE_OPTIONS); BENCH_ENTRY=src/main.ts and BENCH_NODE_OPTIONS="..." override (see sidecarForm in lib.ts).
// Usage: node bench/gcp-endpoint.ts [seconds per run, default 10] [rounds, default 3]
import {
  bareServerRss,
  compare,
  type LoadResult,
  mb,
  printLoad,
  runLoad,
  sidecarForm,
  sleep,
  startBareServer,
} from './lib.ts';
import { formLaunch, startBenchWorld } from './world.ts';

const seconds = Number(process.argv[2] ?? 10);
const rounds = Number(process.argv[3] ?? 3);
const form = await sidecarForm();

const world = await startBenchWorld();
const sidecar = await world.startSidecar('aws-gcp', ['aws', 'gcp'], formLaunch(form));
try {
  const url = `http://127.0.0.1:${sidecar.metadataPort}/computeMetadata/v1/instance/service-accounts/default/token`;
  const headers = { 'Metadata-Flavor': 'Google' };
  const sample = await fetch(url, { headers });
  const body = Buffer.from(await sample.arrayBuffer());
  if (sample.status !== 200) throw new Error(`the endpoint answered ${sample.status}: ${body.toString()}`);

  await sleep(2_000);
  const [sidecarRss, bareRss] = [await sidecar.node.rss(), await bareServerRss()];

  const bare = await startBareServer(body, {
    'content-type': 'application/json',
    'metadata-flavor': 'Google',
    server: 'Metadata Server for VM',
  });
  try {
    const warm = Math.min(3, seconds);
    await runLoad({ label: 'warm-up bare', url: bare.url, durationSeconds: warm });
    await runLoad({ label: 'warm-up sidecar', url, headers, durationSeconds: warm });
    const [baseline, ours] = (await compare(
      [
        { label: 'bare node:http (same bytes)', url: bare.url, pid: bare.pid },
        { label: 'GET …/default/token', url, headers, pid: sidecar.node.pid },
      ],
      { rounds, durationSeconds: seconds },
    )) as [LoadResult, LoadResult];
    console.log(
      `\nGCE metadata token endpoint, ${body.length}-byte body, 32 connections, median of ${rounds} interleaved ${seconds} s runs, Node ${process.version}`,
    );
    console.log(`sidecar: ${form.label}`);
    printLoad([baseline, ours], baseline);
    console.log(
      `throughput ratio ${(ours.rps / baseline.rps).toFixed(2)} (target ≥ 0.40); p99 ${ours.p99} ms (target < 5 ms)`,
    );
    if (ours.cpuUsPerRequest !== undefined && baseline.cpuUsPerRequest !== undefined) {
      console.log(
        `server CPU per request: ${ours.cpuUsPerRequest.toFixed(1)} µs vs ${baseline.cpuUsPerRequest.toFixed(1)} µs bare (ratio ${(baseline.cpuUsPerRequest / ours.cpuUsPerRequest).toFixed(2)}; steadier than req/s when the machine is shared)`,
      );
    }
    console.log(
      `idle RSS (AWS + Google configured): sidecar ${mb(sidecarRss)}, bare node:http server ${mb(bareRss)}, difference ${mb(sidecarRss - bareRss)} (target ≤ 20 MB)`,
    );
  } finally {
    await bare.stop();
  }
} finally {
  await sidecar.node.stop();
  await world.close();
}
