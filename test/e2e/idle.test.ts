// An idle sidecar sleeps: once it holds credentials and nobody calls it, nothing in it (a metrics sampler,
// a poller, a watcher of a busy directory) keeps waking it up. A per-pod sidecar pays every wake-up once
// per pod. Counted as the voluntary context switches of all its threads (Linux /proc), over two seconds.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { startAwsJwtWorld } from '../helpers/aws-jwt-world.ts';
import { startSidecar, waitFor200 } from '../helpers/sidecar.ts';

/** Voluntary context switches summed over the process's threads: each is a thread that slept and was woken. */
async function wakeups(pid: number): Promise<number> {
  let total = 0;
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    const status = await readFile(`/proc/${pid}/task/${tid}/status`, 'utf8').catch(() => '');
    total += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  }
  return total;
}

test('an idle sidecar holding credentials is not woken up', {
  skip: existsSync('/proc/self/task') ? false : 'counts wake-ups in /proc (Linux only)',
}, async (t) => {
  const { configFile, opsPort } = await startAwsJwtWorld(t, 'e2e-idle-');
  const sidecar = await startSidecar(configFile);
  t.after(() => sidecar.stop());
  await waitFor200(`http://127.0.0.1:${opsPort}/readyz`);
  // Scraped once, as Prometheus would, so that the process metrics are set up and collected.
  assert.equal((await fetch(`http://127.0.0.1:${opsPort}/metrics`)).status, 200);
  const pid = sidecar.child.pid ?? 0;

  // Settle (the connections just used close, start-up work ends), then count over two quiet seconds.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const before = await wakeups(pid);
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  const woken = (await wakeups(pid)) - before;
  t.diagnostic(`${woken} wake-ups in two idle seconds`);
  // A sampler on a 10 ms timer alone makes ~200 here; an idle Node process makes none.
  assert.ok(woken < 30, `${woken} wake-ups in two idle seconds:\n${sidecar.logs()}`);
});
