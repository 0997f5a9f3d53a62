// A local stand-in for AWS STS on loopback, for tests and the dev mode: AssumeRoleWithWebIdentity
// checked the way AWS checks it, AssumeRole (role chaining) and GetCallerIdentity verifying SigV4 with the
// secret it issued. Answers AWS's query-protocol XML; faults can be injected per exchange request.

import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt } from 'jose';
import { readBody } from '../../../src/http/read-body.ts';
import { expectedSignature, parseAmzDate, parseAuthorization, signaturesEqual } from './aws-sigv4.ts';
import { type Clock, systemClock } from './clock.ts';
import { checkWebIdentityTags } from './fake-sts-tags.ts';
import {
  assumeRoleWithWebIdentityXml,
  assumeRoleXml,
  errorXml,
  getCallerIdentityXml,
  stsTimestamp,
} from './fake-sts-xml.ts';
import { issuerUrlProblem, OidcVerificationError, OidcVerifier } from './oidc-verifier.ts';

/** An IAM OIDC identity provider: its URL (= `iss`) and registered client IDs (= allowed `aud`). */
export interface FakeOidcProvider {
  readonly issuer: string;
  readonly audiences: readonly string[];
}

/** An IAM role whose trust policy federates `issuer` with conditions on `aud` and, optionally, `sub`. */
export interface FakeRole {
  readonly arn: string;
  readonly issuer: string;
  readonly audience: string;
  /** `StringLike` pattern for `sub` (`*` and `?` wildcards). */
  readonly subject?: string;
  /** The role's MaxSessionDuration, default 3600 as in IAM. */
  readonly maxSessionDurationSeconds?: number;
  /** The trust policy also allows sts:TagSession (tokens with https://aws.amazon.com/tags). Default false. */
  readonly allowTagSession?: boolean;
  /** The trust policy also allows sts:SetSourceIdentity (https://aws.amazon.com/source_identity). Default false. */
  readonly allowSetSourceIdentity?: boolean;
  /** `StringEquals` conditions on `aws:RequestTag/<key>`: the token's session tags must carry these values. */
  readonly requestTags?: Readonly<Record<string, string>>;
}

/**
 * An IAM role whose trust policy names other roles as AWS principals (`"Principal": {"AWS": "<role ARN>"}`):
 * sessions of those roles may sts:AssumeRole it (role chaining).
 */
export interface FakeChainedRole {
  readonly arn: string;
  /** Role ARNs whose sessions the trust policy allows. */
  readonly trustedRoles: readonly string[];
  /** The role's MaxSessionDuration, default 3600; role chaining is held to one hour whatever it says. */
  readonly maxSessionDurationSeconds?: number;
}

export type StsFault =
  | { readonly status: number; readonly code?: string; readonly message?: string }
  | { readonly delayMs: number }
  | { readonly garbage: true }
  | { readonly reset: true };

export interface FakeStsOptions {
  readonly port?: number;
  readonly clock?: Clock;
  readonly providers?: readonly FakeOidcProvider[];
  readonly roles?: readonly FakeRole[];
  readonly chainedRoles?: readonly FakeChainedRole[];
  /**
   * Milliseconds added to every Expiration, printed with its fraction (STS itself prints whole seconds):
   * to prove a client of an upstream that does send fractions never serves a credential past its expiry.
   */
  readonly expirationFractionMs?: number;
  /** Largest accepted difference between X-Amz-Date and the fake's clock, default 15 min as AWS. */
  readonly maxSignatureSkewMs?: number;
  /** The region this endpoint serves: SigV4 credential scopes must name it. Default us-east-1 (the global endpoint's). */
  readonly region?: string;
  /**
   * Dev mode and tests only: take OIDC providers on http://127.0.0.1:<port> (or localhost). IAM refuses any
   * provider URL that is not https:// without a port, and so does this stand-in without this option.
   */
  readonly allowLoopbackHttpIssuers?: boolean;
}

