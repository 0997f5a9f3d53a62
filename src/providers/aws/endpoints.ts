// The emulated AWS surfaces on the loopback metadata listener: container credentials (`/v1/credentials`)
// and IMDSv2 (`/latest/...`), byte-compatible with what the SDKs parse (reference/aws.md §1, §2, §7).
// Answers from the cache only; never calls AWS on the request path.
import { createHash, hash, randomBytes } from 'node:crypto';
import { Router, type Request, type Response } from 'express';
import type { Lookup } from '../../cache/refreshing-credential.ts';
import type { Clock } from '../../base/clock.ts';
import type { Metrics } from '../../ops/metrics.ts';
import type { Secret } from '../../base/secret.ts';
import { hostIsLoopback, isForwarded, secretMatcher } from '../../http/guards.ts';
import { CONTAINER_CREDENTIALS_PATH } from './env.ts';
import { accountFromArn, awsTimestamp, roleNameFromArn, type AwsCredentials } from './credentials.ts';

export const IMDS_TOKEN_PATH = '/latest/api/token';
export const IMDS_MAX_TTL_SECONDS = 21600;

export interface AwsEndpointOptions {
  /** Where credentials come from; `get()` must not touch the network. */
  readonly credentials: { get(): Lookup<AwsCredentials> };
  /** The container-credentials token written to the token file. */
  readonly authToken: Secret;
  readonly roleArn: string;
  readonly region: string;
  readonly imds: boolean;
  /** Port of the metadata listener, for the loopback Host check. */
  readonly metadataPort: number;
  readonly clock: Clock;
  readonly metrics?: Metrics | undefined;
  /** Most live IMDSv2 session tokens kept; the one expiring first is dropped beyond it. Default 1024. */
  readonly imdsTokenLimit?: number;
}

type Surface = 'aws-container' | 'aws-imds';

export function awsRouter(options: AwsEndpointOptions): Router {
  const router = Router();
  const container = containerHandler(options, sender(options.metrics, 'aws-container'));
  const imds = options.imds ? imdsHandler(options, sender(options.metrics, 'aws-imds')) : undefined;
  router.use((req, res, next) => {
    const path = req.path;
    if (path === CONTAINER_CREDENTIALS_PATH) return container(req, res);
    if (imds && (path === '/latest' || path.startsWith('/latest/'))) return imds(req, res, path);
    next();
  });
  return router;
}

type Send = (res: Response, status: number, headers: Record<string, string>, body: string) => void;

/** Writes an answer and counts it by surface and status; label children are cached (this is the hot path). */
function sender(metrics: Metrics | undefined, surface: Surface): Send {
  const children = new Map<number, { inc(): void }>();
  return (res, status, headers, body) => {
    res.writeHead(status, headers).end(body);
    if (!metrics) return;
    let child = children.get(status);
    if (!child) {
      child = metrics.requests.labels({ surface, status: String(status) });
      children.set(status, child);
    }
    child.inc();
  };
}

// ---- container credentials (reference/aws.md §1, §7.1-7.3) ----

const JSON_TYPE = { 'content-type': 'application/json' };

function containerHandler(o: AwsEndpointOptions, send: Send): (req: Request, res: Response) => void {
  const tokenMatches = secretMatcher(o.authToken.reveal());
  let cached: { creds: AwsCredentials; body: string } | undefined;
  const body = (creds: AwsCredentials): string => {
    if (cached?.creds !== creds) cached = { creds, body: containerCredentialsJson(creds) };
    return cached.body;
  };
  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return containerError(send, res, 405, 'MethodNotAllowed', 'use GET', { allow: 'GET' });
    if (!hostIsLoopback(req.headers.host, o.metadataPort)) return containerError(send, res, 403, 'AccessDenied', 'the Host header must name the loopback metadata listener');
    if (isForwarded(req)) return containerError(send, res, 403, 'AccessDenied', 'forwarded requests are refused');
    const presented = req.headers.authorization;
    if (presented === undefined || presented === '') return containerError(send, res, 401, 'Unauthorized', 'the Authorization header with the token from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE is required');
    if (!tokenMatches(presented)) return containerError(send, res, 403, 'AccessDenied', 'the Authorization token is not valid');
    const lookup = o.credentials.get();
    if (!lookup.ok) {
      return containerError(send, res, 503, 'CredentialsUnavailable', lookup.error.message, { 'retry-after': String(lookup.retryAfterSeconds) });
    }
    send(res, 200, JSON_TYPE, body(lookup.value));
  };
}

