// OIDC discovery for the issuer (OpenID Connect Discovery 1.0 §3–4) and its JWKS (RFC 7517): the
// documents, their locations under the issuer URL's path, and the plain-HTTP handler meant for an Ingress.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SigningAlgorithm } from '../config/issuer.ts';
import type { PublicJwk } from './signing-key.ts';

export const DISCOVERY_SUFFIX = '/.well-known/openid-configuration';
export const JWKS_SUFFIX = '/.well-known/jwks.json';

export interface DiscoveryPaths {
  /** Where the discovery document is served, e.g. `/spiffe/.well-known/openid-configuration`. */
  readonly discovery: string;
  readonly jwks: string;
  /** The absolute JWKS URL published in the discovery document. */
  readonly jwksUri: string;
}

/** OIDC Discovery §4: the issuer's path (without a trailing slash) + `/.well-known/openid-configuration`. */
export function discoveryPaths(issuerUrl: string): DiscoveryPaths {
  const url = new URL(issuerUrl);
  const base = url.pathname.replace(/\/+$/, '');
  const origin = `${url.protocol}//${url.host}`;
  return { discovery: base + DISCOVERY_SUFFIX, jwks: base + JWKS_SUFFIX, jwksUri: origin + base + JWKS_SUFFIX };
}

export function discoveryDocument(issuerUrl: string, alg: SigningAlgorithm): Record<string, unknown> {
  return {
    issuer: issuerUrl,
    jwks_uri: discoveryPaths(issuerUrl).jwksUri,
    // Required by OIDC Discovery §3 although nothing here is an OP authorization endpoint.
    response_types_supported: ['id_token'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: [alg],
    claims_supported: ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti'],
  };
}

export interface DiscoveryHandlerOptions {
  readonly issuerUrl: string;
  readonly alg: SigningAlgorithm;
  readonly maxAgeSeconds: number;
  /** The keys to publish now. */
  readonly jwks: () => { keys: PublicJwk[] } | undefined;
  /** Called once per answered request, for metrics. */
  readonly observe?: (document: 'discovery' | 'jwks' | 'other', status: number) => void;
}

/**
 * Serves the discovery document and the JWKS at the issuer URL's path, and, when that path is not
 * empty, also at the root (for an Ingress that strips the prefix: the document still names the
 * configured issuer, so nothing can be confused). GET and HEAD only.
 */
export function discoveryHandler(
  options: DiscoveryHandlerOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  const paths = discoveryPaths(options.issuerUrl);
  const discoveryBody = JSON.stringify(discoveryDocument(options.issuerUrl, options.alg));
  const cacheControl = `public, max-age=${options.maxAgeSeconds}`;
  let jwksCache: { kids: string; body: string } | undefined;
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const which =
      path === paths.discovery || path === DISCOVERY_SUFFIX
        ? 'discovery'
        : path === paths.jwks || path === JWKS_SUFFIX
          ? 'jwks'
          : 'other';
    const send = (status: number, headers: Record<string, string>, body: string): void => {
      options.observe?.(which, status);
      res.writeHead(status, { 'content-length': Buffer.byteLength(body), ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (which === 'other') return send(404, { 'content-type': 'application/json' }, '{"error":"not_found"}');
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return send(405, { allow: 'GET, HEAD', 'content-type': 'application/json' }, '{"error":"method_not_allowed"}');
    if (which === 'discovery') {
      return send(
        200,
        { 'content-type': 'application/json', 'cache-control': cacheControl, 'access-control-allow-origin': '*' },
        discoveryBody,
      );
    }
    const set = options.jwks();
    if (!set)
      return send(
        503,
        { 'content-type': 'application/json', 'retry-after': '5' },
        '{"error":"temporarily_unavailable"}',
      );
    const kids = set.keys.map((k) => k.kid).join(',');
    if (jwksCache?.kids !== kids) jwksCache = { kids, body: JSON.stringify(set) };
    return send(
      200,
      { 'content-type': 'application/json', 'cache-control': cacheControl, 'access-control-allow-origin': '*' },
      jwksCache.body,
    );
  };
}