export interface IssuedCredential {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken: string;
  /** Epoch ms, whole seconds (what the XML says). */
  readonly expiration: number;
  readonly account: string;
  readonly assumedRoleArn: string;
  readonly assumedRoleId: string;
  /** The role this session is of (arn:aws:iam::<account>:role/<name>). */
  readonly roleArn: string;
  readonly sessionName: string;
  /** The web identity's `sub`; for a chained session, the `sub` of the session it was assumed with. */
  readonly subject: string;
  /** Session tags from the token (aws:PrincipalTag/<key>), transitive keys, and the source identity. */
  readonly sessionTags: Readonly<Record<string, string>>;
  readonly transitiveTagKeys: readonly string[];
  readonly sourceIdentity: string | undefined;
}

export interface FakeStsStats {
  /** AssumeRoleWithWebIdentity requests received, faulted ones included. */
  assumeRoleRequests: number;
  assumeRoleSuccesses: number;
  faultsServed: number;
  callerIdentityRequests: number;
  /** GetCallerIdentity requests whose SigV4 signature verified with the issued secret. */
  signaturesVerified: number;
  /** Error codes answered, by code. */
  errors: Record<string, number>;
  lastSessionName: string | undefined;
  lastSubject: string | undefined;
  lastAudience: string | undefined;
  lastDurationSeconds: number | undefined;
  /** sts:AssumeRole (role chaining) requests, and those that issued a session. */
  chainedAssumeRoleRequests: number;
  chainedAssumeRoleSuccesses: number;
  /** The assumed-role ARN of the session the last chained AssumeRole was signed with. */
  lastChainedFrom: string | undefined;
}

class StsError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const ROLE_ARN = /^arn:(aws[a-z-]*):iam::(\d{12}):role\/(?:[\w+=,.@-]+\/)*([\w+=,.@-]{1,64})$/;
const SESSION_NAME = /^[\w+=,.@-]{2,64}$/;
const MAX_BODY = 64 * 1024;

export class FakeSts {
  readonly url: string;
  readonly stats: FakeStsStats = {
    assumeRoleRequests: 0,
    assumeRoleSuccesses: 0,
    faultsServed: 0,
    callerIdentityRequests: 0,
    signaturesVerified: 0,
    errors: {},
    lastSessionName: undefined,
    lastSubject: undefined,
    lastAudience: undefined,
    lastDurationSeconds: undefined,
    chainedAssumeRoleRequests: 0,
    chainedAssumeRoleSuccesses: 0,
    lastChainedFrom: undefined,
  };
  readonly #server: Server;
  readonly #clock: Clock;
  readonly #maxSkewMs: number;
  readonly #region: string;
  readonly #allowLoopbackHttpIssuers: boolean;
  readonly #providers = new Map<string, FakeOidcProvider>();
  readonly #roles = new Map<string, FakeRole>();
  readonly #chainedRoles = new Map<string, FakeChainedRole>();
  readonly #issued = new Map<string, IssuedCredential>();
  readonly #timers = new Set<NodeJS.Timeout>();
  /** The x-amzn-RequestId of each AssumeRoleWithWebIdentity that issued credentials, in order. */
  readonly requestIds: string[] = [];
  #faults: StsFault[] = [];
  readonly #expirationFractionMs: number;
  #verifier: OidcVerifier | undefined;

  private constructor(server: Server, url: string, options: FakeStsOptions) {
    this.#server = server;
    this.url = url;
    this.#clock = options.clock ?? systemClock;
    this.#maxSkewMs = options.maxSignatureSkewMs ?? 15 * 60_000;
    this.#expirationFractionMs = options.expirationFractionMs ?? 0;
    this.#region = options.region ?? 'us-east-1';
    this.#allowLoopbackHttpIssuers = options.allowLoopbackHttpIssuers === true;
    for (const p of options.providers ?? []) this.addProvider(p);
    for (const r of options.roles ?? []) this.addRole(r);
    for (const r of options.chainedRoles ?? []) this.addChainedRole(r);
  }

