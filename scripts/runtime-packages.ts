// The npm packages the bundle (scripts/build.ts) leaves out and loads from node_modules at run time, and
// the closure of their dependencies: what the image's runtime tree carries of node_modules
// (scripts/runtime-tree.ts). Data-heavy packages whose data the sidecar never reads, or reads once: not
// bundled, so their text is not kept in memory as part of a chunk's source.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export const EXTERNAL_PACKAGES: readonly string[] = ['iconv-lite', 'mime-db', 'mime-types'];

export interface RuntimePackage {
  readonly name: string;
  /** The installed package's directory. */
  readonly dir: string;
}

/** The external packages and, transitively, their dependencies, as installed under `root`'s node_modules. */
export async function runtimePackages(root: string): Promise<RuntimePackage[]> {
  const found = new Map<string, RuntimePackage>();
  const visit = async (name: string, from: string): Promise<void> => {
    const manifest = createRequire(join(from, 'package.json')).resolve(`${name}/package.json`);
    const dir = dirname(manifest);
    if (found.has(dir)) return;
    found.set(dir, { name, dir });
    const pkg = JSON.parse(await readFile(manifest, 'utf8')) as { dependencies?: Record<string, string> };
    for (const dependency of Object.keys(pkg.dependencies ?? {})) await visit(dependency, dir);
  };
  for (const name of EXTERNAL_PACKAGES) await visit(name, root);
  return [...found.values()].sort((a, b) => a.name.localeCompare(b.name));
}
