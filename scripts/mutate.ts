// npm run mutate [-- [--force] MODULE...]: Stryker once per module of scripts/mutation-modules.ts (all, in order
// of risk, when none is named), each with its own test files and incremental file; prints how long each
// took. By hand only: see CONTRIBUTING.md ("Mutation testing").
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { MODULES } from './mutation-modules.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const STRYKER = fileURLToPath(new URL('../node_modules/@stryker-mutator/core/bin/stryker.js', import.meta.url));

const args = process.argv.slice(2);
// Options (--force: every mutant again, as after a change to the tests) go to each Stryker run.
const options = args.filter((a) => a.startsWith('--'));
const asked = args.filter((a) => !a.startsWith('--'));
const unknown = asked.filter((m) => !(m in MODULES));
if (unknown.length > 0) {
  process.stderr.write(`unknown module(s) ${unknown.join(', ')}; known: ${Object.keys(MODULES).join(', ')}\n`);
  process.exit(2);
}
let failed = false;
for (const module of asked.length > 0 ? asked : Object.keys(MODULES)) {
  const started = Date.now();
  const run = spawnSync(process.execPath, [STRYKER, 'run', ...options], {
    cwd: ROOT,
    env: { ...process.env, MUTATE_MODULE: module },
    stdio: 'inherit',
  });
  process.stdout.write(`mutate ${module}: exit ${run.status}, ${Math.round((Date.now() - started) / 1000)} s\n`);
  if (run.status !== 0) failed = true;
}
process.exit(failed ? 1 : 0);
