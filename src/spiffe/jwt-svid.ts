// JWT-SVIDs: the claim and header rules of docs/spiffe.md#jwt-svid and signature validation against the JWT
// bundle of the subject's trust domain (go-spiffe jwtsvid.ParseAndValidate: `kid` required).
import { inspect } from 'node:util';
import { compactVerify, importJWK } from 'jose';
import { ConnectorError } from '../base/errors.ts';
import { Secret } from '../base/secret.ts';
import type { JwtBundle } from './bundle.ts';
import { SpiffeId, type TrustDomain } from './spiffe-id.ts';

/** docs/spiffe.md#jwt-svid: the only algorithms a JWT-SVID may use. */
export const JWT_SVID_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'ES256',
  'ES384',
  'ES512',
  'PS256',
  'PS384',
  'PS512',
] as const;
export type JwtSvidAlgorithm = (typeof JWT_SVID_ALGORITHMS)[number];

export const DEFAULT_LEEWAY_SECONDS = 30;

/** The longest audience this program asks for or holds a JWT-SVID for (a bound of ours, not of the spec). */
export const MAX_AUDIENCE_LENGTH = 2048;

export type JwtBundleLookup = (td: TrustDomain) => JwtBundle | undefined;

export interface JwtSvidParseOptions {
  now: Date;
  /** When given, `aud` must contain it. */
  audience?: string;
  /** Clock skew allowed on exp, nbf and iat; default 30. */
  leewaySeconds?: number;
}

export class JwtSvid {
  readonly id: SpiffeId;
  readonly audience: readonly string[];
  readonly expiresAt: Date;
  readonly issuedAt: Date | undefined;
  /** `iss`: optional for SPIFFE, but every cloud STS needs it, so callers warn when it is missing. */
  readonly issuer: string | undefined;
  readonly algorithm: JwtSvidAlgorithm;
  readonly keyId: string | undefined;
  /** Every claim of the payload (frozen copy). */
  readonly claims: Readonly<Record<string, unknown>>;
  readonly token: Secret;

  private constructor(fields: {
    id: SpiffeId;
    audience: string[];
    expiresAt: Date;
    issuedAt: Date | undefined;
    issuer: string | undefined;
    algorithm: JwtSvidAlgorithm;
    keyId: string | undefined;
    claims: Record<string, unknown>;
    token: string;
  }) {
    this.id = fields.id;
    this.audience = Object.freeze(fields.audience);
    this.expiresAt = fields.expiresAt;
    this.issuedAt = fields.issuedAt;
    this.issuer = fields.issuer;
    this.algorithm = fields.algorithm;
    this.keyId = fields.keyId;
    this.claims = deepFreeze(fields.claims);
    this.token = new Secret(fields.token);
  }

