#!/usr/bin/env node
// Entry point: the bundled CLI that `npm run build` makes (dist/, what the image and the package run). In a
// clone without a build, the sources instead: Node 24 runs the TypeScript as it is (npx spiffe-connector ...).
// Before any module is loaded: start without TurboFan, which main.js lets in once the program is up (the reasons
// are in src/ops/startup-tiering.ts, which does the same when the sources are run directly).
process.getBuiltinModule('node:v8').setFlagsFromString('--turbo-filter=-*');
const built = new URL('../dist/main.js', import.meta.url);
import(built.href).catch((error) => {
  if (error?.code !== 'ERR_MODULE_NOT_FOUND' || !String(error.url ?? error.message).includes(built.pathname))
    throw error;
  return import(new URL('../src/main.ts', import.meta.url).href);
});
