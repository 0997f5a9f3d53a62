// Trust bundles of one trust domain: X.509 authorities (PEM files, Workload API concatenated DER) and
// JWT authorities (JWKS / SPIFFE bundle JSON), per docs/spiffe.md#bundles.
import { createPublicKey, type JsonWebKey, X509Certificate } from 'node:crypto';
import type { JSONWebKeySet, JWK } from 'jose';
import { ConnectorError, type ErrorCode } from '../base/errors.ts';
import { decodePem, encodePem } from './pem.ts';
import { TrustDomain } from './spiffe-id.ts';
import { describeCertificate } from './x509-lib.ts';

export class X509Bundle {
  readonly trustDomain: TrustDomain;
  /** The CA certificates SVIDs of this trust domain must chain to. Never empty. */
  readonly authorities: readonly X509Certificate[];

  private constructor(trustDomain: TrustDomain, authorities: X509Certificate[]) {
    this.trustDomain = trustDomain;
    this.authorities = Object.freeze(authorities);
  }

  /** One or more PEM CERTIFICATE blocks (a ca.crt); anything else in a block is refused. */
  static parsePem(trustDomain: TrustDomain | string, pem: string): X509Bundle {
    const td = toTrustDomain(trustDomain);
    const what = `trust bundle of "${td.name}"`;
    const blocks = decodePem(pem, what, 'bundle_invalid');
    if (blocks.length === 0) {
      throw new ConnectorError(
        'bundle_invalid',
        `${what} holds no PEM CERTIFICATE block; expected one or more CA certificates`,
      );
    }
    const ders = blocks.map((block, i) => {
      if (block.label !== 'CERTIFICATE') {
        throw new ConnectorError(
          'bundle_invalid',
          `${what}: PEM block ${i + 1} is a ${block.label}, not a CERTIFICATE; a trust bundle holds CA certificates only`,
        );
      }
      return block.der;
    });
    return new X509Bundle(td, parseAuthorities(ders, what));
  }

  /** Concatenated DER certificates, as the Workload API sends bundles. */
  static fromDer(trustDomain: TrustDomain | string, concatenatedDer: Uint8Array): X509Bundle {
    const td = toTrustDomain(trustDomain);
    const what = `trust bundle of "${td.name}"`;
    const ders = splitDer(concatenatedDer, what, 'bundle_invalid');
    if (ders.length === 0) {
      throw new ConnectorError('bundle_invalid', `${what} is empty; expected one or more DER CA certificates`);
    }
    return new X509Bundle(td, parseAuthorities(ders, what));
  }

  /** True when `cert` (by DER) is one of the authorities. */
  has(cert: X509Certificate): boolean {
    return this.authorities.some((a) => a.raw.equals(cert.raw));
  }

  toPem(): string {
    return this.authorities.map((a) => encodePem('CERTIFICATE', a.raw)).join('');
  }

  /** Same trust domain and same authorities (in any order). */
  equals(other: X509Bundle): boolean {
    return (
      this.trustDomain.equals(other.trustDomain) &&
      this.authorities.length === other.authorities.length &&
      this.authorities.every((a) => other.has(a))
    );
  }
}

function parseAuthorities(ders: Uint8Array[], what: string): X509Certificate[] {
  const out: X509Certificate[] = [];
  ders.forEach((der, i) => {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(der);
    } catch (cause) {
      throw new ConnectorError('bundle_invalid', `${what}: certificate ${i + 1} is not a valid X.509 certificate`, {
        cause,
      });
    }
    if (!cert.ca) {
      throw new ConnectorError(
        'bundle_invalid',
        `${what}: certificate ${i + 1} (${describeCertificate(cert)}) is not a CA certificate (basicConstraints cA is not true); a trust bundle holds CA certificates only`,
      );
    }
    if (!out.some((c) => c.raw.equals(cert.raw))) out.push(cert);
  });
  return out;
}

/** The JWT-SVID signing keys of one trust domain. `keys` may be empty: then every JWT-SVID is untrusted. */
export class JwtBundle {
  readonly trustDomain: TrustDomain;
  /** Public JWKs, each with a unique `kid`. */
  readonly keys: readonly JWK[];
  /** `spiffe_sequence`, when the document is a SPIFFE bundle that sets it. */
  readonly sequence: number | undefined;
  /** `spiffe_refresh_hint` in seconds, when set. */
  readonly refreshHintSeconds: number | undefined;

  private constructor(td: TrustDomain, keys: JWK[], sequence: number | undefined, refreshHint: number | undefined) {
    this.trustDomain = td;
    this.keys = Object.freeze(keys.map((k) => Object.freeze(k)));
    this.sequence = sequence;
    this.refreshHintSeconds = refreshHint;
  }

