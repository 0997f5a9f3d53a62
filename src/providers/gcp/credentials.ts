// The Google credentials the metadata server serves, kept fresh ahead of time (DESIGN.md "Rules"):
// access tokens per scope set, ID tokens per audience (both bounded LRUs of RefreshingCredential),
// and the federated token that authorises generateIdToken. Only a scope set or audience seen for
// the first time makes a request wait on Google.
import { createHash } from 'node:crypto';
import { KeyedCredentials } from '../../cache/keyed-credentials.ts';
import { RefreshingCredential, type Lookup } from '../../cache/refreshing-credential.ts';
import { TOKEN_POLICY } from '../../cache/refresh-policy.ts';
import type { Clock } from '../../base/clock.ts';
import type { Logger } from '../../ops/logger.ts';
import type { Metrics } from '../../ops/metrics.ts';
import type { Secret } from '../../base/secret.ts';
import { scopeKey, type GcpToken, type GcpTokens } from './token.ts';

/** The upstream calls this cache makes (GcpExchange implements it; tests may fake it). */
export interface GcpUpstream {
  accessToken(scopes: readonly string[], signal: AbortSignal): Promise<GcpToken>;
  federatedToken(signal: AbortSignal): Promise<GcpToken>;
  idToken(audience: string, federated: Secret, signal: AbortSignal): Promise<GcpToken>;
}

export interface GcpCredentialsOptions {
  readonly upstream: GcpUpstream;
  /** The scope set of a token request without `scopes=`; kept warm from start. */
  readonly defaultScopes: readonly string[];
  /** Whether ID tokens can be had (a service account is configured). */
  readonly idTokens: boolean;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics?: Metrics | undefined;
  /** Most scope sets kept fresh at once. Default 16. */
  readonly maxScopeSets?: number;
  /** Most ID-token audiences kept fresh at once. Default 32. */
  readonly maxAudiences?: number;
  readonly firstFetchWaitMs?: number;
  readonly random?: () => number;
}

export class GcpCredentials implements GcpTokens {
  readonly #o: GcpCredentialsOptions;
  readonly #defaultKey: string;
  readonly #access: KeyedCredentials<GcpToken>;
  readonly #ids: KeyedCredentials<GcpToken> | undefined;
  #federated: RefreshingCredential<GcpToken> | undefined;
  readonly idToken: GcpTokens['idToken'];

  constructor(options: GcpCredentialsOptions) {
    this.#o = options;
    this.#defaultKey = scopeKey(options.defaultScopes);
    const common = {
      cloud: 'gcp',
      expiresAt: (t: GcpToken) => t.expiresAt,
      policy: TOKEN_POLICY,
      clock: options.clock,
      logger: options.logger,
      metrics: options.metrics,
      ...(options.firstFetchWaitMs === undefined ? {} : { firstFetchWaitMs: options.firstFetchWaitMs }),
      ...(options.random ? { random: options.random } : {}),
    };
    this.#access = new KeyedCredentials<GcpToken>({
      ...common,
      maxEntries: options.maxScopeSets ?? 16,
      label: (key) => (key === this.#defaultKey ? 'access-token:default' : `access-token:${shortHash(key)}`),
      fetch: (key, signal) => options.upstream.accessToken(key.split(','), signal),
    });
    if (options.idTokens) {
      this.#ids = new KeyedCredentials<GcpToken>({
        ...common,
        maxEntries: options.maxAudiences ?? 32,
        label: (audience) => `id-token:${shortHash(audience)}`,
        fetch: async (audience, signal) => {
          const federated = await this.#federatedToken(signal);
          if (!federated.ok) throw federated.error;
          return options.upstream.idToken(audience, federated.value.token, signal);
        },
      });
      this.idToken = (audience, signal) => (this.#ids as KeyedCredentials<GcpToken>).get(audience, signal);
    } else {
      this.idToken = undefined;
    }
  }

  /** Starts keeping the default scope set fresh. */
  start(): void {
    this.#access.warm([this.#defaultKey]);
  }

  peekAccessToken(scopes: readonly string[] | undefined): Lookup<GcpToken> {
    return this.#access.peek(scopes === undefined ? this.#defaultKey : scopeKey(scopes));
  }

  accessToken(scopes: readonly string[] | undefined, signal: AbortSignal): Promise<Lookup<GcpToken>> {
    return this.#access.get(scopes === undefined ? this.#defaultKey : scopeKey(scopes), signal);
  }

  /** The identity changed: every held credential is fetched anew (ID tokens after the federated token). */
  async refreshAll(reason: string): Promise<void> {
    await Promise.all([
      this.#access.refreshAll(reason),
      (async () => {
        if (this.#federated) await this.#federated.refreshNow(reason);
        await this.#ids?.refreshAll(reason);
      })(),
    ]);
  }

  /** The default token, which readiness reports on. */
  defaultLookup(): Lookup<GcpToken> {
    return this.#access.peek(this.#defaultKey);
  }

  sizes(): { scopeSets: number; audiences: number } {
    return { scopeSets: this.#access.size(), audiences: this.#ids?.size() ?? 0 };
  }

  stop(): void {
    this.#access.stop();
    this.#ids?.stop();
    this.#federated?.stop();
  }

  async #federatedToken(signal: AbortSignal): Promise<Lookup<GcpToken>> {
    if (!this.#federated) {
      const o = this.#o;
      this.#federated = new RefreshingCredential<GcpToken>({
        cloud: 'gcp',
        name: 'federated-token',
        fetch: (s) => o.upstream.federatedToken(s),
        expiresAt: (t) => t.expiresAt,
        policy: TOKEN_POLICY,
        clock: o.clock,
        logger: o.logger,
        metrics: o.metrics,
        ...(o.random ? { random: o.random } : {}),
      });
      this.#federated.start();
    }
    const federated = this.#federated;
    const now = federated.get();
    if (now.ok || federated.lastError()) return now;
    await Promise.race([federated.whenReady(), new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))]);
    return federated.get();
  }
}

function shortHash(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 12);
}