  /** Listens on 127.0.0.1 (port 0 unless given). */
  static async start(options: FakeStsOptions = {}): Promise<FakeSts> {
    for (const p of options.providers ?? []) checkProviderUrl(p.issuer, options.allowLoopbackHttpIssuers === true);
    let fake: FakeSts | undefined;
    const server = createServer((req, res) => void fake?.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, '127.0.0.1', resolve);
    });
    const { port } = server.address() as AddressInfo;
    fake = new FakeSts(server, `http://127.0.0.1:${port}`, options);
    return fake;
  }

  /** Registers an IAM OIDC provider; throws, as CreateOpenIDConnectProvider refuses, for a URL that is not https:// without a port. */
  addProvider(provider: FakeOidcProvider): void {
    checkProviderUrl(provider.issuer, this.#allowLoopbackHttpIssuers);
    this.#providers.set(provider.issuer, provider);
    this.#verifier = undefined;
  }

  addRole(role: FakeRole): void {
    if (!ROLE_ARN.test(role.arn)) throw new Error(`not an IAM role ARN: ${role.arn}`);
    this.#roles.set(role.arn, role);
  }

  addChainedRole(role: FakeChainedRole): void {
    if (!ROLE_ARN.test(role.arn)) throw new Error(`not an IAM role ARN: ${role.arn}`);
    this.#chainedRoles.set(role.arn, role);
  }

  /** Faults answered instead of (or, for delayMs, before) the next AssumeRoleWithWebIdentity requests, one each. */
  injectFaults(faults: readonly StsFault[]): void {
    this.#faults.push(...faults);
  }

  /** Drops faults not yet served: STS is back. */
  clearFaults(): void {
    this.#faults = [];
  }

  pendingFaults(): number {
    return this.#faults.length;
  }

  /** Every credential issued so far. */
  issued(): IssuedCredential[] {
    return [...this.#issued.values()];
  }

  async close(): Promise<void> {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomUUID();
    try {
      const body = await readBody(req, MAX_BODY);
      if (!body) throw new StsError(413, 'RequestEntityTooLarge', 'Request body too large');
      const url = new URL(req.url ?? '/', 'http://sts');
      const params = new URLSearchParams(url.search);
      const contentType = req.headers['content-type'] ?? '';
      if (req.method === 'POST' && contentType.startsWith('application/x-www-form-urlencoded')) {
        for (const [k, v] of new URLSearchParams(body.toString('utf8'))) params.append(k, v);
      }
      if (url.pathname !== '/')
        throw new StsError(404, 'UnknownOperationException', `no such resource: ${url.pathname}`);
      const action = params.get('Action');
      if (!action) throw new StsError(400, 'MissingAction', 'Missing Action');
      if (params.get('Version') !== '2011-06-15')
        throw new StsError(
          400,
          'InvalidAction',
          `Could not find operation ${action} for version ${params.get('Version') ?? 'NO_VERSION_SPECIFIED'}`,
        );
      if (action === 'AssumeRoleWithWebIdentity') {
        this.stats.assumeRoleRequests += 1;
        const fault = this.#faults.shift();
        if (fault) {
          this.stats.faultsServed += 1;
          if ('delayMs' in fault) await this.#sleep(fault.delayMs, req);
          else if ('garbage' in fault)
            return void res
              .writeHead(200, { 'content-type': 'text/xml', 'x-amzn-requestid': requestId })
              .end('<<garbage ]]> not xml');
          else if ('reset' in fault) return void req.socket.destroy();
          else throw faultError(fault);
        }
        if (res.destroyed) return;
        const xml = await this.#assumeRoleWithWebIdentity(params, requestId);
        this.requestIds.push(requestId);
        res.writeHead(200, { 'content-type': 'text/xml', 'x-amzn-requestid': requestId }).end(xml);
      } else if (action === 'AssumeRole') {
        this.stats.chainedAssumeRoleRequests += 1;
        const xml = this.#assumeRole(params, this.#authenticate(req, body), requestId);
        res.writeHead(200, { 'content-type': 'text/xml', 'x-amzn-requestid': requestId }).end(xml);
      } else if (action === 'GetCallerIdentity') {
        this.stats.callerIdentityRequests += 1;
        const xml = this.#getCallerIdentity(req, body, requestId);
        res.writeHead(200, { 'content-type': 'text/xml', 'x-amzn-requestid': requestId }).end(xml);
      } else {
        throw new StsError(400, 'InvalidAction', `Could not find operation ${action} for version 2011-06-15`);
      }
    } catch (thrown) {
      const e =
        thrown instanceof StsError ? thrown : new StsError(500, 'InternalFailure', 'An internal error has occurred');
      this.stats.errors[e.code] = (this.stats.errors[e.code] ?? 0) + 1;
      if (res.destroyed || res.headersSent) return;
      res
        .writeHead(e.status, { 'content-type': 'text/xml', 'x-amzn-requestid': requestId })
        .end(errorXml({ type: e.status >= 500 ? 'Receiver' : 'Sender', code: e.code, message: e.message, requestId }));
    }
  }

  async #assumeRoleWithWebIdentity(params: URLSearchParams, requestId: string): Promise<string> {
    const roleArn = params.get('RoleArn') ?? '';
    const sessionName = params.get('RoleSessionName') ?? '';
    const token = params.get('WebIdentityToken') ?? '';
    const durationParam = params.get('DurationSeconds');
    const duration = validateCommon(roleArn, sessionName, durationParam, (problems) => {
      if (token.length < 4 || token.length > 20000)
        problems.push(
          `Value at 'webIdentityToken' failed to satisfy constraint: Member must have length between 4 and 20000`,
        );
    });
    const arn = ROLE_ARN.exec(roleArn);
    if (!arn) throw new StsError(400, 'ValidationError', 'Request ARN is invalid');

    let iss: unknown;
    try {
      iss = decodeJwt(token).iss;
    } catch {
      throw new StsError(
        400,
        'InvalidIdentityToken',
        'The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)',
      );
    }
    const provider = typeof iss === 'string' ? this.#providers.get(iss) : undefined;
    if (!provider)
      throw new StsError(
        400,
        'InvalidIdentityToken',
        `No OpenIDConnect provider found in your account for ${String(iss)}`,
      );
    let claims: Awaited<ReturnType<OidcVerifier['verify']>>;
    try {
      claims = await this.#oidc().verify(token, provider.audiences);
    } catch (thrown) {
      throw verificationError(thrown, this.#clock.now());
    }
    const tokenAuds = Array.isArray(claims.aud) ? claims.aud : [claims.aud ?? ''];
    const audience = tokenAuds.find((a) => provider.audiences.includes(a)) ?? '';

    const role = this.#roles.get(roleArn);
    const trusted =
      role !== undefined &&
      role.issuer === claims.iss &&
      tokenAuds.includes(role.audience) &&
      (role.subject === undefined || globMatch(role.subject, claims.sub));
    if (!role || !trusted)
      throw new StsError(403, 'AccessDenied', 'Not authorized to perform sts:AssumeRoleWithWebIdentity');
    const tagged = checkWebIdentityTags(claims);
    if (!tagged.ok) throw new StsError(tagged.status, tagged.code, tagged.message);
    const { tags, transitiveTagKeys, sourceIdentity, packedPolicySize } = tagged.value;
    const tagCount = Object.keys(tags).length;
    if (tagCount > 0 && !role.allowTagSession)
      throw new StsError(403, 'AccessDenied', 'Not authorized to perform sts:TagSession');
    if (sourceIdentity !== undefined && !role.allowSetSourceIdentity)
      throw new StsError(403, 'AccessDenied', 'Not authorized to perform sts:SetSourceIdentity');
    for (const [key, value] of Object.entries(role.requestTags ?? {})) {
      if (tags[key] !== value)
        throw new StsError(403, 'AccessDenied', 'Not authorized to perform sts:AssumeRoleWithWebIdentity');
    }
    if (duration > (role.maxSessionDurationSeconds ?? 3600))
      throw new StsError(
        400,
        'ValidationError',
        'The requested DurationSeconds exceeds the MaxSessionDuration set for this role.',
      );

    const credential = this.#mint(arn, roleArn, sessionName, duration * 1000 + this.#expirationFractionMs, {
      subject: claims.sub,
      sessionTags: tags,
      transitiveTagKeys,
      sourceIdentity,
    });
    this.stats.assumeRoleSuccesses += 1;
    this.stats.lastSessionName = sessionName;
    this.stats.lastSubject = claims.sub;
    this.stats.lastAudience = audience;
    this.stats.lastDurationSeconds = duration;
    return assumeRoleWithWebIdentityXml({
      ...credential,
      audience,
      provider: claims.iss,
      requestId,
      ...(tagCount > 0 ? { packedPolicySize } : {}),
    });
  }

  #getCallerIdentity(req: IncomingMessage, body: Buffer, requestId: string): string {
    const credential = this.#authenticate(req, body);
    this.stats.signaturesVerified += 1;
    return getCallerIdentityXml({
      arn: credential.assumedRoleArn,
      userId: credential.assumedRoleId,
      account: credential.account,
      requestId,
    });
  }

  /**
   * sts:AssumeRole signed with a session this stand-in issued: the target's trust policy must name the
   * caller's role, and a chained session lasts at most one hour (DurationSeconds above that is refused).
   */
  #assumeRole(params: URLSearchParams, caller: IssuedCredential, requestId: string): string {
    const roleArn = params.get('RoleArn') ?? '';
    const sessionName = params.get('RoleSessionName') ?? '';
    const durationParam = params.get('DurationSeconds');
    const duration = validateCommon(roleArn, sessionName, durationParam);
    const arn = ROLE_ARN.exec(roleArn);
    if (!arn) throw new StsError(400, 'ValidationError', 'Request ARN is invalid');
    const role = this.#chainedRoles.get(roleArn);
    if (!role?.trustedRoles.includes(caller.roleArn)) {
      throw new StsError(
        403,
        'AccessDenied',
        `User: ${caller.assumedRoleArn} is not authorized to perform: sts:AssumeRole on resource: ${roleArn}`,
      );
    }
    if (duration > 3600)
      throw new StsError(
        400,
        'ValidationError',
        'The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.',
      );
    if (duration > (role.maxSessionDurationSeconds ?? 3600))
      throw new StsError(
        400,
        'ValidationError',
        'The requested DurationSeconds exceeds the MaxSessionDuration set for this role.',
      );
    const credential = this.#mint(arn, roleArn, sessionName, duration * 1000, {
      subject: caller.subject,
      // Transitive tags and the source identity pass along a role chain.
      sessionTags: Object.fromEntries(
        Object.entries(caller.sessionTags).filter(([k]) => caller.transitiveTagKeys.includes(k)),
      ),
      transitiveTagKeys: caller.transitiveTagKeys,
      sourceIdentity: caller.sourceIdentity,
    });
    this.stats.chainedAssumeRoleSuccesses += 1;
    this.stats.lastChainedFrom = caller.assumedRoleArn;
    return assumeRoleXml({ ...credential, requestId });
  }

  /** A new session for `roleArn` (matched by ROLE_ARN), kept until it expires; expired ones are dropped. */
  #mint(
    arn: RegExpExecArray,
    roleArn: string,
    sessionName: string,
    lifeMs: number,
    identity: Pick<IssuedCredential, 'subject' | 'sessionTags' | 'transitiveTagKeys' | 'sourceIdentity'>,
  ): IssuedCredential {
    const [, partition, account, roleName] = arn as unknown as [string, string, string, string];
    const now = Math.floor(this.#clock.now() / 1000) * 1000;
    const credential: IssuedCredential = {
      accessKeyId: `ASIA${randomBase32(16)}`,
      secretAccessKey: randomBytes(30).toString('base64'),
      sessionToken: `IQoJb3JpZ2luX2Vj${randomBytes(300).toString('base64')}`,
      expiration: now + lifeMs,
      account,
      assumedRoleArn: `arn:${partition}:sts::${account}:assumed-role/${roleName}/${sessionName}`,
      assumedRoleId: `${roleId(roleArn)}:${sessionName}`,
      roleArn,
      sessionName,
      ...identity,
    };
    for (const [key, c] of this.#issued) if (c.expiration <= now) this.#issued.delete(key);
    this.#issued.set(credential.accessKeyId, credential);
    return credential;
  }

  /** The session a SigV4-signed request was signed with, verified with the secret this stand-in issued for it. */
  #authenticate(req: IncomingMessage, body: Buffer): IssuedCredential {
    const header = req.headers.authorization;
    if (header === undefined)
      throw new StsError(403, 'MissingAuthenticationToken', 'Request is missing Authentication Token');
    const auth = parseAuthorization(header);
    if (!auth)
      throw new StsError(
        400,
        'IncompleteSignature',
        "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.",
      );
    const amzDateHeader = req.headers['x-amz-date'];
    const amzDate = typeof amzDateHeader === 'string' ? amzDateHeader : undefined;
    const signedAt = parseAmzDate(amzDate);
    if (amzDate === undefined || signedAt === undefined)
      throw new StsError(
        400,
        'IncompleteSignature',
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
      );
    if (!auth.signedHeaders.includes('host') || !auth.signedHeaders.includes('x-amz-date'))
      throw new StsError(
        403,
        'SignatureDoesNotMatch',
        "'Host' and 'X-Amz-Date' must be SignedHeaders in the AWS Authorization.",
      );
    if (auth.service !== 'sts')
      throw new StsError(403, 'SignatureDoesNotMatch', "Credential should be scoped to correct service: 'sts'.");
    if (auth.region !== this.#region)
      throw new StsError(
        403,
        'SignatureDoesNotMatch',
        `Credential should be scoped to a valid region, not '${auth.region}'.`,
      );
    if (!amzDate.startsWith(auth.date))
      throw new StsError(
        403,
        'SignatureDoesNotMatch',
        `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${auth.date}' != '${amzDate.slice(0, 8)}'`,
      );
    const now = this.#clock.now();
    if (Math.abs(now - signedAt) > this.#maxSkewMs)
      throw new StsError(
        403,
        'SignatureDoesNotMatch',
        `Signature expired: ${amzDate} is now earlier than ${stsTimestamp(now - this.#maxSkewMs)}`,
      );
    const credential = this.#issued.get(auth.accessKeyId);
    const presentedToken = req.headers['x-amz-security-token'];
    if (
      !credential ||
      typeof presentedToken !== 'string' ||
      !constantTimeEquals(presentedToken, credential.sessionToken)
    ) {
      throw new StsError(403, 'InvalidClientTokenId', 'The security token included in the request is invalid.');
    }
    if (now >= credential.expiration)
      throw new StsError(403, 'ExpiredToken', 'The security token included in the request is expired');
    // A session token outside the signature could be swapped in transit; the SDKs and the CLI always sign it.
    if (!auth.signedHeaders.includes('x-amz-security-token'))
      throw new StsError(
        403,
        'SignatureDoesNotMatch',
        "'X-Amz-Security-Token' must be a SignedHeader in the AWS Authorization when temporary credentials are used.",
      );
    const expected = expectedSignature(
      { method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body },
      auth,
      amzDate,
      credential.secretAccessKey,
    );
    if (!signaturesEqual(expected, auth.signature)) {
      throw new StsError(
        403,
        'SignatureDoesNotMatch',
        'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
      );
    }
    return credential;
  }

  #oidc(): OidcVerifier {
    this.#verifier ??= new OidcVerifier({
      issuers: [...this.#providers.keys()],
      allowLoopbackHttpIssuers: this.#allowLoopbackHttpIssuers,
      now: () => this.#clock.now(),
    });
    return this.#verifier;
  }

  #sleep(ms: number, req: IncomingMessage): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#timers.delete(timer);
        req.socket.off('close', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#timers.add(timer);
      req.socket.once('close', done);
    });
  }
}

