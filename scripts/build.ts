// The production build (`npm run build`, the image's build stage): src/main.ts bundled by esbuild into
// dist/main.js plus lazily loaded dist/chunks/ (each cloud's SDK, each command, in its own chunks), minified,
// with source maps. Bundling cuts idle RSS: one module per chunk instead of ~400 files on Node's ESM loader.
// The bundling options themselves, plugins included, are in scripts/bundle-options.ts.
// Usage: node scripts/build.ts [outdir, default dist]
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { BUNDLE_OPTIONS } from './bundle-options.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const outdir = process.argv[2] ?? join(ROOT, 'dist');

await rm(outdir, { recursive: true, force: true });
await build({
  ...BUNDLE_OPTIONS,
  absWorkingDir: ROOT,
  entryPoints: ['src/main.ts'],
  outdir,
  chunkNames: 'chunks/[name]-[hash]',
  splitting: true,
  sourcemap: true,
});
