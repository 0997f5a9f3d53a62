// The admission webhook under 32 concurrent AdmissionReviews over HTTPS (keep-alive, as the API server
// sends them): the real `spiffe-connector webhook`, compiled as the image runs it, in its own process beside a bare node:https server
// answering the same response bytes, interleaved rounds, medians. Target (README.md#measured): p99 < 10 ms per
// review. Also server CPU per review and idle RSS beside a bare Node process.
// Usage: node bench/webhook.ts [seconds per run, default 5] [rounds, default 3]
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DevCa } from '@spiffe-connector/dev/dev-ca.ts';
import { Agent, request } from 'undici';
import {
  bareNodeRss,
  cpuMsOf,
  freePort,
  imageEnv,
  imageNodeOptions,
  mb,
  median,
  sleep,
  spawnNode,
  waitFor,
} from './lib.ts';

const require = createRequire(import.meta.url);
const autocannon = require('autocannon') as (opts: Record<string, unknown>) => Promise<{
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; p99_9?: number; max: number };
  non2xx: number;
  errors: number;
}>;

const CONNECTIONS = 32;
const numbers = process.argv
  .slice(2)
  .filter((a) => /^\d+$/.test(a))
  .map(Number);
const seconds = numbers[0] ?? 5;
const rounds = numbers[1] ?? 3;
const ROOT = fileURLToPath(new URL('../', import.meta.url));

interface Result {
  label: string;
  rps: number;
  p50: number;
  p99: number;
  max: number;
  non2xx: number;
  errors: number;
  cpuUsPerReview?: number;
}

