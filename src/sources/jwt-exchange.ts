// The `spiffe.jwt.exchange` JWT source: trades the current X.509-SVID for JWT-SVIDs at the issuer
// (RFC 8693 over mutual TLS, docs/spiffe.md#token-exchange), one per audience, cached and refreshed ahead.
import { Agent, request } from 'undici';
import type { Clock } from '../base/clock.ts';
import { deadline } from '../base/deadline.ts';
import { ConnectorError } from '../base/errors.ts';
import { CredentialCache } from '../cache/credential-cache.ts';
import { TOKEN_POLICY } from '../cache/refresh-policy.ts';
import type { Logger } from '../ops/logger.ts';
import type { Metrics } from '../ops/metrics.ts';
import { type JwtSvid, MAX_AUDIENCE_LENGTH, parseJwtSvidInsecure } from '../spiffe/jwt-svid.ts';
import { type JwtSource, Listeners, type Unsubscribe, type X509Source } from '../spiffe/source.ts';
import type { X509Svid } from '../spiffe/x509-svid.ts';

export const GRANT_TYPE_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const TOKEN_TYPE_TLS_CLIENT_AUTH = 'urn:ietf:params:oauth:token-type:tls-client-auth';
export const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';

export interface JwtExchangeOptions {
  /** The issuer's token endpoint, e.g. https://issuer.spiffe-connector.svc:8443/token. */
  readonly url: string;
  /** PEM CAs to trust for the issuer's serving certificate; the system roots when absent. */
  readonly caPem?: string;
  readonly x509: X509Source;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics?: Metrics | undefined;
  /** Per-request timeout; default 10 s. */
  readonly timeoutMs?: number;
  /** Audiences the sidecar itself needs (the configured clouds'): kept fresh from the start, never dropped. */
  readonly audiences?: readonly string[];
  /** Other audiences kept fresh at once; default 32. */
  readonly maxAudiences?: number;
}

/** The issuer's success body (RFC 8693 §2.2.1 plus Venafi's `spiffe_id`), before it becomes a JwtSvid. */
interface WireTokenResponse {
  access_token: string;
  issued_token_type: string;
  expires_in?: number;
  spiffe_id?: string;
}

function isTokenResponse(v: unknown): v is WireTokenResponse {
  if (v === null || typeof v !== 'object') return false;
  const o = v as Record<string, unknown>;
  return (
    typeof o['access_token'] === 'string' &&
    typeof o['issued_token_type'] === 'string' &&
    (o['expires_in'] === undefined || typeof o['expires_in'] === 'number') &&
    (o['spiffe_id'] === undefined || typeof o['spiffe_id'] === 'string')
  );
}

function oauthError(v: unknown): { error: string; description: string | undefined } | undefined {
  if (v === null || typeof v !== 'object') return undefined;
  const o = v as Record<string, unknown>;
  if (typeof o['error'] !== 'string') return undefined;
  return {
    error: o['error'].slice(0, 100),
    description: typeof o['error_description'] === 'string' ? o['error_description'].slice(0, 500) : undefined,
  };
}

class JwtExchangeSource implements JwtSource {
  readonly #o: JwtExchangeOptions;
  readonly #cache: CredentialCache<JwtSvid>;
  readonly #listeners = new Listeners<[]>();
  readonly #unsubscribe: Unsubscribe;
  #client: { svid: X509Svid; agent: Agent } | undefined;
  #closed = false;
  /** A consumer has asked for a JWT-SVID: from then on, a new X.509-SVID is news to tell. */
  #asked = false;

