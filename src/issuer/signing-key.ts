// One JWT signing key read from a PEM file, checked for strength, with its public JWK and RFC 7638
// thumbprint as `kid`; and the key set: which key signs (the newest by file name) and which are published.
import { createPrivateKey, createPublicKey, type KeyObject, type webcrypto } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { ConnectorError } from '../base/errors.ts';
import type { Secret } from '../base/secret.ts';
import type { SigningAlgorithm } from '../config/issuer.ts';

/** A key's public half as published in the JWKS: only kty/alg/use/kid and the key fields (Google accepts nothing else). */
export type PublicJwk = JWK & { kid: string; alg: SigningAlgorithm; use: 'sig' };

export interface SigningKey {
  /** The file the key came from (its name decides which key signs). */
  readonly name: string;
  /** RFC 7638 JWK SHA-256 thumbprint, base64url. */
  readonly kid: string;
  readonly alg: SigningAlgorithm;
  readonly privateKey: webcrypto.CryptoKey;
  readonly jwk: PublicJwk;
}

export const MIN_RSA_BITS = 2048;
export const MAX_RSA_BITS = 8192;

/**
 * Parses a PEM private key (PKCS#8, PKCS#1 "RSA PRIVATE KEY" or SEC1 "EC PRIVATE KEY") for `alg`.
 * Refuses encrypted keys, public keys, RSA keys under 2048 bits, and anything but P-256 for ES256.
 * Error messages name the file and the rule, never the key material.
 */
export async function parseSigningKey(name: string, pem: Secret, alg: SigningAlgorithm): Promise<SigningKey> {
  const refuse = (why: string, cause?: unknown): ConnectorError =>
    new ConnectorError(
      'config_invalid',
      `signing key ${name}: ${why}`,
      cause === undefined ? {} : { cause: scrub(cause) },
    );
  const text = pem.reveal();
  const blocks = text.match(/-----BEGIN [A-Z0-9 ]+-----/g) ?? [];
  if (blocks.length === 0) throw refuse('no PEM block found (expected "-----BEGIN PRIVATE KEY-----")');
  if (blocks.length > 1) throw refuse(`holds ${blocks.length} PEM blocks; put one private key in each file`);
  if (/ENCRYPTED|Proc-Type: 4,ENCRYPTED/.test(text))
    throw refuse('is encrypted; mount it unencrypted (the Secret is the protection)');
  if (!/PRIVATE KEY-----/.test(blocks[0] ?? ''))
    throw refuse(`is a ${(blocks[0] ?? '').slice(11, -5)}, not a private key`);
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: text, format: 'pem' });
  } catch (cause) {
    throw refuse('is not a readable PEM private key', cause);
  }
  const details = key.asymmetricKeyDetails ?? {};
  let cryptoParams: webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams;
  if (alg === 'RS256') {
    if (key.asymmetricKeyType !== 'rsa')
      throw refuse(`is an ${key.asymmetricKeyType ?? 'unknown'} key; algorithm RS256 needs RSA keys`);
    const bits = details.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) throw refuse(`RSA key of ${bits} bits is too weak; use at least ${MIN_RSA_BITS}`);
    if (bits > MAX_RSA_BITS)
      throw refuse(`RSA key of ${bits} bits is larger than ${MAX_RSA_BITS}; clouds may refuse it`);
    if (details.publicExponent !== undefined && details.publicExponent !== 65537n)
      throw refuse('RSA public exponent must be 65537');
    cryptoParams = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  } else {
    if (key.asymmetricKeyType !== 'ec')
      throw refuse(`is an ${key.asymmetricKeyType ?? 'unknown'} key; algorithm ES256 needs EC P-256 keys`);
    if (details.namedCurve !== 'prime256v1')
      throw refuse(`EC key on curve ${details.namedCurve ?? 'unknown'}; ES256 needs P-256`);
    cryptoParams = { name: 'ECDSA', namedCurve: 'P-256' };
  }
  const publicJwk = createPublicKey(key).export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(publicJwk, 'sha256');
  const privateKey = key.toCryptoKey(cryptoParams, false, ['sign']) as webcrypto.CryptoKey;
  const pick = (names: readonly string[]): JWK =>
    Object.fromEntries(names.map((n) => [n, (publicJwk as Record<string, unknown>)[n]]));
  const fields = alg === 'RS256' ? pick(['kty', 'n', 'e']) : pick(['kty', 'crv', 'x', 'y']);
  const jwk: PublicJwk = Object.freeze({ ...fields, kid, alg, use: 'sig' });
  return Object.freeze({ name, kid, alg, privateKey, jwk });
}

