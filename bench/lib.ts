// What every benchmark shares: a bare node:http server serving given bytes (the baseline), autocannon
// runs (32 connections) in their own process, interleaved rounds and medians, the ratio to the
// baseline, and idle RSS of a child
// process beside a bare Node process. Run by hand, never in `npm test`.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freeLoopbackPort } from '../src/http/free-port.ts';

const require = createRequire(import.meta.url);

export interface LoadResult {
  readonly label: string;
  /** Mean requests per second. */
  readonly rps: number;
  /** Latency percentiles in milliseconds. */
  readonly p50: number;
  readonly p99: number;
  readonly requests: number;
  readonly non2xx: number;
  readonly errors: number;
  /** Server CPU time (user + system) per request in µs, when the server's pid is known (Linux). */
  readonly cpuUsPerRequest?: number;
}

export interface LoadOptions {
  readonly label: string;
  readonly url: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly connections?: number;
  readonly durationSeconds?: number;
}

/** A free TCP port on 127.0.0.1 (src/http/free-port.ts). */
export const freePort = freeLoopbackPort;

export interface ChildNode {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resident set size in bytes, from /proc (Linux) or ps. */
  rss(): Promise<number>;
  stop(): Promise<void>;
}

/** Starts Node 24 (this process's binary) with `args`; stdout/stderr are collected, not shown. */
export function spawnNode(
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): ChildNode & { output(): string } {
  const child = spawn(process.execPath, [...args], {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (c: Buffer) => (output += c.toString('utf8')));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString('utf8')));
  const pid = child.pid ?? 0;
  return {
    child,
    pid,
    output: () => output,
    rss: () => rssOf(pid),
    stop: () => stopChild(child),
  };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

export async function rssOf(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
    if (kb) return Number(kb) * 1024;
  } catch {
    // not Linux: ask ps
  }
  const out = await new Promise<string>((resolve) => {
    const ps = spawn('ps', ['-o', 'rss=', '-p', String(pid)]);
    let text = '';
    ps.stdout.on('data', (c: Buffer) => (text += c.toString()));
    ps.on('close', () => resolve(text));
  });
  return Number(out.trim()) * 1024;
}

/** What the benches start as the sidecar: an entry script and the NODE_OPTIONS it runs with (and the image's GLIBC_TUNABLES). */
export interface SidecarForm {
  /** Absolute path of the script node runs. */
  readonly entry: string;
  /** Node/V8 flags on node's command line, before the entry (flags NODE_OPTIONS does not accept). */
  readonly nodeArgs: readonly string[];
  readonly nodeOptions: string;
  readonly label: string;
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** A variable the runtime image sets (the Dockerfile's `ENV NAME=value`), so a bench runs what ships. */
async function imageVariable(name: string): Promise<string> {
  const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8');
  const m = new RegExp(`^ENV ${name}=(?:"([^"]*)"|(\\S+))`, 'm').exec(dockerfile);
  return m?.[1] ?? m?.[2] ?? '';
}

/** The NODE_OPTIONS the runtime image sets. */
export function imageNodeOptions(): Promise<string> {
  return imageVariable('NODE_OPTIONS');
}

/** glibc's malloc tuning as the image sets it (GLIBC_TUNABLES), or BENCH_GLIBC_TUNABLES ("" for none). */
export const GLIBC_TUNABLES = process.env['BENCH_GLIBC_TUNABLES'] ?? (await imageVariable('GLIBC_TUNABLES'));

/**
 * `env` as the image gives it to a program: NODE_OPTIONS replaced by `nodeOptions`, GLIBC_TUNABLES by
 * `glibcTunables` (the image's by default); each removed when empty.
 */
export function imageEnv(
  env: NodeJS.ProcessEnv,
  nodeOptions: string,
  glibcTunables = GLIBC_TUNABLES,
): NodeJS.ProcessEnv {
  const { NODE_OPTIONS: _, GLIBC_TUNABLES: __, ...rest } = env;
  return {
    ...rest,
    ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}),
    ...(glibcTunables ? { GLIBC_TUNABLES: glibcTunables } : {}),
  };
}

