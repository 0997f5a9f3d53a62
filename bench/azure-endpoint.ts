// The Azure managed-identity endpoints of the real sidecar (`spiffe-connector run` with AWS, Google and Azure
// all configured, against the local OIDC signer and the AWS, Google and Entra stand-ins) beside a bare
// node:http server serving the same bytes, in one run; idle RSS beside a bare Node process, and idle RSS with
// AWS and Google only, to show what Azure (@azure/identity, loaded only when configured) adds. Targets
// (README.md#measured): ≥0.4 of bare throughput, p99 < 5 ms, ≤25 MB above bare Node with all three clouds.
// The sidecar runs as production does (bin/spiffe-connector.js → dist/ from `npm run build`, the image's
// NODE_OPTIONS); BENCH_ENTRY=src/main.ts and BENCH_NODE_OPTIONS="..." override (see sidecarForm in lib.ts).
// Usage: node bench/azure-endpoint.ts [seconds per run, default 10] [rounds, default 3]
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
import { AZURE_RESOURCE, type BenchSidecar, formLaunch, startBenchWorld } from './world.ts';

const seconds = Number(process.argv[2] ?? 10);
const rounds = Number(process.argv[3] ?? 3);
const RESOURCE = AZURE_RESOURCE;
const form = await sidecarForm();
const world = await startBenchWorld();

const all = await world.startSidecar('all', ['aws', 'gcp', 'azure'], formLaunch(form));
let withoutAzure: BenchSidecar | undefined;
try {
  const header = await all.azureIdentityHeader();
  const origin = `http://127.0.0.1:${all.metadataPort}`;
  const appService = {
    url: `${origin}/msi/token?api-version=2019-08-01&resource=${RESOURCE}`,
    headers: { 'X-IDENTITY-HEADER': header },
  };
  const imds = {
    url: `${origin}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${RESOURCE}`,
    headers: { Metadata: 'true' },
  };
  const sample = await fetch(appService.url, { headers: appService.headers });
  const body = Buffer.from(await sample.arrayBuffer());
  if (sample.status !== 200) throw new Error(`the endpoint answered ${sample.status}: ${body.toString()}`);
  const imdsSample = await fetch(imds.url, { headers: imds.headers });
  if (imdsSample.status !== 200) throw new Error(`IMDS answered ${imdsSample.status}`);

  await sleep(2_000);
  const allRss = await all.node.rss();
  withoutAzure = await world.startSidecar('aws-gcp', ['aws', 'gcp'], formLaunch(form));
  await sleep(2_000);
  const withoutAzureRss = await withoutAzure.node.rss();
  await withoutAzure.node.stop();
  const bareRss = await bareServerRss();

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
    console.log(
      `\nAzure managed-identity endpoints, ${body.length}-byte App Service body, 32 connections, median of ${rounds} interleaved ${seconds} s runs, Node ${process.version}`,
    );
    console.log(`sidecar: ${form.label}`);
    printLoad(results, baseline);
    for (const r of [ours, imdsResult]) {
      console.log(
        `${r.label}: throughput ratio ${(r.rps / baseline.rps).toFixed(2)} (target ≥ 0.40); p99 ${r.p99} ms (target < 5 ms)`,
      );
    }
    console.log(
      `idle RSS: all three clouds ${mb(allRss)}, AWS + Google only ${mb(withoutAzureRss)}, bare node:http server ${mb(bareRss)}; all three − bare ${mb(allRss - bareRss)} (target ≤ 25 MB); Azure adds ${mb(allRss - withoutAzureRss)}`,
    );
    console.log(
      `Entra stand-in: ${world.entra.counters.token} token requests, ${world.entra.counters.issued} issued (the load never reached it)`,
    );
  } finally {
    await bare.stop();
  }
} finally {
  await withoutAzure?.node.stop();
  await all.node.stop();
  await world.close();
}
