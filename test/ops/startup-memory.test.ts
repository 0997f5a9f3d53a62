// Giving back start-up's heap (src/ops/startup-memory.ts): one full collection that returns freed pages, run
// without exposing `gc` to the program. Run in a child of its own, so that the suite's other tests (and the test
// runner's own allocations) do not make the figures.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

const MODULE = new URL('../../src/ops/startup-memory.ts', import.meta.url).href;

const CHILD = `
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { runInNewContext } from 'node:vm';
import { releaseStartupMemory } from ${JSON.stringify(MODULE)};
// What a start-up leaves: old-generation pages mostly of dropped objects, each still holding a few that live on
// (here 1 in 16), which a collection frees only by moving those few together.
let dropped = Array.from({ length: 64 }, () => Array.from({ length: 16_384 }, (_, i) => ({ i })));
await new Promise((resolve) => setImmediate(resolve));
globalThis.survivors = dropped.flatMap((list) => list.filter((_, i) => i % 16 === 0));
dropped = undefined;
const majors = [];
const observer = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) if (entry.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors.push(entry);
});
observer.observe({ entryTypes: ['gc'] });
const released = releaseStartupMemory();
const again = releaseStartupMemory();
await new Promise((resolve) => setTimeout(resolve, 50));
observer.disconnect();
process.stdout.write(JSON.stringify({
  released, again, majors: majors.length,
  gcOnGlobal: typeof globalThis.gc, gcInLaterContext: runInNewContext('typeof gc'),
}));
`;

test('one low-memory collection gives back the heap start-up left, and no `gc` is exposed to the program', () => {
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', CHILD], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(child.status, 0, `the child failed: ${child.stderr}`);
  const out = JSON.parse(child.stdout) as {
    released: { heapBefore: number; heapAfter: number };
    again: { heapBefore: number; heapAfter: number };
    majors: number;
    gcOnGlobal: string;
    gcInLaterContext: string;
  };
  const mb = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MB`;
  // ~60 MB of pages of which 1 object in 16 lives on: an ordinary full collection gives back about a sixth of it
  // (pages it sweeps stay with V8), this one nearly all of it.
  assert.ok(
    out.released.heapAfter < out.released.heapBefore / 2,
    `the heap went from ${mb(out.released.heapBefore)} to ${mb(out.released.heapAfter)}: the dropped objects' pages were not given back`,
  );
  assert.ok(out.majors >= 2, `${out.majors} full collections seen: one per call at least`);
  assert.ok(out.again.heapAfter <= out.released.heapAfter + 1048576, 'a second call finds nothing more to give back');
  assert.equal(out.gcOnGlobal, 'undefined', 'the program never gets a global gc');
  assert.equal(out.gcInLaterContext, 'undefined', 'contexts made afterwards have no gc either');
});
