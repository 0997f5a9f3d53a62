// The ops listener's process metrics, as an operator scrapes them and as an idle pod pays for them: every
// value is computed at scrape time, and between scrapes the process sleeps (no sampler waking it up).

import assert from 'node:assert/strict';
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const ROOT = new URL('../../', import.meta.url).pathname;

/**
 * The child: the sidecar's Metrics with the process metrics on, behind the real ops listener. It prints
 * its URL; asked `idle`, it counts its voluntary context switches (each one a thread that went to sleep
 * and was woken again) over one second in which nobody talks to it, and sends the count back.
 */
const CHILD = `
import { Metrics } from ${JSON.stringify(join(ROOT, 'src/ops/metrics.ts'))};
import { startOpsServer } from ${JSON.stringify(join(ROOT, 'src/ops/ops-server.ts'))};
const metrics = new Metrics({ defaultMetrics: true });
const ops = await startOpsServer({ host: '127.0.0.1', port: 0, metrics, readiness: () => ({ ready: true, reasons: [] }) });
process.on('message', (m) => {
  if (m === 'idle') {
    const before = process.resourceUsage().voluntaryContextSwitches;
    setTimeout(() => process.send({ wakeups: process.resourceUsage().voluntaryContextSwitches - before }), 1000);
  } else if (m === 'stop') {
    ops.close().then(() => process.exit(0));
  }
});
process.send({ url: ops.url });
`;

function nextMessage<T>(child: ChildProcess, pick: (m: unknown) => T | undefined): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the child did not answer within 30 s')), 30_000);
    const onMessage = (m: unknown): void => {
      const value = pick(m);
      if (value === undefined) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(value);
    };
    const onExit = (code: number | null): void => {
      clearTimeout(timer);
      reject(new Error(`the child exited (${code})`));
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

test('process metrics are computed when scraped, and an idle process with them is not woken up', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'process-metrics-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const script = join(dir, 'child.mts');
  await writeFile(script, CHILD);
  const child = fork(script, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  t.after(() => child.kill());
  const url = await nextMessage(child, (m) => (m && typeof m === 'object' && 'url' in m ? String(m.url) : undefined));

  const scrape = async (): Promise<string> => {
    const res = await fetch(`${url}/metrics`);
    assert.equal(res.status, 200);
    return res.text();
  };
  const value = (text: string, name: string): number => {
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
    assert.ok(m?.[1], `${name} is in /metrics`);
    return Number(m[1]);
  };
  const first = await scrape();
  for (const name of [
    'process_cpu_seconds_total',
    'process_resident_memory_bytes',
    'process_start_time_seconds',
    'process_open_fds',
    'nodejs_heap_size_used_bytes',
    'nodejs_active_handles_total',
  ]) {
    assert.ok(value(first, name) > 0, `${name} > 0`);
  }
  assert.match(first, /^nodejs_version_info\{version="v24\./m);
  assert.match(first, /^# TYPE nodejs_gc_duration_seconds histogram$/m);
  assert.ok(value(first, 'nodejs_eventloop_lag_seconds') >= 0);
  const second = await scrape();
  const utilization = value(second, 'nodejs_eventloop_utilization_ratio');
  assert.ok(utilization >= 0 && utilization <= 1, `utilization ${utilization} is a ratio`);

  // A sampler on a timer (an event-loop-delay monitor at 10 ms wakes the process ~100 times a second)
  // shows here; a process that only waits for its listener and one 1 s timer is woken a handful of times.
  child.send('idle');
  const idle = await nextMessage(child, (m) =>
    m && typeof m === 'object' && 'wakeups' in m ? Number(m.wakeups) : undefined,
  );
  assert.ok(idle < 20, `${idle} wake-ups in one idle second`);
  child.send('stop');
});
