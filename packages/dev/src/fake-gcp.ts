// Local stand-ins for Google STS and IAM Credentials on loopback, for tests and the dev mode
//: STS token exchange (JWT or X.509 over mTLS, checked as Google checks),
// generateAccessToken / generateIdToken only with a federated token this fake issued and only for
// service accounts registered as impersonable, a tokeninfo endpoint, fault injection and counters.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { readBody } from '../../../src/http/read-body.ts';
import { type Clock, systemClock } from './clock.ts';
import {
  checkJwtSubject,
  checkMtlsSubject,
  type FakeWorkloadIdentityProvider,
  OAuthError,
  type TlsPeer,
} from './fake-gcp-checks.ts';
import { FakeIam, type FakeServiceAccount, GoogleApiError, type IssuedToken } from './fake-gcp-iam.ts';
import { issuerUrlProblem, OidcVerifier } from './oidc-verifier.ts';

export type { FakeWorkloadIdentityProvider } from './fake-gcp-checks.ts';
export type { FakeServiceAccount, IssuedToken } from './fake-gcp-iam.ts';

export type GcpSurface = 'sts' | 'iam';
export type GcpFault =
  | { readonly status: number; readonly body?: unknown }
  | { readonly reset: true }
  | { readonly delayMs: number };

export interface FakeGcpOptions {
  readonly clock?: Clock;
  readonly providers?: readonly FakeWorkloadIdentityProvider[];
  readonly serviceAccounts?: readonly FakeServiceAccount[];
  /**
   * Also serve HTTPS (needed for the mTLS STS path) with this certificate. Client certificates are requested
   * and verified against the X.509 providers' trust anchors; the handshake does not refuse a client without
   * one or with an untrusted one (the same listener serves IAM, which takes none): an mtls exchange is
   * refused in Google's OAuth shape unless the handshake verified the client.
   */
  readonly tls?: { readonly certPem: string; readonly keyPem: string };
  /** Seconds a federated or service account access token lives. Default 3600 (STS answers 3599). */
  readonly tokenLifetimeSeconds?: number;
  /**
   * Dev mode and tests only: take OIDC providers whose issuer is on http://127.0.0.1:<port> (or localhost).
   * Google refuses an issuer URI that is not https:// without a port, and so does this stand-in without it.
   */
  readonly allowLoopbackHttpIssuers?: boolean;
}

export interface FakeGcpStats {
  stsRequests: number;
  stsSuccesses: number;
  /** STS successes by subject token type (jwt, mtls). */
  stsByType: Record<string, number>;
  generateAccessToken: number;
  generateIdToken: number;
  tokeninfo: number;
  faultsServed: number;
  /** Error answers by code (OAuth `error` or Google API `status`). */
  errors: Record<string, number>;
  lastSts:
    | { subjectTokenType: string; audience: string; scopes: string[]; subject: string; principal: string }
    | undefined;
}

interface HttpsListener {
  readonly server: HttpsServer;
  readonly certPem: string;
  readonly keyPem: string;
}

const MAX_BODY = 64 * 1024;
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const SUBJECT_TYPES = new Set([
  'urn:ietf:params:oauth:token-type:jwt',
  'urn:ietf:params:oauth:token-type:id_token',
  'urn:ietf:params:oauth:token-type:mtls',
]);

export class FakeGcp {
  /** http://127.0.0.1:<port>: STS at /v1/token, IAM at /v1/projects/-/serviceAccounts/…, tokeninfo at /oauth2/v3/tokeninfo. */
  readonly url: string;
  /** https://127.0.0.1:<port> when `tls` was given: the same routes, with client certificates requested (mTLS STS). */
  readonly httpsUrl: string | undefined;
  readonly stats: FakeGcpStats = {
    stsRequests: 0,
    stsSuccesses: 0,
    stsByType: {},
    generateAccessToken: 0,
    generateIdToken: 0,
    tokeninfo: 0,
    faultsServed: 0,
    errors: {},
    lastSts: undefined,
  };
  readonly iam: FakeIam;
  readonly #servers: Server[];
  readonly #https: HttpsListener | undefined;
  readonly #clock: Clock;
  readonly #providers = new Map<string, FakeWorkloadIdentityProvider>();
  readonly #faults: Record<GcpSurface, GcpFault[]> = { sts: [], iam: [] };
  readonly #outage: Partial<Record<GcpSurface, GcpFault>> = {};
  readonly #lifetime: number;
  readonly #allowLoopbackHttpIssuers: boolean;
  #verifier: OidcVerifier | undefined;

