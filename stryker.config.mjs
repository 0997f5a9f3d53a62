// Mutation testing of the security-critical modules, by hand (too slow for every CI run on 2 cores):
//   npm run mutate                 every module of scripts/mutation-modules.ts, in its order
//   npm run mutate -- x509 guards  only these
// node:test has no Stryker runner plugin, so each module runs with the command runner and only the
// test files that cover it: every mutant costs one run of those files. Incremental mode keeps the
// results in reports/mutation/ (not committed) and re-runs only mutants whose code or tests changed.
// Scores and the surviving mutants' reasons: CONTRIBUTING.md ("Mutation testing").

import { MODULES } from './scripts/mutation-modules.ts';

const name = process.env.MUTATE_MODULE ?? '';
const module = MODULES[name];
if (!module)
  throw new Error(`MUTATE_MODULE must be one of ${Object.keys(MODULES).join(', ')} (npm run mutate does this)`);

export default {
  testRunner: 'command',
  // The node running Stryker (Node 24 via npm run mutate): the sandbox may have no node_modules of its own when
  // the checkout's node_modules is a symlink, which Stryker does not link into it; packages still resolve upward.
  commandRunner: { command: `${process.execPath} --test --test-concurrency=1 ${module.tests.join(' ')}` },
  coverageAnalysis: 'off',
  mutate: module.mutate,
  // Error texts are matched loosely by the tests (a clue for a platform engineer, not a contract);
  // mutating every string would double a run's length for mutants that mostly survive by design.
  mutator: { excludedMutations: ['StringLiteral'] },
  incremental: true,
  incrementalFile: `reports/mutation/${name}.incremental.json`,
  reporters: ['clear-text', 'progress', 'json'],
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  clearTextReporter: { allowColor: false, logTests: false, reportScoreTable: true, reportMutants: true },
  concurrency: 2,
  timeoutMS: 10_000,
  tempDirName: '.stryker-tmp',
  ignorePatterns: ['reports', '.stryker-tmp', '.bench-out', 'dist', 'charts', 'docs', 'examples'],
  cleanTempDir: true,
};
