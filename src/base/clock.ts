// Time as a dependency: the real clock for the program, a manual one for tests (STYLE habit 3).

export interface TimerHandle {
  unref?(): unknown;
}

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, Math.max(0, Math.min(ms, 2_147_483_647)));
    t.unref();
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

interface ManualTimer extends TimerHandle {
  at: number;
  fn: () => void;
  cancelled: boolean;
}

/** A clock that moves only when told to; timers due by then fire in order. */
export class ManualClock implements Clock {
  #now: number;
  #timers: ManualTimer[] = [];

  constructor(start = Date.parse('2026-01-01T00:00:00Z')) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer: ManualTimer = { at: this.#now + Math.max(0, ms), fn, cancelled: false };
    this.#timers.push(timer);
    return timer;
  }

  clearTimeout(handle: TimerHandle): void {
    (handle as ManualTimer).cancelled = true;
  }

  /** Moves time forward, firing due timers; awaits microtasks between them so async work settles. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      await settle();
      const due = this.#timers.filter((t) => !t.cancelled && t.at <= target).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      due.cancelled = true;
      this.#now = Math.max(this.#now, due.at);
      due.fn();
    }
    this.#now = target;
    this.#timers = this.#timers.filter((t) => !t.cancelled);
    await settle();
  }

  pendingTimers(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