  private constructor(
    servers: Server[],
    https: HttpsListener | undefined,
    url: string,
    httpsUrl: string | undefined,
    iam: FakeIam,
    options: FakeGcpOptions,
  ) {
    this.#servers = servers;
    this.#https = https;
    this.url = url;
    this.httpsUrl = httpsUrl;
    this.iam = iam;
    this.#clock = options.clock ?? systemClock;
    this.#lifetime = options.tokenLifetimeSeconds ?? 3600;
    this.#allowLoopbackHttpIssuers = options.allowLoopbackHttpIssuers === true;
    for (const p of options.providers ?? []) this.addProvider(p);
  }

  static async start(options: FakeGcpOptions = {}): Promise<FakeGcp> {
    for (const p of options.providers ?? []) checkProviderIssuer(p, options.allowLoopbackHttpIssuers === true);
    let fake: FakeGcp | undefined;
    const handler = (req: IncomingMessage, res: ServerResponse): void => void fake?.handle(req, res);
    const servers: Server[] = [createServer(handler)];
    let https: HttpsListener | undefined;
    if (options.tls) {
      const { certPem, keyPem } = options.tls;
      const ca = trustAnchors(options.providers ?? []);
      // rejectUnauthorized: false only lets the handshake finish so that the refusal is Google's OAuth
      // answer; checkMtlsSubject refuses every mtls exchange whose client the handshake did not verify.
      const server = createHttpsServer(
        { cert: certPem, key: keyPem, requestCert: true, rejectUnauthorized: false, ...(ca.length > 0 ? { ca } : {}) },
        handler,
      );
      https = { server, certPem, keyPem };
      servers.push(server as unknown as Server);
    }
    const ports: number[] = [];
    for (const server of servers) {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
      });
      ports.push((server.address() as AddressInfo).port);
    }
    const iam = await FakeIam.create(
      options.clock ?? systemClock,
      options.serviceAccounts ?? [],
      options.tokenLifetimeSeconds ?? 3600,
    );
    fake = new FakeGcp(
      servers,
      https,
      `http://127.0.0.1:${ports[0]}`,
      options.tls ? `https://127.0.0.1:${ports[1]}` : undefined,
      iam,
      options,
    );
    return fake;
  }

  /** Registers a pool provider; throws, as Google refuses it, for an OIDC issuer that is not https:// without a port. */
  addProvider(provider: FakeWorkloadIdentityProvider): void {
    checkProviderIssuer(provider, this.#allowLoopbackHttpIssuers);
    this.#providers.set(provider.name, provider);
    this.#verifier = undefined;
    if (this.#https && provider.trustAnchorsPem) {
      // New connections verify client certificates against every X.509 provider's anchors.
      const { server, certPem, keyPem } = this.#https;
      server.setSecureContext({ cert: certPem, key: keyPem, ca: trustAnchors([...this.#providers.values()]) });
    }
  }

  addServiceAccount(account: FakeServiceAccount): void {
    this.iam.addServiceAccount(account);
  }

  /** Faults answered instead of (delayMs: before) the next requests to `surface`, one each. */
  injectFaults(surface: GcpSurface, faults: readonly GcpFault[]): void {
    this.#faults[surface].push(...faults);
  }

  /** Every request to `surface` gets `fault` until called again with undefined. */
  setOutage(surface: GcpSurface, fault: GcpFault | undefined): void {
    if (fault) this.#outage[surface] = fault;
    else delete this.#outage[surface];
  }

  /** What an access token is, if this fake issued it and it has not expired. */
  tokenInfo(token: string): IssuedToken | undefined {
    return this.iam.lookup(token);
  }

  async close(): Promise<void> {
    await Promise.all(
      this.#servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.closeAllConnections();
            s.close(() => resolve());
          }),
      ),
    );
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake-gcp');
    const surface: GcpSurface | undefined =
      url.pathname === '/v1/token' ? 'sts' : url.pathname.startsWith('/v1/projects/') ? 'iam' : undefined;
    try {
      const body = await readBody(req, MAX_BODY);
      if (!body) throw new OAuthError('invalid_request', 'The request body is too large.');
      if (surface) {
        const fault = this.#outage[surface] ?? this.#faults[surface].shift();
        if (fault) {
          this.stats.faultsServed += 1;
          if ('reset' in fault) return void req.socket.destroy();
          if ('delayMs' in fault) await new Promise((resolve) => setTimeout(resolve, fault.delayMs));
          else
            return this.#send(
              res,
              fault.status,
              fault.body ?? defaultFaultBody(surface, fault.status),
              errorCode(fault.body) ?? `HTTP_${fault.status}`,
            );
        }
      }
      if (res.destroyed) return;
      if (surface === 'sts' && req.method === 'POST') return await this.#sts(req, res, body);
      if (surface === 'iam' && req.method === 'POST') {
        const kind = url.pathname.endsWith(':generateIdToken') ? 'generateIdToken' : 'generateAccessToken';
        this.stats[kind] += 1;
        return this.#send(res, 200, await this.iam.handle(url.pathname, req.headers.authorization, parseJson(body)));
      }
      if (url.pathname === '/oauth2/v3/tokeninfo') {
        this.stats.tokeninfo += 1;
        const params = new URLSearchParams(url.search);
        if (req.method === 'POST') for (const [k, v] of new URLSearchParams(body.toString('utf8'))) params.set(k, v);
        return this.#send(res, 200, await this.iam.tokeninfo(params));
      }
      if (url.pathname === '/oauth2/v3/certs') return this.#send(res, 200, this.iam.jwks());
      throw new GoogleApiError(404, 'NOT_FOUND', `The requested URL ${url.pathname} was not found on this server.`);
    } catch (thrown) {
      if (res.destroyed || res.headersSent) return;
      if (thrown instanceof OAuthError)
        return this.#send(res, thrown.status, { error: thrown.code, error_description: thrown.message }, thrown.code);
      const e =
        thrown instanceof GoogleApiError ? thrown : new GoogleApiError(500, 'INTERNAL', 'Internal error encountered.');
      return this.#send(res, e.httpStatus, e.body(), e.status);
    }
  }

  async #sts(req: IncomingMessage, res: ServerResponse, raw: Buffer): Promise<void> {
    this.stats.stsRequests += 1;
    const p = stsParams(req.headers['content-type'] ?? '', raw);
    if (p.grantType !== TOKEN_EXCHANGE)
      throw new OAuthError('unsupported_grant_type', `Unsupported grant type: ${p.grantType}`);
    if (p.requestedTokenType !== ACCESS_TOKEN_TYPE)
      throw new OAuthError('invalid_request', `Invalid value for "requested_token_type": ${p.requestedTokenType}`);
    if (!SUBJECT_TYPES.has(p.subjectTokenType))
      throw new OAuthError('invalid_request', `Invalid value for "subject_token_type": ${p.subjectTokenType}`);
    if (p.subjectToken === '') throw new OAuthError('invalid_request', 'Missing required parameter: subject_token');
    const name =
      /^\/\/iam\.googleapis\.com\/(projects\/\d+\/locations\/global\/workloadIdentityPools\/[^/]+\/providers\/[^/]+)$/.exec(
        p.audience,
      )?.[1];
    const provider = name === undefined ? undefined : this.#providers.get(name);
    if (!provider || name === undefined) {
      throw new OAuthError(
        'invalid_target',
        'The target service indicated by the "audience" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn\'t exist.',
      );
    }
    const now = this.#clock.now();
    const mtls = p.subjectTokenType.endsWith(':mtls');
    const subject = mtls
      ? checkMtlsSubject(p.subjectToken, tlsPeer(req), provider, now)
      : await checkJwtSubject(p.subjectToken, provider, this.#oidc(), now);
    const pool = name.replace(/\/providers\/[^/]+$/, '');
    const principal = `principal://iam.googleapis.com/${pool}/subject/${subject}`;
    const scopes = p.scope.split(/\s+/).filter((s) => s !== '');
    const token = this.iam.issue({ kind: 'federated', principal, scopes, lifetimeSeconds: this.#lifetime });
    this.stats.stsSuccesses += 1;
    const type = mtls ? 'mtls' : 'jwt';
    this.stats.stsByType[type] = (this.stats.stsByType[type] ?? 0) + 1;
    this.stats.lastSts = { subjectTokenType: p.subjectTokenType, audience: p.audience, scopes, subject, principal };
    this.#send(res, 200, {
      access_token: token.value,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: this.#lifetime - 1,
    });
  }

  #oidc(): OidcVerifier {
    this.#verifier ??= new OidcVerifier({
      issuers: [...this.#providers.values()].flatMap((p) => (p.issuer ? [p.issuer] : [])),
      allowLoopbackHttpIssuers: this.#allowLoopbackHttpIssuers,
      clockToleranceSeconds: 60,
      now: () => this.#clock.now(),
    });
    return this.#verifier;
  }

  #send(res: ServerResponse, status: number, body: unknown, errorCodeName?: string): void {
    if (status >= 400 && errorCodeName) this.stats.errors[errorCodeName] = (this.stats.errors[errorCodeName] ?? 0) + 1;
    const text = JSON.stringify(body);
    res
      .writeHead(status, {
        'content-type': 'application/json; charset=UTF-8',
        'content-length': Buffer.byteLength(text),
      })
      .end(text);
  }
}