  /** Header and claim checks without the signature (see parseJwtSvidInsecure). */
  static parseInsecure(token: string, opts: JwtSvidParseOptions): JwtSvid {
    const parts = token.split('.');
    if (parts.length === 5) throw jwtError('it is a JWE (5 parts); JWT-SVIDs are JWS compact serialization only');
    if (parts.length !== 3) {
      throw jwtError(
        `it is not a JWS in compact serialization (expected 3 dot-separated parts, found ${parts.length})`,
      );
    }
    const [headerPart = '', payloadPart = '', signaturePart = ''] = parts;
    const header = decodeSegment(headerPart, 'header');
    const claims = decodeSegment(payloadPart, 'payload');
    if (signaturePart === '') throw jwtError('it has an empty signature (unsecured JWTs are not JWT-SVIDs)');
    if (!BASE64URL.test(signaturePart)) throw jwtError('its signature is not base64url');

    const alg = header['alg'];
    if (!isAlgorithm(alg)) {
      throw jwtError(
        `its header alg ${JSON.stringify(alg)} is not one of ${JWT_SVID_ALGORITHMS.join(', ')} (JWT-SVID.md §3)`,
      );
    }
    checkSignatureLength(alg, signaturePart);
    const typ = header['typ'];
    if (typ !== undefined && typ !== 'JWT' && typ !== 'JOSE') {
      throw jwtError(`its header typ ${JSON.stringify(typ)} is neither JWT nor JOSE (JWT-SVID.md §3)`);
    }
    const kid = header['kid'];
    if (kid !== undefined && typeof kid !== 'string') throw jwtError('its header kid is not a string');
    if (header['crit'] !== undefined) throw jwtError('its header has "crit" extensions, which JWT-SVIDs do not use');

    const sub = claims['sub'];
    if (sub === undefined) throw jwtError('it has no sub claim; a JWT-SVID carries its SPIFFE ID in sub');
    if (typeof sub !== 'string') throw jwtError('its sub claim is not a string');
    let id: SpiffeId;
    try {
      id = SpiffeId.parse(sub);
    } catch (cause) {
      throw jwtError(`its sub claim is not a valid SPIFFE ID: ${(cause as Error).message}`, cause);
    }
    const at = (problem: string, cause?: unknown) => jwtError(problem, cause, id);

    const audience = readAudience(claims['aud'], at);
    if (opts.audience !== undefined && !audience.includes(opts.audience)) {
      throw at(`its audience ${JSON.stringify(audience)} does not include ${JSON.stringify(opts.audience)}`);
    }

    const leeway = (opts.leewaySeconds ?? DEFAULT_LEEWAY_SECONDS) * 1000;
    const now = opts.now.getTime();
    const exp = claims['exp'];
    if (exp === undefined) throw at('it has no exp claim; JWT-SVIDs must expire (JWT-SVID.md §3)');
    if (typeof exp !== 'number' || !Number.isInteger(exp)) {
      throw at('its exp claim is not an integer NumericDate (seconds since the epoch)');
    }
    const expiresAt = new Date(exp * 1000);
    if (expiresAt.getTime() + leeway <= now) {
      throw at(`it expired at ${expiresAt.toISOString()} (now is ${opts.now.toISOString()})`);
    }
    const nbf = readNumericDate(claims['nbf'], 'nbf', at);
    if (nbf !== undefined && nbf.getTime() - leeway > now) {
      throw at(`it is not valid before ${nbf.toISOString()} (now is ${opts.now.toISOString()})`);
    }
    const issuedAt = readNumericDate(claims['iat'], 'iat', at);
    if (issuedAt !== undefined && issuedAt.getTime() - leeway > now) {
      throw at(
        `it was issued in the future, at ${issuedAt.toISOString()} (now is ${opts.now.toISOString()}); check the clocks`,
      );
    }
    const iss = claims['iss'];
    if (iss !== undefined && typeof iss !== 'string') throw at('its iss claim is not a string');

    return new JwtSvid({
      id,
      audience,
      expiresAt,
      issuedAt,
      issuer: iss,
      algorithm: alg,
      keyId: kid,
      claims,
      token,
    });
  }

  toJSON(): {
    id: string;
    audience: readonly string[];
    issuer: string | undefined;
    expiresAt: string;
    keyId: string | undefined;
  } {
    return {
      id: this.id.toString(),
      audience: this.audience,
      issuer: this.issuer,
      expiresAt: this.expiresAt.toISOString(),
      keyId: this.keyId,
    };
  }

  [inspect.custom](): string {
    return `JwtSvid(${this.id.toString()}, aud ${JSON.stringify(this.audience)}, exp ${this.expiresAt.toISOString()}, token [redacted])`;
  }
}

/**
 * Parses a JWT-SVID and checks its header and claims (alg allowlist, typ, sub, aud, exp, nbf, iat)
 * WITHOUT verifying the signature: for tokens someone else vouches for (a file kept fresh by SPIRE,
 * the issuer's answer). Throws ConnectorError('jwt_svid_invalid'); the token never appears in messages.
 */
export function parseJwtSvidInsecure(token: string, opts: JwtSvidParseOptions): JwtSvid {
  return JwtSvid.parseInsecure(token, opts);
}

/**
 * Parses and fully validates a JWT-SVID: the checks of parseJwtSvidInsecure, then the signature
 * with the key named by the header `kid` in the JWT bundle of the `sub` trust domain only.
 */
