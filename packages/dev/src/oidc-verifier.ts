// How the cloud stand-ins check a federated JWT the way AWS STS, Google STS and Entra do: the issuer must
// be registered and an https:// URL without a port, the algorithm one AWS IAM allows (RS256/384/512,
// ES256/384/512); the issuer's JWKS is found through OIDC discovery, then signature, iss, aud, exp (and
// nbf/iat) are verified. The one exception: `allowLoopbackHttpIssuers`, for the dev mode's and the tests'
// issuers on http://127.0.0.1:<port>, which a stand-in takes only when its options say so.
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors, type JWTPayload, jwtVerify } from 'jose';

export type OidcFailure =
  | 'malformed' //        not a JWT
  | 'untrusted_issuer' // iss is not a registered provider
  | 'discovery_failed' // discovery or JWKS could not be fetched
  | 'unsupported_algorithm' // not RS256/384/512 or ES256/384/512
  | 'unknown_key' //        no key of the issuer's JWKS matches the token's kid/alg
  | 'bad_signature'
  | 'wrong_audience'
  | 'expired'
  | 'not_yet_valid'
  | 'missing_claim';

export class OidcVerificationError extends Error {
  override readonly name = 'OidcVerificationError';
  readonly reason: OidcFailure;

  constructor(reason: OidcFailure, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

/** The signing algorithms AWS IAM accepts for OIDC federation; Google and Entra accept fewer. */
export const OIDC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512'] as const;

/**
 * Why AWS IAM, Google and Entra would refuse `issuer` as an identity provider URL, or undefined when they
 * take it: it must be https:// and name no port. With `allowLoopbackHttp` (dev mode and tests only),
 * http:// or https:// on 127.0.0.1, [::1] or localhost, with a port, is taken too.
 */
export function issuerUrlProblem(issuer: string, allowLoopbackHttp: boolean): string | undefined {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    return `the issuer "${issuer}" is not a URL`;
  }
  if (
    allowLoopbackHttp &&
    (url.protocol === 'http:' || url.protocol === 'https:') &&
    ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname)
  )
    return undefined;
  if (url.protocol !== 'https:') return `the issuer "${issuer}" must be an https:// URL`;
  if (url.port !== '') return `the issuer "${issuer}" must not name a port`;
  return undefined;
}

export interface OidcVerifierOptions {
  /** Issuers registered with the stand-in, exactly as `iss` must read. */
  readonly issuers: readonly string[];
  /**
   * Dev mode and tests only: also take issuers on http://127.0.0.1:<port> (or localhost), which the real
   * services refuse. Each stand-in passes its own option of the same name.
   */
  readonly allowLoopbackHttpIssuers?: boolean;
  /** Seconds of clock skew tolerated. */
  readonly clockToleranceSeconds?: number;
  readonly now?: () => number;
}

export class OidcVerifier {
  readonly #o: OidcVerifierOptions;
  readonly #jwks = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

  constructor(options: OidcVerifierOptions) {
    for (const issuer of options.issuers) {
      const problem = issuerUrlProblem(issuer, options.allowLoopbackHttpIssuers === true);
      if (problem) throw new Error(problem);
    }
    this.#o = options;
  }

  /** Verifies `token` for `audience` (any of, when an array). Throws OidcVerificationError. */
  async verify(
    token: string,
    audience: string | readonly string[],
  ): Promise<JWTPayload & { iss: string; sub: string; exp: number }> {
    let unverified: JWTPayload;
    try {
      unverified = decodeJwt(token);
    } catch (cause) {
      throw new OidcVerificationError('malformed', 'the token is not a JWT', { cause });
    }
    const iss = unverified.iss;
    if (typeof iss !== 'string') throw new OidcVerificationError('missing_claim', 'the token has no iss claim');
    if (!this.#o.issuers.includes(iss))
      throw new OidcVerificationError('untrusted_issuer', `issuer ${iss} is not a registered identity provider`);
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch (cause) {
      throw new OidcVerificationError('malformed', 'the token header is not JSON', { cause });
    }
    if (!(OIDC_ALGORITHMS as readonly unknown[]).includes(alg)) {
      throw new OidcVerificationError(
        'unsupported_algorithm',
        `the token is signed with ${String(alg)}; only ${OIDC_ALGORITHMS.join(', ')} are accepted`,
      );
    }
    const jwks = await this.#keySet(iss);
    try {
      const { payload } = await jwtVerify(token, jwks, {
        issuer: iss,
        audience: typeof audience === 'string' ? audience : [...audience],
        requiredClaims: ['sub', 'exp', 'aud'],
        algorithms: [...OIDC_ALGORITHMS],
        clockTolerance: this.#o.clockToleranceSeconds ?? 60,
        ...(this.#o.now ? { currentDate: new Date(this.#o.now()) } : {}),
      });
      return payload as JWTPayload & { iss: string; sub: string; exp: number };
    } catch (cause) {
      throw classify(cause);
    }
  }

  async #keySet(iss: string): Promise<ReturnType<typeof createRemoteJWKSet>> {
    const cached = this.#jwks.get(iss);
    if (cached) return cached;
    let jwksUri: string;
    try {
      const response = await fetch(`${iss.replace(/\/$/, '')}/.well-known/openid-configuration`, {
        signal: AbortSignal.timeout(5000),
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const doc: unknown = await response.json();
      if (
        !doc ||
        typeof doc !== 'object' ||
        typeof (doc as { jwks_uri?: unknown }).jwks_uri !== 'string' ||
        (doc as { issuer?: unknown }).issuer !== iss
      ) {
        throw new Error('the discovery document lacks jwks_uri or names another issuer');
      }
      jwksUri = (doc as { jwks_uri: string }).jwks_uri;
    } catch (cause) {
      throw new OidcVerificationError(
        'discovery_failed',
        `could not fetch OIDC discovery for ${iss}: ${(cause as Error).message}`,
        { cause },
      );
    }
    const set = createRemoteJWKSet(new URL(jwksUri), { timeoutDuration: 5000, cooldownDuration: 0 });
    this.#jwks.set(iss, set);
    return set;
  }
}

function classify(cause: unknown): OidcVerificationError {
  if (cause instanceof OidcVerificationError) return cause;
  if (cause instanceof errors.JWTExpired)
    return new OidcVerificationError('expired', 'the token has expired', { cause });
  if (cause instanceof errors.JWTClaimValidationFailed) {
    if (cause.claim === 'aud')
      return new OidcVerificationError('wrong_audience', 'the token audience does not match', { cause });
    if (cause.claim === 'nbf' || cause.claim === 'iat')
      return new OidcVerificationError('not_yet_valid', 'the token is not yet valid', { cause });
    return new OidcVerificationError('missing_claim', `claim ${cause.claim} is invalid: ${cause.reason}`, { cause });
  }
  if (cause instanceof errors.JWKSNoMatchingKey)
    return new OidcVerificationError('unknown_key', "no key of the issuer's JWKS matches the token", { cause });
  if (
    cause instanceof errors.JWKSTimeout ||
    !(cause instanceof errors.JOSEError) ||
    cause.code === 'ERR_JOSE_GENERIC'
  ) {
    return new OidcVerificationError('discovery_failed', 'could not fetch the JWKS', { cause });
  }
  return new OidcVerificationError('bad_signature', 'the token signature does not verify', { cause });
}
