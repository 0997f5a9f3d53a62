// SPIFFE IDs and trust domains as validated values (docs/spiffe.md#spiffe-id), with go-spiffe's `spiffeid`
// semantics: lowercase `spiffe://` only, no percent-encoding, plus the spec's length limits.
import { ConnectorError } from '../base/errors.ts';

const SCHEME_PREFIX = 'spiffe://';
/** docs/spiffe.md#spiffe-id: IDs up to 2048 bytes; the trust domain at most 255 (the RFC 3986 host limit). */
export const MAX_SPIFFE_ID_BYTES = 2048;
export const MAX_TRUST_DOMAIN_BYTES = 255;

const BAD_TD_CHAR = 'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores';
const BAD_PATH_CHAR = 'path segment characters are limited to letters, numbers, dots, dashes, and underscores';

export class TrustDomain {
  readonly #name: string;

  private constructor(name: string) {
    this.#name = name;
  }

  /** Accepts a trust domain name ("example.org") or a SPIFFE ID ("spiffe://example.org[/path]"). */
  static parse(idOrName: string): TrustDomain {
    if (idOrName === '') throw invalid(idOrName, 'trust domain is missing', 'trust domain');
    if (idOrName.includes(':/')) return SpiffeId.parse(idOrName).trustDomain;
    for (let i = 0; i < idOrName.length; i++) {
      if (!isTrustDomainChar(idOrName.charCodeAt(i))) throw invalid(idOrName, BAD_TD_CHAR, 'trust domain');
    }
    checkTrustDomainLength(idOrName, 'trust domain');
    return new TrustDomain(idOrName);
  }

  get name(): string {
    return this.#name;
  }

  /** The trust domain's own ID, e.g. "spiffe://example.org". */
  idString(): string {
    return SCHEME_PREFIX + this.#name;
  }

  equals(other: TrustDomain): boolean {
    return this.#name === other.#name;
  }

  toString(): string {
    return this.#name;
  }

  toJSON(): string {
    return this.#name;
  }
}

export class SpiffeId {
  readonly #trustDomain: TrustDomain;
  readonly #path: string;

  private constructor(trustDomain: TrustDomain, path: string) {
    this.#trustDomain = trustDomain;
    this.#path = path;
  }

  /** Parses "spiffe://<trust-domain>[/<path>]" exactly as go-spiffe's spiffeid.FromString does. */
  static parse(s: string): SpiffeId {
    if (s === '') throw invalid(s, 'cannot be empty');
    if (!s.startsWith(SCHEME_PREFIX)) throw invalid(s, 'scheme is missing or invalid (it must be exactly "spiffe://")');
    let pathIndex = SCHEME_PREFIX.length;
    for (; pathIndex < s.length; pathIndex++) {
      const c = s.charCodeAt(pathIndex);
      if (c === 0x2f) break;
      if (!isTrustDomainChar(c)) throw invalid(s, BAD_TD_CHAR);
    }
    if (pathIndex === SCHEME_PREFIX.length) throw invalid(s, 'trust domain is missing');
    const path = s.slice(pathIndex);
    const pathProblem = validatePath(path);
    if (pathProblem) throw invalid(s, pathProblem);
    // Only ASCII is left, so characters are bytes.
    if (s.length > MAX_SPIFFE_ID_BYTES) {
      throw invalid(s, `it is ${s.length} bytes long; SPIFFE IDs are at most ${MAX_SPIFFE_ID_BYTES}`);
    }
    const name = s.slice(SCHEME_PREFIX.length, pathIndex);
    checkTrustDomainLength(name, 'SPIFFE ID', s);
    return new SpiffeId(TrustDomain.parse(name), path);
  }

  get trustDomain(): TrustDomain {
    return this.#trustDomain;
  }

  /** "" for a trust domain ID, else "/seg/seg". */
  get path(): string {
    return this.#path;
  }

  /** True for "spiffe://example.org", which X.509-SVID leaves and JWT-SVIDs may not carry. */
  isTrustDomainId(): boolean {
    return this.#path === '';
  }

  memberOf(td: TrustDomain): boolean {
    return this.#trustDomain.equals(td);
  }

  equals(other: SpiffeId): boolean {
    return this.#trustDomain.equals(other.#trustDomain) && this.#path === other.#path;
  }

  toString(): string {
    return this.#trustDomain.idString() + this.#path;
  }

  toJSON(): string {
    return this.toString();
  }
}

/** Returns what is wrong with a SPIFFE ID path ("" or "/seg/seg"), or undefined when it is valid. */
export function validatePath(path: string): string | undefined {
  if (path === '') return undefined;
  if (path.charCodeAt(0) !== 0x2f) return 'path must have a leading slash';
  let segmentStart = 0;
  for (let i = 1; i <= path.length; i++) {
    if (i < path.length && path.charCodeAt(i) !== 0x2f) {
      if (!isPathChar(path.charCodeAt(i))) return BAD_PATH_CHAR;
      continue;
    }
    const segment = path.slice(segmentStart + 1, i);
    if (segment === '')
      return i === path.length ? 'path cannot have a trailing slash' : 'path cannot contain empty segments';
    if (segment === '.' || segment === '..') return 'path cannot contain dot segments';
    segmentStart = i;
  }
  return undefined;
}

function isTrustDomainChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d || c === 0x5f;
}

function isPathChar(c: number): boolean {
  return isTrustDomainChar(c) || (c >= 0x41 && c <= 0x5a);
}

function checkTrustDomainLength(name: string, what: 'trust domain' | 'SPIFFE ID', input = name): void {
  if (name.length > MAX_TRUST_DOMAIN_BYTES) {
    throw invalid(
      input,
      `the trust domain is ${name.length} bytes long; trust domains are at most ${MAX_TRUST_DOMAIN_BYTES}`,
      what,
    );
  }
}

function invalid(input: string, problem: string, what: 'trust domain' | 'SPIFFE ID' = 'SPIFFE ID'): ConnectorError {
  const shown = input.length > 120 ? `${input.slice(0, 117)}...` : input;
  return new ConnectorError('spiffe_id_invalid', `${what} ${JSON.stringify(shown)} is invalid: ${problem}`);
}
