// What stat(2) says of a set of files, as one string a poll compares with the last good load's: equal means no
// file was replaced (a `..data` swap gives every file a new inode) or written (size, mtime and ctime) since, so
// the poll need not read, parse and verify them again. A file changed within the last second gives no stamp:
// its timestamps are the kernel's coarse clock, so a second write in the same tick could leave them as they
// were (git calls such a file "racily clean"). The next poll then reads, and stamps it once it has settled.
import { stat as fsStat } from 'node:fs/promises';

/** A file whose ctime is this recent is read again at the next poll instead of being trusted by its stamp. */
export const SETTLE_MS = 1_000;

export type StatBig = (path: string, options: { bigint: true }) => Promise<import('node:fs').BigIntStats>;

/**
 * The stamp of `paths`, or undefined when one cannot be stat'ed or changed within SETTLE_MS of `nowMs` (the
 * system's wall clock, which the file times come from).
 */
export async function fileStamp(
  paths: readonly string[],
  nowMs: number = Date.now(),
  stat: StatBig = fsStat,
): Promise<string | undefined> {
  const settledBefore = BigInt(Math.floor(nowMs - SETTLE_MS)) * 1_000_000n;
  let stamp = '';
  for (const path of paths) {
    let s: import('node:fs').BigIntStats;
    try {
      s = await stat(path, { bigint: true });
    } catch {
      return undefined;
    }
    if (s.ctimeNs > settledBefore || s.mtimeNs > settledBefore) return undefined;
    stamp += `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs};`;
  }
  return stamp;
}

/**
 * The stamp of the files a source reads. A source given a reader of its own (a test's, not the disk) and no stat
 * to match it has no files to stamp: its polls always read.
 */
export function stamper(
  paths: readonly string[],
  o: { readonly readFile?: unknown; readonly stat?: StatBig | undefined },
): () => Promise<string | undefined> {
  const stat = o.stat ?? (o.readFile ? undefined : fsStat);
  return stat ? () => fileStamp(paths, Date.now(), stat) : () => Promise.resolve(undefined);
}
