// The one bounded poll of the tests and benches: for work that crosses real sockets, files or child
// processes, whose end no event tells. The bound is there so that a broken test fails saying what it
// waited for instead of hanging the suite; it is not a speed assertion, so keep it generous.
//
//   await until(() => fake.callCount('FetchX509SVID') === 2, 'the second FetchX509SVID call');
//   const port = await until(() => parsePort(child.output()), 'the child to print its port', { timeoutMs: 60_000 });

export interface UntilOptions {
  /** Real time before giving up (default 20 s). */
  readonly timeoutMs?: number;
  /** Real time between looks (default 10 ms; a latency bench may want 1). */
  readonly intervalMs?: number;
}

export const DEFAULT_UNTIL_TIMEOUT_MS = 20_000;

/**
 * Calls `condition` until it returns something other than false, undefined or null, and returns that
 * (true for a boolean condition). Throws, naming `what`, when `timeoutMs` of real time have passed.
 * An exception from `condition` ends the wait at once.
 */
export async function until<T>(
  condition: () => T | false | undefined | null | Promise<T | false | undefined | null>,
  what: string,
  options: UntilOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_UNTIL_TIMEOUT_MS;
  const intervalMs = options.intervalMs ?? 10;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value !== false && value !== undefined && value !== null) return value;
    if (Date.now() >= deadline) throw new Error(`gave up after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
