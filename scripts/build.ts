// The production build (`npm run build`, the image's build stage): src/main.ts bundled by esbuild into
// dist/main.js plus lazily loaded dist/chunks/ (each cloud's SDK, each command, in its own chunks), minified,
// with source maps. Bundling cuts idle RSS: one module per chunk instead of ~400 files on Node's ESM loader.
// Usage: node scripts/build.ts [outdir, default dist]
import { rm } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';
import { EXTERNAL_PACKAGES } from './runtime-packages.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const outdir = process.argv[2] ?? join(ROOT, 'dist');

/** Node's built-in modules, with and without the `node:` prefix. */
const BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

/**
 * Built-in modules imported with `import` are loaded with `require` instead. An ESM import of a built-in
 * makes Node read every export of it, which runs its lazy getters: `import … from 'node:http'` alone loads
 * Node's internal undici (http's WebSocket export), about 10 MB resident; `node:fs` and `node:util` ~2.5 MB
 * each. require() leaves those getters alone.
 */
const builtinsAsRequire: Plugin = {
  name: 'builtins-as-require',
  setup(b) {
    b.onResolve({ filter: /^(node:)?[a-z_0-9/]+$/ }, (args) =>
      args.kind === 'import-statement' && BUILTINS.has(args.path)
        ? { path: args.path.replace(/^node:/, ''), namespace: 'builtin-as-require' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'builtin-as-require' }, (args) => ({
      contents: `module.exports = require(${JSON.stringify(`node:${args.path}`)});`,
      loader: 'js',
    }));
  },
};

/**
 * node:http2 for the AWS SDK's HTTP handler package, loaded on first use. The package holds both the
 * HTTP/1.1 handler STS is called with and an HTTP/2 one, and reads `http2.constants` at load; loading
 * node:http2 costs ~4 MB resident that an STS client over HTTP/1.1 never uses.
 */
const lazyHttp2ForSmithy: Plugin = {
  name: 'lazy-http2-for-smithy',
  setup(b) {
    b.onResolve({ filter: /^(node:)?http2$/ }, (args) =>
      /[\\/]@smithy[\\/]node-http-handler[\\/]/.test(args.importer)
        ? { path: 'http2', namespace: 'lazy-http2' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'lazy-http2' }, () => ({
      contents: `let http2;
const load = () => (http2 ??= require("node:http2"));
const constants = new Proxy({}, { get: (_, key) => load().constants[key] });
module.exports = new Proxy({}, { get: (_, key) => (key === "constants" ? constants : load()[key]) });`,
      loader: 'js',
    }));
  },
};

await rm(outdir, { recursive: true, force: true });
await build({
  absWorkingDir: ROOT,
  entryPoints: ['src/main.ts'],
  outdir,
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node24',
  minify: true,
  // Error and class names stay readable in logs (pino's `type`, error names).
  keepNames: true,
  sourcemap: true,
  // Data-heavy packages loaded from node_modules at run time (scripts/runtime-packages.ts).
  external: [...EXTERNAL_PACKAGES],
  // CommonJS code inside the bundle calls require(); an ES module has none, so each chunk makes one.
  banner: {
    js: 'import{createRequire as __createRequire}from"node:module";const require=__createRequire(import.meta.url);',
  },
  plugins: [builtinsAsRequire, lazyHttp2ForSmithy],
  logLevel: 'warning',
});
