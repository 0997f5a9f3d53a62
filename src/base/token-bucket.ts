// Token buckets: a burst of `capacity`, refilled continuously at `refillPerSecond`. One bucket for an
// overall limit, `KeyedTokenBuckets` for one bucket per key with the number of keys bounded. Time comes
// from an injected clock, so tests move it by hand.
import type { Clock } from './clock.ts';

export interface TokenBucketOptions {
  /** Tokens the bucket holds when full: the burst allowed after a quiet period. */
  capacity: number;
  /** Tokens added per second, continuously. 0 means the bucket never refills. */
  refillPerSecond: number;
  /** Only `now()` is used. */
  clock: Pick<Clock, 'now'>;
}

/** The result of `take`: either granted, or refused with the wait until that many tokens exist. */
export type Take = { ok: true } | { ok: false; retryAfterMs: number };

export class TokenBucket {
  readonly capacity: number;
  readonly refillPerSecond: number;
  readonly #clock: Pick<Clock, 'now'>;
  #tokens: number;
  #at: number;

  constructor(options: TokenBucketOptions) {
    validate(options);
    this.capacity = options.capacity;
    this.refillPerSecond = options.refillPerSecond;
    this.#clock = options.clock;
    this.#tokens = options.capacity;
    this.#at = options.clock.now();
  }

  /** Takes `n` tokens if the bucket holds them; otherwise takes none and says how long to wait. */
  take(n = 1): Take {
    this.#refill();
    if (n <= this.#tokens) {
      this.#tokens -= n;
      return { ok: true };
    }
    return { ok: false, retryAfterMs: this.#waitFor(n) };
  }

  /** `take(n).ok`, for callers that do not report a wait. */
  tryTake(n = 1): boolean {
    return this.take(n).ok;
  }

  /** Puts back `n` tokens (never above capacity), e.g. when the work a token paid for did not happen. */
  give(n = 1): void {
    this.#refill();
    this.#tokens = Math.min(this.capacity, this.#tokens + n);
  }

  /** Tokens available now (fractional while refilling). */
  available(): number {
    this.#refill();
    return this.#tokens;
  }

  /** True when the bucket is full, i.e. indistinguishable from a new one. */
  isFull(): boolean {
    return this.available() >= this.capacity;
  }

  /** Milliseconds until `n` tokens are available; 0 if they are now, Infinity if they never will be. */
  retryAfterMs(n = 1): number {
    this.#refill();
    return n <= this.#tokens ? 0 : this.#waitFor(n);
  }

  #waitFor(n: number): number {
    if (n > this.capacity || this.refillPerSecond === 0) return Number.POSITIVE_INFINITY;
    return Math.ceil(((n - this.#tokens) / this.refillPerSecond) * 1000);
  }

  #refill(): void {
    const now = this.#clock.now();
    // A clock that steps back adds nothing and restarts the count from the new reading.
    const elapsed = Math.max(0, now - this.#at);
    this.#at = now;
    if (this.#tokens >= this.capacity) return;
    this.#tokens = Math.min(this.capacity, this.#tokens + (elapsed / 1000) * this.refillPerSecond);
  }
}

export interface KeyedTokenBucketsOptions extends TokenBucketOptions {
  /** Most keys tracked at once. */
  maxKeys: number;
}

/**
 * One bucket per key, at most `maxKeys` of them. A full bucket is the same as a new one, so full
 * buckets are dropped first when room is needed; if none is full, the least recently used key is
 * dropped (its next request starts from a full bucket). Pair it with an overall `TokenBucket` when
 * keys are chosen by the caller, so that many keys cannot add up to more than the overall rate.
 */
export class KeyedTokenBuckets<K = string> {
  readonly #options: TokenBucketOptions;
  readonly #maxKeys: number;
  readonly #buckets = new Map<K, TokenBucket>();

  constructor(options: KeyedTokenBucketsOptions) {
    validate(options);
    if (!Number.isInteger(options.maxKeys) || options.maxKeys < 1) {
      throw new RangeError(`maxKeys must be a positive integer, got ${options.maxKeys}`);
    }
    this.#options = { capacity: options.capacity, refillPerSecond: options.refillPerSecond, clock: options.clock };
    this.#maxKeys = options.maxKeys;
  }

  take(key: K, n = 1): Take {
    return this.#bucket(key).take(n);
  }

  tryTake(key: K, n = 1): boolean {
    return this.take(key, n).ok;
  }

  give(key: K, n = 1): void {
    this.#buckets.get(key)?.give(n);
  }

  retryAfterMs(key: K, n = 1): number {
    const bucket = this.#buckets.get(key);
    return bucket ? bucket.retryAfterMs(n) : n <= this.#options.capacity ? 0 : Number.POSITIVE_INFINITY;
  }

  /** Keys tracked now (never more than `maxKeys`). */
  get size(): number {
    return this.#buckets.size;
  }

  #bucket(key: K): TokenBucket {
    let bucket = this.#buckets.get(key);
    if (bucket) {
      // Map order is insertion order: re-inserting marks the key most recently used.
      this.#buckets.delete(key);
      this.#buckets.set(key, bucket);
      return bucket;
    }
    if (this.#buckets.size >= this.#maxKeys) this.#makeRoom();
    bucket = new TokenBucket(this.#options);
    this.#buckets.set(key, bucket);
    return bucket;
  }

  #makeRoom(): void {
    for (const [k, b] of this.#buckets) if (b.isFull()) this.#buckets.delete(k);
    if (this.#buckets.size < this.#maxKeys) return;
    const oldest = this.#buckets.keys().next();
    if (!oldest.done) this.#buckets.delete(oldest.value);
  }
}

/** Seconds for a `Retry-After` header: whole seconds, at least 1. */
export function retryAfterSeconds(retryAfterMs: number): number {
  if (!Number.isFinite(retryAfterMs)) return 3600;
  return Math.max(1, Math.ceil(retryAfterMs / 1000));
}

function validate(options: TokenBucketOptions): void {
  if (!(Number.isFinite(options.capacity) && options.capacity > 0)) {
    throw new RangeError(`capacity must be a positive number, got ${options.capacity}`);
  }
  if (!(Number.isFinite(options.refillPerSecond) && options.refillPerSecond >= 0)) {
    throw new RangeError(`refillPerSecond must be a non-negative number, got ${options.refillPerSecond}`);
  }
}
