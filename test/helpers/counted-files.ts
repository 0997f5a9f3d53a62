// The disk as a file source reads it, counted: a reader and a stat of the real files that count their calls, the
// stat reporting every file's times `agoMs` earlier than they are (settled, src/files/file-stamp.ts, without waiting).
import { readFile, stat } from 'node:fs/promises';
import type { StatBig } from '../../src/files/file-stamp.ts';

export function countedFiles(agoMs: number): {
  readonly readFile: (path: string) => Promise<string>;
  readonly stat: StatBig;
  reads(): number;
  stats(): number;
} {
  let reads = 0;
  let stats = 0;
  const shift = BigInt(agoMs) * 1_000_000n;
  return {
    readFile: (path) => {
      reads += 1;
      return readFile(path, 'utf8');
    },
    stat: async (path, options) => {
      const s = await stat(path, options);
      stats += 1;
      return Object.assign(s, { mtimeNs: s.mtimeNs - shift, ctimeNs: s.ctimeNs - shift });
    },
    reads: () => reads,
    stats: () => stats,
  };
}
