// SPIFFE IDs as the stand-ins read them, with code of their own (the SPIFFE ID format: `spiffe://`, a trust
// domain of lower-case letters, digits, `.`, `-` and `_`, then an optional path of non-empty segments of
// letters, digits, `.`, `-` and `_`, none of them `.` or `..`). See docs/ for what the product checks.

export interface ParsedSpiffeId {
  readonly trustDomain: string;
  /** "" or "/a/b". */
  readonly path: string;
  /** The whole ID, `spiffe://<trust domain><path>`. */
  readonly id: string;
}

const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;

/** Parses `spiffe://td/path`; throws an Error saying what is wrong. */
export function parseSpiffeId(value: string): ParsedSpiffeId {
  if (!value.startsWith('spiffe://')) throw new Error(`"${value}" is not a SPIFFE ID: it must start with spiffe://`);
  const rest = value.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? '' : rest.slice(slash);
  if (!TRUST_DOMAIN.test(trustDomain)) throw new Error(`"${value}" has an invalid trust domain "${trustDomain}"`);
  if (path !== '') {
    for (const segment of path.slice(1).split('/')) {
      if (!SEGMENT.test(segment) || segment === '.' || segment === '..')
        throw new Error(`"${value}" has an invalid path segment "${segment}"`);
    }
  }
  return { trustDomain, path, id: `spiffe://${trustDomain}${path}` };
}

/** A trust domain name, or the trust domain of a SPIFFE ID; throws when it is neither. */
export function parseTrustDomain(value: string): string {
  if (value.includes('://')) return parseSpiffeId(value).trustDomain;
  if (!TRUST_DOMAIN.test(value)) throw new Error(`"${value}" is not a trust domain name`);
  return value;
}
