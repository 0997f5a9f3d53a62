// How the cloud stand-ins check a federated JWT the way AWS STS, Google STS and Entra do: find the
// issuer's JWKS through OIDC discovery, then verify signature, iss, aud, exp (and nbf/iat).
import { createRemoteJWKSet, jwtVerify, errors, decodeJwt, type JWTPayload } from 'jose';

export type OidcFailure =
  | 'malformed' //        not a JWT
  | 'untrusted_issuer' // iss is not a registered provider
  | 'discovery_failed' // discovery or JWKS could not be fetched
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

export interface OidcVerifierOptions {
  /** Issuers registered with the stand-in, exactly as `iss` must read. */
  readonly issuers: readonly string[];
  /** Seconds of clock skew tolerated. */
  readonly clockToleranceSeconds?: number;
  readonly now?: () => number;
}

export class OidcVerifier {
  readonly #o: OidcVerifierOptions;
  readonly #jwks = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

  constructor(options: OidcVerifierOptions) {
    this.#o = options;
  }

  /** Verifies `token` for `audience` (any of, when an array). Throws OidcVerificationError. */
  async verify(token: string, audience: string | readonly string[]): Promise<JWTPayload & { iss: string; sub: string; exp: number }> {
    let unverified: JWTPayload;
    try {
      unverified = decodeJwt(token);
    } catch (cause) {
      throw new OidcVerificationError('malformed', 'the token is not a JWT', { cause });
    }
    const iss = unverified.iss;
    if (typeof iss !== 'string') throw new OidcVerificationError('missing_claim', 'the token has no iss claim');
    if (!this.#o.issuers.includes(iss)) throw new OidcVerificationError('untrusted_issuer', `issuer ${iss} is not a registered identity provider`);
    const jwks = await this.#keySet(iss);
    try {
      const { payload } = await jwtVerify(token, jwks, {
        issuer: iss,
        audience: typeof audience === 'string' ? audience : [...audience],
        requiredClaims: ['sub', 'exp', 'aud'],
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
      const response = await fetch(`${iss.replace(/\/$/, '')}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(5000) });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const doc: unknown = await response.json();
      if (!doc || typeof doc !== 'object' || typeof (doc as { jwks_uri?: unknown }).jwks_uri !== 'string' || (doc as { issuer?: unknown }).issuer !== iss) {
        throw new Error('the discovery document lacks jwks_uri or names another issuer');
      }
      jwksUri = (doc as { jwks_uri: string }).jwks_uri;
    } catch (cause) {
      throw new OidcVerificationError('discovery_failed', `could not fetch OIDC discovery for ${iss}: ${(cause as Error).message}`, { cause });
    }
    const set = createRemoteJWKSet(new URL(jwksUri), { timeoutDuration: 5000, cooldownDuration: 0 });
    this.#jwks.set(iss, set);
    return set;
  }
}

function classify(cause: unknown): OidcVerificationError {
  if (cause instanceof OidcVerificationError) return cause;
  if (cause instanceof errors.JWTExpired) return new OidcVerificationError('expired', 'the token has expired', { cause });
  if (cause instanceof errors.JWTClaimValidationFailed) {
    if (cause.claim === 'aud') return new OidcVerificationError('wrong_audience', 'the token audience does not match', { cause });
    if (cause.claim === 'nbf' || cause.claim === 'iat') return new OidcVerificationError('not_yet_valid', 'the token is not yet valid', { cause });
    return new OidcVerificationError('missing_claim', `claim ${cause.claim} is invalid: ${cause.reason}`, { cause });
  }
  if (cause instanceof errors.JWKSTimeout || !(cause instanceof errors.JOSEError) || cause.code === 'ERR_JOSE_GENERIC') {
    return new OidcVerificationError('discovery_failed', 'could not fetch the JWKS', { cause });
  }
  return new OidcVerificationError('bad_signature', 'the token signature does not verify', { cause });
}
