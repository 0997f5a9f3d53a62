// A time limit as an AbortSignal that ends with the work it bounds. AbortSignal.timeout's timer outlives the
// request: it fires when the time is up whether the request ended or not, and an idle process then wakes to abort a
// signal nobody reads any more (a refresh's limit fired 15 s after each refresh; README.md "Measured", idle CPU).

export interface Deadline {
  /** Aborts with a TimeoutError (as AbortSignal.timeout's does) after the time, or with any of the signals given. */
  readonly signal: AbortSignal;
  /** The work ended: no timer is left behind. */
  clear(): void;
}

export function deadline(ms: number, ...also: readonly AbortSignal[]): Deadline {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')),
    ms,
  );
  timer.unref();
  return {
    signal: also.length === 0 ? controller.signal : AbortSignal.any([...also, controller.signal]),
    clear: () => clearTimeout(timer),
  };
}
