// Idle CPU of the sidecar as production runs it (bin/spiffe-connector.js → the built dist/, with the
// image's NODE_OPTIONS): AWS only and all three clouds, each started, waited for until /readyz answers
// 200, left alone for `settle` seconds, then watched for `seconds` seconds beside a bare Node process
// watched over the same window. Reports CPU time (user + system, ms per minute: /proc/<pid>/stat in 10 ms ticks, and
// exactly, every thread's schedstat)
// and wake-ups per second (voluntary context switches of every thread, from /proc/<pid>/task/*/status).
// Target: ≤ 10 ms CPU per minute. Linux only. Run `npm run build` first.
// The default settle leaves out what follows start-up once: the sidecar gives back start-up's heap when ready
// (src/ops/heap-release.ts), and V8's memory reducer answers that collection with two more ~8 s later, ~30 ms of
// CPU in all; `--settle 5` shows them (README.md "Measured").
// Usage: node bench/idle-cpu.ts [seconds, default 60] [rounds, default 1] [--settle S, default 15]
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { type ChildNode, cpuMsOf, median, sidecarForm, sleep, spawnNode } from './lib.ts';
import { type BenchCloud, formLaunch, startBenchWorld } from './world.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { settle: { type: 'string' } } });
const seconds = Number(positionals[0] ?? 60);
const rounds = Number(positionals[1] ?? 1);
const settleSeconds = Number(values.settle ?? 15);
if (!existsSync('/proc/self/stat')) throw new Error('idle-cpu reads /proc: Linux only');
const form = await sidecarForm();
if (!existsSync(form.entry)) throw new Error(`no ${form.entry}`);

/**
 * CPU time of every thread of the process, in ms, exact: the first field of /proc/<pid>/task/<tid>/schedstat is the
 * time the thread has run, in ns (/proc/<pid>/stat counts 10 ms ticks, too coarse for a 10 ms target).
 */
async function exactCpuMsOf(pid: number): Promise<number> {
  let ns = 0;
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    const schedstat = await readFile(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').catch(() => '0');
    ns += Number(schedstat.split(' ')[0]);
  }
  return ns / 1e6;
}

/** Voluntary context switches summed over the process's threads (each is a thread going to sleep: a wake-up). */
async function wakeupsOf(pid: number): Promise<number> {
  let total = 0;
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    const status = await readFile(`/proc/${pid}/task/${tid}/status`, 'utf8').catch(() => '');
    total += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  }
  return total;
}

interface Watched {
  readonly label: string;
  readonly node: ChildNode;
}
interface Figures {
  readonly cpuMsPerMinute: number;
  readonly exactCpuMsPerMinute: number;
  readonly wakeupsPerSecond: number;
}

const SETS: ReadonlyArray<{ label: string; clouds: readonly BenchCloud[] }> = [
  { label: 'AWS', clouds: ['aws'] },
  { label: 'AWS + Google + Azure', clouds: ['aws', 'gcp', 'azure'] },
];

const world = await startBenchWorld();
const results = new Map<string, Figures[]>();
try {
  for (let round = 0; round < rounds; round++) {
    const watched: Watched[] = [
      { label: 'bare node (setInterval 2^30 ms)', node: spawnNode(['-e', 'setInterval(() => {}, 1 << 30)']) },
    ];
    try {
      for (const [i, set] of SETS.entries()) {
        const sidecar = await world.startSidecar(`idle-${round}-${i}`, set.clouds, formLaunch(form));
        watched.push({ label: `sidecar ${set.label}`, node: sidecar.node });
      }
      await sleep(settleSeconds * 1000);
      const before = await Promise.all(
        watched.map(async (w) => ({
          cpu: (await cpuMsOf(w.node.pid)) ?? Number.NaN,
          exact: await exactCpuMsOf(w.node.pid),
          wake: await wakeupsOf(w.node.pid),
        })),
      );
      const t0 = performance.now();
      await sleep(seconds * 1000);
      const after = await Promise.all(
        watched.map(async (w) => ({
          cpu: (await cpuMsOf(w.node.pid)) ?? Number.NaN,
          exact: await exactCpuMsOf(w.node.pid),
          wake: await wakeupsOf(w.node.pid),
        })),
      );
      const elapsed = (performance.now() - t0) / 1000;
      for (const [i, w] of watched.entries()) {
        const b = before[i];
        const a = after[i];
        if (!a || !b) continue;
        const figures = {
          cpuMsPerMinute: ((a.cpu - b.cpu) * 60) / elapsed,
          exactCpuMsPerMinute: ((a.exact - b.exact) * 60) / elapsed,
          wakeupsPerSecond: (a.wake - b.wake) / elapsed,
        };
        results.set(w.label, [...(results.get(w.label) ?? []), figures]);
      }
    } finally {
      await Promise.all(watched.map((w) => w.node.stop()));
    }
  }
  const range = (xs: number[], digits: number): string =>
    xs.length > 1 ? ` [${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}]` : '';
  console.log(
    `\nIdle CPU over ${seconds} s, ${settleSeconds} s after /readyz 200, ${rounds} round(s) (medians; min–max in brackets), Node ${process.version}`,
  );
  console.log(
    `sidecar: ${form.label}; CPU from /proc/<pid>/stat (10 ms ticks) and, exact, from every thread's schedstat; wake-ups = voluntary context switches of all threads`,
  );
  console.table(
    [...results].map(([label, rs]) => {
      const cpu = rs.map((r) => r.cpuMsPerMinute);
      const exact = rs.map((r) => r.exactCpuMsPerMinute);
      const wake = rs.map((r) => r.wakeupsPerSecond);
      return {
        process: label,
        'CPU ms/min': `${median(cpu).toFixed(0)}${range(cpu, 0)}`,
        'exact ms/min': `${median(exact).toFixed(1)}${range(exact, 1)}`,
        'wake-ups/s': `${median(wake).toFixed(1)}${range(wake, 1)}`,
        target: label.startsWith('sidecar') ? '≤ 10 ms/min' : '-',
      };
    }),
  );
} finally {
  await world.close();
}
