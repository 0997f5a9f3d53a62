// One credential kept fresh ahead of time: fetched at start, refreshed per RefreshPolicy, one fetch at
// a time, backoff on failure, last valid value served while refreshes fail, never an expired one.
// The entry of CredentialCache (credential-cache.ts), which every cloud and source uses; see
// docs/architecture.md "The credential cache".
import type { Clock, TimerHandle } from '../base/clock.ts';
import { deadline } from '../base/deadline.ts';
import { ConnectorError, toConnectorError } from '../base/errors.ts';
import type { Logger } from '../ops/logger.ts';
import type { Metrics } from '../ops/metrics.ts';
import { backoffDelay, type RefreshPolicy, refreshDelay } from './refresh-policy.ts';

export type Lookup<T> =
  | { readonly ok: true; readonly value: T; readonly expiresAt: Date }
  | { readonly ok: false; readonly error: ConnectorError; readonly retryAfterSeconds: number };

export interface RefreshingCredentialOptions<T> {
  /** For metrics and logs: the cloud (or "issuer", "workload-api") and the credential's name. */
  readonly cloud: string;
  readonly name: string;
  /** Which key of a keyed cache, in words for logs as `cacheKey` (the logger censors `key`); never a metric label. */
  readonly key?: string;
  /** Called after each successful refresh with the new value and its expiry (the cache reports and audits). */
  readonly onRefreshed?: (value: T, expiresAt: number) => void;
  /** Obtains a fresh value from upstream. Must honour the signal. */
  readonly fetch: (signal: AbortSignal) => Promise<T>;
  readonly expiresAt: (value: T) => Date;
  readonly policy: RefreshPolicy;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics?: Metrics | undefined;
  /** Per-attempt timeout, default 30 s. */
  readonly timeoutMs?: number;
  /** Wait after a non-retryable failure before trying again on its own (an identity change tries at once). Default 5 min. */
  readonly permanentRetryMs?: number;
  readonly random?: () => number;
}

interface Held<T> {
  readonly value: T;
  readonly fetchedAt: number;
  readonly expiresAt: number;
}

export class RefreshingCredential<T> {
  readonly #o: RefreshingCredentialOptions<T>;
  readonly #stop = new AbortController();
  #held: Held<T> | undefined;
  #lastError: ConnectorError | undefined;
  #inflight: Promise<void> | undefined;
  #again = false;
  #timer: TimerHandle | undefined;
  #nextAttemptAt: number | undefined;
  #failures = 0;
  #readyWaiters: Array<() => void> = [];
  #started = false;

  constructor(options: RefreshingCredentialOptions<T>) {
    this.#o = options;
  }

