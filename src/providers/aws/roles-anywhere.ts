// The second AWS exchange: IAM Roles Anywhere CreateSession signed with the current X.509-SVID
// (docs/aws.md "Roles Anywhere"; setup in README.md), so AWS needs no JWT issuer. One attempt per call:
// retrying is the cache's job, steered by the `retryable` that mapRolesAnywhereError sets.
import type { X509Certificate } from 'node:crypto';
import { type Dispatcher, request } from 'undici';
import type { Clock } from '../../base/clock.ts';
import { ConnectorError } from '../../base/errors.ts';
import { Secret } from '../../base/secret.ts';
import {
  type AwsConfig,
  type RolesAnywhereConfig,
  rolesAnywhereEndpoint,
  rolesAnywhereRegion,
} from '../../config/aws.ts';
import type { Logger } from '../../ops/logger.ts';
import type { X509Source } from '../../spiffe/source.ts';
import { type AwsCredentials, accountFromAssumedRoleArn } from './credential.ts';
import { serialDecimal, signingAlgorithmFor, signX509Request } from './roles-anywhere-sign.ts';

export interface RolesAnywhereExchangeOptions {
  readonly config: AwsConfig & { readonly rolesAnywhere: RolesAnywhereConfig };
  readonly x509: X509Source;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Per-request timeout, default 10 s. */
  readonly requestTimeoutMs?: number;
  /** Tests only: an undici dispatcher (e.g. one that trusts a test CA). */
  readonly dispatcher?: Dispatcher;
}

const MAX_RESPONSE_BYTES = 256 * 1024;

/** Everything that can go wrong with one CreateSession, before it becomes a ConnectorError. */
export type RolesAnywhereFailure =
  | {
      readonly kind: 'http';
      readonly status: number;
      /** `x-amzn-ErrorType`, or the body's `__type` / `code`. */
      readonly errorType: string | undefined;
      readonly message: string | undefined;
      readonly requestId: string | undefined;
      /** Whether the certificate that was signed with has an empty subject (a hint for AccessDenied). */
      readonly emptySubject?: boolean;
    }
  | { readonly kind: 'transport'; readonly error: unknown; readonly timedOut: boolean };

const THROTTLING = new Set([
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'SlowDown',
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
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
]);

/** `AccessDeniedException:http://internal.amazon.com/coral/...` → `AccessDeniedException`. */
function shortErrorType(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const short = value.split(':')[0]?.split('#').pop()?.trim();
  return short === undefined || short === '' ? undefined : short.slice(0, 100);
}

/**
 * The one mapper from a Roles Anywhere failure to a ConnectorError: AccessDenied, ResourceNotFound and
 * Validation (and other 4xx) are not retried; throttling, 5xx, timeouts and network errors are.
 */