/** IAM's CreateOpenIDConnectProvider refuses a URL that is not https:// without a port. */
function checkProviderUrl(issuer: string, allowLoopbackHttp: boolean): void {
  const problem = issuerUrlProblem(issuer, allowLoopbackHttp);
  if (problem) throw new Error(`IAM refuses this OIDC provider: ${problem}`);
}

function faultError(fault: { status: number; code?: string; message?: string }): StsError {
  const code =
    fault.code ??
    (fault.status === 503 ? 'ServiceUnavailable' : fault.status >= 500 ? 'InternalFailure' : 'Throttling');
  const message =
    fault.message ??
    (code === 'Throttling'
      ? 'Rate exceeded'
      : code === 'ServiceUnavailable'
        ? 'Service is unavailable'
        : 'An internal error has occurred');
  return new StsError(fault.status, code, message);
}

function verificationError(thrown: unknown, now: number): StsError {
  if (!(thrown instanceof OidcVerificationError))
    return new StsError(500, 'InternalFailure', 'An internal error has occurred');
  switch (thrown.reason) {
    case 'discovery_failed':
      return new StsError(
        400,
        'IDPCommunicationError',
        "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements",
      );
    case 'expired':
      return new StsError(
        400,
        'ExpiredTokenException',
        `Token expired: current date/time ${stsTimestamp(now)} must be before the expiration date/time of the token`,
      );
    case 'wrong_audience':
      return new StsError(400, 'InvalidIdentityToken', 'Incorrect token audience');
    case 'bad_signature':
    case 'unknown_key':
      return new StsError(400, 'InvalidIdentityToken', 'The web identity token signature could not be verified');
    case 'unsupported_algorithm':
      return new StsError(
        400,
        'InvalidIdentityToken',
        `The web identity token is signed with an unsupported algorithm: ${thrown.message}`,
      );
    default:
      return new StsError(400, 'InvalidIdentityToken', `The web identity token is invalid: ${thrown.message}`);
  }
}

