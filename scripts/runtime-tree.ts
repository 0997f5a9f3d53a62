// The image's runtime tree, the only thing its final stage copies (the Dockerfile's build stage runs this
// after `npm run build`): the bundle's JavaScript (dist/main.js and dist/chunks/*.js, no source maps), the
// entry point, the Workload API proto, package.json files that mark the bundle and the entry point as CommonJS, and of
// node_modules only the packages the bundle loads at run time (scripts/runtime-packages.ts). No package
// manager, no other node_modules. test/docker/image.test.ts starts the three programs from this tree.
// Usage: node scripts/runtime-tree.ts OUTDIR [DIST, default dist]   (run `npm run build` first)
import { cp, mkdir, readdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runtimePackages } from './runtime-packages.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface TreeSize {
  readonly files: number;
  readonly bytes: number;
}

/** Files and bytes under `dir` (symbolic links are not followed). */
export async function treeSize(dir: string): Promise<TreeSize> {
  let files = 0;
  let bytes = 0;
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    files++;
    bytes += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return { files, bytes };
}

/** Writes the runtime tree of the built `dist` (under `root`) into `out`, which is replaced. */
export async function writeRuntimeTree(out: string, root = ROOT, dist = join(root, 'dist')): Promise<void> {
  await rm(out, { recursive: true, force: true });
  await mkdir(join(out, 'dist', 'chunks'), { recursive: true });
  await cp(join(dist, 'main.js'), join(out, 'dist', 'main.js'));
  await cp(join(dist, 'package.json'), join(out, 'dist', 'package.json'));
  for (const chunk of await readdir(join(dist, 'chunks'))) {
    if (chunk.endsWith('.js')) await cp(join(dist, 'chunks', chunk), join(out, 'dist', 'chunks', chunk));
  }
  await cp(join(root, 'bin'), join(out, 'bin'), { recursive: true });
  await cp(join(root, 'proto'), join(out, 'proto'), { recursive: true });
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
    name: string;
    version: string;
    license?: string;
  };
  await writeFile(
    join(out, 'package.json'),
    `${JSON.stringify({ name: pkg.name, version: pkg.version, license: pkg.license, private: true, type: 'commonjs' }, null, 2)}\n`,
  );
  // Package directories come back resolved through symbolic links; so is node_modules here (a checkout whose
  // node_modules links to another's).
  const modules = await realpath(join(root, 'node_modules'));
  for (const p of await runtimePackages(root)) {
    await cp(p.dir, join(out, 'node_modules', relative(modules, p.dir)), { recursive: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = process.argv[2];
  if (!out) throw new Error('usage: node scripts/runtime-tree.ts OUTDIR [DIST]');
  await writeRuntimeTree(out, ROOT, process.argv[3] ?? join(ROOT, 'dist'));
  const [all, modules] = [await treeSize(out), await treeSize(join(out, 'node_modules'))];
  process.stdout.write(
    `runtime tree ${out}: ${all.files} files, ${(all.bytes / 1e6).toFixed(1)} MB (node_modules ${(modules.bytes / 1e6).toFixed(1)} MB)\n`,
  );
}
