// What the Google STS stand-in checks before it federates a subject token, as Google STS does
//: JWT (issuer discovery + JWKS, signature, iss, aud = the provider
// resource name, iat, exp, lifetime, kid/alg) and X.509 over mTLS (leaf = the TLS client
// certificate, verified by the TLS layer against the trust anchors, and the subject token's chain verified
// to the provider's trust anchors by x509-chain.ts); google.subject at most 127 bytes.
import { X509Certificate } from 'node:crypto';
import { decodeProtectedHeader } from 'jose';
import { OidcVerificationError, type OidcVerifier } from './oidc-verifier.ts';
import { parsePemCertificates, verifyClientChain } from './x509-chain.ts';

/** A workload identity pool provider registered with the stand-in. */
export interface FakeWorkloadIdentityProvider {
  /** projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider> */
  readonly name: string;
  /** OIDC provider: the issuer (`iss`) whose discovery and JWKS verify JWT subject tokens. */
  readonly issuer?: string;
  /** allowedAudiences; the provider's resource name (// and https:// forms) is always accepted. */
  readonly allowedAudiences?: readonly string[];
  /** X.509 provider: PEM trust anchors (the trustStore). */
  readonly trustAnchorsPem?: string;
}

/** An OAuth error Google STS answers (HTTP 400 unless said otherwise). */
export class OAuthError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(code: string, description: string, status = 400) {
    super(description);
    this.code = code;
    this.status = status;
  }
}

export const MAX_SUBJECT_BYTES = 127;
const MAX_LIFETIME_SECONDS = 24 * 3600;

export function providerAudiences(p: FakeWorkloadIdentityProvider): string[] {
  return [`//iam.googleapis.com/${p.name}`, `https://iam.googleapis.com/${p.name}`, ...(p.allowedAudiences ?? [])];
}

/** Verifies a JWT subject token for provider `p`; returns google.subject (the `sub`). */
export async function checkJwtSubject(
  token: string,
  p: FakeWorkloadIdentityProvider,
  verifier: OidcVerifier,
  nowMs: number,
): Promise<string> {
  if (!p.issuer)
    throw new OAuthError(
      'invalid_grant',
      'The provider is not an OIDC provider; it does not accept JWT subject tokens.',
    );
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new OAuthError('invalid_grant', 'Unable to parse the ID Token.');
  }
  if (typeof header.kid !== 'string' || header.kid === '')
    throw new OAuthError('invalid_grant', 'The ID Token header has no kid.');
  if (header.alg !== 'RS256' && header.alg !== 'ES256')
    throw new OAuthError(
      'invalid_grant',
      `The ID Token is signed with ${String(header.alg)}; only RS256 and ES256 are supported.`,
    );
  let payload: Awaited<ReturnType<OidcVerifier['verify']>>;
  try {
    payload = await verifier.verify(token, providerAudiences(p));
  } catch (error) {
    throw jwtFailure(error, p);
  }
  if (payload.iss !== p.issuer)
    throw new OAuthError(
      'invalid_grant',
      `The issuer in ID Token ${payload.iss} does not match the expected ones: ${p.issuer}.`,
    );
  if (typeof payload.iat !== 'number') throw new OAuthError('invalid_grant', 'The ID Token has no iat claim.');
  if (payload.iat * 1000 > nowMs + 60_000)
    throw new OAuthError('invalid_grant', 'The ID Token is issued in the future.');
  if (payload.exp - payload.iat > MAX_LIFETIME_SECONDS)
    throw new OAuthError('invalid_grant', 'The ID Token lifetime (exp - iat) exceeds 24 hours.');
  return checkSubjectSize(payload.sub);
}

