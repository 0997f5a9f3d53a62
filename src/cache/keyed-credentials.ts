// Credentials that depend on what the caller asks for (GCP scope sets, ID-token audiences, Azure
// resources): one RefreshingCredential per key, bounded, least recently used evicted. A key seen for
// the first time is fetched once and waited for; afterwards it is refreshed ahead like any other.
import { ConnectorError } from '../base/errors.ts';
import { RefreshingCredential, type Lookup, type RefreshingCredentialOptions } from './refreshing-credential.ts';

export interface KeyedCredentialsOptions<T> extends Omit<RefreshingCredentialOptions<T>, 'fetch' | 'name'> {
  /** Fetches the value for one key. */
  readonly fetch: (key: string, signal: AbortSignal) => Promise<T>;
  /** Most keys kept (and refreshed) at once; the least recently used beyond this is dropped. */
  readonly maxEntries: number;
  /** How long a request for a new key waits for its first fetch. Default 10 s. */
  readonly firstFetchWaitMs?: number;
  /** Turns a key into the credential name used in metrics and logs (keys may be long). */
  readonly label?: (key: string) => string;
}

export class KeyedCredentials<T> {
  readonly #o: KeyedCredentialsOptions<T>;
  readonly #entries = new Map<string, RefreshingCredential<T>>();

  constructor(options: KeyedCredentialsOptions<T>) {
    this.#o = options;
  }

  /** Starts keeping these keys fresh without waiting for them (config-declared warm set). */
  warm(keys: Iterable<string>): void {
    for (const key of keys) this.#entry(key);
  }

  /** The cached value for `key` without waiting; starts fetching a key not seen before. */
  peek(key: string): Lookup<T> {
    return this.#entry(key).get();
  }

  /**
   * The value for `key`: at once from the cache, or, for a key not fetched yet, after its first
   * fetch (bounded by firstFetchWaitMs and the caller's signal).
   */
  async get(key: string, signal?: AbortSignal): Promise<Lookup<T>> {
    const entry = this.#entry(key);
    const now = entry.get();
    if (now.ok || entry.lastError()) return now;
    const wait = this.#o.firstFetchWaitMs ?? 10_000;
    await new Promise<void>((resolve) => {
      const t = this.#o.clock.setTimeout(resolve, wait);
      const done = (): void => {
        this.#o.clock.clearTimeout(t);
        resolve();
      };
      // Settled, not ready: a first fetch that fails is answered at once (with its error), not after the wait.
      void entry.whenSettled().then(done);
      signal?.addEventListener('abort', done, { once: true });
    });
    return entry.get();
  }

  /** Refreshes every held key now (identity changed). */
  refreshAll(reason: string): Promise<void[]> {
    return Promise.all([...this.#entries.values()].map((e) => e.refreshNow(reason)));
  }

  size(): number {
    return this.#entries.size;
  }

  keys(): string[] {
    return [...this.#entries.keys()];
  }

  /** True when every held key has a valid value (an empty set counts as valid). */
  allValid(): boolean {
    for (const e of this.#entries.values()) if (!e.isValid()) return false;
    return true;
  }

  stop(): void {
    for (const e of this.#entries.values()) e.stop();
    this.#entries.clear();
  }

  #entry(key: string): RefreshingCredential<T> {
    const existing = this.#entries.get(key);
    if (existing) {
      // Move to the most-recently-used end.
      this.#entries.delete(key);
      this.#entries.set(key, existing);
      return existing;
    }
    if (this.#o.maxEntries < 1) throw new ConnectorError('internal', 'maxEntries must be at least 1');
    while (this.#entries.size >= this.#o.maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.get(oldest)?.stop();
      this.#entries.delete(oldest);
      this.#o.logger.info({ cloud: this.#o.cloud, credential: this.#label(oldest) }, 'dropped the least recently used credential (cache full)');
    }
    const { fetch, maxEntries: _m, firstFetchWaitMs: _f, label: _l, ...rest } = this.#o;
    const entry = new RefreshingCredential<T>({ ...rest, name: this.#label(key), fetch: (signal) => fetch(key, signal) });
    this.#entries.set(key, entry);
    entry.start();
    return entry;
  }

  #label(key: string): string {
    return this.#o.label ? this.#o.label(key) : key;
  }
}
