// Who is asking: the TLS client certificate chain verified as an X.509-SVID of the configured trust
// domain against the current bundle (docs/spiffe.md#x509-svid-validation; RFC 8705 §2 for the OAuth side). The TLS
// layer accepts any certificate so that a refusal can carry an OAuth error body; this module decides.
import { createHash, X509Certificate } from 'node:crypto';
import type { DetailedPeerCertificate, PeerCertificate, TLSSocket } from 'node:tls';
import { ConnectorError } from '../base/errors.ts';
import type { X509Bundle } from '../spiffe/bundle.ts';
import type { SpiffeId, TrustDomain } from '../spiffe/spiffe-id.ts';
import { verifyX509Svid } from '../spiffe/x509-svid.ts';
import { OAuthError } from './oauth.ts';

export interface VerifiedClient {
  readonly id: SpiffeId;
  /** The earliest notAfter of the verified chain (leaf, intermediates, authority), ms. */
  readonly notAfterMs: number;
  /** The latest notBefore of the verified chain, ms. */
  readonly notBeforeMs: number;
}

/** The bundle to verify against, with a number that changes whenever the bundle does. */
export interface BundleSnapshot {
  readonly bundle: X509Bundle;
  readonly version: number;
}

/** Most verified chains remembered (keyed by the chain's bytes and the bundle version). */
const CACHE_SIZE = 1024;

/**
 * The certificates the client sent, leaf first, as node:crypto certificates; undefined when it sent
 * none. Node links each certificate to its issuer among those the peer sent; the walk stops at a
 * self-issued certificate or a loop.
 */
export function peerChain(socket: TLSSocket): X509Certificate[] | undefined {
  const leaf = socket.getPeerCertificate(true) as DetailedPeerCertificate | PeerCertificate | null;
  if (!leaf || !('raw' in leaf) || !leaf.raw) return undefined;
  const out: X509Certificate[] = [];
  const seen = new Set<string>();
  let cur: DetailedPeerCertificate | undefined = leaf as DetailedPeerCertificate;
  while (cur?.raw && out.length < 10) {
    const key = cur.fingerprint256;
    if (seen.has(key)) break;
    seen.add(key);
    out.push(new X509Certificate(cur.raw));
    cur = cur.issuerCertificate;
  }
  return out;
}

export class ClientVerifier {
  readonly #trustDomain: TrustDomain;
  readonly #bundle: () => BundleSnapshot | undefined;
  /** chain digest + bundle version → verified client; Map order gives least-recently-used eviction. */
  readonly #cache = new Map<string, VerifiedClient>();
  /** A keep-alive connection's client, verified once per bundle version (its certificates cannot change). */
  readonly #bySocket = new WeakMap<TLSSocket, { version: number; client: VerifiedClient }>();

  constructor(trustDomain: TrustDomain, bundle: () => BundleSnapshot | undefined) {
    this.#trustDomain = trustDomain;
    this.#bundle = bundle;
  }

  /** Verifies the client of `socket` at `nowMs`; throws OAuthError (invalid_client) with the reason. */
  verifySocket(socket: TLSSocket, nowMs: number): VerifiedClient {
    const known = this.#bySocket.get(socket);
    const version = this.#bundle()?.version;
    if (known && known.version === version && nowMs >= known.client.notBeforeMs && nowMs <= known.client.notAfterMs)
      return known.client;
    const chain = peerChain(socket);
    if (!chain || chain.length === 0) {
      throw new OAuthError(
        'invalid_client',
        'no_client_certificate',
        'a client certificate (an X.509-SVID) is required',
      );
    }
    const client = this.verifyChain(chain, nowMs);
    if (version !== undefined) this.#bySocket.set(socket, { version, client });
    return client;
  }

