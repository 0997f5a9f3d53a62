// The issuer's token endpoint under 32 concurrent mTLS clients (undici), RS256 and ES256, with and
// without connection reuse, beside jose signing the same token in a tight loop and a bare mTLS
// node:https server answering the same bytes, all in one run. The issuer runs in a child process so
// its CPU time is its own: "per core" = tokens per CPU-second of that process. Target (README.md#measured): at
// least half the rate of the jose loop. Also idle RSS of the issuer beside a bare Node process.
// Usage: node bench/issuer.ts [seconds per run, default 5] [rounds, default 3]
import { fork, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';

const CONCURRENCY = 32;
const AUDIENCE = 'bench.example.org';
const numbers = process.argv
  .slice(2)
  .filter((a) => /^\d+$/.test(a))
  .map(Number);
const seconds = numbers[0] ?? 5;
const rounds = numbers[1] ?? 3;
type Alg = 'RS256' | 'ES256';

interface Ready {
  type: 'ready';
  tokenUrl: string;
  bareUrl: string;
  caPem: string;
  certPem: string;
  keyPem: string;
  rss: number;
}
interface Cpu {
  type: 'cpu';
  micros: number;
}
interface Signed {
  type: 'signed';
  count: number;
  wallMs: number;
  cpuMicros: number;
}
type ChildMessage = Ready | Cpu | Signed;

if (process.argv.includes('--child')) await child(process.argv.includes('ES256') ? 'ES256' : 'RS256');
else await parent();

// ---------------------------------------------------------------------------------------------- child
async function child(alg: Alg): Promise<void> {
  const { DevCa } = await import('@spiffe-connector/dev/dev-ca.ts');
  const { startDevIssuer } = await import('@spiffe-connector/dev/dev-issuer.ts');
  const { parseSigningKey } = await import('../src/issuer/signing-key.ts');
  const { buildClaims, signJwtSvid } = await import('../src/issuer/mint.ts');
  const { Secret } = await import('../src/base/secret.ts');
  const { createLogger } = await import('../src/ops/logger.ts');
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const dev = await startDevIssuer({
    ca,
    trustDomain: 'example.org',
    audiences: [AUDIENCE],
    alg,
    logger: createLogger({ level: 'warn' }),
  });
  const svid = await ca.issueX509Svid({ spiffeId: 'spiffe://example.org/ns/bench/sa/app', ttlSeconds: 4 * 3600 });
  const key = await parseSigningKey(
    'dev-1.pem',
    new Secret(await readFile(join(dev.dir, 'keys', 'dev-1.pem'), 'utf8')),
    alg,
  );
  // The bare server: same TLS settings and certificate, answers a fixed token response without looking at anything.
  const serving = {
    cert: await readFile(join(dev.dir, 'tls.crt'), 'utf8'),
    key: await readFile(join(dev.dir, 'tls.key'), 'utf8'),
  };
  const sample = await signJwtSvid(
    buildClaims({
      issuer: dev.issuerUrl,
      subject: svid.spiffeId,
      audience: AUDIENCE,
      nowMs: Date.now(),
      lifetimeSeconds: 3600,
      svidNotAfterMs: svid.notAfter.getTime(),
    }),
    key,
  );
  const canned = JSON.stringify({
    access_token: sample,
    issued_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    token_type: 'N_A',
    expires_in: 3600,
    spiffe_id: svid.spiffeId,
  });
  const bare = createServer(
    { ...serving, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' },
    (req, res) => {
      req.resume();
      req.on('end', () =>
        res
          .writeHead(200, {
            'content-type': 'application/json',
            'cache-control': 'no-store',
            'content-length': Buffer.byteLength(canned),
          })
          .end(canned),
      );
    },
  );
  await new Promise<void>((r) => bare.listen(0, '127.0.0.1', r));
  globalThis.gc?.();
  const send = (m: ChildMessage): void => void process.send?.(m);
  send({
    type: 'ready',
    tokenUrl: dev.tokenUrl,
    bareUrl: `https://127.0.0.1:${(bare.address() as AddressInfo).port}/token`,
    caPem: ca.certPem,
    certPem: svid.certPem,
    keyPem: svid.keyPem,
    rss: process.memoryUsage().rss,
  });
  process.on('message', (m: { type: string; seconds?: number }) => {
    if (m.type === 'cpu') {
      const u = process.cpuUsage();
      send({ type: 'cpu', micros: u.user + u.system });
    } else if (m.type === 'sign') {
      void (async () => {
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        const until = t0 + (m.seconds ?? 5) * 1000;
        let count = 0;
        while (performance.now() < until) {
          await signJwtSvid(
            buildClaims({
              issuer: dev.issuerUrl,
              subject: svid.spiffeId,
              audience: AUDIENCE,
              nowMs: Date.now(),
              lifetimeSeconds: 3600,
              svidNotAfterMs: svid.notAfter.getTime(),
            }),
            key,
          );
          count++;
        }
        const cpu = process.cpuUsage(cpu0);
        send({ type: 'signed', count, wallMs: performance.now() - t0, cpuMicros: cpu.user + cpu.system });
      })();
    } else if (m.type === 'exit') {
      void Promise.all([dev.close(), new Promise<void>((r) => bare.close(() => r()))]).then(() => process.exit(0));
      bare.closeAllConnections();
    }
  });
}

// --------------------------------------------------------------------------------------------- parent
interface Load {
  label: string;
  rps: number;
  p50: number;
  p99: number;
  ok: number;
  failed: number;
  cpuSeconds: number;
  perCore: number;
}

async function parent(): Promise<void> {
  const self = fileURLToPath(import.meta.url);
  const results: Array<{ alg: Alg; sign: { rps: number; perCore: number }; loads: Load[]; rss: number }> = [];
  for (const alg of ['RS256', 'ES256'] as const) {
    const proc = fork(self, ['--child', alg], {
      execArgv: [
        '--expose-gc',
        ...(process.env['ISSUER_BENCH_PROFILE']
          ? ['--cpu-prof', `--cpu-prof-dir=${process.env['ISSUER_BENCH_PROFILE']}`]
          : []),
      ],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const next = <T extends ChildMessage['type']>(type: T): Promise<Extract<ChildMessage, { type: T }>> =>
      new Promise((resolve) => {
        const on = (m: ChildMessage): void => {
          if (m.type === type) {
            proc.off('message', on);
            resolve(m as Extract<ChildMessage, { type: T }>);
          }
        };
        proc.on('message', on);
      });
    const ready = await next('ready');
    const cpu = async (): Promise<number> => {
      const reply = next('cpu');
      proc.send({ type: 'cpu' });
      return (await reply).micros;
    };
    // Interleaved rounds, medians reported: the machine is shared, so a single run can be skewed.
    const runs = new Map<string, Load[]>();
    const signs: Array<{ rps: number; perCore: number }> = [];
    const measure = async (label: string, url: string, reuse: boolean): Promise<void> => {
      await runLoad(url, ready, reuse, 1); // warm-up
      const c0 = await cpu();
      const r = await runLoad(url, ready, reuse, seconds);
      const cpuSeconds = ((await cpu()) - c0) / 1e6;
      runs.set(label, [...(runs.get(label) ?? []), { label, ...r, cpuSeconds, perCore: r.ok / cpuSeconds }]);
    };
    const only = process.env['ISSUER_BENCH_ONLY']; // e.g. "issuer,keep-alive" while profiling
    for (let round = 0; round < rounds; round++) {
      const signedP = next('signed');
      proc.send({ type: 'sign', seconds });
      const signed = await signedP;
      signs.push({ rps: (signed.count / signed.wallMs) * 1000, perCore: signed.count / (signed.cpuMicros / 1e6) });
      for (const reuse of [true, false]) {
        for (const [name, url] of [
          ['issuer POST /token', ready.tokenUrl],
          ['bare mTLS server, same bytes', ready.bareUrl],
        ] as const) {
          const label = `${name}, ${reuse ? 'keep-alive' : 'new connection each'}`;
          if (only && !only.split(',').every((word) => label.includes(word))) continue;
          await measure(label, url, reuse);
        }
      }
    }
    const loads = [...runs.values()].map((list) => medianLoad(list));
    results.push({
      alg,
      sign: { rps: median(signs.map((x) => x.rps)), perCore: median(signs.map((x) => x.perCore)) },
      loads,
      rss: ready.rss,
    });
    proc.send({ type: 'exit' });
    await new Promise((r) => proc.once('exit', r));
  }
  const bare = await bareNodeRss();
  print(results, bare);
}

async function runLoad(
  url: string,
  ready: Ready,
  reuse: boolean,
  durationS: number,
): Promise<{ rps: number; p50: number; p99: number; ok: number; failed: number }> {
  const body = new URLSearchParams({
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
    subject_token_type: 'urn:ietf:params:oauth:token-type:tls-client-auth',
    audience: AUDIENCE,
  }).toString();
  const latencies: number[] = [];
  let ok = 0;
  let failed = 0;
  const t0 = performance.now();
  const until = t0 + durationS * 1000;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      // One connection per client; without reuse each request opens (and handshakes) a new one.
      const agent = new Agent({
        connections: 1,
        connect: { ca: ready.caPem, cert: ready.certPem, key: ready.keyPem, maxCachedSessions: 0 },
      });
      try {
        while (performance.now() < until) {
          const start = performance.now();
          try {
            const res = await request(url, {
              method: 'POST',
              dispatcher: agent,
              reset: !reuse,
              headers: { 'content-type': 'application/x-www-form-urlencoded' },
              body,
            });
            await res.body.text();
            if (res.statusCode === 200) ok++;
            else failed++;
          } catch {
            failed++;
          }
          latencies.push(performance.now() - start);
        }
      } finally {
        await agent.close();
      }
    }),
  );
  const wall = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0;
  return { rps: ok / wall, p50: pct(0.5), p99: pct(0.99), ok, failed };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

/** The run with the median per-core rate (its own latencies kept together). */
function medianLoad(list: readonly Load[]): Load {
  const sorted = [...list].sort((a, b) => a.perCore - b.perCore);
  return sorted[Math.floor(sorted.length / 2)] ?? (list[0] as Load);
}

function bareNodeRss(): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn(
      process.execPath,
      [
        '-e',
        'setTimeout(() => { globalThis.gc?.(); process.stdout.write(String(process.memoryUsage().rss)) }, 500)',
        '--expose-gc',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', () => resolve(Number(out)));
    p.on('error', reject);
  });
}

function print(
  results: Array<{ alg: Alg; sign: { rps: number; perCore: number }; loads: Load[]; rss: number }>,
  bareRss: number,
): void {
  const f = (n: number, d = 0): string => n.toFixed(d);
  console.log(
    `\nissuer token endpoint, ${CONCURRENCY} concurrent mTLS clients (undici), ${seconds} s per run, median of ${rounds} interleaved rounds, Node ${process.version}, ${await_cpus()} CPUs\n`,
  );
  for (const r of results) {
    console.log(`${r.alg}: jose sign loop ${f(r.sign.rps)} tokens/s wall, ${f(r.sign.perCore)} tokens per CPU-second`);
    console.log(
      '  run                                                  tokens/s   p50 ms   p99 ms   per CPU-s   vs jose/core   failed',
    );
    for (const l of r.loads) {
      console.log(
        `  ${l.label.padEnd(52)} ${f(l.rps).padStart(8)} ${f(l.p50, 2).padStart(8)} ${f(l.p99, 2).padStart(8)} ${f(l.perCore).padStart(11)} ${f(l.perCore / r.sign.perCore, 2).padStart(14)} ${String(l.failed).padStart(8)}`,
      );
    }
    console.log(
      `  idle RSS of the issuer process ${f(r.rss / 1048576, 1)} MB (bare Node ${f(bareRss / 1048576, 1)} MB)\n`,
    );
  }
}

function await_cpus(): number {
  return (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 0;
}
