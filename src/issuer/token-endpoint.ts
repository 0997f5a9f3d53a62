// The RFC 8693 token endpoint behind mutual TLS: POST /token turns the client's X.509-SVID into a
// JWT-SVID for one allowed audience; every refusal is an OAuth error body (RFC 6749 §5.2). Also
// GET /status as Venafi/token-exchange serves it, so its probes keep working.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Clock } from '../base/clock.ts';
import { KeyedTokenBuckets, retryAfterSeconds, TokenBucket } from '../base/token-bucket.ts';
import type { IssuerAwsConfig, SigningAlgorithm } from '../config/issuer.ts';
import { DEFAULT_RATE_LIMIT } from '../config/issuer.ts';
import { readBody } from '../http/read-body.ts';
import type { Logger } from '../ops/logger.ts';
import { awsClaims } from './aws-claims.ts';
import type { ClientVerifier } from './client-auth.ts';
import type { IssuerMetrics } from './metrics.ts';
import { buildClaims, signJwtSvid } from './mint.ts';
import { OAuthError, parseExchangeRequest, TOKEN_TYPE_JWT, type TokenResponse } from './oauth.ts';
import type { SigningKey } from './signing-key.ts';

export interface TokenEndpointOptions {
  readonly issuerUrl: string;
  readonly audiences: readonly string[];
  readonly lifetimeSeconds: number;
  readonly alg: SigningAlgorithm;
  /** Session tags and source identity in tokens for AWS's audience. */
  readonly aws?: IssuerAwsConfig | undefined;
  readonly verifier: ClientVerifier;
  readonly signer: () => SigningKey | undefined;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: IssuerMetrics;
  /** True once shutdown began: answers carry `Connection: close`. */
  readonly draining: () => boolean;
  /** Token buckets per client SPIFFE ID and overall (config issuer.rateLimit); DEFAULT_RATE_LIMIT when absent. */
  readonly rateLimit?: RateLimit | undefined;
}

export interface RateLimit {
  readonly perClient: { readonly burst: number; readonly perSecond: number };
  readonly overall: { readonly burst: number; readonly perSecond: number };
}

/** Most client SPIFFE IDs with a bucket of their own at once (KeyedTokenBuckets drops idle ones first). */
const MAX_RATE_LIMITED_CLIENTS = 10_000;

/** Largest request body read; a token-exchange form is a few hundred bytes. */
export const MAX_BODY_BYTES = 16 * 1024;

const JSON_HEADERS = { 'content-type': 'application/json', 'cache-control': 'no-store', pragma: 'no-cache' } as const;

export function tokenHandler(o: TokenEndpointOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const allowed = new Set(o.audiences);
  const limit = o.rateLimit ?? DEFAULT_RATE_LIMIT;
  const limiter: Limiter = {
    perClient: new KeyedTokenBuckets({
      capacity: limit.perClient.burst,
      refillPerSecond: limit.perClient.perSecond,
      maxKeys: MAX_RATE_LIMITED_CLIENTS,
      clock: o.clock,
    }),
    overall: new TokenBucket({
      capacity: limit.overall.burst,
      refillPerSecond: limit.overall.perSecond,
      clock: o.clock,
    }),
  };
  return (req, res) => {
    const started = process.hrtime.bigint();
    const finish = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      const text = JSON.stringify(body);
      if (o.draining()) headers['connection'] = 'close';
      res.writeHead(status, { ...JSON_HEADERS, 'content-length': Buffer.byteLength(text), ...headers }).end(text);
    };
    const refuse = (error: OAuthError): void => {
      o.metrics.refusals.inc({ error: error.error, reason: error.reason });
      o.metrics.latency.observe({ outcome: 'refused' }, Number(process.hrtime.bigint() - started) / 1e9);
      // A flood of rate-limited requests is counted in the metric, not logged line by line.
      const level = error.status >= 500 ? 'error' : error.reason === 'rate_limited' ? 'debug' : 'info';
      o.logger[level](
        {
          error: error.error,
          reason: error.reason,
          status: error.status,
          remote: req.socket.remoteAddress,
          err: error.message,
        },
        'token request refused',
      );
      finish(error.status, error.body(), { ...error.headers });
    };
    handle(o, allowed, limiter, req).then(
      (answer) => {
        if ('status' in answer) return finish(200, { status: 'OK' });
        o.metrics.tokensIssued.inc({ audience: answer.audience, alg: o.alg });
        o.metrics.latency.observe({ outcome: 'issued' }, Number(process.hrtime.bigint() - started) / 1e9);
        o.logger.info(
          {
            spiffeId: answer.body.spiffe_id,
            audience: answer.audience,
            kid: answer.kid,
            jti: answer.jti,
            expiresIn: answer.body.expires_in,
          },
          'JWT-SVID issued',
        );
        finish(200, answer.body);
      },
      (thrown: unknown) => {
        if (thrown instanceof OAuthError) return refuse(thrown);
        o.logger.error({ err: thrown instanceof Error ? thrown.message : String(thrown) }, 'token request failed');
        refuse(new OAuthError('server_error', 'internal', 'the issuer could not answer; try again'));
      },
    );
  };
}