  /** Verifies a presented chain (leaf first) at `nowMs`. */
  verifyChain(chain: readonly X509Certificate[], nowMs: number): VerifiedClient {
    const snapshot = this.#bundle();
    if (!snapshot)
      throw new OAuthError('temporarily_unavailable', 'internal', 'the trust bundle is not loaded yet', {
        headers: { 'retry-after': '5' },
      });
    const digest = chainDigest(chain, snapshot.version);
    const cached = this.#cache.get(digest);
    if (cached) {
      this.#cache.delete(digest);
      this.#cache.set(digest, cached);
      if (nowMs >= cached.notBeforeMs && nowMs <= cached.notAfterMs) return cached;
      this.#cache.delete(digest);
    }
    const verified = this.#verify(chain, snapshot.bundle, nowMs);
    this.#cache.set(digest, verified);
    if (this.#cache.size > CACHE_SIZE) this.#cache.delete(this.#cache.keys().next().value as string);
    return verified;
  }

  #verify(chain: readonly X509Certificate[], bundle: X509Bundle, nowMs: number): VerifiedClient {
    let foreign: TrustDomain | undefined;
    const lookup = (td: TrustDomain): X509Bundle | undefined => {
      if (td.equals(this.#trustDomain) && bundle.trustDomain.equals(td)) return bundle;
      foreign = td;
      return undefined;
    };
    let verified: ReturnType<typeof verifyX509Svid>;
    try {
      verified = verifyX509Svid(chain, lookup, new Date(nowMs));
    } catch (thrown) {
      throw this.#refusal(thrown, chain, nowMs, foreign);
    }
    const { id, chain: path } = verified;
    requireClientAuth(chain[0], id);
    return {
      id,
      notAfterMs: Math.min(...path.map((c) => c.validToDate.getTime())),
      notBeforeMs: Math.max(...path.map((c) => c.validFromDate.getTime())),
    };
  }

  #refusal(
    thrown: unknown,
    chain: readonly X509Certificate[],
    nowMs: number,
    foreign: TrustDomain | undefined,
  ): unknown {
    if (!(thrown instanceof ConnectorError)) return thrown;
    if (foreign) {
      return new OAuthError(
        'invalid_client',
        'foreign_trust_domain',
        `the client certificate is an SVID of trust domain "${foreign.name}"; this issuer serves "${this.#trustDomain.name}"`,
        { cause: thrown },
      );
    }
    const leaf = chain[0];
    if (leaf && (nowMs > leaf.validToDate.getTime() || nowMs < leaf.validFromDate.getTime())) {
      return new OAuthError(
        'invalid_client',
        'expired_certificate',
        `the client certificate is not valid now (valid ${leaf.validFromDate.toISOString()} to ${leaf.validToDate.toISOString()})`,
        { cause: thrown },
      );
    }
    return new OAuthError('invalid_client', 'invalid_svid', thrown.message, { cause: thrown });
  }
}

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const ANY_EXTENDED_KEY_USAGE = '2.5.29.37.0';

/**
 * RFC 5280 §4.2.1.12: a certificate whose extended key usage extension is present may be used only for
 * the purposes it lists. Authenticating as a TLS client needs clientAuth (or anyExtendedKeyUsage); a
 * leaf without the extension may be used for any purpose (the X509-SVID specification leaves it optional).
 */
function requireClientAuth(leaf: X509Certificate | undefined, id: SpiffeId): void {
  const usages = leaf?.keyUsage; // node:crypto: the extended key usage OIDs, undefined without the extension
  if (usages === undefined || usages.includes(CLIENT_AUTH) || usages.includes(ANY_EXTENDED_KEY_USAGE)) return;
  throw new OAuthError(
    'invalid_client',
    'no_client_auth_usage',
    `the client certificate for ${id.toString()} has an extended key usage extension without clientAuth (${usages.map(ekuName).join(', ')}); it may not authenticate a TLS client`,
  );
}

function ekuName(oid: string): string {
  const names: Record<string, string> = {
    '1.3.6.1.5.5.7.3.1': 'serverAuth',
    '1.3.6.1.5.5.7.3.3': 'codeSigning',
    '1.3.6.1.5.5.7.3.4': 'emailProtection',
    '1.3.6.1.5.5.7.3.8': 'timeStamping',
    '1.3.6.1.5.5.7.3.9': 'OCSPSigning',
  };
  return names[oid] ?? oid;
}

function chainDigest(chain: readonly X509Certificate[], version: number): string {
  const h = createHash('sha256');
  for (const c of chain) h.update(c.raw);
  return `${version}:${h.digest('base64url')}`;
}
