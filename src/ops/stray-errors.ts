// What a long-running command does with an exception nothing caught: the state after one is unknown,
// so it logs one line and exits with EXIT_INTERNAL. In a pod the kubelet then restarts the native
// sidecar (restartPolicy Always), which fetches fresh credentials before it is ready again.
import { writeSync } from 'node:fs';

/** Exit code after an uncaught exception or unhandled rejection (EX_SOFTWARE in sysexits.h). */
export const EXIT_INTERNAL = 70;

export interface StrayErrorOptions {
  /** Name in the log line. */
  readonly name?: string;
  /** Replaced in tests; default process.exit. */
  readonly exit?: (code: number) => void;
}

/** Installs the handlers once per process. */
export function exitOnStrayErrors(options: StrayErrorOptions = {}): void {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  let exiting = false;
  const handler =
    (what: string) =>
    (error: unknown): void => {
      if (exiting) return;
      exiting = true;
      // Written synchronously: the process is about to exit and an async logger would lose the line.
      // The message only, never the error's own fields (a stray error may carry a request's headers).
      const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      const line = {
        level: 'fatal',
        time: new Date().toISOString(),
        name: options.name ?? 'spiffe-connector',
        msg: `${what}; exiting (${EXIT_INTERNAL}) so that the sidecar is restarted`,
        err: message.slice(0, 2000),
      };
      try {
        writeSync(2, `${JSON.stringify(line)}\n`);
      } catch {
        // stderr is gone; exit anyway.
      }
      exit(EXIT_INTERNAL);
    };
  process.on('uncaughtException', handler('uncaught exception'));
  process.on('unhandledRejection', handler('unhandled rejection'));
}