export async function validateJwtSvid(
  token: string,
  bundle: JwtBundle | JwtBundleLookup,
  audience: string,
  now: Date,
  opts: { leewaySeconds?: number } = {},
): Promise<JwtSvid> {
  const svid = JwtSvid.parseInsecure(token, { now, audience, ...opts });
  const { id, keyId, algorithm } = svid;
  const td = id.trustDomain;
  const trusted = typeof bundle === 'function' ? bundle(td) : bundle.trustDomain.equals(td) ? bundle : undefined;
  if (!trusted) {
    const known = typeof bundle === 'function' ? '' : `; the JWT bundle is for "${bundle.trustDomain.name}"`;
    throw jwtError(`there is no JWT bundle for its trust domain "${td.name}"${known}`, undefined, id);
  }
  if (!trusted.trustDomain.equals(td)) {
    throw jwtError(`the JWT bundle looked up for "${td.name}" is for "${trusted.trustDomain.name}"`, undefined, id);
  }
  if (keyId === undefined) {
    throw jwtError('its header has no kid, so no key of the bundle can be chosen to verify it', undefined, id);
  }
  const jwk = trusted.findKey(keyId);
  if (!jwk) {
    throw jwtError(`the JWT bundle of "${td.name}" has no key with kid ${JSON.stringify(keyId)}`, undefined, id);
  }
  if (jwk.alg !== undefined && jwk.alg !== algorithm) {
    throw jwtError(`it is signed with ${algorithm} but key ${JSON.stringify(keyId)} is for ${jwk.alg}`, undefined, id);
  }
  let key: Awaited<ReturnType<typeof importJWK>>;
  try {
    key = await importJWK({ ...jwk, alg: algorithm }, algorithm);
  } catch (cause) {
    throw jwtError(
      `key ${JSON.stringify(keyId)} (kty ${jwk.kty ?? '?'}) cannot verify ${algorithm} signatures`,
      cause,
      id,
    );
  }
  try {
    await compactVerify(token, key, { algorithms: [algorithm] });
  } catch (cause) {
    throw jwtError(
      `its signature does not verify with key ${JSON.stringify(keyId)} of the JWT bundle of "${td.name}"`,
      cause,
      id,
    );
  }
  return svid;
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;

/** ECDSA signatures are r ‖ s, each the size of the curve's order (RFC 7518 §3.4). */
const ECDSA_SIGNATURE_BYTES: Partial<Record<JwtSvidAlgorithm, number>> = { ES256: 64, ES384: 96, ES512: 132 };
/** RSA signatures are the size of the modulus: 2048 bits at least (what jose and the clouds accept), 16384 at most. */
const RSA_MIN_BYTES = 256;
const RSA_MAX_BYTES = 2048;
/** Key sizes in use are multiples of 256 bits (2048, 3072, 4096). */
const RSA_STEP_BYTES = 32;

/** The signature's size in bytes, or undefined when the base64url text cannot be whole bytes. */
export function signatureBytes(signaturePart: string): number | undefined {
  if (signaturePart.length % 4 === 1) return undefined;
  return Math.floor((signaturePart.length * 3) / 4);
}

/**
 * A signature must have the length its algorithm gives, so that a token cut short (a file caught half
 * written) is refused before it replaces a good one, even where the signature itself is not verified.
 */
function checkSignatureLength(alg: JwtSvidAlgorithm, signaturePart: string): void {
  const bytes = signatureBytes(signaturePart);
  if (bytes === undefined)
    throw jwtError(
      `its signature (${signaturePart.length} base64url characters) is not a whole number of bytes; the token looks cut short`,
    );
  const ecdsa = ECDSA_SIGNATURE_BYTES[alg];
  if (ecdsa !== undefined) {
    if (bytes !== ecdsa)
      throw jwtError(
        `its signature is ${bytes} bytes; ${alg} signatures are ${ecdsa} bytes (the token looks cut short)`,
      );
    return;
  }
  if (bytes < RSA_MIN_BYTES || bytes > RSA_MAX_BYTES || bytes % RSA_STEP_BYTES !== 0) {
    throw jwtError(
      `its signature is ${bytes} bytes; ${alg} signatures are the size of the RSA modulus, a multiple of 256 bits from 2048 (256, 384 or 512 bytes for 2048-, 3072- or 4096-bit keys); the token looks cut short`,
    );
  }
}

function decodeSegment(segment: string, what: 'header' | 'payload'): Record<string, unknown> {
  if (!BASE64URL.test(segment)) throw jwtError(`its ${what} is not base64url`);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    throw jwtError(`its ${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw jwtError(`its ${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function readAudience(aud: unknown, at: (problem: string) => ConnectorError): string[] {
  if (aud === undefined) throw at('it has no aud claim; JWT-SVIDs must name their audience (JWT-SVID.md §3)');
  if (typeof aud === 'string') {
    if (aud === '') throw at('its aud claim is empty');
    return [aud];
  }
  if (!Array.isArray(aud) || !aud.every((a): a is string => typeof a === 'string' && a !== '')) {
    throw at('its aud claim is neither a string nor an array of strings');
  }
  if (aud.length === 0) throw at('its aud claim is an empty array; a JWT-SVID needs at least one audience');
  return [...aud];
}

function readNumericDate(value: unknown, name: string, at: (problem: string) => ConnectorError): Date | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw at(`its ${name} claim is not a NumericDate`);
  return new Date(value * 1000);
}

function isAlgorithm(value: unknown): value is JwtSvidAlgorithm {
  return typeof value === 'string' && (JWT_SVID_ALGORITHMS as readonly string[]).includes(value);
}

function jwtError(problem: string, cause?: unknown, id?: SpiffeId): ConnectorError {
  const subject = id ? `JWT-SVID for ${id.toString()}` : 'JWT-SVID';
  return new ConnectorError('jwt_svid_invalid', `${subject} refused: ${problem}`, cause === undefined ? {} : { cause });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
