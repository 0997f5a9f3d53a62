// The IAM Credentials side of the Google stand-in: the tokens the fake issued,
// generateAccessToken and generateIdToken for registered service accounts only, authorised only by a
// federated token this fake issued to a principal allowed to impersonate, and tokeninfo.
import { randomBytes } from 'node:crypto';
import { type CryptoKey, createLocalJWKSet, exportJWK, generateKeyPair, type JWK, jwtVerify, SignJWT } from 'jose';
import type { Clock } from './clock.ts';

export const GOOGLE_ID_TOKEN_ISSUER = 'https://accounts.google.com';
const CLOUD_PLATFORM = 'https://www.googleapis.com/auth/cloud-platform';
const IAM_SCOPE = 'https://www.googleapis.com/auth/iam';
const MAX_LIFETIME_SECONDS = 3600;

/** A service account and who may impersonate it (roles/iam.workloadIdentityUser / serviceAccountTokenCreator). */
export interface FakeServiceAccount {
  readonly email: string;
  /** principal://…/subject/S, or principalSet://…/workloadIdentityPools/P/* for every identity of a pool. */
  readonly impersonators: readonly string[];
}

export interface IssuedToken {
  readonly value: string;
  readonly kind: 'federated' | 'service-account';
  /** The federated principal, or the service account email. */
  readonly principal: string;
  readonly email: string | undefined;
  readonly scopes: readonly string[];
  /** Epoch ms. */
  readonly expiresAt: number;
}

/** A Google API error: `{"error":{"code","message","status","details"}}`. */
export class GoogleApiError extends Error {
  readonly httpStatus: number;
  readonly status: string;
  readonly reason: string | undefined;

  constructor(httpStatus: number, status: string, message: string, reason?: string) {
    super(message);
    this.httpStatus = httpStatus;
    this.status = status;
    this.reason = reason;
  }

  body(): unknown {
    const details = this.reason
      ? [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: this.reason, domain: 'iam.googleapis.com' }]
      : [];
    return { error: { code: this.httpStatus, message: this.message, status: this.status, details } };
  }
}

const IAM_PATH = /^\/v1\/projects\/([^/]+)\/serviceAccounts\/([^/:]+):(generateAccessToken|generateIdToken)$/;
const MAX_TOKENS = 10_000;

export class FakeIam {
  readonly #clock: Clock;
  readonly #accounts = new Map<string, FakeServiceAccount>();
  readonly #tokens = new Map<string, IssuedToken>();
  readonly #key: CryptoKey;
  readonly #jwk: JWK;
  readonly #lifetime: number;

  private constructor(clock: Clock, key: CryptoKey, jwk: JWK, lifetime: number) {
    this.#clock = clock;
    this.#key = key;
    this.#jwk = jwk;
    this.#lifetime = lifetime;
  }

  static async create(
    clock: Clock,
    accounts: readonly FakeServiceAccount[],
    lifetimeSeconds: number,
  ): Promise<FakeIam> {
    const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
    const iam = new FakeIam(clock, privateKey, jwk, lifetimeSeconds);
    for (const a of accounts) iam.addServiceAccount(a);
    return iam;
  }

  addServiceAccount(account: FakeServiceAccount): void {
    this.#accounts.set(account.email, account);
  }

