// The one credential cache every cloud and identity source uses: it wraps an exchange
// `(key, signal) → credential` and keeps each key's credential fresh ahead of time (RefreshingCredential).
// A single credential is a cache with one pinned key. Keys chosen by callers (an Azure resource, a Google
// scope set or audience, a Workload API audience) are bounded three ways: their length, their number
// (least recently used dropped, pinned keys never), and the rate of keys never seen before (a token
// bucket; beyond it a lookup answers `throttled`). Permanent refusals are remembered per key for a while,
// so a key the cloud refuses costs one call, not one per request. See docs/architecture.md.
import type { Clock } from '../base/clock.ts';
import { ConnectorError } from '../base/errors.ts';
import { retryAfterSeconds, TokenBucket } from '../base/token-bucket.ts';
import type { Logger } from '../ops/logger.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { RefreshPolicy } from './refresh-policy.ts';
import { type Lookup, RefreshingCredential } from './refreshing-credential.ts';

export type { Lookup } from './refreshing-credential.ts';

/** How a cloud obtains one credential for one key. Must honour the signal; throws ConnectorError with `retryable` set. */
export type Exchange<C> = (key: string, signal: AbortSignal) => Promise<C>;

/** What endpoints get: answers from the cache, never an upstream call of their own. */
export interface CredentialLookup<C> {
  /** The cached credential for `key` at once; a key not seen before starts its first exchange (within the limits). */
  peek(key: string): Lookup<C>;
  /** As peek, but a key not fetched yet waits for its first exchange (bounded by firstFetchWaitMs and `signal`). */
  get(key: string, signal?: AbortSignal): Promise<Lookup<C>>;
}

/**
 * What an operator needs to join a credential with the cloud's own audit log (CloudTrail, Cloud Audit Logs,
 * Entra sign-in logs). Never a secret.
 */
export interface AuditFacts {
  /** Who the credential acts as: the role, the service account, the client id. */
  readonly principal: string;
  readonly sessionName?: string | undefined;
  /** The SPIFFE ID the credential was exchanged for. */
  readonly spiffeId?: string | undefined;
  /** The upstream's id of the request that issued it (x-amzn-RequestId, x-ms-request-id, ...). */
  readonly upstreamRequestId?: string | undefined;
}

/** The key of a cache that holds one credential. */
export const SINGLE = '';

export interface CredentialCacheOptions<C> {
  /** Metric and log label: the cloud, or "issuer" / "workload-api" for identity sources. */
  readonly cloud: string;
  /** What kind of credential this cache holds ("web-identity", "access-token", ...): a fixed label, never a key. */
  readonly name: string;
  readonly exchange: Exchange<C>;
  readonly expiresAt: (credential: C) => Date;
  readonly policy: RefreshPolicy;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics?: Metrics | undefined;
  /** Keys fetched at start and never dropped (the configured or default ones). */
  readonly pinned?: Iterable<string>;
  /** Most keys held besides the pinned ones; 0 (the default) means only pinned keys are served. */
  readonly maxKeys?: number;
  /** When set, only these caller keys are served (pinned keys always are); others are refused without a call. */
  readonly allow?: ((key: string) => boolean) | undefined;
  /** Longest key accepted, in characters. Default 2048. */
  readonly maxKeyLength?: number;
  /** New keys per second once the burst is spent (default 0.2, one every 5 s) … */
  readonly newKeysPerSecond?: number;
  /** … and the burst of new keys allowed after a quiet period (default 16). */
  readonly newKeyBurst?: number;
  /** How long a permanent refusal of a dropped key is remembered. Default: permanentRetryMs. */
  readonly rememberRefusalMs?: number;
  /** How long a request for a new key waits for its first exchange. Default 10 s. */
  readonly firstFetchWaitMs?: number;
  /** Per-attempt timeout, default 30 s. */
  readonly timeoutMs?: number;
  /** Wait after a non-retryable failure before trying again on its own. Default 5 min. */
  readonly permanentRetryMs?: number;
  /** The audit facts of an issued credential: with it, each credential issued is one audit log line and a count. */
  readonly audit?: ((credential: C) => AuditFacts) | undefined;
  /** Turns a key into words for logs (keys may be long); never used as a metric label. */
  readonly describe?: (key: string) => string;
  readonly random?: () => number;
}

interface Refusal {
  readonly error: ConnectorError;
  readonly until: number;
}