  /** Begins the first fetch. Idempotent. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    void this.refreshNow('start');
  }

  isStarted(): boolean {
    return this.#started;
  }

  /** The value to serve now, or why there is none. Never touches the network. */
  get(): Lookup<T> {
    const now = this.#o.clock.now();
    const held = this.#held;
    if (held && now < held.expiresAt) return { ok: true, value: held.value, expiresAt: new Date(held.expiresAt) };
    const retryAfterSeconds = this.#retryAfterSeconds(now);
    if (held) {
      return {
        ok: false,
        error: new ConnectorError(
          'credentials_unavailable',
          `${this.#o.cloud} ${this.#o.name} credentials expired and could not be refreshed${this.#lastError ? `: ${this.#lastError.message}` : ''}`,
          { cause: this.#lastError, retryable: true },
        ),
        retryAfterSeconds,
      };
    }
    return {
      ok: false,
      error: this.#lastError
        ? new ConnectorError(
            this.#lastError.code === 'upstream_rejected' ? 'upstream_rejected' : 'credentials_unavailable',
            `${this.#o.cloud} ${this.#o.name} credentials are not available yet: ${this.#lastError.message}`,
            {
              cause: this.#lastError,
              retryable: this.#lastError.retryable,
              ...(this.#lastError.upstreamCode === undefined ? {} : { upstreamCode: this.#lastError.upstreamCode }),
              ...(this.#lastError.upstreamStatus === undefined
                ? {}
                : { upstreamStatus: this.#lastError.upstreamStatus }),
            },
          )
        : new ConnectorError(
            'credentials_unavailable',
            `${this.#o.cloud} ${this.#o.name} credentials are being fetched`,
            { retryable: true },
          ),
      retryAfterSeconds,
    };
  }

  /** True while a valid value is held. */
  isValid(): boolean {
    return this.get().ok;
  }

  /** The last failure, if the last attempt failed. */
  lastError(): ConnectorError | undefined {
    return this.#lastError;
  }

  /** Resolves once a value has been fetched (or the credential is stopped). */
  whenReady(): Promise<void> {
    if (this.#held || this.#stop.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  /** Resolves when the fetch under way (if any) has finished, whether it succeeded or failed. */
  whenSettled(): Promise<void> {
    return this.#inflight
      ? this.#inflight.then(
          () => undefined,
          () => undefined,
        )
      : Promise.resolve();
  }

  /**
   * Refreshes now (an identity change, or start). Single-flight: while a fetch runs, another is
   * queued to run right after it, so the newest identity always gets a fetch of its own.
   */
  refreshNow(reason: string): Promise<void> {
    if (this.#stop.signal.aborted) return Promise.resolve();
    if (this.#inflight) {
      this.#again = true;
      return this.#inflight;
    }
    this.#cancelTimer();
    this.#inflight = this.#run(reason).finally(() => {
      this.#inflight = undefined;
      if (this.#again && !this.#stop.signal.aborted) {
        this.#again = false;
        void this.refreshNow('identity changed during a refresh');
      }
    });
    return this.#inflight;
  }

  stop(): void {
    this.#stop.abort();
    this.#cancelTimer();
    for (const w of this.#readyWaiters.splice(0)) w();
  }

  async #run(reason: string): Promise<void> {
    const { clock, logger, metrics, cloud, name, key } = this.#o;
    const started = clock.now();
    const limit = deadline(this.#o.timeoutMs ?? 30_000, this.#stop.signal);
    logger.debug({ cloud, credential: name, cacheKey: key, reason }, 'refreshing credentials');
    try {
      const value = await this.#o.fetch(limit.signal);
      if (this.#stop.signal.aborted) return;
      // Whole seconds, rounded toward now: every surface prints expiry in whole seconds, so a credential
      // is never served with a printed expiry that has already passed.
      const expiresAt = Math.floor(this.#o.expiresAt(value).getTime() / 1000) * 1000;
      const now = clock.now();
      if (!(expiresAt > now))
        throw new ConnectorError('upstream_malformed', `${cloud} returned credentials that are already expired`, {
          retryable: true,
        });
      this.#held = { value, fetchedAt: now, expiresAt };
      this.#lastError = undefined;
      this.#failures = 0;
      metrics?.exchanges.inc({ cloud, outcome: 'success' });
      metrics?.upstreamLatency.observe({ cloud }, (now - started) / 1000);
      this.#o.onRefreshed?.(value, expiresAt);
      const delay = refreshDelay(this.#o.policy, now, expiresAt, now, this.#o.random);
      logger.info(
        {
          cloud,
          credential: name,
          cacheKey: key,
          reason,
          expiresAt: new Date(expiresAt).toISOString(),
          nextRefreshInSeconds: Math.round(delay / 1000),
        },
        'credentials refreshed',
      );
      this.#schedule(delay);
      for (const w of this.#readyWaiters.splice(0)) w();
    } catch (thrown) {
      if (this.#stop.signal.aborted) return;
      const error = normalise(thrown, cloud);
      this.#lastError = error;
      this.#failures += 1;
      metrics?.exchanges.inc({ cloud, outcome: error.retryable ? 'retryable_error' : 'permanent_error' });
      metrics?.refreshRetries.inc({ cloud, credential: name });
      const now = clock.now();
      let delay = error.retryable
        ? backoffDelay(this.#o.policy, this.#failures, this.#o.random)
        : (this.#o.permanentRetryMs ?? 5 * 60_000);
      // While a valid value is held, never wait past its expiry for the next try.
      if (this.#held && this.#held.expiresAt > now)
        delay = Math.min(delay, Math.max(1_000, this.#held.expiresAt - now));
      logger.warn(
        {
          cloud,
          credential: name,
          cacheKey: key,
          reason,
          code: error.code,
          upstreamCode: error.upstreamCode,
          retryable: error.retryable,
          attempt: this.#failures,
          retryInSeconds: Math.round(delay / 1000),
          servingCached: this.#held !== undefined && this.#held.expiresAt > now,
          err: error.message,
        },
        'credential refresh failed',
      );
      this.#schedule(delay);
    } finally {
      limit.clear();
    }
  }

  #schedule(delay: number): void {
    this.#cancelTimer();
    this.#nextAttemptAt = this.#o.clock.now() + delay;
    this.#timer = this.#o.clock.setTimeout(() => {
      this.#timer = undefined;
      void this.refreshNow('scheduled');
    }, delay);
  }

  #cancelTimer(): void {
    if (this.#timer) this.#o.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#nextAttemptAt = undefined;
  }

  #retryAfterSeconds(now: number): number {
    if (this.#inflight || this.#nextAttemptAt === undefined) return 1;
    return Math.min(60, Math.max(1, Math.ceil((this.#nextAttemptAt - now) / 1000)));
  }
}

function normalise(thrown: unknown, cloud: string): ConnectorError {
  if (thrown instanceof ConnectorError) return thrown;
  if (thrown instanceof Error && (thrown.name === 'TimeoutError' || thrown.name === 'AbortError')) {
    return new ConnectorError('timeout', `${cloud} did not answer in time`, { cause: thrown, retryable: true });
  }
  const e = toConnectorError(thrown, 'upstream_unavailable');
  return new ConnectorError(e.code, e.message, { cause: thrown, retryable: true });
}
