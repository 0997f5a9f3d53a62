// Writes a set of files the way Kubernetes' AtomicWriter (and so csi-driver-spiffe) does: a new
// timestamped directory, a `..data` symlink swapped in one rename, and stable per-file symlinks.
import { lstat, mkdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface AtomicFile {
  readonly name: string;
  readonly content: string;
  readonly mode?: number;
}

let sequence = 0;

/** Replaces the files of `dir` in one step for readers that go through the per-file symlinks. */
export async function writeAtomicDir(dir: string, files: readonly AtomicFile[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[-:.TZ]/g, '_');
  const versioned = `..${stamp}${process.pid}_${++sequence}`;
  await mkdir(join(dir, versioned), { mode: 0o755 });
  for (const file of files)
    await writeFile(join(dir, versioned, file.name), file.content, { mode: file.mode ?? 0o644 });
  let previous: string | undefined;
  try {
    previous = await readlink(join(dir, '..data'));
  } catch {
    previous = undefined;
  }
  await rm(join(dir, '..data_tmp'), { force: true });
  await symlink(versioned, join(dir, '..data_tmp'));
  await rename(join(dir, '..data_tmp'), join(dir, '..data'));
  for (const file of files) {
    const link = join(dir, file.name);
    const exists = await lstat(link).then(
      () => true,
      () => false,
    );
    if (!exists) await symlink(join('..data', file.name), link);
  }
  if (previous && previous !== versioned) await rm(join(dir, previous), { recursive: true, force: true });
}