const dir = await mkdtemp(join(tmpdir(), 'bench-webhook-'));
try {
  const ca = await DevCa.create({ trustDomain: 'cluster.example' });
  const cert = await ca.issueServerCert({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  await writeFile(join(dir, 'tls.crt'), cert.certPem);
  await writeFile(join(dir, 'tls.key'), cert.keyPem);
  const port = await freePort();
  await writeFile(
    join(dir, 'webhook.yaml'),
    `webhook: { address: "127.0.0.1:${port}", tls: { certFile: ${dir}/tls.crt, keyFile: ${dir}/tls.key }, drainSeconds: 0 }
sidecar: { image: registry.example/spiffe-connector:0.1.0 }
defaults:
  trustDomain: cluster.example
  jwt: { exchangeUrl: "https://spiffe-connector-issuer.spiffe-connector.svc:8443/token" }
  aws: { region: eu-west-1 }
  gcp: { projectId: my-project }
  azure: { tenantId: 00000000-0000-0000-0000-000000000000 }
log: { level: warn }
`,
  );
  // What the image runs: the bundled dist/ (scripts/build.ts, what `npm run build` makes) beside this
  // node_modules, with the image's NODE_OPTIONS.
  const app = join(dir, 'app');
  await mkdir(app);
  await symlink(join(ROOT, 'node_modules'), join(app, 'node_modules'), 'dir');
  await writeFile(join(app, 'package.json'), JSON.stringify({ type: 'module' }));
  await new Promise<void>((resolve, reject) => {
    const build = spawnNode([join(ROOT, 'scripts/build.ts'), join(app, 'dist')]);
    build.child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`the build failed: ${build.output().slice(0, 2000)}`)),
    );
  });
  const nodeOptions = process.env['BENCH_NODE_OPTIONS'] ?? (await imageNodeOptions());
  const webhook = spawnNode([join(app, 'dist/main.js'), 'webhook', '--config', join(dir, 'webhook.yaml')], {
    env: imageEnv(process.env, nodeOptions),
  });
  const url = `https://127.0.0.1:${port}`;
  const agent = new Agent({ connect: { ca: ca.certPem } });
  await waitFor(
    () =>
      request(`${url}/readyz`, { dispatcher: agent }).then(
        (r) => (r.body.dump(), r.statusCode === 200 ? true : undefined),
        () => undefined,
      ),
    'the webhook to be ready',
  );
  await sleep(2_000);
  const rssAtStart = await webhook.rss();

  // A realistic review: a Deployment's pod asking for all three clouds (the largest patch).
  const pod = JSON.parse(await readFile(join(ROOT, 'test/webhook/fixtures/explicit-env.json'), 'utf8')) as {
    metadata: { annotations: Record<string, string> };
  };
  pod.metadata.annotations['spiffe-connector.io/azure-client-id'] = '11111111-2222-3333-4444-555555555555';
  const review = JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: '705ab4f5-6393-11e8-b7cc-42010a800002',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      namespace: 'analytics',
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' },
      object: pod,
      dryRun: false,
    },
  });
  const sample = await request(`${url}/mutate`, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json' },
    body: review,
  });
  const answer = await sample.body.text();
  const parsed = JSON.parse(answer) as { response: { allowed: boolean; patch?: string } };
  if (!parsed.response.allowed || !parsed.response.patch)
    throw new Error(`the sample review was not injected: ${answer.slice(0, 300)}`);
  const patchOps = (JSON.parse(Buffer.from(parsed.response.patch, 'base64').toString()) as unknown[]).length;
  await agent.close();

  // The baseline: node:https with the same certificate answering the same bytes after reading the body.
  const bareServer = spawnNode(
    [
      '-e',
      `const https = require('node:https'); const fs = require('node:fs');
       const body = Buffer.from(process.env.BODY_B64, 'base64');
       https.createServer({ cert: fs.readFileSync(process.env.CERT), key: fs.readFileSync(process.env.KEY), minVersion: 'TLSv1.2' }, (req, res) => {
         req.resume(); req.on('end', () => res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }).end(body));
       }).listen(0, '127.0.0.1', function () { process.stdout.write(JSON.stringify({ port: this.address().port }) + '\\n'); });`,
    ],
    {
      env: {
        ...process.env,
        BODY_B64: Buffer.from(answer).toString('base64'),
        CERT: join(dir, 'tls.crt'),
        KEY: join(dir, 'tls.key'),
      },
    },
  );
  const barePort = await waitFor(() => {
    const m = /\{"port":(\d+)\}/.exec(bareServer.output());
    return m ? Number(m[1]) : undefined;
  }, 'the bare server to listen');

  const targets = [
    { label: 'spiffe-connector webhook /mutate', url: `${url}/mutate`, pid: webhook.pid },
    { label: 'bare node:https, same bytes', url: `https://127.0.0.1:${barePort}/mutate`, pid: bareServer.pid },
  ];
  const load = async (t: (typeof targets)[number], duration: number): Promise<Result> => {
    const cpu0 = await cpuMsOf(t.pid);
    const r = await autocannon({
      url: t.url,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: review,
      connections: CONNECTIONS,
      duration,
    });
    const cpu1 = await cpuMsOf(t.pid);
    return {
      label: t.label,
      rps: r.requests.average,
      p50: r.latency.p50,
      p99: r.latency.p99,
      max: r.latency.max,
      non2xx: r.non2xx,
      errors: r.errors,
      ...(cpu0 !== undefined && cpu1 !== undefined && r.requests.total > 0
        ? { cpuUsPerReview: ((cpu1 - cpu0) * 1000) / r.requests.total }
        : {}),
    };
  };

  for (const t of targets) await load(t, 2); // warm-up (JIT, TLS session setup)
  const all: Result[][] = targets.map(() => []);
  for (let round = 0; round < rounds; round++) {
    for (const [i, t] of targets.entries()) all[i]?.push(await load(t, seconds));
  }
  const medians = all.map((rs) => ({
    label: rs[0]?.label ?? '',
    rps: median(rs.map((r) => r.rps)),
    p50: median(rs.map((r) => r.p50)),
    p99: median(rs.map((r) => r.p99)),
    max: Math.max(...rs.map((r) => r.max)),
    non2xx: rs.reduce((a, r) => a + r.non2xx, 0),
    errors: rs.reduce((a, r) => a + r.errors, 0),
    cpu: median(rs.map((r) => r.cpuUsPerReview ?? Number.NaN)),
  }));
  const base = medians[1];
  console.log(
    `AdmissionReview: ${Buffer.byteLength(review)} bytes in, ${Buffer.byteLength(answer)} bytes out, ${patchOps} patch operations`,
  );
  console.log(`${CONNECTIONS} connections, ${rounds} rounds x ${seconds}s, medians:`);
  for (const m of medians) {
    console.log(
      `  ${m.label.padEnd(36)} ${m.rps.toFixed(0).padStart(7)} req/s  p50 ${m.p50.toFixed(2)} ms  p99 ${m.p99.toFixed(2)} ms  max ${m.max.toFixed(1)} ms  ` +
        `cpu ${Number.isNaN(m.cpu) ? '?' : m.cpu.toFixed(0)} µs/review  non2xx ${m.non2xx}  errors ${m.errors}`,
    );
  }
  if (base && medians[0])
    console.log(
      `  ratio webhook/bare: ${(medians[0].rps / base.rps).toFixed(2)} (req/s), p99 target < 10 ms: ${medians[0].p99 < 10 ? 'met' : 'NOT met'}`,
    );

  await sleep(2_000);
  globalThis.gc?.();
  console.log(
    `idle RSS: webhook ${mb(rssAtStart)} after start, ${mb(await webhook.rss())} after the load; bare Node ${mb(await bareNodeRss())}`,
  );
  await bareServer.stop();
  await webhook.stop();
} finally {
  await rm(dir, { recursive: true, force: true });
}
