// The AWS web-identity exchange: a JWT-SVID for `aws.audience` → STS AssumeRoleWithWebIdentity → session
// credentials (docs/aws.md "AssumeRoleWithWebIdentity"). Retrying is the cache's job, so the SDK makes one attempt per call.
import { createHash } from 'node:crypto';
import type { AssumeRoleWithWebIdentityCommandOutput, STSClient } from '@aws-sdk/client-sts';
import type { Clock } from '../../base/clock.ts';
import { ConnectorError } from '../../base/errors.ts';
import type { AwsConfig } from '../../config/aws.ts';
import type { Logger } from '../../ops/logger.ts';
import type { JwtSource } from '../../spiffe/source.ts';
import type { AwsCredentials } from './credential.ts';
import { mapStsError, stsSession } from './upstream-errors.ts';

/** @aws-sdk/client-sts, loaded by module.ts only when AWS web identity is configured. */
export type StsSdk = typeof import('@aws-sdk/client-sts');

export interface StsExchangeOptions {
  readonly sdk: StsSdk;
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
 * stays inside `[\w+=,.@-]` because SPIFFE paths allow only letters, digits, `.`, `-`, `_`. A container's
 * own role (aws.containers) puts the container first: `<container>@<that name>`, so CloudTrail says which
 * container of the workload acted (AssumeRoleWithWebIdentity takes no session tags of the caller's
 * choosing; the name is the one field that can say it). Longer than 64: a readable head, `-`, and 12 hex
 * digits of SHA-256 of the whole ID (and container), so distinct names stay distinct.
 */
export function roleSessionName(spiffeId: string, container?: string): string {
  const m = /^spiffe:\/\/([^/]+)(\/.*)?$/.exec(spiffeId);
  const trustDomain = m?.[1] ?? 'spiffe';
  const path = (m?.[2] ?? '').replace(/^\//, '');
  let name = (path === '' ? trustDomain : path.replace(/\//g, '.')).replace(/[^\w+=,.@-]/g, '_');
  if (name.length < 2) name = `${name}@${trustDomain}`;
  if (container !== undefined) name = `${container.replace(/[^\w+=,.@-]/g, '_')}@${name}`;
  if (name.length <= SESSION_NAME_MAX) return name;
  const whole = container === undefined ? spiffeId : `${container}@${spiffeId}`;
  const hash = createHash('sha256').update(whole).digest('hex').slice(0, HASH_CHARS);
  return `${name.slice(0, SESSION_NAME_MAX - HASH_CHARS - 1)}-${hash}`;
}

/** The role a cache key stands for: SINGLE is the pod's (aws.roleArn), a container name that container's own. */
export function roleForKey(config: AwsConfig, key: string): { roleArn: string; container?: string } | undefined {
  if (key === '') return { roleArn: config.roleArn };
  const own = Object.hasOwn(config.containers, key) ? config.containers[key] : undefined;
  return own === undefined ? undefined : { roleArn: own.roleArn, container: key };
}

export class StsWebIdentityExchange {
  readonly #o: StsExchangeOptions;
  readonly #client: STSClient;
  /** InvalidIdentityToken answers in a row, by cache key (each role counts its own). */
  readonly #invalidTokenFailures = new Map<string, number>();
  /** SHA-256 of the JWT-SVID STS last called expired: the same token is not sent again. */
  #expiredToken: string | undefined;

  constructor(options: StsExchangeOptions) {
    this.#o = options;
    const { config } = options;
    const timeout = options.requestTimeoutMs ?? 10_000;
    this.#client = new options.sdk.STSClient({
      region: config.region,
      ...(config.stsEndpoint ? { endpoint: config.stsEndpoint } : {}),
      maxAttempts: 1,
      requestHandler: { requestTimeout: timeout, connectionTimeout: timeout, throwOnRequestTimeout: true },
    });
  }

  /** One exchange for the role the key stands for (roleForKey). Throws ConnectorError with `retryable` set. */
  async exchange(key: string, signal: AbortSignal): Promise<AwsCredentials> {
    const { config, jwt, clock, logger } = this.#o;
    const role = roleForKey(config, key);
    if (role === undefined)
      throw new ConnectorError('request_invalid', 'no such container in aws.containers', { retryable: false });
    const svid = await jwt.fetchJwtSvid(config.audience, signal);
    const token = svid.token.reveal();
    const fingerprint = createHash('sha256').update(token).digest('hex');
    if (fingerprint === this.#expiredToken) {
      throw new ConnectorError(
        'identity_unavailable',
        'STS said the JWT-SVID has expired and no newer one is available yet; waiting for a fresh JWT-SVID',
        { retryable: false, upstreamCode: 'ExpiredTokenException' },
      );
    }
    const spiffeId = svid.id.toString();
    const sessionName = roleSessionName(spiffeId, role.container);
    let output: AssumeRoleWithWebIdentityCommandOutput;
    try {
      output = await this.#client.send(
        new this.#o.sdk.AssumeRoleWithWebIdentityCommand({
          RoleArn: role.roleArn,
          RoleSessionName: sessionName,
          WebIdentityToken: token,
          DurationSeconds: config.sessionDurationSeconds,
        }),
        { abortSignal: signal },
      );
    } catch (thrown) {
      throw this.#failed(mapStsError(thrown), fingerprint, key);
    }
    const session = stsSession(output, 'AssumeRoleWithWebIdentity');
    this.#invalidTokenFailures.delete(key);
    this.#expiredToken = undefined;
    logger.debug(
      {
        spiffeId,
        sessionName,
        ...(role.container === undefined ? {} : { container: role.container }),
        assumedRoleArn: session.assumedRoleArn,
        expiration: session.expiration.toISOString(),
      },
      'STS issued credentials',
    );
    return { ...session, roleArn: role.roleArn, sessionName, obtainedAt: new Date(clock.now()), spiffeId };
  }

  /** The identity changed: forget the bounded-retry state so the new identity gets its own tries. */
  identityChanged(): void {
    this.#invalidTokenFailures.clear();
  }

  close(): void {
    this.#client.destroy();
  }

  #failed(error: ConnectorError, fingerprint: string, key: string): ConnectorError {
    if (error.upstreamCode === 'ExpiredTokenException') {
      // Useless to resend this token; a retry helps only once the source hands out a fresh one.
      this.#expiredToken = fingerprint;
      return error;
    }
    if (error.upstreamCode === 'InvalidIdentityToken') {
      const failures = (this.#invalidTokenFailures.get(key) ?? 0) + 1;
      this.#invalidTokenFailures.set(key, failures);
      const limit = this.#o.invalidTokenRetries ?? 3;
      if (failures > limit) {
        return new ConnectorError(
          'upstream_rejected',
          `${error.message} (${failures} times in a row; no more quick retries)`,
          {
            cause: error,
            retryable: false,
            upstreamCode: 'InvalidIdentityToken',
            ...(error.upstreamStatus === undefined ? {} : { upstreamStatus: error.upstreamStatus }),
          },
        );
      }
      return error;
    }
    return error;
  }
}
