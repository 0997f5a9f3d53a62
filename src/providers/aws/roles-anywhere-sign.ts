// Signature Version 4 for X.509 (IAM Roles Anywhere; docs/aws.md "Roles Anywhere"): the SigV4 canonical
// request and string to sign, signed with the X.509-SVID's private key instead of an HMAC chain.
// Pure: no clock, no network; the caller passes the date and the certificate chain.
import { createHash, type KeyObject, sign, type X509Certificate } from 'node:crypto';
import { ConnectorError } from '../../base/errors.ts';

export type X509SigningAlgorithm = 'AWS4-X509-ECDSA-SHA256' | 'AWS4-X509-RSA-SHA256';

export const ROLES_ANYWHERE_SERVICE = 'rolesanywhere';

/** Headers SigV4-X509 never signs (a proxy or the HTTP client may change them). */
const UNSIGNED_HEADERS = new Set(['authorization', 'user-agent', 'x-amzn-trace-id', 'content-length', 'connection']);

/** The algorithm for the leaf's key type; Roles Anywhere accepts only RSA and EC keys (and ML-DSA, not supported here). */
export function signingAlgorithmFor(key: KeyObject): X509SigningAlgorithm {
  switch (key.asymmetricKeyType) {
    case 'ec':
      return 'AWS4-X509-ECDSA-SHA256';
    case 'rsa':
      return 'AWS4-X509-RSA-SHA256';
    default:
      throw new ConnectorError(
        'svid_invalid',
        `IAM Roles Anywhere accepts X.509-SVIDs with RSA or EC keys; this one has a ${key.asymmetricKeyType ?? 'unknown'} key`,
        { retryable: false },
      );
  }
}

/** `YYYYMMDDTHHMMSSZ` (X-Amz-Date). */
export function amzDate(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');
}

/** The certificate's serial number in decimal, as the credential scope carries it. */
export function serialDecimal(certificate: X509Certificate): string {
  return BigInt(`0x${certificate.serialNumber}`).toString(10);
}

/** RFC 3986 percent-encoding: everything but A-Z a-z 0-9 - _ . ~ (SigV4's UriEncode). */
export function uriEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** Query parameters sorted by name (then value), names and values encoded, joined with `&`. */
export function canonicalQuery(params: URLSearchParams): string {
  return [...params.entries()]
    .map(([k, v]) => [uriEncode(k), uriEncode(v)] as const)
    .sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}

/** Lower-case names, sorted; values trimmed with inner runs of spaces collapsed. */
export function canonicalHeaders(headers: Readonly<Record<string, string>>): {
  canonical: string;
  signedHeaders: string;
} {
  const entries = Object.entries(headers)
    .map(([k, v]) => [k.toLowerCase(), v.trim().replace(/ {2,}/g, ' ')] as const)
    .filter(([k]) => !UNSIGNED_HEADERS.has(k))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return {
    canonical: entries.map(([k, v]) => `${k}:${v}\n`).join(''),
    signedHeaders: entries.map(([k]) => k).join(';'),
  };
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface CanonicalRequestInput {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  /** Exactly the headers that are signed (UNSIGNED_HEADERS are dropped). */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string | Uint8Array;
}

export function canonicalRequest(input: CanonicalRequestInput): { text: string; signedHeaders: string } {
  const { canonical, signedHeaders } = canonicalHeaders(input.headers);
  const path =
    input.path
      .split('/')
      .map((segment) => uriEncode(decodeURIComponent(segment)))
      .join('/') || '/';
  const text = [
    input.method.toUpperCase(),
    path,
    canonicalQuery(input.query),
    canonical,
    signedHeaders,
    sha256Hex(input.body),
  ].join('\n');
  return { text, signedHeaders };
}

/** `<date>/<region>/<service>/aws4_request`. */
export function credentialScope(date: Date, region: string, service = ROLES_ANYWHERE_SERVICE): string {
  return `${amzDate(date).slice(0, 8)}/${region}/${service}/aws4_request`;
}

export function stringToSign(
  algorithm: X509SigningAlgorithm,
  date: Date,
  scope: string,
  canonicalRequestText: string,
): string {
  return [algorithm, amzDate(date), scope, sha256Hex(canonicalRequestText)].join('\n');
}

export interface X509SignInput {
  readonly method: string;
  /** The full request URL (its host, with a non-default port, is the signed Host header). */
  readonly url: URL;
  /** Other headers to send and sign, e.g. content-type. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly date: Date;
  readonly region: string;
  /** Leaf first, then intermediates (not the root). */
  readonly certificates: readonly X509Certificate[];
  readonly privateKey: KeyObject;
  readonly service?: string;
}

export interface X509SignedRequest {
  /** Every header to send: the given ones, host, x-amz-date, x-amz-x509(-chain) and authorization. */
  readonly headers: Record<string, string>;
  readonly algorithm: X509SigningAlgorithm;
  readonly canonicalRequest: string;
  readonly stringToSign: string;
  readonly signature: string;
}

/** Signs one request with the X.509-SVID's key. Throws ConnectorError for a key Roles Anywhere cannot use. */
export function signX509Request(input: X509SignInput): X509SignedRequest {
  const [leaf, ...intermediates] = input.certificates;
  if (!leaf) throw new ConnectorError('svid_invalid', 'no certificate to sign with', { retryable: false });
  const algorithm = signingAlgorithmFor(input.privateKey);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(input.headers)) headers[k.toLowerCase()] = v;
  headers['host'] = input.url.host;
  headers['x-amz-date'] = amzDate(input.date);
  headers['x-amz-x509'] = Buffer.from(leaf.raw).toString('base64');
  if (intermediates.length > 0)
    headers['x-amz-x509-chain'] = intermediates.map((c) => Buffer.from(c.raw).toString('base64')).join(',');
  const canonical = canonicalRequest({
    method: input.method,
    path: input.url.pathname,
    query: input.url.searchParams,
    headers,
    body: input.body,
  });
  const scope = credentialScope(input.date, input.region, input.service ?? ROLES_ANYWHERE_SERVICE);
  const toSign = stringToSign(algorithm, input.date, scope, canonical.text);
  // RSA: PKCS#1 v1.5; EC: ASN.1 DER (r, s), both over SHA-256 of the string to sign.
  const signature = sign('sha256', Buffer.from(toSign, 'utf8'), input.privateKey).toString('hex');
  headers['authorization'] =
    `${algorithm} Credential=${serialDecimal(leaf)}/${scope}, SignedHeaders=${canonical.signedHeaders}, Signature=${signature}`;
  return { headers, algorithm, canonicalRequest: canonical.text, stringToSign: toSign, signature };
}
