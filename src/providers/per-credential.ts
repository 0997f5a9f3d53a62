// What a surface's hot path answers again and again, made once per credential: a body encoded to bytes once, not
// at every request. Held in a WeakMap, so it goes when the credential does (a refresh, an evicted key), and made
// anew when its stamp changes (the second a countdown such as `expires_in` shows; 0 for a body that never changes).

export class PerCredential<C extends object, V> {
  readonly #held = new WeakMap<C, { readonly stamp: number; readonly value: V }>();

  /** The value kept for `credential` at `stamp`, if any. */
  get(credential: C, stamp: number): V | undefined {
    const held = this.#held.get(credential);
    return held !== undefined && held.stamp === stamp ? held.value : undefined;
  }

  /** Keeps `value` for `credential` at `stamp` (replacing an older stamp's), and returns it. */
  keep(credential: C, stamp: number, value: V): V {
    this.#held.set(credential, { stamp, value });
    return value;
  }
}
