// The emulated AWS surfaces (docs/aws.md "Container credentials", "IMDSv2"): the container-credentials
// endpoint (`/v1/credentials`, the per-pod token) and IMDSv2 (`/latest/...`, session tokens), byte-compatible
// with what the SDKs parse. They answer from the credential lookup only, never calling AWS.
import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Clock } from '../../base/clock.ts';
import type { Secret } from '../../base/secret.ts';
import { retryAfterSeconds, TokenBucket } from '../../base/token-bucket.ts';
import { type CredentialLookup, SINGLE } from '../../cache/credential-cache.ts';
import { secretMatcher } from '../../http/guards.ts';
import { lookupProblem, type MetadataRequest, type Reply, type Surface } from '../contract.ts';
import { PerCredential } from '../per-credential.ts';
import { type AwsCredentials, accountFromArn, awsTimestamp, roleNameFromArn } from './credential.ts';
import { CONTAINER_CREDENTIALS_PATH, containerCredentialsPath } from './env.ts';
import { IMDS_TOKEN_PATH, ImdsTokens, parseTtl } from './imds-tokens.ts';
import {
  containerCredentialsJson,
  containerError,
  containerProblem,
  imdsCredentialsJson,
  imdsProblem,
  imdsText,
} from './responses.ts';

export interface ContainerSurfaceOptions {
  /** Keyed by SINGLE (the pod's role) and by the name of each container with a role of its own. */
  readonly credentials: CredentialLookup<AwsCredentials>;
  /** The container-credentials token written to the pod's token file. */
  readonly authToken: Secret;
  /** Containers with their own role (aws.containers): each its own path and token, and only its own role there. */
  readonly containers?: ReadonlyArray<{ readonly name: string; readonly authToken: Secret }>;
}

const JSON_TYPE = { 'content-type': 'application/json' };

/**
 * /v1/credentials answers the pod's token with the pod's role; /v1/credentials/<container> answers that
 * container's token with that container's role. Each path knows only its own token (compared in constant
 * time): another container's token, or the pod's, on a path is refused like any wrong token.
 */
export function containerSurface(o: ContainerSurfaceOptions): Surface {
  const makeRoute = (key: string, token: Secret) => ({
    key,
    tokenMatches: secretMatcher(token.reveal()),
    body: bodyCache(containerCredentialsJson),
  });
  const routes = new Map([[CONTAINER_CREDENTIALS_PATH, makeRoute(SINGLE, o.authToken)]]);
  for (const c of o.containers ?? []) routes.set(containerCredentialsPath(c.name), makeRoute(c.name, c.authToken));
  return {
    name: 'aws-container',
    claims: (path) => routes.has(path),
    problem: (problem) => containerProblem(problem),
    handle(req: MetadataRequest, res: ServerResponse, reply: Reply) {
      const route = routes.get(req.path);
      if (route === undefined) return reply(res, containerError(404, 'NotFound', 'no such credentials path'));
      if (req.method !== 'GET' && req.method !== 'HEAD')
        return reply(res, containerError(405, 'MethodNotAllowed', 'use GET', { allow: 'GET' }));
      const presented = req.headers.authorization;
      if (presented === undefined || presented === '')
        return reply(
          res,
          containerError(
            401,
            'Unauthorized',
            'the Authorization header with the token from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE is required',
          ),
        );
      if (!route.tokenMatches(presented))
        return reply(res, containerError(403, 'AccessDenied', 'the Authorization token is not valid for this path'));
      const lookup = o.credentials.peek(route.key);
      if (!lookup.ok) return reply(res, containerProblem(lookupProblem(lookup)));
      reply(res, { status: 200, headers: JSON_TYPE, body: route.body(lookup.value) });
    },
  };
}

export interface RelativeUriSurfaceOptions {
  readonly credentials: CredentialLookup<AwsCredentials>;
  /** aws.containerRelativeUri: /v2/credentials/<per-pod secret>. */
  readonly relativeUri: string;
}

/** The folder of every aws.containerRelativeUri (config/aws.ts): what this surface claims. */
const RELATIVE_URI_FOLDER = '/v2/credentials/';

/**
 * The container-credentials endpoint at AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (link-local mode, on 169.254.170.2):
 * SDKs that know only that variable send no token, so the per-pod path is the secret, compared in constant time.
 * A token, when an SDK sends one, is neither needed nor checked. Same body as the full-URI endpoint.
 */
export function relativeUriSurface(o: RelativeUriSurfaceOptions): Surface {
  const pathMatches = secretMatcher(o.relativeUri);
  const body = bodyCache(containerCredentialsJson);
  return {
    name: 'aws-container',
    claims: (path) => path.startsWith(RELATIVE_URI_FOLDER),
    problem: (problem) => containerProblem(problem),
    handle(req: MetadataRequest, res: ServerResponse, reply: Reply) {
      if (!pathMatches(req.path)) return reply(res, containerError(404, 'NotFound', 'no credentials at this path'));
      if (req.method !== 'GET' && req.method !== 'HEAD')
        return reply(res, containerError(405, 'MethodNotAllowed', 'use GET', { allow: 'GET' }));
      const lookup = o.credentials.peek(SINGLE);
      if (!lookup.ok) return reply(res, containerProblem(lookupProblem(lookup)));
      reply(res, { status: 200, headers: JSON_TYPE, body: body(lookup.value) });
    },
  };
}