/** The container-credentials JSON: the four fields every SDK requires, plus AccountId and RoleArn. */
export function containerCredentialsJson(c: AwsCredentials): string {
  return JSON.stringify({
    AccessKeyId: c.accessKeyId,
    SecretAccessKey: c.secretAccessKey.reveal(),
    Token: c.sessionToken.reveal(),
    Expiration: awsTimestamp(c.expiration),
    AccountId: c.accountId,
    RoleArn: c.roleArn,
  });
}

/** Errors as Go's endpointcreds decodes them: `{"code","message"}` with Content-Type exactly application/json. */
function containerError(send: Send, res: Response, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  send(res, status, { 'content-type': 'application/json', ...headers }, JSON.stringify({ code, message }));
}

// ---- IMDSv2 (reference/aws.md §2, §7.6) ----

function imdsHandler(o: AwsEndpointOptions, send: Send): (req: Request, res: Response, path: string) => void {
  const tokens = new ImdsTokens(o.clock, o.imdsTokenLimit ?? 1024);
  const roleName = roleNameFromArn(o.roleArn);
  const account = accountFromArn(o.roleArn);
  const zone = `${o.region}a`;
  const credsPaths = new Set([
    `/latest/meta-data/iam/security-credentials/${roleName}`,
    `/latest/meta-data/iam/security-credentials/${roleName}/`,
    `/latest/meta-data/iam/security-credentials-extended/${roleName}`,
    `/latest/meta-data/iam/security-credentials-extended/${roleName}/`,
  ]);
  const listings: Record<string, string> = {
    '/latest': 'dynamic\nmeta-data',
    '/latest/meta-data': 'iam/\nplacement/',
    '/latest/meta-data/iam': 'info\nsecurity-credentials/',
    '/latest/meta-data/iam/security-credentials': roleName,
    '/latest/meta-data/iam/security-credentials-extended': roleName,
    '/latest/meta-data/placement': 'availability-zone\nregion',
    '/latest/meta-data/placement/region': o.region,
    '/latest/meta-data/placement/availability-zone': zone,
    '/latest/dynamic': 'instance-identity/',
    '/latest/dynamic/instance-identity': 'document',
  };
  const identityDocument = JSON.stringify({ accountId: account, availabilityZone: zone, region: o.region, version: '2017-09-30' }, null, 2);
  const instanceProfileId = `AIPA${createHash('sha256').update(o.roleArn).digest('hex').slice(0, 17).toUpperCase()}`;
  let cached: { creds: AwsCredentials; body: string } | undefined;

  return (req, res, path) => {
    if (!hostIsLoopback(req.headers.host, o.metadataPort)) return text(send, res, 403, 'Forbidden');
    const isTokenPath = path === IMDS_TOKEN_PATH || path === `${IMDS_TOKEN_PATH}/`;
    if (isTokenPath) {
      if (req.method !== 'PUT') return text(send, res, 405, 'Method Not Allowed', { allow: 'PUT' });
      // Real IMDS refuses token requests that crossed a proxy (X-Forwarded-For).
      if (isForwarded(req)) return text(send, res, 400, 'Bad Request');
      const ttl = parseTtl(req.headers['x-aws-ec2-metadata-token-ttl-seconds']);
      if (ttl === undefined) return text(send, res, 400, 'Bad Request');
      const issued = tokens.issue(ttl);
      return text(send, res, 200, issued, { 'x-aws-ec2-metadata-token-ttl-seconds': String(ttl) });
    }
    if (isForwarded(req)) return text(send, res, 403, 'Forbidden');
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(send, res, 405, 'Method Not Allowed', { allow: 'GET, HEAD' });
    const remaining = tokens.remainingSeconds(req.headers['x-aws-ec2-metadata-token']);
    // IMDSv2 only: no session token (or an expired one) is 401, which makes SDKs fetch a token.
    if (remaining === undefined) return text(send, res, 401, 'Unauthorized');
    const ttlHeader = { 'x-aws-ec2-metadata-token-ttl-seconds': String(remaining) };
    if (credsPaths.has(path)) {
      const lookup = o.credentials.get();
      if (!lookup.ok) {
        const body = JSON.stringify({ Code: 'CredentialsUnavailable', Message: lookup.error.message, LastUpdated: awsTimestamp(new Date(o.clock.now())) }, null, 2);
        return text(send, res, 503, body, { ...ttlHeader, 'retry-after': String(lookup.retryAfterSeconds) });
      }
      if (cached?.creds !== lookup.value) cached = { creds: lookup.value, body: imdsCredentialsJson(lookup.value) };
      return text(send, res, 200, cached.body, ttlHeader);
    }
    if (path === '/latest/meta-data/iam/info' || path === '/latest/meta-data/iam/info/') {
      const info = { Code: 'Success', LastUpdated: awsTimestamp(new Date(o.clock.now())), InstanceProfileArn: `arn:aws:iam::${account}:instance-profile/${roleName}`, InstanceProfileId: instanceProfileId };
      return text(send, res, 200, JSON.stringify(info, null, 2), ttlHeader);
    }
    if (path === '/latest/dynamic/instance-identity/document' || path === '/latest/dynamic/instance-identity/document/') {
      return text(send, res, 200, identityDocument, ttlHeader);
    }
    const listing = listings[path.endsWith('/') ? path.slice(0, -1) : path];
    if (listing !== undefined) return text(send, res, 200, listing, ttlHeader);
    text(send, res, 404, 'Not Found', ttlHeader);
  };
}

