// Our trust domain's JWT bundle for the Workload API server (FetchJWTBundles, ValidateJWTSVID): the
// issuer's published JWKS, found directly or through OIDC discovery, polled, last good kept.
import type { Clock, TimerHandle } from '../../base/clock.ts';
import { deadline } from '../../base/deadline.ts';
import { ConnectorError, toConnectorError } from '../../base/errors.ts';
import { backoffDelay, type RefreshPolicy } from '../../cache/refresh-policy.ts';
import { isLoopbackHost } from '../../config/common.ts';
import type { Logger } from '../../ops/logger.ts';
import type { Metrics } from '../../ops/metrics.ts';
import { JwtBundle } from '../../spiffe/bundle.ts';
import { Listeners, type Unsubscribe } from '../../spiffe/source.ts';

/** Where the server gets the JWT bundle it publishes and validates with. */
export interface JwtBundleSource {
  /** The current bundle, or undefined before the first good fetch. */
  current(): JwtBundle | undefined;
  /** Called after a different bundle has been swapped in. */
  subscribe(listener: (bundle: JwtBundle) => void): Unsubscribe;
  close(): Promise<void>;
}

export interface JwksBundleSourceOptions {
  /** A JWKS URL, or an OIDC issuer URL whose discovery document names the JWKS (`jwks_uri`). */
  readonly url: string;
  readonly trustDomain: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics?: Metrics | undefined;
  readonly fetch?: typeof fetch;
  /** Poll interval when the document gives no spiffe_refresh_hint. Default 300 s. */
  readonly refreshSeconds?: number;
  readonly timeoutMs?: number;
  readonly random?: () => number;
}

const BACKOFF: RefreshPolicy = { marginMs: 0, backoffBaseMs: 1_000, backoffMaxMs: 60_000, jitter: 0.1 };
const MAX_BYTES = 1 << 20;

/** Fetches once now (failures logged, not thrown), then keeps polling. */
export async function startJwksBundleSource(options: JwksBundleSourceOptions): Promise<JwtBundleSource> {
  const source = new JwksBundleSource(options);
  await source.refresh('start');
  return source;
}

class JwksBundleSource implements JwtBundleSource {
  readonly #o: JwksBundleSourceOptions;
  readonly #listeners = new Listeners<[JwtBundle]>();
  readonly #stop = new AbortController();
  #bundle: JwtBundle | undefined;
  #fingerprint = '';
  #timer: TimerHandle | undefined;
  #failures = 0;

  constructor(options: JwksBundleSourceOptions) {
    this.#o = options;
  }

  current(): JwtBundle | undefined {
    return this.#bundle;
  }

  subscribe(listener: (bundle: JwtBundle) => void): Unsubscribe {
    return this.#listeners.add(listener);
  }

