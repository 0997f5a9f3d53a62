// Import rules for src/, checked by dependency-cruiser (`npm run lint:imports`).
//
// The layering is the table below, bottom first: each area names the areas its modules may import
// besides their own. Anything in src/ that an area does not list is refused, so a new edge between two
// areas is a change to this table, made on purpose. The composition roots (app.ts, main.ts, commands/)
// may import any area; an area may import npm packages and Node's builtins freely.
//
// To move or add an area: add its path (a regular expression on the path from the repository root)
// to AREAS, and give it a line in LAYERS with the areas it may use and why.

/** Where each area lives. A path may belong to several areas (a cloud's env.ts is also part of its cloud). */
const AREAS = {
  base: '^src/base/',
  spiffe: '^src/spiffe/',
  config: '^src/config/',
  ops: '^src/ops/',
  files: '^src/files/',
  http: '^src/http/',
  cache: '^src/cache/',
  workloadApi: '^src/workload-api/',
  sources: '^src/sources/',
  contract: '^src/providers/[^/]+\\.ts$',
  cloudEnv: '^src/providers/[^/]+/env\\.ts$',
  metadata: '^src/metadata/',
  workloadApiSurface: '^src/surfaces/workload-api/',
  workloadApiSurfaceEnv: '^src/surfaces/workload-api/env\\.ts$',
  issuer: '^src/issuer/',
  webhook: '^src/webhook/',
  appEnv: '^src/env\\.ts$',
  clouds: '^src/clouds\\.ts$',
  cloudModules: '^src/providers/[^/]+/module\\.ts$',
};

/** Each area and what it may import besides itself. */
const LAYERS = [
  {
    area: 'base',
    may: [],
    why: 'base/ (errors, Secret, clock) is the bottom every other area stands on; it imports nothing of ours.',
  },
  {
    area: 'spiffe',
    may: ['base'],
    why: 'spiffe/ is the pure domain (SPIFFE IDs, SVIDs, bundles, the source interfaces): no I/O, no app code.',
  },
  {
    area: 'config',
    may: ['base', 'spiffe'],
    why: 'config/ validates input into domain values; it knows nothing of who consumes them.',
  },
  {
    area: 'ops',
    may: ['base', 'spiffe', 'config'],
    why: 'ops/ (logger, metrics, ops server) is infrastructure below every feature.',
  },
  {
    area: 'files',
    may: ['base', 'spiffe', 'config', 'ops'],
    why: 'files/ (rotating-file reloader) is infrastructure below every feature.',
  },
  {
    area: 'http',
    may: ['base', 'spiffe', 'config'],
    why: 'http/ (request guards, body reader, free port) is infrastructure below every HTTP surface.',
  },
  {
    area: 'cache',
    may: ['base', 'ops'],
    why: 'cache/ wraps any exchange; it must not know which cloud or source it caches.',
  },
  {
    area: 'workloadApi',
    may: ['base', 'spiffe'],
    why: 'workload-api/ is the protocol the client (a source) and the server (a surface) share; it belongs to neither.',
  },
  {
    area: 'sources',
    may: ['base', 'spiffe', 'cache', 'ops', 'files', 'config', 'workloadApi'],
    why: 'sources/ produce SVIDs; they never reach up into the clouds or the surfaces that use them.',
  },
  {
    area: 'contract',
    may: ['base', 'spiffe', 'cache', 'ops', 'http', 'config'],
    why: 'providers/*.ts is the contract every cloud implements; it names no cloud.',
  },
  {
    area: 'metadata',
    may: ['base', 'ops', 'http', 'contract'],
    why: "metadata/ is the listener's request pipeline; it sees clouds only through the provider contract.",
  },
  {
    area: 'workloadApiSurface',
    may: ['base', 'spiffe', 'ops', 'config', 'cache', 'workloadApi'],
    why: 'surfaces/workload-api/ serves the pod; it shares only the protocol with the client in sources/.',
  },
  {
    area: 'issuer',
    may: ['base', 'spiffe', 'config', 'ops', 'files', 'http'],
    why: 'the issuer is its own server; it shares infrastructure with the sidecar, not features.',
  },
  {
    area: 'webhook',
    may: ['base', 'spiffe', 'config', 'ops', 'files', 'http', 'cloudEnv', 'appEnv'],
    why: 'the webhook injects the env lines the sidecar would print, from the pure env modules only (no cloud SDK, no endpoints).',
  },
  {
    area: 'appEnv',
    may: ['base', 'spiffe', 'config', 'ops', 'contract', 'cloudEnv', 'clouds', 'workloadApiSurfaceEnv'],
    why: "env.ts gathers every cloud's pure env lines; it loads no endpoints and no SDK.",
  },
  {
    area: 'clouds',
    may: ['contract', 'cloudEnv', 'cloudModules'],
    why: "clouds.ts is the registry: each cloud's pure side, and its running side behind a dynamic import.",
  },
];

