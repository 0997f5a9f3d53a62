// Runs the real CLI as a user would: `spiffe-connector <command>` in a child process on Node 24,
// and app clients in child processes that get nothing but the lines `env` printed.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freeLoopbackPort } from '../../src/http/free-port.ts';
import { DEFAULT_UNTIL_TIMEOUT_MS, until } from './until.ts';

export const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A free loopback port (for configs that `env` must be able to print before the sidecar starts). */
export const freePort = freeLoopbackPort;

/** Runs a node script to completion with exactly `env` (no inherited variables unless passed). */
export function runNode(args: readonly string[], env: Record<string, string> = {}, input?: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

export function cli(args: readonly string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runNode([MAIN, ...args], env);
}

/** Parses `KEY=VALUE` lines as `env` prints them. */
export function parseEnvLines(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

export interface SidecarProcess {
  readonly child: ChildProcess;
  /** Everything the process wrote to stderr (its JSON logs) so far. */
  logs(): string;
  /** Parsed JSON log lines so far. */
  logLines(): Array<Record<string, unknown>>;
  /**
   * Resolves with the first log line matching `predicate` (already written or still to come); rejects,
   * naming `what`, if the process exits first or none comes within `timeoutMs` (default 20 s).
   */
  waitForLog(
    predicate: (line: Record<string, unknown>) => boolean,
    what: string,
    options?: { timeoutMs?: number },
  ): Promise<Record<string, unknown>>;
  /** Sends `signal` and resolves with the exit code; rejects (after a SIGKILL) if it has not exited within 30 s. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `spiffe-connector run --config FILE` and resolves once it logs that it is listening. */
export async function startSidecar(configFile: string, env: Record<string, string> = {}): Promise<SidecarProcess> {
  const child = spawn(process.execPath, [MAIN, 'run', '--config', configFile], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let logs = '';
  const waiters: Array<{
    predicate: (l: Record<string, unknown>) => boolean;
    resolve: (l: Record<string, unknown>) => void;
  }> = [];
  const lines: Array<Record<string, unknown>> = [];
  let partial = '';
  child.stderr.on('data', (d: Buffer) => {
    logs += d.toString();
    partial += d.toString();
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const part of parts) {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(part) as Record<string, unknown>;
      } catch {
        line = { msg: part };
      }
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.predicate(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const sidecar: SidecarProcess = {
    child,
    logs: () => logs,
    logLines: () => lines,
    waitForLog: (predicate, what, options = {}) => {
      const found = lines.find(predicate);
      if (found) return Promise.resolve(found);
      const timeoutMs = options.timeoutMs ?? DEFAULT_UNTIL_TIMEOUT_MS;
      return new Promise((resolve, reject) => {
        const waiter = {
          predicate,
          resolve: (line: Record<string, unknown>) => {
            clearTimeout(timer);
            resolve(line);
          },
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`gave up after ${timeoutMs} ms waiting for the log line: ${what}\n${logs}`));
        }, timeoutMs);
        waiters.push(waiter);
        void exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`the sidecar exited (${code}) before the log line: ${what}\n${logs}`));
        });
      });
    },
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`the sidecar did not exit within 30 s of ${signal}:\n${logs}`));
        }, 30_000);
      });
      try {
        return await Promise.race([exited, late]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
  await sidecar.waitForLog((l) => l['msg'] === 'spiffe-connector is listening', 'spiffe-connector is listening', {
    timeoutMs: 60_000,
  });
  return sidecar;
}

/** Polls `url` until it answers 200 (bounded: fails naming the URL). */
export async function waitFor200(url: string): Promise<void> {
  await until(async () => (await fetch(url).catch(() => undefined))?.status === 200, `${url} to answer 200`, {
    intervalMs: 50,
  });
}