/** The IMDS credentials document (`Code` "Success" is required by Go; `Type` AWS-HMAC; `LastUpdated`). */
export function imdsCredentialsJson(c: AwsCredentials): string {
  return JSON.stringify(
    {
      Code: 'Success',
      LastUpdated: awsTimestamp(c.obtainedAt),
      Type: 'AWS-HMAC',
      AccessKeyId: c.accessKeyId,
      SecretAccessKey: c.secretAccessKey.reveal(),
      Token: c.sessionToken.reveal(),
      Expiration: awsTimestamp(c.expiration),
      AccountId: c.accountId,
    },
    null,
    2,
  );
}

function text(send: Send, res: Response, status: number, body: string, headers: Record<string, string> = {}): void {
  send(res, status, { 'content-type': 'text/plain', ...headers }, body);
}

/** `x-aws-ec2-metadata-token-ttl-seconds`: a whole number 1–21600, required. */
export function parseTtl(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string' || !/^\d{1,5}$/.test(value.trim())) return undefined;
  const ttl = Number(value.trim());
  return ttl >= 1 && ttl <= IMDS_MAX_TTL_SECONDS ? ttl : undefined;
}

/** IMDSv2 session tokens: random, kept by SHA-256 (the lookup reveals nothing), expiring, bounded. */
export class ImdsTokens {
  readonly #clock: Clock;
  readonly #limit: number;
  readonly #byHash = new Map<string, number>();

  constructor(clock: Clock, limit: number) {
    this.#clock = clock;
    this.#limit = limit;
  }

  issue(ttlSeconds: number): string {
    const now = this.#clock.now();
    if (this.#byHash.size >= this.#limit) {
      for (const [key, expiresAt] of this.#byHash) if (expiresAt <= now) this.#byHash.delete(key);
      while (this.#byHash.size >= this.#limit) {
        let first: [string, number] | undefined;
        for (const entry of this.#byHash) if (!first || entry[1] < first[1]) first = entry;
        if (!first) break;
        this.#byHash.delete(first[0]);
      }
    }
    const token = randomBytes(40).toString('base64url');
    this.#byHash.set(digest(token), now + ttlSeconds * 1000);
    return token;
  }

  /** Whole seconds the presented token has left, or undefined when it is missing, unknown or expired. */
  remainingSeconds(presented: string | string[] | undefined): number | undefined {
    if (typeof presented !== 'string' || presented === '') return undefined;
    const key = digest(presented);
    const expiresAt = this.#byHash.get(key);
    if (expiresAt === undefined) return undefined;
    const left = expiresAt - this.#clock.now();
    if (left <= 0) {
      this.#byHash.delete(key);
      return undefined;
    }
    return Math.ceil(left / 1000);
  }

  get size(): number {
    return this.#byHash.size;
  }
}

function digest(token: string): string {
  return hash('sha256', token, 'base64');
}
