// The AWS exchange: a JWT-SVID for `aws.audience` → STS AssumeRoleWithWebIdentity → session credentials
// (reference/aws.md §4, §7.7). Retrying is the cache's job, so the SDK makes one attempt per call.
import { createHash } from 'node:crypto';
import { AssumeRoleWithWebIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import type { Clock } from '../../base/clock.ts';
import type { AwsConfig } from '../../config/aws.ts';
import { ConnectorError } from '../../base/errors.ts';
import type { Logger } from '../../ops/logger.ts';
import { Secret } from '../../base/secret.ts';
import type { JwtSource } from '../../spiffe/source.ts';
import { accountFromAssumedRoleArn, type AwsCredentials } from './credentials.ts';

export interface StsExchangeOptions {
  readonly config: AwsConfig;
  readonly jwt: JwtSource;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Per-request timeout given to the SDK's HTTP handler, default 10 s. */
  readonly requestTimeoutMs?: number;
  /** How many InvalidIdentityToken answers in a row are retried (JWKS propagation) before giving up. Default 3. */
  readonly invalidTokenRetries?: number;
}

const SESSION_NAME_MAX = 64;
const HASH_CHARS = 12;

/**
 * RoleSessionName from a SPIFFE ID: the path with `/` → `.` (trust domain when the path is empty), which
 * stays inside `[\w+=,.@-]` because SPIFFE paths allow only letters, digits, `.`, `-`, `_`. Longer than
 * 64: a readable head, `-`, and 12 hex digits of SHA-256 of the whole ID, so distinct IDs stay distinct.
 */
export function roleSessionName(spiffeId: string): string {
  const m = /^spiffe:\/\/([^/]+)(\/.*)?$/.exec(spiffeId);
  const trustDomain = m?.[1] ?? 'spiffe';
  const path = (m?.[2] ?? '').replace(/^\//, '');
  let name = (path === '' ? trustDomain : path.replace(/\//g, '.')).replace(/[^\w+=,.@-]/g, '_');
  if (name.length < 2) name = `${name}@${trustDomain}`;
  if (name.length <= SESSION_NAME_MAX) return name;
  const hash = createHash('sha256').update(spiffeId).digest('hex').slice(0, HASH_CHARS);
  return `${name.slice(0, SESSION_NAME_MAX - HASH_CHARS - 1)}-${hash}`;
}

/** STS error codes that retrying (with backoff) can fix; reference/aws.md §4 table. */
const RETRYABLE_CODES = new Set([
  'IDPCommunicationError',
  'Throttling',
  'ThrottlingException',
  'RequestLimitExceeded',
  'TooManyRequestsException',
  'InternalFailure',
  'InternalError',
  'ServiceUnavailable',
  'RequestTimeout',
  'RequestTimeoutException',
]);

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED']);

interface SdkErrorShape {
  name?: unknown;
  code?: unknown;
  Code?: unknown;
  message?: unknown;
  $fault?: unknown;
  $metadata?: { httpStatusCode?: unknown };
}

/**
 * Maps what the SDK threw to a ConnectorError with retryability per reference/aws.md §4. InvalidIdentityToken
 * and ExpiredTokenException come back retryable here; StsWebIdentityExchange bounds the first and demands
 * a fresh JWT-SVID for the second.
 */
export function mapStsError(thrown: unknown): ConnectorError {
  if (thrown instanceof ConnectorError) return thrown;
  const e = (thrown !== null && typeof thrown === 'object' ? thrown : {}) as SdkErrorShape;
  const name = typeof e.name === 'string' ? e.name : 'Error';
  const status = typeof e.$metadata?.httpStatusCode === 'number' ? e.$metadata.httpStatusCode : undefined;
  const upstream = { ...(status === undefined ? {} : { upstreamStatus: status }) };
  const detail = typeof e.message === 'string' ? e.message : String(thrown);
  if (typeof e.Code === 'string' || e.$fault === 'client' || e.$fault === 'server') {
    const code = typeof e.Code === 'string' ? e.Code : name.replace(/Exception$/, '');
    const options = { cause: thrown, upstreamCode: code, ...upstream };
    const message = `STS AssumeRoleWithWebIdentity failed: ${code}: ${detail}`;
    if (code === 'InvalidIdentityToken' || code === 'ExpiredTokenException') return new ConnectorError('upstream_rejected', message, { ...options, retryable: true });
    if (RETRYABLE_CODES.has(code) || (status !== undefined && status >= 500)) return new ConnectorError('upstream_unavailable', message, { ...options, retryable: true });
    return new ConnectorError('upstream_rejected', message, { ...options, retryable: false });
  }
  if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) {
    return new ConnectorError('upstream_unavailable', `STS could not be reached: ${e.code}`, { cause: thrown, retryable: true, upstreamCode: e.code });
  }
  if (e.code === 'ETIMEDOUT' || name === 'AbortError' || (name === 'TimeoutError' && e.code === undefined)) {
    return new ConnectorError('timeout', 'STS did not answer in time', { cause: thrown, retryable: true });
  }
  if (status !== undefined && status < 300) {
    return new ConnectorError('upstream_malformed', `STS answered something that is not an AssumeRoleWithWebIdentity response: ${detail.split('\n')[0]}`, { cause: thrown, retryable: true, ...upstream });
  }
  return new ConnectorError('upstream_unavailable', `STS call failed: ${detail.split('\n')[0]}`, { cause: thrown, retryable: true, ...upstream });
}

export class StsWebIdentityExchange {
  readonly #o: StsExchangeOptions;
  readonly #client: STSClient;
  #invalidTokenFailures = 0;
  /** SHA-256 of the JWT-SVID STS last called expired: the same token is not sent again. */
  #expiredToken: string | undefined;

  constructor(options: StsExchangeOptions) {
    this.#o = options;
    const { config } = options;
    const timeout = options.requestTimeoutMs ?? 10_000;
    this.#client = new STSClient({
      region: config.region,
      ...(config.stsEndpoint ? { endpoint: config.stsEndpoint } : {}),
      maxAttempts: 1,
      requestHandler: { requestTimeout: timeout, connectionTimeout: timeout, throwOnRequestTimeout: true },
    });
  }

  /** One exchange. Throws ConnectorError with `retryable` set. */
  async exchange(signal: AbortSignal): Promise<AwsCredentials> {
    const { config, jwt, clock, logger } = this.#o;
    const svid = await jwt.fetchJwtSvid(config.audience, signal);
    const token = svid.token.reveal();
    const fingerprint = createHash('sha256').update(token).digest('hex');
    if (fingerprint === this.#expiredToken) {
      throw new ConnectorError('identity_unavailable', 'STS said the JWT-SVID has expired and no newer one is available yet; waiting for a fresh JWT-SVID', { retryable: false, upstreamCode: 'ExpiredTokenException' });
    }
    const spiffeId = svid.id.toString();
    const sessionName = roleSessionName(spiffeId);
    let output;
    try {
      output = await this.#client.send(
        new AssumeRoleWithWebIdentityCommand({
          RoleArn: config.roleArn,
          RoleSessionName: sessionName,
          WebIdentityToken: token,
          DurationSeconds: config.sessionDurationSeconds,
        }),
        { abortSignal: signal },
      );
    } catch (thrown) {
      throw this.#failed(mapStsError(thrown), fingerprint);
    }
    const c = output.Credentials;
    const assumedRoleArn = output.AssumedRoleUser?.Arn;
    const accountId = assumedRoleArn === undefined ? undefined : accountFromAssumedRoleArn(assumedRoleArn);
    if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !(c.Expiration instanceof Date) || Number.isNaN(c.Expiration.getTime()) || !assumedRoleArn || !accountId) {
      throw new ConnectorError('upstream_malformed', 'STS answered AssumeRoleWithWebIdentity without complete credentials or an assumed-role ARN', { retryable: true });
    }
    this.#invalidTokenFailures = 0;
    this.#expiredToken = undefined;
    logger.debug({ spiffeId, sessionName, assumedRoleArn, expiration: c.Expiration.toISOString() }, 'STS issued credentials');
    return {
      accessKeyId: c.AccessKeyId,
      secretAccessKey: new Secret(c.SecretAccessKey),
      sessionToken: new Secret(c.SessionToken),
      expiration: c.Expiration,
      accountId,
      roleArn: config.roleArn,
      assumedRoleArn,
      sessionName,
      obtainedAt: new Date(clock.now()),
    };
  }

  /** The identity changed: forget the bounded-retry state so the new identity gets its own tries. */
  identityChanged(): void {
    this.#invalidTokenFailures = 0;
  }

  close(): void {
    this.#client.destroy();
  }

  #failed(error: ConnectorError, fingerprint: string): ConnectorError {
    if (error.upstreamCode === 'ExpiredTokenException') {
      // Useless to resend this token; a retry helps only once the source hands out a fresh one.
      this.#expiredToken = fingerprint;
      return error;
    }
    if (error.upstreamCode === 'InvalidIdentityToken') {
      this.#invalidTokenFailures += 1;
      const limit = this.#o.invalidTokenRetries ?? 3;
      if (this.#invalidTokenFailures > limit) {
        return new ConnectorError('upstream_rejected', `${error.message} (${this.#invalidTokenFailures} times in a row; no more quick retries)`, {
          cause: error,
          retryable: false,
          upstreamCode: 'InvalidIdentityToken',
          ...(error.upstreamStatus === undefined ? {} : { upstreamStatus: error.upstreamStatus }),
        });
      }
      return error;
    }
    return error;
  }
}