/** IAM `StringLike`: `*` any run of characters, `?` exactly one. */
export function globMatch(pattern: string, value: string): boolean {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 's').test(value);
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function randomBase32(length: number): string {
  return [...randomBytes(length)].map((b) => BASE32[b % 32]).join('');
}

/** A stable unique ID for a role, shaped like IAM's (AROA + 17 characters). */
function roleId(arn: string): string {
  const digest = createHash('sha256').update(arn).digest();
  return `AROA${[...digest.subarray(0, 17)].map((b) => BASE32[b % 32]).join('')}`;
}

function constantTimeEquals(a: string, b: string): boolean {
  const x = createHash('sha256').update(a).digest();
  const y = createHash('sha256').update(b).digest();
  return timingSafeEqual(x, y) && a.length === b.length;
}

/**
 * What STS validates on every AssumeRole* call (RoleArn, RoleSessionName, DurationSeconds), plus the
 * operation's own checks: all problems in one ValidationError, as STS lists them. Returns the duration.
 */
function validateCommon(
  roleArn: string,
  sessionName: string,
  durationParam: string | null,
  more?: (problems: string[]) => void,
): number {
  const problems: string[] = [];
  if (roleArn.length < 20 || roleArn.length > 2048)
    problems.push(
      `Value '${roleArn}' at 'roleArn' failed to satisfy constraint: Member must have length between 20 and 2048`,
    );
  if (!SESSION_NAME.test(sessionName))
    problems.push(
      `Value '${sessionName}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and have length between 2 and 64`,
    );
  more?.(problems);
  const duration = durationParam === null ? 3600 : Number(durationParam);
  if (!Number.isInteger(duration) || duration < 900 || duration > 43200)
    problems.push(
      `Value '${durationParam}' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200`,
    );
  if (problems.length > 0)
    throw new StsError(
      400,
      'ValidationError',
      `${problems.length} validation error${problems.length > 1 ? 's' : ''} detected: ${problems.join('; ')}`,
    );
  return duration;
}