/** Google refuses an OIDC provider whose issuer URI is not https:// without a port. */
function checkProviderIssuer(provider: FakeWorkloadIdentityProvider, allowLoopbackHttp: boolean): void {
  const problem = provider.issuer === undefined ? undefined : issuerUrlProblem(provider.issuer, allowLoopbackHttp);
  if (problem) throw new Error(`Google refuses this workload identity pool provider: ${problem}`);
}

/** STS takes RFC 8693 form fields or the REST API's JSON (camelCase or snake_case). */
function stsParams(
  contentType: string,
  raw: Buffer,
): {
  grantType: string;
  audience: string;
  scope: string;
  requestedTokenType: string;
  subjectToken: string;
  subjectTokenType: string;
} {
  const text = raw.toString('utf8');
  let get: (snake: string, camel: string) => string;
  if (contentType.startsWith('application/json')) {
    const json = parseJson(raw);
    get = (snake, camel) => {
      const v = json[camel] ?? json[snake];
      return typeof v === 'string' ? v : '';
    };
  } else if (contentType.startsWith('application/x-www-form-urlencoded')) {
    const form = new URLSearchParams(text);
    get = (snake) => form.get(snake) ?? '';
  } else {
    throw new OAuthError(
      'invalid_request',
      'The request body must be application/x-www-form-urlencoded or application/json.',
    );
  }
  return {
    grantType: get('grant_type', 'grantType'),
    audience: get('audience', 'audience'),
    scope: get('scope', 'scope'),
    requestedTokenType: get('requested_token_type', 'requestedTokenType'),
    subjectToken: get('subject_token', 'subjectToken'),
    subjectTokenType: get('subject_token_type', 'subjectTokenType'),
  };
}