  issue(t: {
    kind: IssuedToken['kind'];
    principal: string;
    email?: string;
    scopes: readonly string[];
    lifetimeSeconds: number;
  }): IssuedToken {
    if (this.#tokens.size >= MAX_TOKENS) this.#sweep();
    const token: IssuedToken = {
      value: `ya29.fake-${randomBytes(24).toString('base64url')}`,
      kind: t.kind,
      principal: t.principal,
      email: t.email,
      scopes: [...t.scopes],
      expiresAt: this.#clock.now() + t.lifetimeSeconds * 1000,
    };
    this.#tokens.set(token.value, token);
    return token;
  }

  /** The token if this fake issued it and it is still valid. */
  lookup(value: string): IssuedToken | undefined {
    const t = this.#tokens.get(value);
    return t && t.expiresAt > this.#clock.now() ? t : undefined;
  }

  jwks(): { keys: JWK[] } {
    return { keys: [this.#jwk] };
  }

  /** POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken | :generateIdToken */
  async handle(path: string, authorization: string | undefined, body: Record<string, unknown>): Promise<unknown> {
    const m = IAM_PATH.exec(path);
    if (!m) throw new GoogleApiError(404, 'NOT_FOUND', `The requested URL ${path} was not found on this server.`);
    const [, project, rawEmail, method] = m as unknown as [string, string, string, string];
    const caller = this.#caller(authorization);
    if (project !== '-')
      throw new GoogleApiError(
        400,
        'INVALID_ARGUMENT',
        'The project ID in the resource name must be the "-" wildcard.',
      );
    const email = decodeURIComponent(rawEmail);
    const permission =
      method === 'generateIdToken' ? 'iam.serviceAccounts.getOpenIdToken' : 'iam.serviceAccounts.getAccessToken';
    const account = this.#accounts.get(email);
    if (!account || !mayImpersonate(account, caller.principal)) {
      throw new GoogleApiError(
        403,
        'PERMISSION_DENIED',
        `Permission '${permission}' denied on resource (or it may not exist).`,
        'IAM_PERMISSION_DENIED',
      );
    }
    if (!caller.scopes.includes(CLOUD_PLATFORM) && !caller.scopes.includes(IAM_SCOPE)) {
      throw new GoogleApiError(
        403,
        'PERMISSION_DENIED',
        'Request had insufficient authentication scopes.',
        'ACCESS_TOKEN_SCOPE_INSUFFICIENT',
      );
    }
    if (method === 'generateIdToken') return { token: await this.#idToken(account, body) };
    return this.#accessToken(account, body);
  }

  /** GET|POST /oauth2/v3/tokeninfo?access_token=… or ?id_token=… */
  async tokeninfo(params: URLSearchParams): Promise<unknown> {
    const access = params.get('access_token');
    const now = this.#clock.now();
    if (access !== null) {
      const t = this.lookup(access);
      if (!t) throw new TokenInfoError();
      const exp = Math.floor(t.expiresAt / 1000);
      return {
        azp: t.principal,
        aud: t.principal,
        sub: t.principal,
        scope: t.scopes.join(' '),
        exp: String(exp),
        expires_in: String(Math.max(0, exp - Math.floor(now / 1000))),
        ...(t.email ? { email: t.email, email_verified: 'true' } : {}),
        access_type: 'online',
      };
    }
    const id = params.get('id_token');
    if (id !== null) {
      try {
        const { payload } = await jwtVerify(id, createLocalJWKSet(this.jwks()), {
          issuer: GOOGLE_ID_TOKEN_ISSUER,
          currentDate: new Date(now),
        });
        return Object.fromEntries(Object.entries(payload).map(([k, v]) => [k, typeof v === 'number' ? String(v) : v]));
      } catch {
        throw new TokenInfoError();
      }
    }
    throw new TokenInfoError();
  }

  #caller(authorization: string | undefined): IssuedToken {
    const m = /^Bearer (\S+)$/.exec(authorization ?? '');
    const t = m?.[1] === undefined ? undefined : this.lookup(m[1]);
    if (t?.kind !== 'federated') {
      throw new GoogleApiError(
        401,
        'UNAUTHENTICATED',
        'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.',
        'ACCESS_TOKEN_TYPE_UNSUPPORTED',
      );
    }
    return t;
  }

  #accessToken(account: FakeServiceAccount, body: Record<string, unknown>): unknown {
    const scope = body.scope;
    if (!Array.isArray(scope) || scope.length === 0 || !scope.every((s) => typeof s === 'string' && s !== '')) {
      throw new GoogleApiError(400, 'INVALID_ARGUMENT', 'Scope is required.');
    }
    let lifetime = MAX_LIFETIME_SECONDS;
    if (body.lifetime !== undefined) {
      const m = typeof body.lifetime === 'string' ? /^(\d+)(?:\.\d+)?s$/.exec(body.lifetime) : null;
      if (!m)
        throw new GoogleApiError(
          400,
          'INVALID_ARGUMENT',
          "Invalid value at 'lifetime' (type.googleapis.com/google.protobuf.Duration).",
        );
      lifetime = Number(m[1]);
      if (lifetime < 1 || lifetime > MAX_LIFETIME_SECONDS)
        throw new GoogleApiError(
          400,
          'INVALID_ARGUMENT',
          `The lifetime must be between 1s and ${MAX_LIFETIME_SECONDS}s.`,
        );
    }
    lifetime = Math.min(lifetime, this.#lifetime);
    const t = this.issue({
      kind: 'service-account',
      principal: account.email,
      email: account.email,
      scopes: scope as string[],
      lifetimeSeconds: lifetime,
    });
    return { accessToken: t.value, expireTime: new Date(t.expiresAt).toISOString().replace(/\.\d{3}Z$/, 'Z') };
  }

  async #idToken(account: FakeServiceAccount, body: Record<string, unknown>): Promise<string> {
    const audience = body.audience;
    if (typeof audience !== 'string' || audience === '')
      throw new GoogleApiError(400, 'INVALID_ARGUMENT', 'Audience is required.');
    const iat = Math.floor(this.#clock.now() / 1000);
    const claims: Record<string, unknown> = { azp: account.email };
    if (body.includeEmail === true) Object.assign(claims, { email: account.email, email_verified: true });
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: this.#jwk.kid as string, typ: 'JWT' })
      .setIssuer(GOOGLE_ID_TOKEN_ISSUER)
      .setSubject(account.email)
      .setAudience(audience)
      .setIssuedAt(iat)
      .setExpirationTime(iat + Math.min(3600, this.#lifetime))
      .sign(this.#key);
  }

  #sweep(): void {
    const now = this.#clock.now();
    for (const [k, t] of this.#tokens) if (t.expiresAt <= now) this.#tokens.delete(k);
    while (this.#tokens.size >= MAX_TOKENS) this.#tokens.delete(this.#tokens.keys().next().value as string);
  }
}

/** tokeninfo's refusal: HTTP 400 `{"error":"invalid_token","error_description":"Invalid Value"}`. */
export class TokenInfoError extends GoogleApiError {
  constructor() {
    super(400, 'invalid_token', 'Invalid Value');
  }

  override body(): unknown {
    return { error: 'invalid_token', error_description: 'Invalid Value' };
  }
}

function mayImpersonate(account: FakeServiceAccount, principal: string): boolean {
  return account.impersonators.some((who) => {
    if (who === principal) return true;
    const set = /^principalSet:\/\/iam\.googleapis\.com\/(.+)\/\*$/.exec(who);
    return set !== null && principal.startsWith(`principal://iam.googleapis.com/${set[1]}/subject/`);
  });
}
