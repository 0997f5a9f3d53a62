// npm run mutate:survivors -- MODULE [REF]: the mutants that survived the last `npm run mutate -- MODULE`
// (reports/mutation/MODULE.json), each applied again to the current source and run against the module's
// current test files (scripts/mutation-modules.ts), one by one. Much cheaper than `--force` after adding
// tests, since a mutant already killed stays killed when tests are only added. REF is the commit the report
// was measured at (default HEAD): each mutant is found by its text near its old place, so later edits of
// other lines do not misplace it; one whose text changed is listed as "changed" and not run.
// Each mutant runs in a copy of the checkout (its files git knows or would add) under the system temp dir, its
// test files one at a time up to the first that fails; the source tree is never touched. The tests first run
// once without a mutant: a copy they fail in would count every mutant as killed.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MODULES } from './mutation-modules.ts';

interface Position {
  readonly line: number;
  readonly column: number;
}
interface Mutant {
  readonly id: string;
  readonly mutatorName: string;
  readonly replacement: string;
  readonly status: string;
  readonly location: { readonly start: Position; readonly end: Position };
}
interface Report {
  readonly files: Record<string, { readonly mutants: readonly Mutant[] }>;
}

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const [name = '', ref = 'HEAD'] = process.argv.slice(2);
const module = MODULES[name];
if (!module) {
  process.stderr.write(
    `usage: npm run mutate:survivors -- MODULE [REF]; modules: ${Object.keys(MODULES).join(', ')}\n`,
  );
  process.exit(2);
}
/** Real time one run of the module's tests may take before it counts as a timeout (a loaded machine is slow). */
const RUN_TIMEOUT_MS = 240_000;

const report = JSON.parse(readFileSync(join(ROOT, 'reports', 'mutation', `${name}.json`), 'utf8')) as Report;
const box = mkdtempSync(join(tmpdir(), 'mutate-survivors-'));
// Every file of the checkout that git knows or would add (the tests also read examples/, charts/, docs/, ...).
const files = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
  cwd: ROOT,
  encoding: 'utf8',
}).stdout;
for (const file of new Set(files.split('\0').filter((f) => f !== '' && existsSync(join(ROOT, f)))))
  cpSync(join(ROOT, file), join(box, file), { recursive: true });
symlinkSync(join(ROOT, 'node_modules'), join(box, 'node_modules'));

/** One run of the module's test files in the copy, file by file, up to the first that fails. */
const tests = module.tests;
function runTests(): 'killed' | 'timeout' | 'survived' {
  for (const test of tests) {
    const run = spawnSync(process.execPath, ['--test', '--test-concurrency=1', test], {
      cwd: box,
      encoding: 'utf8',
      timeout: RUN_TIMEOUT_MS,
    });
    if (run.error || run.signal) return 'timeout';
    if (run.status !== 0) return 'killed';
  }
  return 'survived';
}

/**
 * Where the text a mutant replaced (measured at REF) is in the current file: found with the lines around it
 * (three, then fewer) so that an identical expression elsewhere is not taken; -1 when it changed.
 */
function relocate(
  current: string,
  lines: readonly string[],
  start: Position,
  end: Position,
  offset: (p: Position) => number,
): number {
  const from = offset(start);
  for (let around = 3; around >= 0; around--) {
    const first = Math.max(0, start.line - 1 - around);
    const last = Math.min(lines.length, end.line + around);
    const contextFrom = offset({ line: first + 1, column: 1 });
    const context = lines.slice(first, last).join('\n');
    const hits: number[] = [];
    for (let i = current.indexOf(context); i !== -1; i = current.indexOf(context, i + 1)) hits.push(i);
    if (hits.length === 1 || (around === 0 && hits.length > 1)) {
      const nearest = hits.reduce((a, b) => (Math.abs(b - contextFrom) < Math.abs(a - contextFrom) ? b : a));
      return nearest + (from - contextFrom);
    }
  }
  return -1;
}

const tally = { killed: 0, timeout: 0, survived: 0, changed: 0 };
try {
  // Without a mutant every test must pass in the copy, or each mutant would count as killed.
  if (runTests() !== 'survived') throw new Error(`${name}: the tests fail in the copy without any mutant`);
  for (const [file, { mutants }] of Object.entries(report.files)) {
    const current = readFileSync(join(ROOT, file), 'utf8');
    const measured = spawnSync('git', ['show', `${ref}:${file}`], { cwd: ROOT, encoding: 'utf8' }).stdout;
    const lines = measured.split('\n');
    const offset = (p: Position): number =>
      lines.slice(0, p.line - 1).reduce((n, l) => n + l.length + 1, 0) + p.column - 1;
    for (const m of mutants) {
      if (m.status !== 'Survived') continue;
      const at = relocate(current, lines, m.location.start, m.location.end, offset);
      const text = measured.slice(offset(m.location.start), offset(m.location.end));
      const where = `${file}:${m.location.start.line} ${m.mutatorName} ${m.replacement.replace(/\s+/g, ' ').slice(0, 70)}`;
      if (at === -1) {
        tally.changed++;
        process.stdout.write(`changed   ${m.id} ${where}\n`);
        continue;
      }
      writeFileSync(join(box, file), current.slice(0, at) + m.replacement + current.slice(at + text.length));
      const status = runTests();
      tally[status]++;
      process.stdout.write(`${status.padEnd(9)} ${m.id} ${where}\n`);
      writeFileSync(join(box, file), current);
    }
  }
} finally {
  rmSync(box, { recursive: true, force: true });
}
process.stdout.write(
  `${name}: of the survivors, ${tally.killed} killed, ${tally.timeout} timed out, ${tally.survived} survive, ${tally.changed} changed\n`,
);