function tlsPeer(req: IncomingMessage): TlsPeer {
  const socket = req.socket as TLSSocket;
  if (typeof socket.getPeerX509Certificate !== 'function')
    return { certificate: undefined, authorized: false, authorizationError: undefined };
  const error = socket.authorizationError as Error | string | null | undefined;
  return {
    certificate: socket.getPeerX509Certificate(),
    authorized: socket.authorized,
    authorizationError:
      error === null || error === undefined
        ? undefined
        : typeof error === 'string'
          ? error
          : ((error as { code?: string }).code ?? error.message),
  };
}

/** The PEM trust anchors of every X.509 provider, for the TLS layer. */
function trustAnchors(providers: readonly FakeWorkloadIdentityProvider[]): string[] {
  return providers.flatMap((p) => (p.trustAnchorsPem ? [p.trustAnchorsPem] : []));
}

function parseJson(raw: Buffer): Record<string, unknown> {
  if (raw.length === 0) return {};
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new GoogleApiError(400, 'INVALID_ARGUMENT', 'Invalid JSON payload received.');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new GoogleApiError(400, 'INVALID_ARGUMENT', 'Invalid JSON payload received. Expected an object.');
  return value as Record<string, unknown>;
}

function defaultFaultBody(surface: GcpSurface, status: number): unknown {
  const status_ =
    status === 429
      ? 'RESOURCE_EXHAUSTED'
      : status === 503
        ? 'UNAVAILABLE'
        : status >= 500
          ? 'INTERNAL'
          : 'FAILED_PRECONDITION';
  if (surface === 'sts')
    return {
      error: status >= 500 ? 'server_error' : 'invalid_request',
      error_description: `injected fault (${status_})`,
    };
  return { error: { code: status, message: `injected fault (${status_})`, status: status_ } };
}

function errorCode(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const e = (body as { error?: unknown }).error;
  if (typeof e === 'string') return e;
  if (typeof e === 'object' && e !== null && typeof (e as { status?: unknown }).status === 'string')
    return (e as { status: string }).status;
  return undefined;
}