// A cloud folder: the contract and the layers under it, and its own folder, never another cloud.
const CLOUD = {
  path: '^src/providers/([^/]+)/',
  may: ['base', 'spiffe', 'cache', 'ops', 'http', 'files', 'config', 'contract'],
};

const COMPOSITION_ROOTS = ['^src/app\\.ts$', '^src/main\\.ts$', '^src/commands/'];

const placed = [...Object.values(AREAS), CLOUD.path, ...COMPOSITION_ROOTS];

function areaPaths(names) {
  return names.map((name) => {
    if (!(name in AREAS)) throw new Error(`.dependency-cruiser.cjs: unknown area ${name}`);
    return AREAS[name];
  });
}

const layerRules = LAYERS.map(({ area, may, why }) => ({
  name: `layer-${area}`,
  comment: why,
  severity: 'error',
  from: { path: AREAS[area] },
  to: { path: '^src/', pathNot: [AREAS[area], ...areaPaths(may)] },
}));

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'layer-cloud',
      comment:
        'A cloud folder uses the provider contract and the layers under it, and only its own folder: adding a cloud or an exchange touches that folder and the composition root, nothing else.',
      severity: 'error',
      from: { path: CLOUD.path },
      to: { path: '^src/', pathNot: ['^src/providers/$1/', ...areaPaths(CLOUD.may)] },
    },
    {
      name: 'unplaced-module',
      comment:
        'Every module in src/ belongs to an area of the table in .dependency-cruiser.cjs (or is a composition root), so the layering covers it; add new folders there.',
      severity: 'error',
      from: { path: '^src/', pathNot: placed },
      to: { path: '^src/' },
    },
    {
      name: 'no-circular',
      comment: 'A cycle makes two modules one: neither can be understood, tested or loaded without the other.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'src-not-to-outside',
      comment:
        'The product is src/ alone: it never imports the dev stand-ins (packages/), the tests or the benches, so none of them reaches the bundle or the image.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(packages|test|bench|scripts)/' },
    },
    {
      name: 'stand-ins-verify-on-their-own',
      comment:
        "The stand-ins in packages/ check what the real services check with code of their own (jose, @peculiar/x509, node:crypto): one that verified with the product's spiffe/ code could not catch that code's bugs.",
      severity: 'error',
      from: { path: '^packages/' },
      to: { path: '^src/spiffe/' },
    },
    {
      name: 'zod-mini-only',
      comment:
        "Schemas in src/ use zod/mini (the functional API): zod's classic API gives every schema object its own methods and brings the whole library into the bundle, which every pod pays for in memory.",
      severity: 'error',
      from: { path: '^src/' },
      to: { path: 'node_modules/zod/(index\\.|v4/index\\.|v4/classic/|v3/)' },
    },
    {
      name: 'src-not-to-dev-dependency',
      comment:
        'The image installs only dependencies: a devDependency imported from src/ works in the tests and fails in production.',
      severity: 'error',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'no-orphans',
      comment: 'A module in src/ that nothing imports and that imports nothing is dead code.',
      severity: 'error',
      from: { orphan: true, path: '^src/' },
      to: {},
    },
    {
      name: 'not-to-unresolvable',
      comment: 'An import that does not resolve fails at run time.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: 'no-non-package-json',
      comment: 'A package imported but not declared in package.json works only by accident of hoisting.',
      severity: 'error',
      from: {},
      to: { dependencyTypes: ['npm-no-pkg', 'npm-unknown'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports are edges too: a layer that names another's types depends on it.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
    reporterOptions: {
      text: { highlightFocused: true },
    },
  },
};