  constructor(options: JwtExchangeOptions) {
    this.#o = options;
    this.#cache = new CredentialCache<JwtSvid>({
      cloud: 'issuer',
      name: 'jwt-svid',
      exchange: (audience, signal) => this.#exchange(audience, signal),
      pinned: options.audiences ?? [],
      expiresAt: (svid) => svid.expiresAt,
      policy: TOKEN_POLICY,
      clock: options.clock,
      logger: options.logger,
      metrics: options.metrics,
      maxKeys: options.maxAudiences ?? 32,
      maxKeyLength: MAX_AUDIENCE_LENGTH,
    });
    this.#unsubscribe = options.x509.subscribe((svid) => void this.#rotated(svid));
  }

  async fetchJwtSvid(audience: string, signal: AbortSignal): Promise<JwtSvid> {
    this.#asked = true;
    const lookup = await this.#cache.get(audience, signal);
    if (!lookup.ok) throw lookup.error;
    const current = this.#o.x509.current();
    if (current && !lookup.value.id.equals(current.id)) {
      // The identity changed and the issuer has not answered for the new one yet: never hand out the old.
      throw new ConnectorError(
        'identity_unavailable',
        `the JWT-SVID for ${audience} is still for ${lookup.value.id.toString()}; waiting for one for ${current.id.toString()}`,
        { retryable: true },
      );
    }
    return lookup.value;
  }

  subscribe(listener: () => void): Unsubscribe {
    return this.#listeners.add(listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe();
    this.#cache.stop();
    const client = this.#client;
    this.#client = undefined;
    await client?.agent.close();
  }

  /**
   * A new X.509-SVID: fetch new JWT-SVIDs with it, then tell the consumers (who will ask us again). The
   * first one, before anyone asked, is no change to anyone: telling would make each consumer exchange
   * twice at start (its first exchange, then again for the "change").
   */
  async #rotated(svid: X509Svid): Promise<void> {
    if (this.#closed) return;
    const someoneAsked = this.#asked;
    this.#o.logger.info(
      { spiffeId: svid.id.toString(), audiences: this.#cache.size },
      'X.509-SVID rotated; exchanging it for new JWT-SVIDs',
    );
    await this.#cache.refreshAll('X.509-SVID rotated');
    if (someoneAsked) this.#listeners.emit();
  }

  /** One mTLS client per X.509-SVID: a rotated SVID gets a fresh TLS context from the next request on. */
  #agentFor(svid: X509Svid): Agent {
    if (this.#client?.svid === svid) return this.#client.agent;
    const previous = this.#client;
    const agent = new Agent({
      connect: {
        cert: svid.chainPem(),
        key: svid.keyPkcs8Pem().reveal(),
        ...(this.#o.caPem ? { ca: this.#o.caPem } : {}),
        timeout: this.#o.timeoutMs ?? 10_000,
      },
      keepAliveTimeout: 30_000,
    });
    this.#client = { svid, agent };
    if (previous) void previous.agent.close().catch(() => undefined);
    return agent;
  }

  async #exchange(audience: string, signal: AbortSignal): Promise<JwtSvid> {
    const svid = this.#o.x509.current();
    if (!svid)
      throw new ConnectorError('identity_unavailable', 'no valid X.509-SVID to present to the issuer yet', {
        retryable: true,
      });
    const form = new URLSearchParams({
      grant_type: GRANT_TYPE_TOKEN_EXCHANGE,
      subject_token_type: TOKEN_TYPE_TLS_CLIENT_AUTH,
      audience,
    });
    let status: number;
    let text: string;
    const limit = deadline(this.#o.timeoutMs ?? 10_000, signal);
    try {
      const res = await request(this.#o.url, {
        method: 'POST',
        dispatcher: this.#agentFor(svid),
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: form.toString(),
        signal: limit.signal,
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (cause) {
      const timedOut = cause instanceof Error && (cause.name === 'TimeoutError' || cause.name === 'AbortError');
      throw new ConnectorError(
        timedOut ? 'timeout' : 'upstream_unavailable',
        `the issuer at ${this.#o.url} ${timedOut ? 'did not answer in time' : `could not be reached: ${(cause as Error).message}`}`,
        { cause, retryable: true },
      );
    } finally {
      limit.clear();
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new ConnectorError(
        'upstream_malformed',
        `the issuer answered HTTP ${status} with a body that is not JSON`,
        { retryable: true, upstreamStatus: status },
      );
    }
    if (status !== 200) throw refusal(status, oauthError(body));
    if (!isTokenResponse(body))
      throw new ConnectorError(
        'upstream_malformed',
        'the issuer answered 200 without access_token and issued_token_type',
        { retryable: true, upstreamStatus: status },
      );
    if (body.issued_token_type !== TOKEN_TYPE_JWT) {
      throw new ConnectorError(
        'upstream_malformed',
        `the issuer issued a ${body.issued_token_type.slice(0, 100)}, not a JWT`,
        { retryable: false, upstreamStatus: status },
      );
    }
    const jwt = parseJwtSvidInsecure(body.access_token, { now: new Date(this.#o.clock.now()), audience });
    if (!jwt.id.equals(svid.id)) {
      throw new ConnectorError(
        'jwt_svid_invalid',
        `the issuer returned a JWT-SVID for ${jwt.id.toString()}, but we are ${svid.id.toString()}`,
        { retryable: false },
      );
    }
    if (body.spiffe_id !== undefined && body.spiffe_id !== svid.id.toString()) {
      throw new ConnectorError(
        'upstream_malformed',
        `the issuer's spiffe_id ${body.spiffe_id.slice(0, 300)} does not match the token's sub`,
        { retryable: false },
      );
    }
    return jwt;
  }
}

/** Maps an issuer refusal to a ConnectorError: 5xx and 429 are worth retrying, the OAuth errors are not. */
function refusal(status: number, err: { error: string; description: string | undefined } | undefined): ConnectorError {
  const what = err ? `${err.error}${err.description ? `: ${err.description}` : ''}` : 'no OAuth error body';
  const retryable = status >= 500 || status === 429 || err?.error === 'temporarily_unavailable';
  return new ConnectorError(
    retryable ? 'upstream_unavailable' : 'upstream_rejected',
    `the issuer refused the exchange with HTTP ${status} (${what})`,
    {
      retryable,
      upstreamStatus: status,
      ...(err ? { upstreamCode: err.error } : {}),
    },
  );
}

export function createJwtExchangeSource(options: JwtExchangeOptions): JwtSource {
  return new JwtExchangeSource(options);
}
