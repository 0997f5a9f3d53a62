// A local Entra ID stand-in over HTTPS: OIDC metadata and the v2 token endpoint's client_credentials grant
// with a federated client assertion, checked the way Entra checks it: the
// application, an exact issuer + subject federated identity credential, audience, RS256, signature through
// the issuer's discovery and JWKS, exp. Issues RS256 access tokens shaped like Entra's v1 tokens.
//
// Trusting its certificate (it is minted by a DevCa): @azure/identity's HTTP client (core-rest-pipeline on
// node:https) uses the process-wide default CA list unless a request carries tlsSettings or an agent. Three ways work:
//   - in the sidecar: azure.caFile = a file holding `caPem` (the exchange sets its agent on each request);
//   - for an SDK in a child process: NODE_EXTRA_CA_CERTS=<file holding caPem> in its environment;
//   - in one process: tls.setDefaultCACertificates([...tls.getCACertificates('default'), caPem]) (Node ≥ 24.5)
//     before the first request (agents made earlier keep their old CA list).

import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import {
  type CryptoKey,
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  jwtVerify,
  SignJWT,
} from 'jose';
import { readBody } from '../../../src/http/read-body.ts';
import type { DevCa } from './dev-ca.ts';
import { issuerUrlProblem, OidcVerificationError, OidcVerifier } from './oidc-verifier.ts';

export const ENTRA_FEDERATION_AUDIENCE = 'api://AzureADTokenExchange';
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export interface FederatedIdentityCredential {
  readonly name?: string;
  /** Must equal the assertion's `iss` exactly. */
  readonly issuer: string;
  /** Must equal the assertion's `sub` exactly. */
  readonly subject: string;
  /** Exactly one in Entra; default api://AzureADTokenExchange. */
  readonly audiences?: readonly string[];
}

export interface FakeEntraApplication {
  readonly clientId: string;
  /** The service principal's object ID (`oid` of issued tokens); generated when absent. */
  readonly objectId?: string;
  readonly federatedCredentials: readonly FederatedIdentityCredential[];
}

export interface FakeEntraOptions {
  readonly tenantId: string;
  readonly applications: readonly FakeEntraApplication[];
  /** Signs the HTTPS serving certificate (127.0.0.1 and localhost). */
  readonly ca: DevCa;
  /** `expires_in` of issued access tokens. Default 3599. */
  readonly tokenLifetimeSeconds?: number;
  /** Milliseconds since the epoch, for assertion checks and issued tokens. Default Date.now. */
  readonly now?: () => number;
  readonly port?: number;
  /**
   * Dev mode and tests only: take federated identity credentials whose issuer is on http://127.0.0.1:<port>
   * (or localhost). Entra refuses an issuer that is not https:// without a port, and so does this stand-in
   * without this option.
   */
  readonly allowLoopbackHttpIssuers?: boolean;
}

/** An injected failure of the next token request(s): an HTTP error answer, or a dropped connection. */
export type EntraFault =
  | {
      readonly status: number;
      readonly code?: number;
      readonly error?: string;
      readonly description?: string;
      readonly retryAfterSeconds?: number;
      readonly times?: number;
    }
  | { readonly drop: true; readonly times?: number }
  /** Holds the request this long before answering it normally (slow, or longer than the client waits: a hang). */
  | { readonly delayMs: number; readonly times?: number }
  /** Answers 200 with a body that is not a token response. */
  | { readonly garbage: true; readonly times?: number };

/** What the stand-in saw of one token request (never the assertion itself). */
export interface SeenTokenRequest {
  readonly clientId: string | undefined;
  readonly scope: string | undefined;
  readonly assertion: { readonly iss: unknown; readonly sub: unknown; readonly aud: unknown } | undefined;
  /** "issued", "fault", or the AADSTS code refused with. */
  readonly outcome: string;
  readonly resource?: string;
}

export interface FakeEntraCounters {
  metadata: number;
  keys: number;
  token: number;
  issued: number;
  refused: number;
  faulted: number;
}

interface AppState {
  readonly clientId: string;
  readonly objectId: string;
  federatedCredentials: readonly FederatedIdentityCredential[];
}

