#!/usr/bin/env node
// Entry point: the bundled CLI that `npm run build` makes (dist/, what the image and the package run). In a
// clone without a build, the sources instead: Node 24 runs the TypeScript as it is (npx spiffe-connector ...).
// CommonJS (bin/package.json), as dist/ is: a process that loads an ES module from a file also loads Node's ES
// module loader, ~3 MB resident (scripts/bundle-options.ts). Before any module is loaded: start without V8's
// optimizing compilers, which main.js lets in once the program is up (the reasons are in
// src/ops/startup-tiering.ts, which does the same when the sources are run directly).
const v8 = require('node:v8');
v8.setFlagsFromString('--turbo-filter=-*');
v8.setFlagsFromString('--maglev-filter=-*');
let built;
try {
  built = require.resolve('../dist/main.js');
} catch {
  built = undefined;
}
if (built) require(built);
else import('../src/main.ts');
