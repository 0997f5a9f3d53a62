// Give back what starting up left in the heap, once, when a serving program is up. Starting up allocates far more
// than it keeps (modules compiled, config parsed, schemas built, the first exchanges), and V8 collects that garbage
// only as allocation goes on: a sidecar at idle allocates almost nothing, so its heap stays at start-up's high-water
// mark, with pages freed inside it that V8 keeps for later. One collection of the kind V8 runs when memory is low
// (it compacts, then returns the freed pages to the system) brings resident memory down to what the program holds:
// about 2.7 MB less with AWS, 3.7 MB with three clouds, for one full collection of a ~20 MB heap
// (README.md "Measured").
//
// Node has no API for it. V8's gc extension has ("last-resort" flavour), and V8 installs it in contexts created
// after --expose-gc is set: the flag is set for one new context only, and the program's own global never gets `gc`.
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

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

/** Runs V8's low-memory collection once, synchronously; a pause of a few milliseconds to a few tens. */
export function releaseStartupMemory(): Released {
  const heapBefore = getHeapStatistics().total_physical_size;
  setFlagsFromString('--expose-gc');
  let gc: (options: GcOptions) => void;
  try {
    gc = runInNewContext('gc') as typeof gc;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  return { heapBefore, heapAfter: getHeapStatistics().total_physical_size };
}
