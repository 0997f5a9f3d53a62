// What a stand-in needs of a clock: milliseconds since the epoch. The product's clocks (the system one, the
// tests' ManualClock) fit this shape, so a test drives a stand-in with the same clock as the sidecar.
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