/**
 * The production form by default: bin/spiffe-connector.js (the image's entry point, which runs dist/ as
 * `npm run build` makes it) with the image's NODE_OPTIONS and GLIBC_TUNABLES. BENCH_ENTRY (a path from the repository root,
 * e.g. src/main.ts) and BENCH_NODE_OPTIONS override either; BENCH_NODE_ARGS adds flags to node's command
 * line (V8 flags NODE_OPTIONS refuses, e.g. --max-opt=2, for experiments).
 */
export async function sidecarForm(): Promise<SidecarForm> {
  const entry = process.env['BENCH_ENTRY'] ?? 'bin/spiffe-connector.js';
  const nodeOptions = process.env['BENCH_NODE_OPTIONS'] ?? (await imageNodeOptions());
  const nodeArgs = (process.env['BENCH_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
  if (entry === 'bin/spiffe-connector.js' && !existsSync(join(ROOT, 'dist/main.js')))
    throw new Error('no dist/main.js: run `npm run build` first (or set BENCH_ENTRY=src/main.ts)');
  return {
    entry: join(ROOT, entry),
    nodeArgs,
    nodeOptions,
    label: `${[...nodeArgs, entry].join(' ')}${nodeOptions ? ` with NODE_OPTIONS=${nodeOptions}` : ''}${GLIBC_TUNABLES ? ` GLIBC_TUNABLES=${GLIBC_TUNABLES}` : ''}`,
  };
}

/** `env` as the image gives it, with the form's NODE_OPTIONS. */
export function formEnv(form: SidecarForm, env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return imageEnv(env, form.nodeOptions);
}

const BARE_SERVER = `
const http = require('node:http');
const body = Buffer.from(process.env.BENCH_BODY_B64, 'base64');
const headers = JSON.parse(process.env.BENCH_HEADERS);
http.createServer((req, res) => { res.writeHead(200, headers); res.end(body); })
  .listen(0, '127.0.0.1', function () { process.stdout.write(JSON.stringify({ port: this.address().port }) + '\\n'); });
`;

/** A bare node:http server in its own process answering every request with `body` and `headers`. */
export async function startBareServer(
  body: Buffer | string,
  headers: Readonly<Record<string, string>>,
): Promise<ChildNode & { url: string }> {
  const node = spawnNode(['-e', BARE_SERVER], {
    env: {
      ...process.env,
      BENCH_BODY_B64: Buffer.from(body).toString('base64'),
      BENCH_HEADERS: JSON.stringify(headers),
    },
  });
  const port = await waitFor(() => {
    const m = /\{"port":(\d+)\}/.exec(node.output());
    return m ? Number(m[1]) : undefined;
  }, 'the bare server to listen');
  return { ...node, url: `http://127.0.0.1:${port}` };
}

/**
 * Idle RSS of a bare node:http server (same binary, default flags) listening on 127.0.0.1 that has answered one
 * request, as a sidecar at idle has answered its readiness probe: the baseline the idle-memory targets are set
 * against. Read `settleMs` after that request.
 */
export async function bareServerRss(settleMs = 2_000): Promise<number> {
  const bare = await startBareServer('ok', { 'content-type': 'text/plain' });
  try {
    const answer = await fetch(bare.url);
    if (answer.status !== 200) throw new Error(`the bare server answered ${answer.status}`);
    await answer.arrayBuffer();
    await sleep(settleMs);
    return await bare.rss();
  } finally {
    await bare.stop();
  }
}

/** Idle RSS of a bare Node process (same binary) running no server, measured after `settleMs`. */
export async function bareNodeRss(settleMs = 2_000): Promise<number> {
  const node = spawnNode(['-e', 'setInterval(() => {}, 1 << 30)']);
  await sleep(settleMs);
  const rss = await node.rss();
  await node.stop();
  return rss;
}

/** Runs autocannon (its own process, so it does not share a core with the bench's servers). */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const cli = require.resolve('autocannon/autocannon.js');
  const args = [cli, '-j', '-n', '-c', String(options.connections ?? 32), '-d', String(options.durationSeconds ?? 10)];
  for (const [k, v] of Object.entries(options.headers ?? {})) args.push('-H', `${k}=${v}`);
  args.push(options.url);
  const node = spawnNode(args);
  const code = await new Promise<number | null>((resolve) => node.child.once('exit', resolve));
  const line = node
    .output()
    .split('\n')
    .find((l) => l.startsWith('{'));
  if (code !== 0 || !line) throw new Error(`autocannon failed (${code}): ${node.output().slice(0, 500)}`);
  const parsed: unknown = JSON.parse(line);
  const r = parsed as {
    requests?: { average?: unknown; total?: unknown };
    latency?: { p50?: unknown; p99?: unknown };
    non2xx?: unknown;
    errors?: unknown;
  };
  const num = (v: unknown): number => (typeof v === 'number' ? v : Number.NaN);
  return {
    label: options.label,
    rps: num(r.requests?.average),
    p50: num(r.latency?.p50),
    p99: num(r.latency?.p99),
    requests: num(r.requests?.total),
    non2xx: num(r.non2xx),
    errors: num(r.errors),
  };
}

export interface Target {
  readonly label: string;
  readonly url: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** The serving process, to measure its CPU time per request (steadier than req/s on a busy machine). */
  readonly pid?: number;
}

/**
 * Loads every target in turn, `rounds` times (interleaved, so a noisy neighbour hurts all alike), and
 * returns per target the median req/s, p50 and p99 over the rounds; non-2xx and errors are summed.
 */
export async function compare(
  targets: readonly Target[],
  options: { rounds?: number; durationSeconds?: number; connections?: number } = {},
): Promise<LoadResult[]> {
  const runs = new Map<string, LoadResult[]>(targets.map((t) => [t.label, []]));
  for (let round = 0; round < (options.rounds ?? 3); round++) {
    for (const target of targets) {
      const cpuBefore = target.pid ? await cpuMsOf(target.pid) : undefined;
      const result = await runLoad({
        ...target,
        ...(options.durationSeconds ? { durationSeconds: options.durationSeconds } : {}),
        ...(options.connections ? { connections: options.connections } : {}),
      });
      const cpuAfter = target.pid ? await cpuMsOf(target.pid) : undefined;
      const cpu =
        cpuBefore !== undefined && cpuAfter !== undefined && result.requests > 0
          ? { cpuUsPerRequest: ((cpuAfter - cpuBefore) * 1000) / result.requests }
          : {};
      runs.get(target.label)?.push({ ...result, ...cpu });
    }
  }
  return targets.map((t) => {
    const rs = runs.get(t.label) ?? [];
    return {
      label: t.label,
      rps: median(rs.map((r) => r.rps)),
      p50: median(rs.map((r) => r.p50)),
      p99: median(rs.map((r) => r.p99)),
      requests: rs.reduce((n, r) => n + r.requests, 0),
      non2xx: rs.reduce((n, r) => n + r.non2xx, 0),
      errors: rs.reduce((n, r) => n + r.errors, 0),
      ...(rs.every((r) => r.cpuUsPerRequest !== undefined) && rs.length > 0
        ? { cpuUsPerRequest: median(rs.map((r) => r.cpuUsPerRequest ?? 0)) }
        : {}),
    };
  });
}

/** CPU time (user + system) a process has used, in ms, from /proc/<pid>/stat (Linux; undefined elsewhere). */
export async function cpuMsOf(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the command: state is field 3, utime 14 and stime 15 (1-based in proc(5)), in clock ticks (100/s).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? Number.NaN) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/** Prints one row per result with its throughput ratio to `baseline`. */
export function printLoad(results: readonly LoadResult[], baseline: LoadResult): void {
  const rows = results.map((r) => ({
    target: r.label,
    'req/s': Math.round(r.rps),
    'p50 ms': r.p50,
    'p99 ms': r.p99,
    'vs bare': (r.rps / baseline.rps).toFixed(2),
    'CPU µs/req': r.cpuUsPerRequest === undefined ? '-' : r.cpuUsPerRequest.toFixed(1),
    'vs bare (CPU)':
      r.cpuUsPerRequest === undefined || baseline.cpuUsPerRequest === undefined
        ? '-'
        : (baseline.cpuUsPerRequest / r.cpuUsPerRequest).toFixed(2),
    'non-2xx': r.non2xx,
    errors: r.errors,
  }));
  console.table(rows);
}

export function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `probe` every 20 ms until it returns a value (gives up after `limitMs`). */
export async function waitFor<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  what: string,
  limitMs = 30_000,
): Promise<T> {
  const start = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() - start > limitMs) throw new Error(`gave up waiting for ${what}`);
    await sleep(20);
  }
}