export function mapRolesAnywhereError(failure: RolesAnywhereFailure): ConnectorError {
  if (failure.kind === 'transport') {
    const e = failure.error as { code?: unknown; message?: unknown; name?: unknown };
    if (failure.timedOut || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT') {
      return new ConnectorError('timeout', 'IAM Roles Anywhere did not answer CreateSession in time', {
        cause: failure.error,
        retryable: true,
      });
    }
    const code = typeof e.code === 'string' ? e.code : undefined;
    const detail =
      code && NETWORK_CODES.has(code)
        ? code
        : typeof e.message === 'string'
          ? e.message.split('\n')[0]
          : String(failure.error);
    return new ConnectorError('upstream_unavailable', `IAM Roles Anywhere could not be reached: ${detail}`, {
      cause: failure.error,
      retryable: true,
      ...(code ? { upstreamCode: code } : {}),
    });
  }
  const { status } = failure;
  const type = shortErrorType(failure.errorType) ?? (status === 429 ? 'ThrottlingException' : `HTTP ${status}`);
  const said = failure.message ? `: ${failure.message.slice(0, 500)}` : '';
  const id = failure.requestId ? ` (request id ${failure.requestId})` : '';
  const options = { upstreamCode: type, upstreamStatus: status };
  if (THROTTLING.has(type) || status === 429) {
    return new ConnectorError(
      'upstream_unavailable',
      `IAM Roles Anywhere is throttling CreateSession (${type})${said}${id}; retrying with backoff`,
      { ...options, retryable: true },
    );
  }
  if (status >= 500) {
    return new ConnectorError(
      'upstream_unavailable',
      `IAM Roles Anywhere failed (${type}, HTTP ${status})${said}${id}; retrying with backoff`,
      { ...options, retryable: true },
    );
  }
  let hint: string;
  switch (type) {
    case 'AccessDeniedException':
      hint = failure.emptySubject
        ? ' The X.509-SVID has an empty subject, which AWS documents as unsupported by Roles Anywhere (csi-driver-spiffe issues SVIDs so); see README.md "AWS with IAM Roles Anywhere" for the options.'
        : " Check that the trust anchor holds the CA that issued this X.509-SVID, that the profile is enabled and lists aws.roleArn, and that the role's trust policy allows rolesanywhere.amazonaws.com for this SPIFFE ID.";
      break;
    case 'ResourceNotFoundException':
      hint =
        ' Check aws.rolesAnywhere.trustAnchorArn and profileArn: they must exist, be enabled, and be in the region of the endpoint.';
      break;
    case 'ValidationException':
      hint = " Check aws.sessionDurationSeconds against the profile's duration.";
      break;
    default:
      hint = '';
  }
  return new ConnectorError(
    'upstream_rejected',
    `IAM Roles Anywhere refused CreateSession (${type})${said}${id}.${hint}`,
    { ...options, retryable: false },
  );
}

/** What CreateSession answers (the parts the sidecar reads). */
interface CreateSessionBody {
  credentialSet?: Array<{
    assumedRoleUser?: { arn?: unknown };
    credentials?: { accessKeyId?: unknown; secretAccessKey?: unknown; sessionToken?: unknown; expiration?: unknown };
    roleArn?: unknown;
    sourceIdentity?: unknown;
  }>;
}

/** One CreateSession with the current X.509-SVID. Throws ConnectorError with `retryable` set. */
export type RolesAnywhereExchange = (signal: AbortSignal) => Promise<AwsCredentials>;

export function hasEmptySubject(certificate: X509Certificate): boolean {
  // node:crypto gives undefined (not '') for an empty subject.
  return !(certificate.subject as string | undefined)?.trim();
}

