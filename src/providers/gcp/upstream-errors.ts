// What Google STS and IAM Credentials answered, read safely (docs/gcp.md#sts-token-exchange,
// docs/gcp.md#upstream-errors): wire type guards for their success bodies, and every failure turned into a
// ConnectorError with `retryable` set from the status (5xx, 429, 408, network, timeout) — upstream text kept, tokens
// and requests never.
import { ConnectorError } from '../../base/errors.ts';

export interface StsTokenResponse {
  readonly access_token: string;
  readonly expires_in: number;
}

export interface IamAccessTokenResponse {
  readonly accessToken: string;
  readonly expireTime: string;
}

export interface IamIdTokenResponse {
  readonly token: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function isStsTokenResponse(value: unknown): value is StsTokenResponse {
  return (
    isRecord(value) &&
    typeof value.access_token === 'string' &&
    value.access_token !== '' &&
    typeof value.expires_in === 'number' &&
    Number.isFinite(value.expires_in) &&
    value.expires_in > 0
  );
}

export function isIamAccessTokenResponse(value: unknown): value is IamAccessTokenResponse {
  return (
    isRecord(value) &&
    typeof value.accessToken === 'string' &&
    value.accessToken !== '' &&
    typeof value.expireTime === 'string' &&
    !Number.isNaN(Date.parse(value.expireTime))
  );
}

export function isIamIdTokenResponse(value: unknown): value is IamIdTokenResponse {
  return isRecord(value) && typeof value.token === 'string' && value.token.split('.').length === 3;
}

/** Upstream text with anything token-shaped cut out, and bounded. */
export function scrub(text: string): string {
  return text
    .replace(/eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*/g, '[redacted]')
    .replace(/\bya29\.[\w.-]+/g, '[redacted]')
    .replace(/-----BEGIN [A-Z ]+-----[\s\S]*?-----END [A-Z ]+-----/g, '[redacted]')
    .slice(0, 500);
}

/** Reads Google's two error shapes: OAuth (`error`, `error_description`) and API (`error.status`, `error.message`). */
export function readGoogleError(body: unknown): { code: string | undefined; text: string | undefined } {
  if (!isRecord(body)) return { code: undefined, text: typeof body === 'string' && body !== '' ? body : undefined };
  if (typeof body.error === 'string') {
    return { code: body.error, text: typeof body.error_description === 'string' ? body.error_description : undefined };
  }
  if (isRecord(body.error)) {
    const status = typeof body.error.status === 'string' ? body.error.status : undefined;
    return { code: status, text: typeof body.error.message === 'string' ? body.error.message : undefined };
  }
  return { code: undefined, text: undefined };
}

function isRetryableStatus(status: number): boolean {
  return status >= 500 || status === 429 || status === 408;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'UND_ERR_SOCKET',
  'ECONNABORTED',
]);

/**
 * Turns whatever the SDK threw while talking to `what` (Google STS, IAM Credentials) into a
 * ConnectorError. The SDK's errors carry the request (subject token, bearer token) in `config`, so
 * they never become a `cause`: only status, Google's code and Google's (scrubbed) text survive.
 */
export function upstreamError(thrown: unknown, what: string, signal?: AbortSignal): ConnectorError {
  if (thrown instanceof ConnectorError) return thrown;
  const e = (isRecord(thrown) ? thrown : {}) as {
    status?: unknown;
    response?: { status?: unknown; data?: unknown };
    code?: unknown;
    name?: unknown;
    message?: unknown;
  };
  const status =
    typeof e.response?.status === 'number' ? e.response.status : typeof e.status === 'number' ? e.status : undefined;
  if (status !== undefined) {
    const { code, text } = readGoogleError(e.response?.data);
    const detail = text ? `: ${scrub(text)}` : '';
    const message = `${what} answered HTTP ${status}${code ? ` ${code}` : ''}${detail}`;
    const options = { upstreamStatus: status, ...(code === undefined ? {} : { upstreamCode: code }) };
    if (isRetryableStatus(status))
      return new ConnectorError('upstream_unavailable', message, { ...options, retryable: true });
    return new ConnectorError('upstream_rejected', message, { ...options, retryable: false });
  }
  const name = typeof e.name === 'string' ? e.name : '';
  const code = typeof e.code === 'string' ? e.code : undefined;
  if (signal?.aborted || name === 'AbortError' || name === 'TimeoutError' || code === 'ABORT_ERR') {
    return new ConnectorError('timeout', `${what} did not answer in time`, { retryable: true });
  }
  if (name === 'CertificateSourceUnavailableError' || name === 'InvalidConfigurationError') {
    return new ConnectorError(
      'identity_unavailable',
      `the X.509-SVID files for ${what} could not be used: ${scrub(String(e.message))}`,
      { retryable: true },
    );
  }
  const reason =
    code && NETWORK_CODES.has(code) ? code : scrub(typeof e.message === 'string' ? e.message : String(thrown));
  return new ConnectorError('upstream_unavailable', `${what} could not be reached: ${reason}`, {
    retryable: true,
    ...(code ? { upstreamCode: code } : {}),
  });
}