export interface ImdsSurfaceOptions {
  readonly credentials: CredentialLookup<AwsCredentials>;
  readonly roleArn: string;
  readonly region: string;
  readonly clock: Clock;
  /** Most live session tokens kept. Default 1024. */
  readonly tokenLimit?: number;
  /** Session-token PUTs allowed in a burst, and per second after it. Defaults 64 and 2. */
  readonly tokenBurst?: number;
  readonly tokensPerSecond?: number;
}

export function imdsSurface(o: ImdsSurfaceOptions): Surface {
  const tokens = new ImdsTokens(o.clock, o.tokenLimit ?? 1024);
  const issuing = new TokenBucket({
    capacity: o.tokenBurst ?? 64,
    refillPerSecond: o.tokensPerSecond ?? 2,
    clock: o.clock,
  });
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
  const identityDocument = JSON.stringify(
    { accountId: account, availabilityZone: zone, region: o.region, version: '2017-09-30' },
    null,
    2,
  );
  const instanceProfileId = `AIPA${createHash('sha256').update(o.roleArn).digest('hex').slice(0, 17).toUpperCase()}`;
  const body = bodyCache(imdsCredentialsJson);
  const isTokenPath = (path: string): boolean => path === IMDS_TOKEN_PATH || path === `${IMDS_TOKEN_PATH}/`;

  return {
    name: 'aws-imds',
    claims: (path) => path === '/latest' || path.startsWith('/latest/'),
    problem: (problem, req) => imdsProblem(problem, isTokenPath(req.path), o.clock.now()),
    handle(req: MetadataRequest, res: ServerResponse, reply: Reply) {
      const path = req.path;
      if (isTokenPath(path)) {
        if (req.method !== 'PUT') return reply(res, imdsText(405, 'Method Not Allowed', { allow: 'PUT' }));
        const ttl = parseTtl(req.headers['x-aws-ec2-metadata-token-ttl-seconds']);
        if (ttl === undefined) return reply(res, imdsText(400, 'Bad Request'));
        const take = issuing.take();
        if (!take.ok)
          return reply(
            res,
            imdsProblem(
              { kind: 'throttled', retryAfterSeconds: retryAfterSeconds(take.retryAfterMs) },
              true,
              o.clock.now(),
            ),
          );
        return reply(res, imdsText(200, tokens.issue(ttl), { 'x-aws-ec2-metadata-token-ttl-seconds': String(ttl) }));
      }
      if (req.method !== 'GET' && req.method !== 'HEAD')
        return reply(res, imdsText(405, 'Method Not Allowed', { allow: 'GET, HEAD' }));
      const remaining = tokens.remainingSeconds(req.headers['x-aws-ec2-metadata-token']);
      // IMDSv2 only: no session token (or an expired one) is 401, which makes SDKs fetch a token.
      if (remaining === undefined) return reply(res, imdsText(401, 'Unauthorized'));
      const ttlHeader = { 'x-aws-ec2-metadata-token-ttl-seconds': String(remaining) };
      if (credsPaths.has(path)) {
        const lookup = o.credentials.peek(SINGLE);
        if (!lookup.ok) {
          const answer = imdsProblem(lookupProblem(lookup), false, o.clock.now());
          return reply(res, { ...answer, headers: { ...answer.headers, ...ttlHeader } });
        }
        return reply(res, imdsText(200, body(lookup.value), ttlHeader));
      }
      if (path === '/latest/meta-data/iam/info' || path === '/latest/meta-data/iam/info/') {
        const info = {
          Code: 'Success',
          LastUpdated: awsTimestamp(new Date(o.clock.now())),
          InstanceProfileArn: `arn:aws:iam::${account}:instance-profile/${roleName}`,
          InstanceProfileId: instanceProfileId,
        };
        return reply(res, imdsText(200, JSON.stringify(info, null, 2), ttlHeader));
      }
      if (
        path === '/latest/dynamic/instance-identity/document' ||
        path === '/latest/dynamic/instance-identity/document/'
      ) {
        return reply(res, imdsText(200, identityDocument, ttlHeader));
      }
      const listing = listings[path.endsWith('/') ? path.slice(0, -1) : path];
      if (listing !== undefined) return reply(res, imdsText(200, listing, ttlHeader));
      reply(res, imdsText(404, 'Not Found', ttlHeader));
    },
  };
}

/** A credential's body serialized once, as bytes (the hot path answers the same bytes until the next refresh). */
function bodyCache(render: (c: AwsCredentials) => string): (c: AwsCredentials) => Buffer {
  const bodies = new PerCredential<AwsCredentials, Buffer>();
  return (creds) => bodies.get(creds, 0) ?? bodies.keep(creds, 0, Buffer.from(render(creds)));
}