type Answer = { status: 'OK' } | { body: TokenResponse; audience: string; kid: string; jti: string };

interface Limiter {
  readonly perClient: KeyedTokenBuckets<string>;
  readonly overall: TokenBucket;
}

/** Takes a token from the client's bucket, then from the overall one; refuses with 429 and Retry-After. */
function rateLimit(limiter: Limiter, spiffeId: string): void {
  const own = limiter.perClient.take(spiffeId);
  if (!own.ok) throw tooMany(own.retryAfterMs, `too many token requests from ${spiffeId}; retry later`);
  const all = limiter.overall.take();
  if (!all.ok) {
    // The client's own token was not spent on anything.
    limiter.perClient.give(spiffeId);
    throw tooMany(all.retryAfterMs, 'the issuer is answering too many token requests; retry later');
  }
}

function tooMany(retryAfterMs: number, description: string): OAuthError {
  return new OAuthError('temporarily_unavailable', 'rate_limited', description, {
    status: 429,
    headers: { 'retry-after': String(retryAfterSeconds(retryAfterMs)) },
  });
}

async function handle(
  o: TokenEndpointOptions,
  allowed: ReadonlySet<string>,
  limiter: Limiter,
  req: IncomingMessage,
): Promise<Answer> {
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/status' && (req.method === 'GET' || req.method === 'HEAD')) return { status: 'OK' };
  if (path !== '/token')
    throw new OAuthError('invalid_request', 'not_found', 'not found: the token endpoint is POST /token', {
      status: 404,
    });
  if (req.method !== 'POST') {
    throw new OAuthError('invalid_request', 'method_not_allowed', 'the token endpoint takes POST only', {
      status: 405,
      headers: { allow: 'POST' },
    });
  }
  if (new URL(req.url ?? '/', 'https://x').search !== '') {
    throw new OAuthError(
      'invalid_request',
      'malformed_request',
      'parameters go in the form body, not the query string',
    );
  }
  // Client authentication comes first (RFC 6749 §3.2.1): a stranger learns nothing about the rest.
  const nowBefore = o.clock.now();
  const client = o.verifier.verifySocket(req.socket as TLSSocket, nowBefore);
  rateLimit(limiter, client.id.toString());
  const raw = await readBody(req, MAX_BODY_BYTES);
  if (!raw) throw tooLarge();
  const body = raw.toString('utf8');
  const { audience } = parseExchangeRequest(req.headers['content-type'], body, allowed);
  const key = o.signer();
  if (!key)
    throw new OAuthError('temporarily_unavailable', 'no_signing_key', 'no signing key is loaded', {
      headers: { 'retry-after': '5' },
    });
  const now = o.clock.now();
  const claims = buildClaims({
    issuer: o.issuerUrl,
    subject: client.id.toString(),
    audience,
    nowMs: now,
    lifetimeSeconds: o.lifetimeSeconds,
    svidNotAfterMs: client.notAfterMs,
  });
  if (claims.exp <= claims.iat) {
    throw new OAuthError(
      'invalid_client',
      'expired_certificate',
      'the client certificate expires within the second; renew it first',
    );
  }
  const token = await signJwtSvid(claims, key, awsClaims(o.aws, audience, claims.sub));
  return {
    body: {
      access_token: token,
      issued_token_type: TOKEN_TYPE_JWT,
      token_type: 'N_A',
      expires_in: claims.exp - claims.iat,
      spiffe_id: claims.sub,
    },
    audience,
    kid: key.kid,
    jti: claims.jti,
  };
}

function tooLarge(): OAuthError {
  return new OAuthError(
    'invalid_request',
    'malformed_request',
    `the request body is larger than ${MAX_BODY_BYTES} bytes`,
    { status: 413, headers: { connection: 'close' } },
  );
}
