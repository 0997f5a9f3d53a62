// Building and signing the JWT-SVIDs the issuer hands out (docs/spiffe.md#jwt-svid;
// docs/aws.md#assumerolewithwebidentity, docs/gcp.md#oidc-requirements, docs/azure.md#federated-credentials): iss, sub,
// one aud, iat, nbf, exp, jti; integer timestamps; kid in the header.
import { randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import type { SigningKey } from './signing-key.ts';

export interface ClaimsInput {
  /** The configured issuer URL, exactly as clouds register it. */
  readonly issuer: string;
  /** The client's SPIFFE ID. */
  readonly subject: string;
  readonly audience: string;
  readonly nowMs: number;
  readonly lifetimeSeconds: number;
  /** The client X.509-SVID's notAfter: the token never outlives the identity it was exchanged for. */
  readonly svidNotAfterMs: number;
  /** Token ID; random unless given (tests). */
  readonly jti?: string;
}

export interface JwtSvidClaims {
  readonly iss: string;
  readonly sub: string;
  readonly aud: string;
  readonly iat: number;
  readonly nbf: number;
  readonly exp: number;
  readonly jti: string;
}

/** The claims, with every time a whole number of seconds (AWS refuses other forms). */
export function buildClaims(input: ClaimsInput): JwtSvidClaims {
  const iat = Math.floor(input.nowMs / 1000);
  const exp = Math.min(iat + input.lifetimeSeconds, Math.floor(input.svidNotAfterMs / 1000));
  return {
    iss: input.issuer,
    sub: input.subject,
    aud: input.audience,
    iat,
    nbf: iat,
    exp,
    jti: input.jti ?? randomBytes(16).toString('base64url'),
  };
}

/**
 * Signs the claims as a compact JWS with `alg`, `kid` and `typ: JWT` in the protected header. `extra`
 * (cloud-specific claims such as AWS session tags) never overrides a registered claim.
 */
export function signJwtSvid(
  claims: JwtSvidClaims,
  key: SigningKey,
  extra: Readonly<Record<string, unknown>> = {},
): Promise<string> {
  return new SignJWT({ ...extra, ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
    .sign(key.privateKey);
}