  async close(): Promise<void> {
    this.#stop.abort();
    if (this.#timer) this.#o.clock.clearTimeout(this.#timer);
  }

  async refresh(reason: string): Promise<void> {
    const { logger, metrics } = this.#o;
    try {
      const bundle = await this.#fetchBundle();
      if (this.#stop.signal.aborted) return;
      this.#failures = 0;
      const fingerprint = JSON.stringify(bundle.keys);
      if (fingerprint !== this.#fingerprint) {
        logger.info(
          { reason, url: this.#o.url, keys: bundle.keys.map((k) => k.kid) },
          this.#bundle ? 'JWT bundle changed' : 'JWT bundle loaded',
        );
        this.#bundle = bundle;
        this.#fingerprint = fingerprint;
        this.#listeners.emit(bundle);
      }
      const refreshMs = (bundle.refreshHintSeconds ?? this.#o.refreshSeconds ?? 300) * 1000;
      this.#schedule(Math.max(10_000, refreshMs));
    } catch (thrown) {
      if (this.#stop.signal.aborted) return;
      const error = toConnectorError(thrown, 'upstream_unavailable');
      this.#failures += 1;
      metrics?.refreshRetries.inc({ cloud: 'workload-api', credential: 'jwt-bundle' });
      const delay = backoffDelay(BACKOFF, this.#failures, this.#o.random);
      logger.warn(
        {
          retry: 'jwt-bundle-fetch',
          reason,
          url: this.#o.url,
          code: error.code,
          attempt: this.#failures,
          retryInSeconds: Math.round(delay / 1000),
          keeping: this.#bundle !== undefined,
          err: error.message,
        },
        'fetching the JWT bundle failed',
      );
      this.#schedule(delay);
    }
  }

  #schedule(delay: number): void {
    if (this.#stop.signal.aborted) return;
    if (this.#timer) this.#o.clock.clearTimeout(this.#timer);
    this.#timer = this.#o.clock.setTimeout(() => void this.refresh('scheduled'), delay);
  }

  async #fetchBundle(): Promise<JwtBundle> {
    const url = this.#o.url.replace(/\/$/, '');
    if (!url.endsWith('/.well-known/openid-configuration')) {
      const first = await this.#getJson(url, true);
      if (isJwks(first)) return JwtBundle.parseJwks(this.#o.trustDomain, JSON.stringify(first));
    }
    // Not a JWKS: the URL names an OIDC issuer (or its discovery document); follow jwks_uri.
    const discoveryUrl = url.endsWith('/.well-known/openid-configuration')
      ? url
      : `${url}/.well-known/openid-configuration`;
    const discovery = await this.#getJson(discoveryUrl, false);
    if (!isDiscovery(discovery)) {
      throw new ConnectorError(
        'upstream_malformed',
        `${this.#o.url} is neither a JWKS nor an OIDC issuer whose discovery document names a jwks_uri`,
        { retryable: true },
      );
    }
    checkUrl(discovery.jwks_uri, 'jwks_uri');
    const jwksUri = discovery.jwks_uri;
    const jwks = await this.#getJson(jwksUri, false);
    if (!isJwks(jwks))
      throw new ConnectorError('upstream_malformed', `${jwksUri} is not a JWKS (no "keys" array)`, { retryable: true });
    return JwtBundle.parseJwks(this.#o.trustDomain, JSON.stringify(jwks));
  }

  /** GETs JSON; with `probing`, a 4xx answer is "not here" (undefined) rather than an error. */
  async #getJson(url: string, probing: boolean): Promise<unknown> {
    const limit = deadline(this.#o.timeoutMs ?? 10_000, this.#stop.signal);
    try {
      return await this.#getJsonUntil(url, probing, limit.signal);
    } finally {
      limit.clear();
    }
  }

  async #getJsonUntil(url: string, probing: boolean, signal: AbortSignal): Promise<unknown> {
    const doFetch = this.#o.fetch ?? fetch;
    let response: Response;
    try {
      response = await doFetch(url, { signal, headers: { accept: 'application/json' }, redirect: 'error' });
    } catch (cause) {
      throw new ConnectorError('upstream_unavailable', `could not fetch ${url}: ${(cause as Error).message}`, {
        cause,
        retryable: true,
      });
    }
    if (!response.ok) {
      await response.body?.cancel();
      if (probing && response.status >= 400 && response.status < 500) return undefined;
      throw new ConnectorError('upstream_unavailable', `${url} answered HTTP ${response.status}`, {
        retryable: true,
        upstreamStatus: response.status,
      });
    }
    const text = await response.text();
    if (text.length > MAX_BYTES)
      throw new ConnectorError('upstream_malformed', `${url} answered more than ${MAX_BYTES} bytes`, {
        retryable: true,
      });
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return undefined;
    }
  }
}

function isJwks(value: unknown): value is { keys: unknown[] } {
  return typeof value === 'object' && value !== null && Array.isArray((value as { keys?: unknown }).keys);
}

function isDiscovery(value: unknown): value is { jwks_uri: string } {
  return typeof value === 'object' && value !== null && typeof (value as { jwks_uri?: unknown }).jwks_uri === 'string';
}

/** Keys decide which tokens the pod trusts: https only, http only on loopback (as for the configured URL). */
function checkUrl(value: string, what: string): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConnectorError('upstream_malformed', `the discovery document's ${what} is not a URL`, {
      retryable: true,
    });
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) {
    throw new ConnectorError('upstream_rejected', `the discovery document's ${what} ${value} is not https`, {
      retryable: true,
    });
  }
}
