// The esbuild options of the production build (scripts/build.ts), shared with the benches that must bundle code
// the way the product is bundled (bench/rss-libraries.ts).
import { readFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { dirname } from 'node:path';
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
 * A module (a built-in, or a package) that a package requires when it loads but uses later, if ever: for the files
 * `importer` matches, `contents` stands in for it and loads it on first use. `contents` requires it as the importer
 * would: resolved from the importer's directory, and not by this plugin again.
 */
function lazyModule(name: string, specifier: string, importer: RegExp, contents: string): Plugin {
  const filter = new RegExp(`^(node:)?${specifier}$`);
  return {
    name,
    setup(b) {
      b.onResolve({ filter }, (args) =>
        importer.test(args.importer)
          ? { path: specifier, namespace: name, pluginData: dirname(args.importer) }
          : undefined,
      );
      b.onLoad({ filter: /.*/, namespace: name }, (args) => ({
        contents,
        loader: 'js',
        resolveDir: args.pluginData as string,
      }));
    },
  };
}

/**
 * node:http2 for the AWS SDK's HTTP handler package, loaded on first use. The package holds both the
 * HTTP/1.1 handler STS is called with and an HTTP/2 one, and reads `http2.constants` at load; loading
 * node:http2 costs ~4 MB resident that an STS client over HTTP/1.1 never uses.
 */
export const lazyHttp2ForSmithy = lazyModule(
  'lazy-http2-for-smithy',
  'http2',
  /[\\/]@smithy[\\/]node-http-handler[\\/]/,
  `let http2;
const load = () => (http2 ??= require("node:http2"));
const constants = new Proxy({}, { get: (_, key) => load().constants[key] });
module.exports = new Proxy({}, { get: (_, key) => (key === "constants" ? constants : load()[key]) });`,
);

/**
 * node:module for pino's transports, loaded on first use: pino takes `createRequire` from it when it loads, to
 * resolve transport targets, which the sidecar never configures. Loading node:module loads Node's ES module loader
 * with it, ~3 MB resident (see BUNDLE_OPTIONS).
 */
export const lazyModuleForPino = lazyModule(
  'lazy-module-for-pino',
  'module',
  /[\\/]pino[\\/]lib[\\/]transport\.js$/,
  'exports.createRequire = (...args) => require("node:module").createRequire(...args);',
);

/**
 * Google's SDK (google-auth-library, gaxios, gcp-metadata) given node-fetch's `Headers` and `FormData` instead of
 * Node's globals. gaxios sends every request with node-fetch, but builds the request headers with the global
 * `Headers` and tests request bodies with `instanceof FormData`; the first touch of either global loads Node's
 * internal copy of undici, and node:http2 with it, which Google's path never uses: ~2 MB resident. node-fetch's
 * classes do the job here: the headers go to node-fetch, whose responses already carry its own `Headers`, and no
 * body the sidecar sends is a FormData. test/e2e/bundle-gcp.test.ts runs the bundle this makes.
 */
export const fetchClassesForGoogle: Plugin = {
  name: 'fetch-classes-for-google',
  setup(b) {
    b.onLoad(
      { filter: /[\\/]node_modules[\\/](gaxios|gcp-metadata|google-auth-library)[\\/].*\.c?js$/ },
      async (args) => {
        const text = await readFile(args.path, 'utf8');
        const names = ['Headers', 'FormData'].filter((name) => new RegExp(`\\b${name}\\b`).test(text));
        if (names.length === 0) return undefined;
        const binding = `{ ${names.join(', ')} }`;
        const prelude = /^(import|export)\s/m.test(text)
          ? `import ${binding} from "node-fetch";`
          : `const ${binding} = require("node-fetch");`;
        // After a "use strict" directive, which must stay first; on the first line, so source maps hold.
        const directive = /^\s*(["'])use strict\1;?/.exec(text)?.[0] ?? '';
        return { contents: `${directive}${prelude}${text.slice(directive.length)}`, loader: 'js' };
      },
    );
  },
};

/**
 * A stand-in for a package whose exports are read as properties only, loading it at the first read. `__esModule` is
 * what the bundler's interop reads at import: answered without loading.
 */
const lazyProperties = (specifier: string): string => `let loaded;
const load = () => (loaded ??= require(${JSON.stringify(specifier)}));
module.exports = new Proxy({}, { get: (_, key) => (key === "__esModule" ? undefined : load()[key]) });`;

/**
 * jsonwebtoken for MSAL (@azure/msal-node, under @azure/identity), loaded on first use. MSAL signs a client
 * assertion with it only when the application holds a certificate; the sidecar hands MSAL its JWT-SVID as
 * the assertion, so that never runs. Imported eagerly, jsonwebtoken and what it requires (jws, jwa, semver and
 * its regular expressions, the lodash checks) run when the Azure module loads: ~0.3 MB of heap kept. Its code
 * stays in the bundle, run by the first property read (`jwt.sign`); test/azure/bundle.test.ts takes that path.
 */
export const lazyJsonwebtokenForMsal = lazyModule(
  'lazy-jsonwebtoken-for-msal',
  'jsonwebtoken',
  /[\\/]@azure[\\/]msal-node[\\/]/,
  lazyProperties('jsonwebtoken'),
);

/**
 * Azure's HTTP pipeline (@typespec/ts-http-runtime, under @azure/core-rest-pipeline) asked whether a request body is
 * a FormData without reading the global `FormData` first. Its form-data policy runs on every request and tests
 * `typeof FormData !== "undefined" && body instanceof FormData`; the first read of that global loads Node's
 * internal copy of undici, and node:http2 with it, which Azure's path never uses otherwise: ~1.8 MB resident. A
 * FormData body says so itself (its Symbol.toStringTag is "FormData"), so that test comes first, and the global is
 * read only for a body that could be one, as before. test/azure/bundle.test.ts sends one; test/e2e/bundle-azure
 * holds that undici stays unloaded.
 */
export const formDataTestForAzure: Plugin = {
  name: 'form-data-test-for-azure',
  setup(b) {
    b.onLoad(
      { filter: /[\\/]node_modules[\\/](@typespec[\\/]ts-http-runtime|@azure[\\/]core-rest-pipeline)[\\/].*\.c?js$/ },
      async (args) => {
        const text = await readFile(args.path, 'utf8');
        const contents = text.replace(
          /typeof FormData !== "undefined" && (\w+) instanceof FormData/g,
          (_, body: string) =>
            `Object.prototype.toString.call(${body}) === "[object FormData]" && typeof FormData !== "undefined" && ${body} instanceof FormData`,
        );
        // On the same line, so source maps hold.
        return contents === text ? undefined : { contents, loader: 'js' };
      },
    );
  },
};

/**
 * What express requires when it loads for the middleware it exports and the response methods the sidecar never
 * calls, loaded on first use: body-parser's four parsers (with raw-body, iconv-lite and qs), serve-static and send
 * (for `express.static` and `res.sendFile`), and qs for the "extended" query parser. The metadata listener routes
 * requests and writes its answers itself; only Azure's token endpoint takes a form body (`express.urlencoded`), and
 * calling the factory loads the parser then. Each stand-in is the function, or the factories, that express reads.
 */
export const lazyBodyParserForExpress = lazyModule(
  'lazy-body-parser-for-express',
  'body-parser',
  /[\\/]express[\\/]lib[\\/]express\.js$/,
  `let parsers;
const load = () => (parsers ??= require("body-parser"));
for (const name of ["json", "raw", "text", "urlencoded"]) exports[name] = (options) => load()[name](options);`,
);

export const lazyServeStaticForExpress = lazyModule(
  'lazy-serve-static-for-express',
  'serve-static',
  /[\\/]express[\\/]lib[\\/]express\.js$/,
  'module.exports = (root, options) => require("serve-static")(root, options);',
);

export const lazySendForExpress = lazyModule(
  'lazy-send-for-express',
  'send',
  /[\\/]express[\\/]lib[\\/]response\.js$/,
  'module.exports = (req, path, options) => require("send")(req, path, options);',
);

export const lazyQsForExpress = lazyModule(
  'lazy-qs-for-express',
  'qs',
  /[\\/]express[\\/]lib[\\/]utils\.js$/,
  lazyProperties('qs'),
);

/**
 * mime-types, and the 200 KB JSON database it parses when it loads (mime-db), loaded at the first lookup: express,
 * type-is and accepts require it when they load, and use it only to name a type from a file extension or to add a
 * charset to a Content-Type that express sets (`res.type`, `res.set('Content-Type', …)`).
 */
export const lazyMimeTypes = lazyModule(
  'lazy-mime-types',
  'mime-types',
  /[\\/]node_modules[\\/](express|type-is|accepts)[\\/]/,
  lazyProperties('mime-types'),
);

/** @opentelemetry/api for prom-client's CPU collector, which reads it only when exemplars are on (never here). */
export const lazyOtelForPromClient = lazyModule(
  'lazy-otel-for-prom-client',
  '@opentelemetry/api',
  /[\\/]prom-client[\\/]lib[\\/]/,
  lazyProperties('@opentelemetry/api'),
);

/** The identifier `import.meta.url` becomes in the bundle: CommonJS has no import.meta, so each file defines it. */
const IMPORT_META_URL = '__importMetaUrl';

/**
 * How the production build bundles (scripts/build.ts), for whatever else must bundle the same way: CommonJS for
 * Node 24, minified with readable names, the data-heavy packages left external, and the plugins above. CommonJS
 * because a process that loads any ES module from a file also loads Node's ES module loader, ~3 MB resident
 * (README.md "Measured"); the sources stay ES modules. One entry builds to CommonJS directly; the product's
 * split build goes through ES modules first (scripts/build.ts), since esbuild splits only those.
 */
export const BUNDLE_OPTIONS = {
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node24',
  minify: true,
  // Error and class names stay readable in logs (pino's `type`, error names).
  keepNames: true,
  // Data-heavy packages loaded from node_modules at run time (scripts/runtime-packages.ts).
  external: [...EXTERNAL_PACKAGES],
  // src/workload-api/proto.ts finds the proto from its own file's URL.
  define: { 'import.meta.url': IMPORT_META_URL },
  banner: { js: `var ${IMPORT_META_URL}=require("node:url").pathToFileURL(__filename).href;` },
  plugins: [
    builtinsAsRequire,
    lazyHttp2ForSmithy,
    lazyModuleForPino,
    fetchClassesForGoogle,
    lazyJsonwebtokenForMsal,
    formDataTestForAzure,
    lazyBodyParserForExpress,
    lazyServeStaticForExpress,
    lazySendForExpress,
    lazyQsForExpress,
    lazyMimeTypes,
    lazyOtelForPromClient,
  ],
  logLevel: 'warning',
} satisfies BuildOptions;

/** A package.json that makes Node load the `.js` files beside it (and below) as CommonJS. */
export const COMMONJS_PACKAGE_JSON = `${JSON.stringify({ type: 'commonjs' })}\n`;