interface EntraRefusal {
  readonly status: number;
  readonly error: string;
  readonly code: number;
  readonly message: string;
}

export class FakeEntra {
  readonly tenantId: string;
  /** https://127.0.0.1:<port>: what azure.authorityHost / AZURE_AUTHORITY_HOST should be. */
  readonly authorityHost: string;
  /** The root certificate to trust for `authorityHost`. */
  readonly caPem: string;
  /** `iss` of issued access tokens. */
  readonly tokenIssuer: string;
  /** The x-ms-request-id of each token issued, in order. */
  readonly requestIds: string[] = [];
  readonly counters: FakeEntraCounters = { metadata: 0, keys: 0, token: 0, issued: 0, refused: 0, faulted: 0 };
  readonly seen: SeenTokenRequest[] = [];
  readonly #server: Server;
  readonly #apps = new Map<string, AppState>();
  readonly #faults: Array<{ fault: EntraFault; left: number }> = [];
  readonly #privateKey: CryptoKey;
  readonly #jwk: JWK;
  readonly #lifetime: number;
  readonly #now: () => number;
  readonly #verifiers = new Map<string, OidcVerifier>();
  readonly #allowLoopbackHttpIssuers: boolean;

  private constructor(init: {
    server: Server;
    options: FakeEntraOptions;
    authorityHost: string;
    caPem: string;
    privateKey: CryptoKey;
    jwk: JWK;
  }) {
    this.#server = init.server;
    this.tenantId = init.options.tenantId;
    this.authorityHost = init.authorityHost;
    this.caPem = init.caPem;
    this.tokenIssuer = `https://sts.windows.net/${init.options.tenantId}/`;
    this.#privateKey = init.privateKey;
    this.#jwk = init.jwk;
    this.#lifetime = init.options.tokenLifetimeSeconds ?? 3599;
    this.#now = init.options.now ?? Date.now;
    this.#allowLoopbackHttpIssuers = init.options.allowLoopbackHttpIssuers === true;
    for (const app of init.options.applications) {
      this.#apps.set(app.clientId.toLowerCase(), {
        clientId: app.clientId,
        objectId: app.objectId ?? randomUUID(),
        federatedCredentials: app.federatedCredentials,
      });
    }
  }

  static async start(options: FakeEntraOptions): Promise<FakeEntra> {
    for (const app of options.applications)
      checkIssuers(app.federatedCredentials, options.allowLoopbackHttpIssuers === true);
    const cert = await options.ca.issueServerCert({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
    const jwk: JWK = { ...(await exportJWK(publicKey)), kid: randomUUID(), alg: 'RS256', use: 'sig' };
    let entra: FakeEntra | undefined;
    const server = createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
      if (entra) void entra.#handle(req, res);
    });
    await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    entra = new FakeEntra({
      server,
      options,
      authorityHost: `https://127.0.0.1:${port}`,
      caPem: options.ca.certPem,
      privateKey,
      jwk,
    });
    return entra;
  }

  /** The JWKS that verifies issued access tokens (also served at /{tenant}/discovery/v2.0/keys). */
  get jwks(): { keys: JWK[] } {
    return { keys: [this.#jwk] };
  }

  /** Replaces an application's federated identity credentials (create or fix one mid-test). */
  setFederatedCredentials(clientId: string, credentials: readonly FederatedIdentityCredential[]): void {
    const app = this.#apps.get(clientId.toLowerCase());
    if (!app) throw new Error(`no application ${clientId}`);
    checkIssuers(credentials, this.#allowLoopbackHttpIssuers);
    app.federatedCredentials = credentials;
  }

  /** Makes the next token request(s) fail this way (queued, in order). */
  injectFault(fault: EntraFault): void {
    this.#faults.push({ fault, left: fault.times ?? 1 });
  }

  clearFaults(): void {
    this.#faults.length = 0;
  }

  /** Verifies an access token this stand-in issued, for `resource`; returns its claims. */
  async verifyAccessToken(token: string, resource: string): Promise<JWTPayload> {
    const { payload } = await jwtVerify(token, createLocalJWKSet(this.jwks), {
      issuer: this.tokenIssuer,
      audience: resource,
      algorithms: ['RS256'],
      currentDate: new Date(this.#now()),
    });
    return payload;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', this.authorityHost);
      const m =
        /^\/([^/]+)\/(v2\.0\/\.well-known\/openid-configuration|discovery\/v2\.0\/keys|oauth2\/v2\.0\/token)$/.exec(
          url.pathname,
        );
      if (!m) return json(res, 404, { error: 'not_found' });
      const [, tenant = '', what] = m;
      if (tenant.toLowerCase() !== this.tenantId.toLowerCase()) {
        return this.#refuse(res, {
          status: 400,
          error: 'invalid_tenant',
          code: 90002,
          message: `Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.`,
        });
      }
      const base = `${this.authorityHost}/${this.tenantId}`;
      if (what === 'v2.0/.well-known/openid-configuration' && req.method === 'GET') {
        this.counters.metadata += 1;
        return json(res, 200, {
          token_endpoint: `${base}/oauth2/v2.0/token`,
          authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
          issuer: `${base}/v2.0`,
          jwks_uri: `${base}/discovery/v2.0/keys`,
          token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
          response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
          id_token_signing_alg_values_supported: ['RS256'],
          tenant_region_scope: 'EU',
        });
      }
      if (what === 'discovery/v2.0/keys' && req.method === 'GET') {
        this.counters.keys += 1;
        return json(res, 200, this.jwks);
      }
      if (what === 'oauth2/v2.0/token' && req.method === 'POST') return await this.#token(req, res);
      return json(res, 405, { error: 'method_not_allowed' });
    } catch (error) {
      if (!res.headersSent)
        json(res, 500, { error: 'server_error', error_description: `AADSTS90033: ${(error as Error).message}` });
    }
  }

  async #token(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.counters.token += 1;
    const body = await readBody(req, 1_000_000);
    if (!body) throw new Error('request body too large');
    const form = new URLSearchParams(body.toString('utf8'));
    const clientId = form.get('client_id') ?? undefined;
    const scope = form.get('scope') ?? undefined;
    const assertion = form.get('client_assertion') ?? undefined;
    let seenAssertion: SeenTokenRequest['assertion'];
    try {
      const claims = assertion ? decodeJwt(assertion) : undefined;
      seenAssertion = claims ? { iss: claims.iss, sub: claims.sub, aud: claims.aud } : undefined;
    } catch {
      seenAssertion = undefined;
    }
    const record = (outcome: string, resource?: string): void => {
      this.seen.push({
        clientId,
        scope,
        assertion: seenAssertion,
        outcome,
        ...(resource === undefined ? {} : { resource }),
      });
    };

    let fault = this.#takeFault();
    if (fault && 'delayMs' in fault) {
      this.counters.faulted += 1;
      record('fault');
      const ms = fault.delayMs;
      await new Promise((resolve) => setTimeout(resolve, ms));
      if (res.destroyed) return;
      fault = undefined;
    }
    if (fault) {
      this.counters.faulted += 1;
      record('fault');
      if ('drop' in fault) {
        (req.socket as Socket).destroy();
        return;
      }
      if ('garbage' in fault) {
        res.writeHead(200, { 'content-type': 'application/json' }).end('<html>not a token</html>');
        return;
      }
      const code = fault.code ?? (fault.status === 429 ? 50196 : 90033);
      return this.#send(
        res,
        {
          status: fault.status,
          error:
            fault.error ??
            (fault.status >= 500 || fault.status === 429 ? 'temporarily_unavailable' : 'invalid_request'),
          code,
          message: fault.description ?? 'A transient error has occurred. Please try again.',
        },
        fault.retryAfterSeconds,
      );
    }

    const refusal = await this.#check(form);
    if ('refusal' in refusal) {
      this.counters.refused += 1;
      record(`AADSTS${refusal.refusal.code}`);
      return this.#refuse(res, refusal.refusal);
    }
    const { app, resource, federatedIssuer } = refusal;
    const now = Math.floor(this.#now() / 1000);
    const accessToken = await new SignJWT({
      appid: app.clientId,
      appidacr: '2',
      idp: federatedIssuer,
      idtyp: 'app',
      oid: app.objectId,
      tid: this.tenantId,
      uti: randomUUID().replace(/-/g, ''),
      ver: '1.0',
    })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: this.#jwk.kid ?? '' })
      .setIssuer(this.tokenIssuer)
      .setAudience(resource)
      .setSubject(app.objectId)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + this.#lifetime)
      .sign(this.#privateKey);
    this.counters.issued += 1;
    record('issued', resource);
    // Entra names every answer with x-ms-request-id (its sign-in logs' request ID).
    const requestId = randomUUID();
    this.requestIds.push(requestId);
    json(
      res,
      200,
      { token_type: 'Bearer', expires_in: this.#lifetime, ext_expires_in: this.#lifetime, access_token: accessToken },
      { 'x-ms-request-id': requestId },
    );
  }

  /** Entra's checks, in Entra's order. */
  async #check(
    form: URLSearchParams,
  ): Promise<{ refusal: EntraRefusal } | { app: AppState; resource: string; federatedIssuer: string }> {
    const refuse = (status: number, error: string, code: number, message: string) => ({
      refusal: { status, error, code, message },
    });
    if (form.get('grant_type') !== 'client_credentials') {
      return refuse(
        400,
        'unsupported_grant_type',
        70003,
        `The app requested an unsupported grant type '${form.get('grant_type') ?? ''}'.`,
      );
    }
    const clientId = form.get('client_id') ?? '';
    const app = this.#apps.get(clientId.toLowerCase());
    if (!app) {
      return refuse(
        400,
        'unauthorized_client',
        700016,
        `Application with identifier '${clientId}' was not found in the directory '${this.tenantId}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.`,
      );
    }
    const scopes = (form.get('scope') ?? '').split(' ').filter((s) => s !== '');
    const scope = scopes[0];
    if (scopes.length !== 1 || scope === undefined || !scope.endsWith('/.default') || scope === '/.default') {
      return refuse(
        400,
        'invalid_scope',
        1002012,
        `The provided value for scope ${form.get('scope') ?? ''} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`,
      );
    }
    const resource = scope.slice(0, -'/.default'.length);
    const assertion = form.get('client_assertion');
    if (form.get('client_assertion_type') !== JWT_BEARER || !assertion) {
      return refuse(
        401,
        'invalid_client',
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
      );
    }
    let claims: JWTPayload;
    let alg: unknown;
    try {
      claims = decodeJwt(assertion);
      alg = decodeProtectedHeader(assertion).alg;
    } catch {
      return refuse(400, 'invalid_request', 50027, 'JWT token is invalid or malformed.');
    }
    if (alg !== 'RS256') {
      return refuse(
        400,
        'invalid_request',
        5002738,
        `Invalid JWT token. '${String(alg)}' is not a supported signature algorithm. Supported signing algorithms are: 'RS256, HS256'`,
      );
    }
    const iss = typeof claims.iss === 'string' ? claims.iss : '';
    const sub = typeof claims.sub === 'string' ? claims.sub : '';
    const auds = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : [];
    const byIssuer = app.federatedCredentials.filter((f) => f.issuer === iss);
    const guide =
      'Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation';
    if (byIssuer.length === 0)
      return refuse(
        400,
        'invalid_request',
        700211,
        `No matching federated identity record found for presented assertion issuer '${iss}'. ${guide}`,
      );
    const bySubject = byIssuer.filter((f) => f.subject === sub);
    if (bySubject.length === 0)
      return refuse(
        400,
        'invalid_request',
        700213,
        `No matching federated identity record found for presented assertion subject '${sub}'. ${guide}`,
      );
    const fic = bySubject.find((f) => (f.audiences ?? [ENTRA_FEDERATION_AUDIENCE]).some((a) => auds.includes(a)));
    if (!fic)
      return refuse(
        400,
        'invalid_request',
        700212,
        `No matching federated identity record found for presented assertion audience '${auds.join(',')}'. ${guide}`,
      );

    try {
      await this.#verifier(iss).verify(assertion, fic.audiences ?? [ENTRA_FEDERATION_AUDIENCE]);
    } catch (error) {
      const reason = error instanceof OidcVerificationError ? error.reason : 'malformed';
      switch (reason) {
        case 'discovery_failed':
          return refuse(
            400,
            'invalid_request',
            90061,
            `Request to External OIDC endpoint failed. ${(error as Error).message}`,
          );
        case 'expired':
        case 'not_yet_valid':
          return refuse(
            400,
            'invalid_client',
            700024,
            `Client assertion is not within its valid time range. Current time: ${new Date(this.#now()).toISOString()}, assertion valid from ${isoOf(claims.nbf)}, expiry time of assertion ${isoOf(claims.exp)}.`,
          );
        case 'bad_signature':
          return refuse(401, 'invalid_client', 700027, 'Client assertion failed signature validation.');
        case 'unknown_key':
          return refuse(
            401,
            'invalid_client',
            7000272,
            `The certificate with identifier ${String(decodeProtectedHeader(assertion).kid ?? '')} used to sign the federated credential could not be found in the metadata of identity provider ${iss}. Please validate that your Identity Provider's metadata exposes the key used to sign the incoming token.`,
          );
        case 'wrong_audience':
          return refuse(
            400,
            'invalid_request',
            700212,
            `No matching federated identity record found for presented assertion audience '${auds.join(',')}'. ${guide}`,
          );
        default:
          return refuse(
            400,
            'invalid_request',
            50027,
            `JWT token is invalid or malformed. ${(error as Error).message}`,
          );
      }
    }
    return { app, resource, federatedIssuer: iss };
  }

  #verifier(issuer: string): OidcVerifier {
    let v = this.#verifiers.get(issuer);
    if (!v) {
      v = new OidcVerifier({
        issuers: [issuer],
        allowLoopbackHttpIssuers: this.#allowLoopbackHttpIssuers,
        now: this.#now,
        clockToleranceSeconds: 0,
      });
      this.#verifiers.set(issuer, v);
    }
    return v;
  }

  #takeFault(): EntraFault | undefined {
    const head = this.#faults[0];
    if (!head) return undefined;
    head.left -= 1;
    if (head.left <= 0) this.#faults.shift();
    return head.fault;
  }

  #refuse(res: ServerResponse, refusal: EntraRefusal): void {
    this.#send(res, refusal, undefined);
  }

  #send(res: ServerResponse, refusal: EntraRefusal, retryAfterSeconds: number | undefined): void {
    const traceId = randomUUID();
    const correlationId = randomUUID();
    const timestamp = new Date(this.#now())
      .toISOString()
      .replace('T', ' ')
      .replace(/\.\d+Z$/, 'Z');
    const headers: Record<string, string> =
      retryAfterSeconds === undefined ? {} : { 'retry-after': String(retryAfterSeconds) };
    json(
      res,
      refusal.status,
      {
        error: refusal.error,
        error_description: `AADSTS${refusal.code}: ${refusal.message} Trace ID: ${traceId} Correlation ID: ${correlationId} Timestamp: ${timestamp}`,
        error_codes: [refusal.code],
        timestamp,
        trace_id: traceId,
        correlation_id: correlationId,
        error_uri: `${this.authorityHost}/error?code=${refusal.code}`,
      },
      headers,
    );
  }
}

/** Entra refuses to create a federated identity credential whose issuer is not https:// without a port. */
function checkIssuers(credentials: readonly FederatedIdentityCredential[], allowLoopbackHttp: boolean): void {
  for (const c of credentials) {
    const problem = issuerUrlProblem(c.issuer, allowLoopbackHttp);
    if (problem) throw new Error(`Entra refuses this federated identity credential: ${problem}`);
  }
}

function isoOf(seconds: unknown): string {
  return typeof seconds === 'number' ? new Date(seconds * 1000).toISOString() : 'unknown';
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res
    .writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers })
    .end(JSON.stringify(body));
}
