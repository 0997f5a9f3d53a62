// The esbuild options of the production build (scripts/build.ts), shared with the benches that must bundle code
// the way the product is bundled (bench/rss-libraries.ts).
import { builtinModules } from 'node:module';
import type { BuildOptions, Plugin } from 'esbuild';
import { EXTERNAL_PACKAGES } from './runtime-packages.ts';

/** Node's built-in modules, with and without the `node:` prefix. */
const BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

/**
 * Built-in modules imported with `import` are loaded with `require` instead. An ESM import of a built-in
 * makes Node read every export of it, which runs its lazy getters: `import … from 'node:http'` alone loads
 * Node's internal undici (http's WebSocket export), about 10 MB resident; `node:fs` and `node:util` ~2.5 MB
 * each. require() leaves those getters alone.
 */
export const builtinsAsRequire: Plugin = {
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
export const lazyHttp2ForSmithy: Plugin = {
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

/**
 * How the production build bundles (scripts/build.ts), for whatever else must bundle the same way: an ES-module
 * bundle for Node 24, minified with readable names, the data-heavy packages left external, and the plugins above.
 */
export const BUNDLE_OPTIONS = {
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node24',
  minify: true,
  // Error and class names stay readable in logs (pino's `type`, error names).
  keepNames: true,
  // Data-heavy packages loaded from node_modules at run time (scripts/runtime-packages.ts).
  external: [...EXTERNAL_PACKAGES],
  // CommonJS code inside the bundle calls require(); an ES module has none, so each chunk makes one.
  banner: {
    js: 'import{createRequire as __createRequire}from"node:module";const require=__createRequire(import.meta.url);',
  },
  plugins: [builtinsAsRequire, lazyHttp2ForSmithy],
  logLevel: 'warning',
} satisfies BuildOptions;
