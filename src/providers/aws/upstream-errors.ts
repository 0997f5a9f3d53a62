// What STS answered when it was not credentials, mapped once to ConnectorError with its retryability
// (docs/aws.md "STS errors"): throttling, 5xx and network failures are retried with backoff; refusals are
// not, except InvalidIdentityToken (JWKS propagation; bounded by the exchange) and ExpiredTokenException
// (retried once a fresh JWT-SVID exists).
import { ConnectorError } from '../../base/errors.ts';
import { Secret } from '../../base/secret.ts';
import { type AwsCredentials, accountFromAssumedRoleArn } from './credential.ts';

/** STS error codes that retrying (with backoff) can fix. */
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

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNABORTED',
]);

interface SdkErrorShape {
  name?: unknown;
  code?: unknown;
  Code?: unknown;
  message?: unknown;
  $fault?: unknown;
  $metadata?: { httpStatusCode?: unknown };
}

/**
 * Maps what the SDK threw to a ConnectorError with its retryability. InvalidIdentityToken
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
    if (code === 'InvalidIdentityToken' || code === 'ExpiredTokenException')
      return new ConnectorError('upstream_rejected', message, { ...options, retryable: true });
    if (RETRYABLE_CODES.has(code) || (status !== undefined && status >= 500))
      return new ConnectorError('upstream_unavailable', message, { ...options, retryable: true });
    return new ConnectorError('upstream_rejected', message, { ...options, retryable: false });
  }
  if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) {
    return new ConnectorError('upstream_unavailable', `STS could not be reached: ${e.code}`, {
      cause: thrown,
      retryable: true,
      upstreamCode: e.code,
    });
  }
  if (e.code === 'ETIMEDOUT' || name === 'AbortError' || (name === 'TimeoutError' && e.code === undefined)) {
    return new ConnectorError('timeout', 'STS did not answer in time', { cause: thrown, retryable: true });
  }
  if (status !== undefined && status < 300) {
    return new ConnectorError(
      'upstream_malformed',
      `STS answered something that is not an AssumeRoleWithWebIdentity response: ${detail.split('\n')[0]}`,
      { cause: thrown, retryable: true, ...upstream },
    );
  }
  return new ConnectorError('upstream_unavailable', `STS call failed: ${detail.split('\n')[0]}`, {
    cause: thrown,
    retryable: true,
    ...upstream,
  });
}

/** The credential fields every STS answer carries (AssumeRole, AssumeRoleWithWebIdentity), as the SDK gives them. */
export interface StsAnswer {
  readonly Credentials?:
    | {
        AccessKeyId?: string | undefined;
        SecretAccessKey?: string | undefined;
        SessionToken?: string | undefined;
        Expiration?: Date | undefined;
      }
    | undefined;
  readonly AssumedRoleUser?: { Arn?: string | undefined } | undefined;
  readonly $metadata: { requestId?: string | undefined };
}

/** The session an STS answer issued, or upstream_malformed (retryable) when any part of it is missing. */
export function stsSession(
  output: StsAnswer,
  operation: string,
): Pick<
  AwsCredentials,
  'accessKeyId' | 'secretAccessKey' | 'sessionToken' | 'expiration' | 'accountId' | 'assumedRoleArn' | 'requestId'
> {
  const c = output.Credentials;
  const assumedRoleArn = output.AssumedRoleUser?.Arn;
  const accountId = assumedRoleArn === undefined ? undefined : accountFromAssumedRoleArn(assumedRoleArn);
  if (
    !c?.AccessKeyId ||
    !c.SecretAccessKey ||
    !c.SessionToken ||
    !(c.Expiration instanceof Date) ||
    Number.isNaN(c.Expiration.getTime()) ||
    !assumedRoleArn ||
    !accountId
  ) {
    throw new ConnectorError(
      'upstream_malformed',
      `STS answered ${operation} without complete credentials or an assumed-role ARN`,
      {
        retryable: true,
      },
    );
  }
  return {
    accessKeyId: c.AccessKeyId,
    secretAccessKey: new Secret(c.SecretAccessKey),
    sessionToken: new Secret(c.SessionToken),
    expiration: c.Expiration,
    accountId,
    assumedRoleArn,
    requestId: output.$metadata.requestId,
  };
}