  /**
   * A SPIFFE bundle or a plain JWKS. `keys` is required. Entries with `use` "x509-svid" are X.509
   * authorities and skipped; entries with `use` absent, "jwt-svid" or "sig" (OIDC-style JWKS, such as
   * SPIRE's OIDC provider with set_key_use) are JWT authorities and need a unique `kid`; other `use`
   * values are ignored (docs/spiffe.md#bundles). Private key members are refused.
   */
  static parseJwks(trustDomain: TrustDomain | string, json: string): JwtBundle {
    const td = toTrustDomain(trustDomain);
    const what = `JWT bundle of "${td.name}"`;
    let doc: unknown;
    try {
      doc = JSON.parse(json);
    } catch (cause) {
      throw new ConnectorError('bundle_invalid', `${what} is not valid JSON`, { cause });
    }
    if (!isObject(doc)) throw new ConnectorError('bundle_invalid', `${what} is not a JSON object`);
    if (!Array.isArray(doc['keys'])) {
      throw new ConnectorError('bundle_invalid', `${what} has no "keys" array (RFC 7517 §5 requires it)`);
    }
    const sequence = optionalInteger(doc, 'spiffe_sequence', what);
    const refreshHint = optionalInteger(doc, 'spiffe_refresh_hint', what);
    const keys: JWK[] = [];
    doc['keys'].forEach((entry: unknown, i: number) => {
      const at = `${what}: keys[${i}]`;
      if (!isObject(entry)) throw new ConnectorError('bundle_invalid', `${at} is not a JSON object`);
      if (typeof entry['kty'] !== 'string' || entry['kty'] === '') {
        throw new ConnectorError('bundle_invalid', `${at} has no "kty"`);
      }
      const use = entry['use'];
      if (use !== undefined && typeof use !== 'string') {
        throw new ConnectorError('bundle_invalid', `${at} has a "use" that is not a string`);
      }
      if (use !== undefined && use !== 'jwt-svid' && use !== 'sig') return;
      const kid = entry['kid'];
      if (typeof kid !== 'string' || kid === '') {
        throw new ConnectorError(
          'bundle_invalid',
          `${at} is a JWT authority without a "kid" (JWT-SVID.md §6.1 requires one)`,
        );
      }
      if (keys.some((k) => k.kid === kid)) {
        throw new ConnectorError('bundle_invalid', `${at}: kid ${JSON.stringify(kid)} appears twice`);
      }
      keys.push(toPublicJwk(entry, `${at} (kid ${JSON.stringify(kid)})`));
    });
    return new JwtBundle(td, keys, sequence, refreshHint);
  }

  findKey(kid: string): JWK | undefined {
    return this.keys.find((k) => k.kid === kid);
  }

  /** The keys as a JWKS object (for jose's createLocalJWKSet, or to publish). */
  toJwks(): JSONWebKeySet {
    return { keys: this.keys.map((k) => ({ ...k })) };
  }
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'];

function toPublicJwk(entry: Record<string, unknown>, at: string): JWK {
  for (const member of PRIVATE_MEMBERS) {
    if (member in entry) {
      throw new ConnectorError(
        'bundle_invalid',
        `${at} holds private or symmetric key material ("${member}"); a bundle must hold public keys only`,
      );
    }
  }
  try {
    createPublicKey({ key: entry as JsonWebKey, format: 'jwk' });
  } catch (cause) {
    throw new ConnectorError('bundle_invalid', `${at} is not a usable public key`, { cause });
  }
  // A JSON round trip leaves a plain, unshared copy; every JWK member is JSON.
  return JSON.parse(JSON.stringify(entry)) as JWK;
}

/**
 * Splits concatenated DER (the Workload API's `x509_svid` and `bundle` fields) into its top-level
 * SEQUENCEs by walking ASN.1 lengths. The returned arrays are views into `buffer`.
 */
export function splitDer(
  buffer: Uint8Array,
  what = 'DER data',
  code: Extract<ErrorCode, 'bundle_invalid' | 'svid_invalid'> = 'bundle_invalid',
): Uint8Array[] {
  const out: Uint8Array[] = [];
  let offset = 0;
  while (offset < buffer.length) {
    const start = offset;
    const fail = (problem: string) =>
      new ConnectorError(code, `${what}: DER element ${out.length + 1} at byte ${start} ${problem}`);
    if (buffer[offset] !== 0x30) throw fail('is not an ASN.1 SEQUENCE (not a DER certificate)');
    offset++;
    const first = buffer[offset];
    if (first === undefined) throw fail('ends before its length');
    offset++;
    let length: number;
    if (first < 0x80) {
      length = first;
    } else {
      const count = first & 0x7f;
      if (count === 0) throw fail('uses an indefinite length, which DER forbids');
      if (count > 4) throw fail('declares a length that does not fit in 4 bytes');
      if (offset + count > buffer.length) throw fail('ends inside its length');
      length = 0;
      for (let i = 0; i < count; i++) length = length * 256 + (buffer[offset + i] ?? 0);
      offset += count;
    }
    if (offset + length > buffer.length) {
      throw fail(`declares ${length} bytes but only ${buffer.length - offset} remain (truncated?)`);
    }
    offset += length;
    out.push(buffer.subarray(start, offset));
  }
  return out;
}

function toTrustDomain(td: TrustDomain | string): TrustDomain {
  return typeof td === 'string' ? TrustDomain.parse(td) : td;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalInteger(doc: Record<string, unknown>, key: string, what: string): number | undefined {
  const value = doc[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new ConnectorError('bundle_invalid', `${what}: "${key}" must be a non-negative integer`);
  }
  return value;
}