function jwtFailure(error: unknown, p: FakeWorkloadIdentityProvider): OAuthError {
  if (!(error instanceof OidcVerificationError))
    return new OAuthError('invalid_grant', 'Unable to verify the ID Token.');
  switch (error.reason) {
    case 'wrong_audience':
      return new OAuthError(
        'invalid_grant',
        `The audience in ID Token does not match the expected audience //iam.googleapis.com/${p.name}.`,
      );
    case 'expired':
      return new OAuthError('invalid_grant', 'ID Token has expired.');
    case 'not_yet_valid':
      return new OAuthError('invalid_grant', 'ID Token is not yet valid.');
    case 'untrusted_issuer':
      return new OAuthError(
        'invalid_grant',
        'The issuer of the ID Token is not the issuer configured for the provider.',
      );
    case 'discovery_failed':
      return new OAuthError('invalid_grant', 'Unable to fetch the OIDC discovery document or JWKS of the issuer.');
    case 'bad_signature':
    case 'unknown_key':
      return new OAuthError('invalid_grant', 'Invalid JWT signature.');
    default:
      return new OAuthError('invalid_grant', `Invalid ID Token: ${error.message}`);
  }
}

/** What the TLS layer saw of the client: its certificate and the handshake's verdict on it. */
export interface TlsPeer {
  readonly certificate: X509Certificate | undefined;
  /** The handshake verified the client's certificate chain against the trust anchors. */
  readonly authorized: boolean;
  /** OpenSSL's reason when not authorized, such as UNABLE_TO_VERIFY_LEAF_SIGNATURE. */
  readonly authorizationError: string | undefined;
}

/**
 * Verdicts of the handshake left to the chain check below: the handshake judges validity by the machine's
 * time, the stand-in by its own clock (tests run it on a manual one).
 */
const TIME_ERRORS = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);

/**
 * The mTLS path: the TLS client certificate must have verified to the trust anchors in the handshake;
 * `subjectToken` is a JSON array of base64 DER certificates, leaf first; the leaf must be the TLS client
 * certificate and the chain must verify to the provider's trust anchors. Returns google.subject, mapped
 * from the URI SAN (the SPIFFE ID).
 */
export function checkMtlsSubject(
  subjectToken: string,
  tls: TlsPeer,
  p: FakeWorkloadIdentityProvider,
  nowMs: number,
): string {
  if (!p.trustAnchorsPem)
    throw new OAuthError(
      'invalid_grant',
      'The provider is not an X.509 provider; it does not accept mTLS subject tokens.',
    );
  const peer = tls.certificate;
  if (!peer)
    throw new OAuthError(
      'invalid_request',
      'The mtls subject token type requires a TLS client certificate (use the mTLS endpoint).',
    );
  if (!tls.authorized && !TIME_ERRORS.has(tls.authorizationError ?? '')) {
    throw new OAuthError(
      'invalid_grant',
      `The mTLS client certificate could not be verified against the trust store: ${tls.authorizationError ?? 'unknown reason'}`,
    );
  }
  let ders: unknown;
  try {
    ders = JSON.parse(subjectToken);
  } catch {
    throw new OAuthError(
      'invalid_request',
      'The subject token must be a JSON array of base64-encoded DER certificates.',
    );
  }
  if (!Array.isArray(ders) || ders.length === 0 || !ders.every((d) => typeof d === 'string')) {
    throw new OAuthError(
      'invalid_request',
      'The subject token must be a non-empty JSON array of base64-encoded DER certificates.',
    );
  }
  let chain: X509Certificate[];
  try {
    chain = (ders as string[]).map((d) => new X509Certificate(Buffer.from(d, 'base64')));
  } catch {
    throw new OAuthError('invalid_request', 'A certificate in the subject token could not be parsed.');
  }
  const leaf = chain[0] as X509Certificate;
  if (!leaf.raw.equals(peer.raw))
    throw new OAuthError(
      'invalid_grant',
      'The first certificate of the subject token is not the mTLS client certificate.',
    );
  let id: string;
  try {
    id = verifyClientChain(chain, parsePemCertificates(p.trustAnchorsPem), nowMs);
  } catch (error) {
    throw new OAuthError(
      'invalid_grant',
      `The certificate chain could not be verified against the trust store: ${(error as Error).message}`,
    );
  }
  return checkSubjectSize(id);
}

function checkSubjectSize(subject: string): string {
  if (Buffer.byteLength(subject) > MAX_SUBJECT_BYTES) {
    throw new OAuthError(
      'invalid_grant',
      `The size of mapped attribute google.subject exceeds the ${MAX_SUBJECT_BYTES} bytes limit. Either modify your attribute mapping or the incoming assertion to produce a mapped attribute that is less than ${MAX_SUBJECT_BYTES} bytes.`,
    );
  }
  return subject;
}