/** The exchange over the current verified X.509-SVID of `x509`. */
export function createRolesAnywhereExchange(o: RolesAnywhereExchangeOptions): RolesAnywhereExchange {
  const ra = o.config.rolesAnywhere;
  const region = rolesAnywhereRegion(ra);
  const endpoint = rolesAnywhereEndpoint(ra);
  const timeoutMs = o.requestTimeoutMs ?? 10_000;
  let warnedSerial: string | undefined;

  return async (signal) => {
    const svid = o.x509.current();
    if (!svid)
      throw new ConnectorError(
        'identity_unavailable',
        'no valid X.509-SVID yet to sign IAM Roles Anywhere CreateSession with',
        { retryable: true },
      );
    const leaf = svid.certificates[0];
    if (!leaf)
      throw new ConnectorError('identity_unavailable', 'the X.509-SVID has no certificate', { retryable: true });
    signingAlgorithmFor(svid.privateKey);
    const serial = serialDecimal(leaf);
    const emptySubject = hasEmptySubject(leaf);
    if (emptySubject && warnedSerial !== serial) {
      warnedSerial = serial;
      o.logger.warn(
        { spiffeId: svid.id.toString(), serial },
        'the X.509-SVID has an empty subject: AWS documents that IAM Roles Anywhere does not support such certificates (csi-driver-spiffe issues them so); see README.md "AWS with IAM Roles Anywhere"',
      );
    }

    const url = new URL(`${endpoint}/sessions`);
    url.searchParams.set('profileArn', ra.profileArn);
    url.searchParams.set('roleArn', o.config.roleArn);
    url.searchParams.set('trustAnchorArn', ra.trustAnchorArn);
    const body = JSON.stringify({ durationSeconds: o.config.sessionDurationSeconds });
    const signed = signX509Request({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/json' },
      body,
      date: new Date(o.clock.now()),
      region,
      certificates: svid.certificates,
      privateKey: svid.privateKey,
    });

    const timeout = AbortSignal.timeout(timeoutMs);
    let status: number;
    let headers: Record<string, string | string[] | undefined>;
    let text: string;
    try {
      const res = await request(url, {
        method: 'POST',
        headers: signed.headers,
        body,
        signal: AbortSignal.any([signal, timeout]),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        ...(o.dispatcher ? { dispatcher: o.dispatcher } : {}),
      });
      status = res.statusCode;
      headers = res.headers;
      text = await readLimited(res.body);
    } catch (error) {
      throw mapRolesAnywhereError({ kind: 'transport', error, timedOut: timeout.aborted && !signal.aborted });
    }
    const requestId = header(headers, 'x-amzn-requestid');
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (status < 200 || status > 299) {
      const fields = (parsed !== null && typeof parsed === 'object' ? parsed : {}) as Record<string, unknown>;
      const message = [fields['message'], fields['Message']].find((m): m is string => typeof m === 'string');
      const bodyType = [fields['__type'], fields['code']].find((m): m is string => typeof m === 'string');
      throw mapRolesAnywhereError({
        kind: 'http',
        status,
        errorType: header(headers, 'x-amzn-errortype') ?? bodyType,
        message,
        requestId,
        emptySubject,
      });
    }
    const credentials = toCredentials(parsed as CreateSessionBody | undefined, o.config.roleArn, o.clock.now());
    if (!credentials) {
      throw new ConnectorError(
        'upstream_malformed',
        `IAM Roles Anywhere answered HTTP ${status} to CreateSession without complete credentials${requestId ? ` (request id ${requestId})` : ''}`,
        { retryable: true, upstreamStatus: status },
      );
    }
    o.logger.debug(
      {
        spiffeId: svid.id.toString(),
        serial,
        assumedRoleArn: credentials.assumedRoleArn,
        expiration: credentials.expiration.toISOString(),
        requestId,
      },
      'IAM Roles Anywhere issued credentials',
    );
    return { ...credentials, spiffeId: svid.id.toString(), requestId };
  };
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

async function readLimited(body: AsyncIterable<Buffer | Uint8Array> & { destroy?: () => void }): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > MAX_RESPONSE_BYTES) {
      body.destroy?.();
      throw new ConnectorError(
        'upstream_malformed',
        `IAM Roles Anywhere answered more than ${MAX_RESPONSE_BYTES} bytes`,
        { retryable: true },
      );
    }
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks).toString('utf8');
}

function toCredentials(body: CreateSessionBody | undefined, roleArn: string, now: number): AwsCredentials | undefined {
  const set = Array.isArray(body?.credentialSet) ? body.credentialSet[0] : undefined;
  const c = set?.credentials;
  const arn = set?.assumedRoleUser?.arn;
  if (!c || typeof arn !== 'string') return undefined;
  const { accessKeyId, secretAccessKey, sessionToken, expiration } = c;
  if (
    typeof accessKeyId !== 'string' ||
    typeof secretAccessKey !== 'string' ||
    typeof sessionToken !== 'string' ||
    typeof expiration !== 'string'
  )
    return undefined;
  if (accessKeyId === '' || secretAccessKey === '' || sessionToken === '') return undefined;
  const expires = new Date(expiration);
  const accountId = accountFromAssumedRoleArn(arn);
  if (Number.isNaN(expires.getTime()) || !accountId) return undefined;
  return {
    accessKeyId,
    secretAccessKey: new Secret(secretAccessKey),
    sessionToken: new Secret(sessionToken),
    expiration: expires,
    accountId,
    roleArn: typeof set.roleArn === 'string' ? set.roleArn : roleArn,
    assumedRoleArn: arn,
    sessionName: arn.slice(arn.lastIndexOf('/') + 1),
    obtainedAt: new Date(now),
  };
}
