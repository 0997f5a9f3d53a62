// The production form for tests that must run it rather than the sources: the bundle scripts/build.ts makes,
// in the runtime tree the image carries (scripts/runtime-tree.ts), and a preload that records which of Node's
// built-in modules, and which files, the program loaded (the bundle differs from the sources in what it loads:
// scripts/bundle-options.ts).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Node's own copy of undici (behind the fetch globals), as process.moduleLoadList names it. */
export const INTERNAL_UNDICI = 'NativeModule internal/deps/undici/undici';

/** Runs a Node script to completion (at most two minutes) and resolves with what it printed. */
export function runNodeScript(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      args,
      { cwd: ROOT, env: { PATH: process.env['PATH'] ?? '' }, timeout: 120_000 },
      (e, out, err) => (e ? reject(new Error(`${args.join(' ')}: ${e.message}\n${err}`)) : resolve(out)),
    );
  });
}

export interface BuiltTree {
  /** The entry point in the tree, as the image runs it. */
  readonly bin: string;
  /**
   * Starts `run --config configFile` from the tree as the image does (from /, PATH alone). At exit, and on SIGUSR2
   * to `modulesFile`.now, it writes what it loaded to `modulesFile`: one line per built-in (process.moduleLoadList),
   * then one per file (an absolute path).
   */
  startSidecar(configFile: string, modulesFile: string): { readonly child: ChildProcess; logs(): string };
}

/** Builds the bundle under `dir` and writes its runtime tree to `dir`/app. */
export async function buildRuntimeTree(dir: string): Promise<BuiltTree> {
  const app = join(dir, 'app');
  await runNodeScript([join(ROOT, 'scripts', 'build.ts'), join(dir, 'dist')]);
  await runNodeScript([join(ROOT, 'scripts', 'runtime-tree.ts'), app, join(dir, 'dist')]);
  const recorder = join(dir, 'recorder.cjs');
  await writeFile(
    recorder,
    `const { renameSync, writeFileSync } = require('node:fs');
// Whole or not at all: written beside, then renamed, so a reader never sees half a list.
const write = (file) => {
  writeFileSync(file + '.part', [...process.moduleLoadList, ...Object.keys(require.cache)].join('\\n'));
  renameSync(file + '.part', file);
};
process.on('exit', () => write(process.env.MODULES_FILE));
process.on('SIGUSR2', () => write(process.env.MODULES_FILE + '.now'));
`,
  );
  const bin = join(app, 'bin', 'spiffe-connector.js');
  return {
    bin,
    startSidecar(configFile, modulesFile) {
      const child = spawn(process.execPath, [bin, 'run', '--config', configFile], {
        cwd: '/',
        env: { PATH: process.env['PATH'] ?? '', NODE_OPTIONS: `--require=${recorder}`, MODULES_FILE: modulesFile },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let logs = '';
      child.stderr?.on('data', (d: Buffer) => (logs += d.toString()));
      return { child, logs: () => logs };
    },
  };
}

/** Stops the child with SIGTERM; a SIGKILL if it has not exited within 30 s. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}
