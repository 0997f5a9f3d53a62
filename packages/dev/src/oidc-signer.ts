// A local JWT-SVID signer with OIDC discovery and JWKS on loopback: the identity provider behind the
// dev mode and the tests' cloud stand-ins.

import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';

/** What the signer can sign with: the algorithms the clouds take, and two they refuse (PS256, EdDSA) for refusal tests. */
export type SigningAlg = 'RS256' | 'RS384' | 'RS512' | 'ES256' | 'ES384' | 'ES512' | 'PS256' | 'EdDSA';

export interface SignOptions {
  /** The SPIFFE ID, the `sub` claim. */
  readonly sub: string;
  readonly aud: string | string[];
  readonly ttlSeconds?: number;
  /** Seconds since the epoch; defaults to now. */
  readonly iat?: number;
  readonly extraClaims?: Record<string, unknown>;
  /** Overrides for negative tests: another issuer string, no kid. */
  readonly iss?: string;
  readonly omitKid?: boolean;
}

export class DevOidcSigner {
  readonly issuer: string;
  readonly jwksUri: string;
  readonly alg: SigningAlg;
  readonly #server: Server;
  readonly #privateKey: CryptoKey;
  readonly #kid: string;
  readonly #jwk: JWK;
  #requests = 0;

  private constructor(server: Server, issuer: string, alg: SigningAlg, privateKey: CryptoKey, kid: string, jwk: JWK) {
    this.#server = server;
    this.issuer = issuer;
    this.jwksUri = `${issuer}/jwks.json`;
    this.alg = alg;
    this.#privateKey = privateKey;
    this.#kid = kid;
    this.#jwk = jwk;
  }

  /** Starts the discovery listener on 127.0.0.1 (port 0 unless given) and makes a fresh key. */
  static async start(options: { alg?: SigningAlg; port?: number; path?: string } = {}): Promise<DevOidcSigner> {
    const alg = options.alg ?? 'RS256';
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
    const kid = randomUUID();
    const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
    let signer: DevOidcSigner | undefined;
    const server = createServer((req, res) => signer?.handle(req.url ?? '/', res));
    await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const path = (options.path ?? '').replace(/\/$/, '');
    signer = new DevOidcSigner(server, `http://127.0.0.1:${port}${path}`, alg, privateKey, kid, jwk);
    return signer;
  }

  /** Number of discovery/JWKS requests served (tests check that verifiers really fetch). */
  get requests(): number {
    return this.#requests;
  }

  async sign(options: SignOptions): Promise<string> {
    const iat = options.iat ?? Math.floor(Date.now() / 1000);
    const header: { alg: SigningAlg; typ: string; kid?: string } = { alg: this.alg, typ: 'JWT' };
    if (!options.omitKid) header.kid = this.#kid;
    return new SignJWT({ ...options.extraClaims })
      .setProtectedHeader(header)
      .setIssuer(options.iss ?? this.issuer)
      .setSubject(options.sub)
      .setAudience(options.aud)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + (options.ttlSeconds ?? 3600))
      .setJti(randomUUID())
      .sign(this.#privateKey);
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  private handle(url: string, res: import('node:http').ServerResponse): void {
    this.#requests += 1;
    const path = new URL(url, 'http://x').pathname;
    const prefix = new URL(this.issuer).pathname.replace(/\/$/, '');
    if (path === `${prefix}/.well-known/openid-configuration`) {
      json(res, {
        issuer: this.issuer,
        jwks_uri: this.jwksUri,
        response_types_supported: ['id_token'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: [this.alg],
        claims_supported: ['sub', 'aud', 'exp', 'iat', 'iss', 'jti', 'nbf'],
      });
    } else if (path === `${prefix}/jwks.json`) {
      json(res, { keys: [this.#jwk] });
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  }
}

function json(res: import('node:http').ServerResponse, body: unknown): void {
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60' }).end(JSON.stringify(body));
}