export class CredentialCache<C> implements CredentialLookup<C> {
  readonly #o: CredentialCacheOptions<C>;
  readonly #pinned = new Map<string, RefreshingCredential<C>>();
  /** Caller-chosen keys, least recently used first. */
  readonly #held = new Map<string, RefreshingCredential<C>>();
  readonly #refused = new Map<string, Refusal>();
  readonly #newKeys: TokenBucket;

  constructor(options: CredentialCacheOptions<C>) {
    this.#o = options;
    this.#newKeys = new TokenBucket({
      capacity: options.newKeyBurst ?? 16,
      refillPerSecond: options.newKeysPerSecond ?? 0.2,
      clock: options.clock,
    });
    for (const key of options.pinned ?? []) if (!this.#pinned.has(key)) this.#pinned.set(key, this.#entry(key));
  }

  /** Starts the pinned keys' first exchanges (a lookup of a pinned key also starts it). Idempotent. */
  start(): void {
    for (const entry of this.#pinned.values()) entry.start();
  }

  peek(key: string): Lookup<C> {
    const found = this.#find(key);
    return 'lookup' in found ? found.lookup : found.entry.get();
  }

  async get(key: string, signal?: AbortSignal): Promise<Lookup<C>> {
    const found = this.#find(key);
    if ('lookup' in found) return found.lookup;
    const { entry } = found;
    const now = entry.get();
    if (now.ok || entry.lastError()) return now;
    await new Promise<void>((resolve) => {
      const timer = this.#o.clock.setTimeout(done, this.#o.firstFetchWaitMs ?? 10_000);
      function done(): void {
        clock.clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      }
      const clock = this.#o.clock;
      // Settled, not ready: a first exchange that fails is answered at once with its error.
      void entry.whenSettled().then(done);
      signal?.addEventListener('abort', done, { once: true });
    });
    return entry.get();
  }

  /** The identity changed: every held key is exchanged anew (refusals are forgotten, the new identity may be allowed). */
  async refreshAll(reason: string): Promise<void> {
    this.#refused.clear();
    await Promise.all([...this.#pinned.values(), ...this.#held.values()].map((e) => e.refreshNow(reason)));
  }

  /**
   * Another identity: drops every credential at once (none of the old identity's may be served), and
   * starts the pinned keys afresh if they had been started.
   */
  reset(): void {
    const restart = [...this.#pinned.values()].some((e) => e.isStarted());
    for (const e of this.#pinned.values()) e.stop();
    for (const e of this.#held.values()) e.stop();
    this.#held.clear();
    this.#refused.clear();
    for (const key of this.#pinned.keys()) this.#pinned.set(key, this.#entry(key));
    if (restart) this.start();
  }

  /** Resolves once every pinned key holds a credential (or the cache is stopped). */
  async whenReady(): Promise<void> {
    await Promise.all([...this.#pinned.values()].map((e) => e.whenReady()));
  }

  /** True when every pinned key holds a valid credential. */
  pinnedValid(): boolean {
    for (const e of this.#pinned.values()) if (!e.isValid()) return false;
    return true;
  }

  /** Keys held besides the pinned ones. */
  get size(): number {
    return this.#held.size;
  }

  stop(): void {
    for (const e of this.#pinned.values()) e.stop();
    for (const e of this.#held.values()) e.stop();
    this.#held.clear();
    this.#refused.clear();
    this.#o.metrics?.credentialExpiry.remove({ cloud: this.#o.cloud, credential: this.#o.name });
  }

  #find(key: string): { entry: RefreshingCredential<C> } | { lookup: Lookup<C> } {
    const pinned = this.#pinned.get(key);
    if (pinned) {
      pinned.start();
      return { entry: pinned };
    }
    const held = this.#held.get(key);
    if (held) {
      this.#held.delete(key);
      this.#held.set(key, held);
      return { entry: held };
    }
    const max = this.#o.maxKeys ?? 0;
    if (max < 1)
      return {
        lookup: refused(
          new ConnectorError('request_invalid', `${this.#o.cloud}: only the configured ${this.#o.name} is served`),
        ),
      };
    if (key.length > (this.#o.maxKeyLength ?? 2048))
      return {
        lookup: refused(
          new ConnectorError(
            'request_invalid',
            `${this.#o.cloud}: the ${this.#o.name} key is longer than ${this.#o.maxKeyLength ?? 2048} characters`,
          ),
        ),
      };
    if (this.#o.allow && !this.#o.allow(key))
      return {
        lookup: refused(
          new ConnectorError('request_invalid', `${this.#o.cloud}: this ${this.#o.name} key is not on the allow-list`),
        ),
      };
    const now = this.#o.clock.now();
    const refusal = this.#refused.get(key);
    if (refusal && refusal.until > now)
      return {
        lookup: {
          ok: false,
          error: refusal.error,
          retryAfterSeconds: Math.max(1, Math.ceil((refusal.until - now) / 1000)),
        },
      };
    if (refusal) this.#refused.delete(key);
    const take = this.#newKeys.take();
    if (!take.ok) {
      const wait = retryAfterSeconds(take.retryAfterMs);
      return {
        lookup: {
          ok: false,
          error: new ConnectorError(
            'throttled',
            `${this.#o.cloud}: too many new ${this.#o.name} keys; try again in ${wait} s`,
            { retryable: true },
          ),
          retryAfterSeconds: wait,
        },
      };
    }
    while (this.#held.size >= max) this.#drop(this.#held.keys().next().value as string, now);
    const entry = this.#entry(key);
    this.#held.set(key, entry);
    entry.start();
    return { entry };
  }

  #drop(key: string, now: number): void {
    const entry = this.#held.get(key);
    if (!entry) return;
    entry.stop();
    this.#held.delete(key);
    const error = entry.lastError();
    if (error && !error.retryable) {
      const max = Math.max(16, (this.#o.maxKeys ?? 0) * 4);
      while (this.#refused.size >= max) this.#refused.delete(this.#refused.keys().next().value as string);
      this.#refused.set(key, {
        error,
        until: now + (this.#o.rememberRefusalMs ?? this.#o.permanentRetryMs ?? 5 * 60_000),
      });
    }
    this.#o.logger.info(
      { cloud: this.#o.cloud, credential: this.#o.name, cacheKey: this.#describe(key) },
      'dropped the least recently used credential (cache full)',
    );
  }

  #entry(key: string): RefreshingCredential<C> {
    const o = this.#o;
    const entry = new RefreshingCredential<C>({
      cloud: o.cloud,
      name: o.name,
      ...(key === SINGLE ? {} : { key: this.#describe(key) }),
      fetch: (signal) => o.exchange(key, signal),
      expiresAt: o.expiresAt,
      policy: o.policy,
      clock: o.clock,
      logger: o.logger,
      metrics: o.metrics,
      onRefreshed: (value, expiresAt) => {
        this.#reportExpiry();
        this.#audit(value, expiresAt, key);
      },
      ...(o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs }),
      ...(o.permanentRetryMs === undefined ? {} : { permanentRetryMs: o.permanentRetryMs }),
      ...(o.random ? { random: o.random } : {}),
    });
    return entry;
  }

  /** One gauge per cache, not per key: the soonest expiry among the pinned credentials (the ones the pod relies on). */
  #reportExpiry(): void {
    const metrics = this.#o.metrics;
    if (!metrics) return;
    let soonest = Number.POSITIVE_INFINITY;
    for (const e of this.#pinned.size > 0 ? this.#pinned.values() : this.#held.values()) {
      const l = e.get();
      if (l.ok) soonest = Math.min(soonest, l.expiresAt.getTime());
    }
    if (Number.isFinite(soonest))
      metrics.credentialExpiry.set({ cloud: this.#o.cloud, credential: this.#o.name }, Math.round(soonest / 1000));
  }

  /** One audit event per credential issued: a structured log line and a counter; no secret, no caller key as a label. */
  #audit(value: C, expiresAt: number, key: string): void {
    const audit = this.#o.audit;
    if (!audit) return;
    const facts = audit(value);
    this.#o.metrics?.credentialsIssued.inc({ cloud: this.#o.cloud, credential: this.#o.name });
    this.#o.logger.info(
      {
        audit: 'credential_issued',
        cloud: this.#o.cloud,
        credential: this.#o.name,
        ...(key === SINGLE ? {} : { cacheKey: this.#describe(key) }),
        principal: facts.principal,
        sessionName: facts.sessionName,
        spiffeId: facts.spiffeId,
        upstreamRequestId: facts.upstreamRequestId,
        expiresAt: new Date(expiresAt).toISOString(),
      },
      'credential issued',
    );
  }

  #describe(key: string): string {
    return this.#o.describe ? this.#o.describe(key) : key.slice(0, 200);
  }
}

function refused<C>(error: ConnectorError): Lookup<C> {
  return { ok: false, error, retryAfterSeconds: 0 };
}