/** Node's key errors can quote input; keep only the code and a generic message. */
function scrub(cause: unknown): Error {
  const code = (cause as { code?: unknown }).code;
  return new Error(typeof code === 'string' ? code : 'key parsing failed');
}

/**
 * Compares file names "naturally": runs of digits as numbers, the rest by code unit, so
 * `key-9.pem` < `key-10.pem` and `2026-01-15.pem` < `2026-02-01.pem`.
 */
export function compareKeyNames(a: string, b: string): number {
  const ra = a.match(/\d+|\D+/g) ?? [];
  const rb = b.match(/\d+|\D+/g) ?? [];
  for (let i = 0; i < Math.min(ra.length, rb.length); i++) {
    const x = ra[i] ?? '';
    const y = rb[i] ?? '';
    if (x === y) continue;
    const dx = /^\d/.test(x);
    const dy = /^\d/.test(y);
    if (dx && dy) {
      const nx = BigInt(x);
      const ny = BigInt(y);
      if (nx !== ny) return nx < ny ? -1 : 1;
      return x < y ? -1 : 1; // same number, different zero padding: any fixed order will do
    }
    return x < y ? -1 : 1;
  }
  return ra.length - rb.length;
}

/** The keys of a key directory at one moment (and a replaced one kept): all are published, the newest active one signs. */
export class KeySet {
  /** Sorted oldest first by file name; duplicates (same kid) kept once, under the newest name. */
  readonly keys: readonly SigningKey[];
  /** When each kid was first seen by this process (ms), for the activation delay. */
  readonly #firstSeen: ReadonlyMap<string, number>;

  /**
   * `retired`: keys no longer in the directory but still published and able to sign (key-store.ts keeps the
   * one a rotation replaced); they are older than every key on disk, so they come first.
   */
  constructor(
    keys: readonly SigningKey[],
    firstSeen: ReadonlyMap<string, number>,
    retired: readonly SigningKey[] = [],
  ) {
    const byKid = new Map<string, SigningKey>();
    for (const k of [...keys].sort((a, b) => compareKeyNames(a.name, b.name))) {
      byKid.delete(k.kid);
      byKid.set(k.kid, k);
    }
    const older = retired.filter((k) => !byKid.has(k.kid));
    this.keys = Object.freeze([...older, ...byKid.values()]);
    this.#firstSeen = firstSeen;
  }

  /**
   * The key that signs at `now`: the newest by name whose first sighting is at least `delayMs` old.
   * If none is that old yet (the first start, or every key replaced at once), the oldest sighting wins,
   * so there is always a signer while any key exists.
   */
  signer(now: number, delayMs: number): SigningKey | undefined {
    for (let i = this.keys.length - 1; i >= 0; i--) {
      const key = this.keys[i];
      if (!key) continue;
      if (now - (this.#firstSeen.get(key.kid) ?? now) >= delayMs) return key;
    }
    let best: SigningKey | undefined;
    for (let i = this.keys.length - 1; i >= 0; i--) {
      const key = this.keys[i];
      if (key && (!best || (this.#firstSeen.get(key.kid) ?? now) < (this.#firstSeen.get(best.kid) ?? now))) best = key;
    }
    return best;
  }

  /** When the next key becomes the signer (ms since the epoch), or undefined if no change is pending. */
  nextActivation(now: number, delayMs: number): number | undefined {
    const current = this.signer(now, delayMs);
    let next: number | undefined;
    for (let i = this.keys.length - 1; i >= 0; i--) {
      const key = this.keys[i];
      if (!key || key === current) break;
      const at = (this.#firstSeen.get(key.kid) ?? now) + delayMs;
      if (at > now && (next === undefined || at < next)) next = at;
    }
    return next;
  }

  jwks(): { keys: PublicJwk[] } {
    return { keys: this.keys.map((k) => k.jwk) };
  }
}
