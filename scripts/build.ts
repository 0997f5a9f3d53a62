// The production build (`npm run build`, the image's build stage): src/main.ts bundled by esbuild into
// dist/main.js plus lazily loaded dist/chunks/ (each cloud's SDK, each command, in its own chunks), minified,
// with source maps, all CommonJS (dist/package.json says so). Bundling cuts idle RSS: one module per chunk instead
// of ~400 files on Node's ESM loader; CommonJS cuts it again, as no ES module is loaded at all.
// esbuild splits chunks only in ES module output, so the build runs twice: the split build into a staging
// directory, then each of its files converted to CommonJS (bundle: false; the source maps carried through).
// The bundling options themselves, plugins included, are in scripts/bundle-options.ts.
// Usage: node scripts/build.ts [outdir, default dist]
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { BUNDLE_OPTIONS, COMMONJS_PACKAGE_JSON } from './bundle-options.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const outdir = process.argv[2] ?? join(ROOT, 'dist');

const stage = await mkdtemp(join(tmpdir(), 'spiffe-connector-build-'));
try {
  await rm(outdir, { recursive: true, force: true });
  await build({
    ...BUNDLE_OPTIONS,
    format: 'esm',
    // The banner belongs to the CommonJS files of the second pass.
    banner: {},
    absWorkingDir: ROOT,
    entryPoints: ['src/main.ts'],
    outdir: stage,
    chunkNames: 'chunks/[name]-[hash]',
    splitting: true,
    sourcemap: true,
  });
  // The staged files as CommonJS for esbuild too: a chunk's `import()` of another then reads that chunk's exports
  // (`__esModule`, set by this pass), where Node's own rule for an ES module importing CommonJS would give
  // `default` the whole exports object.
  await writeFile(join(stage, 'package.json'), COMMONJS_PACKAGE_JSON);
  const chunks = (await readdir(join(stage, 'chunks'))).filter((f) => f.endsWith('.js'));
  await build({
    entryPoints: [join(stage, 'main.js'), ...chunks.map((f) => join(stage, 'chunks', f))],
    outbase: stage,
    outdir,
    bundle: false,
    format: 'cjs',
    platform: BUNDLE_OPTIONS.platform,
    target: BUNDLE_OPTIONS.target,
    // A chunk's `import()` of another becomes a require() run on the next microtask.
    supported: { 'dynamic-import': false },
    // Names stay as the first pass left them (it kept the readable ones): renaming again, with keepNames, added
    // ~5,700 calls that set a function's name at load, 1.2-1.6 MB of idle RSS.
    minifyWhitespace: true,
    minifySyntax: true,
    banner: BUNDLE_OPTIONS.banner,
    sourcemap: true,
    logLevel: BUNDLE_OPTIONS.logLevel,
  });
  await writeFile(join(outdir, 'package.json'), COMMONJS_PACKAGE_JSON);
  await dropStagedSources(outdir, stage);
} finally {
  await rm(stage, { recursive: true, force: true });
}

/**
 * A chunk that only re-exports others has no source of its own: its staged map is empty, and esbuild maps the
 * converted file to the staged one instead, a file that no longer exists. Such maps are emptied.
 */
async function dropStagedSources(dir: string, staged: string): Promise<void> {
  for (const name of ['main.js.map', ...(await readdir(join(dir, 'chunks'))).map((f) => join('chunks', f))]) {
    if (!name.endsWith('.map')) continue;
    const file = join(dir, name);
    const map = JSON.parse(await readFile(file, 'utf8')) as { sources: string[] };
    const base = join(file, '..');
    if (map.sources.length === 0 || !map.sources.every((source) => resolve(base, source).startsWith(staged))) continue;
    await writeFile(file, JSON.stringify({ version: 3, sources: [], sourcesContent: [], mappings: '', names: [] }));
  }
}
