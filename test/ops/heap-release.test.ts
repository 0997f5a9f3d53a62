// Giving back unused heap (src/ops/heap-release.ts): one full collection that returns freed pages, run without
// exposing `gc` to the program (in a child of its own, so that the suite's other tests and the test runner's own
// allocations do not make the figures); and when: on demand, and once a burst of requests is over, never at idle.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { ManualClock } from '../../src/base/clock.ts';
import { type CompiledCode, HeapRelease, type Released } from '../../src/ops/heap-release.ts';
import { createLogger } from '../../src/ops/logger.ts';

const MODULE = new URL('../../src/ops/heap-release.ts', import.meta.url).href;

const CHILD = `
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { runInNewContext } from 'node:vm';
import { releaseHeap } from ${JSON.stringify(MODULE)};
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
const released = releaseHeap();
const again = releaseHeap();
await new Promise((resolve) => setTimeout(resolve, 50));
observer.disconnect();
process.stdout.write(JSON.stringify({
  released, again, majors: majors.length,
  gcOnGlobal: typeof globalThis.gc, gcInLaterContext: runInNewContext('typeof gc'),
}));
`;

test('one low-memory collection gives back the heap a program no longer uses, and no `gc` is exposed to the program', () => {
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

const CODE_CHILD = `
import { getHeapCodeStatistics } from 'node:v8';
import { releaseHeap } from ${JSON.stringify(MODULE)};
// Start-up work: 400 functions that each ran once (compiled to bytecode), as a config parser's or a module's body.
const fns = Array.from({ length: 400 }, (_, n) =>
  new Function('x', Array.from({ length: 40 }, (_, i) => 'x = (x * ' + (i + 3) + ' + ' + n + ') % 1000003;').join('\\n') + ' return x;'));
const sum = () => fns.reduce((acc, f) => (acc + f(7)) % 1000003, 0);
const first = sum();
const bytecode = () => getHeapCodeStatistics().bytecode_and_metadata_size;
const start = bytecode();
releaseHeap('keep');
const kept = bytecode();
releaseHeap('drop');
const dropped = bytecode();
const again = sum();
process.stdout.write(JSON.stringify({ start, kept, dropped, recompiled: bytecode(), same: again === first }));
`;

test('the start-up release drops the bytecode of functions that ran during start-up, and they still run after', () => {
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', CODE_CHILD], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(child.status, 0, `the child failed: ${child.stderr}`);
  const out = JSON.parse(child.stdout) as {
    start: number;
    kept: number;
    dropped: number;
    recompiled: number;
    same: boolean;
  };
  const kb = (bytes: number): string => `${(bytes / 1024).toFixed(0)} KB`;
  // 400 functions of 40 statements: ~100 KB of bytecode at least, beside the runtime's own.
  assert.ok(out.kept >= out.start * 0.9, `'keep' kept the code: ${kb(out.start)} → ${kb(out.kept)}`);
  assert.ok(
    out.kept - out.dropped >= 100 * 1024,
    `'drop' dropped ${kb(out.kept - out.dropped)} (${kb(out.kept)} → ${kb(out.dropped)}): the start-up code stayed`,
  );
  assert.equal(out.same, true, 'the dropped functions give the same results when called again');
  assert.ok(out.recompiled - out.dropped >= 100 * 1024, 'called again, they were compiled again');
});

const MB = 1024 * 1024;

/** A HeapRelease on a manual clock, over a heap whose size the test sets; counts the collections. */
function harness(quietMs = 10_000) {
  const clock = new ManualClock();
  const heap = { size: 20 * MB };
  const collections: Released[] = [];
  const codes: CompiledCode[] = [];
  const chunks: string[] = [];
  const destination = new Writable({
    write: (c: Buffer, _e, done) => {
      chunks.push(c.toString('utf8'));
      done();
    },
  });
  const logger = createLogger({ level: 'debug', destination });
  const lines = (): Array<Record<string, unknown>> =>
    chunks
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const release = new HeapRelease({
    clock,
    logger,
    quietMs,
    growthBytes: 4 * MB,
    heapSize: () => heap.size,
    release: (code) => {
      codes.push(code);
      const r = { heapBefore: heap.size, heapAfter: 15 * MB };
      heap.size = r.heapAfter;
      collections.push(r);
      return r;
    },
  });
  return { clock, heap, collections, codes, release, lines };
}

test('after a burst of requests, the heap it grew is given back once the requests have stopped for quietMs', async () => {
  const { clock, heap, collections, codes, release, lines } = harness();
  release.now('start-up', 'drop');
  assert.equal(collections.length, 1);
  assert.equal(clock.pendingTimers(), 0, 'idle: no timer armed');

  // A burst over 25 s: a request every second, the heap growing by 10 MB.
  for (let s = 0; s < 25; s++) {
    release.touch();
    heap.size += 0.4 * MB;
    await clock.advance(1_000);
  }
  assert.equal(collections.length, 1, 'nothing while requests keep coming');
  await clock.advance(9_000);
  assert.equal(collections.length, 1, 'not before the last request is quietMs old');
  await clock.advance(11_000);
  assert.equal(collections.length, 2, 'given back once the burst is over');
  assert.deepEqual(codes, ['drop', 'keep'], "a burst's release keeps the compiled request paths");
  assert.equal(clock.pendingTimers(), 0, 'idle again: no timer armed');
  assert.ok(
    lines().some((l) => l.msg === 'released unused heap' && l['reason'] === 'a burst of requests ended'),
    'a debug line says why',
  );
});

test('requests that leave the heap as it was cause no collection, and stop ends the waiting', async () => {
  const { clock, heap, collections, release } = harness();
  release.now('start-up');
  release.touch();
  heap.size += 1 * MB;
  await clock.advance(30_000);
  assert.equal(collections.length, 1, 'a single request growing the heap by 1 MB is not worth a pause');

  release.touch();
  heap.size += 8 * MB;
  release.stop();
  await clock.advance(60_000);
  assert.equal(collections.length, 1, 'stopped: no collection');
  release.touch();
  assert.equal(clock.pendingTimers(), 0, 'stopped: no timer armed');
});
