// Giving back heap the program no longer uses. V8 collects garbage as allocation goes on, so a process that stops
// allocating keeps its heap at its last high-water mark, with pages freed inside it that V8 holds for later: a
// sidecar at idle allocates almost nothing, so it stays at the size its start-up (modules compiled, config parsed,
// schemas built, the first exchanges) or its last burst of requests left. One collection of the kind V8 runs when
// memory is low (it compacts, then returns the freed pages to the system) brings resident memory down to what the
// program holds: about 2.5 MB less with AWS and 3 MB with three clouds after start-up, 10 to 15 MB after a burst
// (README.md "Measured"), for one full collection of a ~20 MB heap, a pause of a few to a few tens of ms.
//
// When: once a serving program is up (main.ts), and once a burst of requests is over (`touch` on each request;
// quiet for `quietMs`, and the heap grew by `growthBytes` since the last release). An idle process arms no timer.
//
// Node has no API for it. V8's gc extension has ("last-resort" flavour), and V8 installs it in contexts created
// after --expose-gc is set: the flag is set for one new context only, and the program's own global never gets `gc`.
//
// Compiled code: a burst's release keeps it all (the request paths run again at the next burst). The start-up release
// drops the bytecode and baseline code of every function not running at that moment. Nothing that runs often has run
// by then: the request paths have not run at all, and what has (module bodies, the command line, the config's parser
// and schema, the first exchange) runs once, or again at a refresh minutes to hours later, compiled again then. With
// AWS that is ~1.1 MB of bytecode, and what it kept alive: ~3 MB less heap in use (README.md "Measured").
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Clock, TimerHandle } from '../base/clock.ts';
import type { Logger } from './logger.ts';

interface GcOptions {
  readonly type: 'major';
  readonly execution: 'sync';
  readonly flavor: 'last-resort';
}

export interface Released {
  /** V8's heap pages resident before and after the collection, in bytes. */
  readonly heapBefore: number;
  readonly heapAfter: number;
}

/** V8's heap pages resident now, in bytes. */
export function residentHeap(): number {
  return getHeapStatistics().total_physical_size;
}

/** What a release does with compiled code: keep it all, or drop that of every function not running now. */
export type CompiledCode = 'keep' | 'drop';

/** V8's default: a function's bytecode goes once it has not run through this many full collections. */
const BYTECODE_OLD_AGE = 6;

/** Runs V8's low-memory collection once, synchronously. */
export function releaseHeap(code: CompiledCode = 'keep'): Released {
  const heapBefore = residentHeap();
  setFlagsFromString('--expose-gc');
  let gc: (options: GcOptions) => void;
  try {
    gc = runInNewContext('gc') as typeof gc;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
  // Kept: a low-memory collection also flushes the bytecode of functions that have not run lately, which a sidecar
  // that serves in bursts then compiles and optimizes again at each one (the AWS endpoint's throughput ratio fell to
  // ~0.3 of bare node:http with it, ~0.44 without; README.md "Measured"). Dropped: every function's that has not run
  // since the last full collection, so every function's but those running now, baseline code included.
  if (code === 'keep') setFlagsFromString('--no-flush-bytecode');
  else {
    setFlagsFromString('--bytecode-old-age=1');
    setFlagsFromString('--flush-baseline-code');
  }
  try {
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  } finally {
    setFlagsFromString('--flush-bytecode');
    setFlagsFromString(`--bytecode-old-age=${BYTECODE_OLD_AGE}`);
    setFlagsFromString('--no-flush-baseline-code');
  }
  return { heapBefore, heapAfter: residentHeap() };
}

export interface HeapReleaseOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  /** How long without a request ends a burst (default 10 s). */
  readonly quietMs?: number;
  /** How much the heap must have grown since the last release for a burst's release to be worth its pause. */
  readonly growthBytes?: number;
  /** For tests: the collection and the heap's size. */
  readonly release?: (code: CompiledCode) => Released;
  readonly heapSize?: () => number;
}

export const DEFAULT_QUIET_MS = 10_000;
export const DEFAULT_GROWTH_BYTES = 4 * 1024 * 1024;

/** One per process: releases on demand (`now`) and after each burst of requests (`touch`). */
export class HeapRelease {
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #quietMs: number;
  readonly #growthBytes: number;
  readonly #release: (code: CompiledCode) => Released;
  readonly #heapSize: () => number;
  /** The heap's size after the last release (or when made): a burst is measured from here. */
  #floor: number;
  #requested = false;
  #timer: TimerHandle | undefined;
  #stopped = false;

  constructor(options: HeapReleaseOptions) {
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#quietMs = options.quietMs ?? DEFAULT_QUIET_MS;
    this.#growthBytes = options.growthBytes ?? DEFAULT_GROWTH_BYTES;
    this.#release = options.release ?? releaseHeap;
    this.#heapSize = options.heapSize ?? residentHeap;
    this.#floor = this.#heapSize();
  }

  /** Releases at once; `reason` is fixed text for the debug log line. */
  now(reason: string, code: CompiledCode = 'keep'): Released {
    const released = this.#release(code);
    this.#floor = released.heapAfter;
    this.#logger.debug(
      { reason, heapBeforeBytes: released.heapBefore, heapAfterBytes: released.heapAfter },
      'released unused heap',
    );
    return released;
  }

  /** A request arrived: a release, if the heap grew, waits until `quietMs` pass without one. Cheap: once per request. */
  readonly touch = (): void => {
    this.#requested = true;
    if (this.#timer === undefined && !this.#stopped) this.#arm();
  };

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(): void {
    this.#requested = false;
    this.#timer = this.#clock.setTimeout(() => this.#windowEnded(), this.#quietMs);
  }

  #windowEnded(): void {
    this.#timer = undefined;
    if (this.#stopped) return;
    if (this.#requested) {
      this.#arm();
      return;
    }
    if (this.#heapSize() - this.#floor >= this.#growthBytes) this.now('a burst of requests ended');
  }
}
