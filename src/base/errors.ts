// One error type for the whole program: a stable `code`, whether retrying can help, and the cause.
// Modelled on panva/jose's util/errors.ts; surfaces map codes to each cloud's wire shape.

export type ErrorCode =
  | 'config_invalid' //           the configuration file is wrong
  | 'usage' //                    the command line is wrong
  | 'spiffe_id_invalid' //        a string is not a SPIFFE ID
  | 'svid_invalid' //             an X.509-SVID failed parsing or verification
  | 'jwt_svid_invalid' //         a JWT-SVID failed parsing or validation
  | 'bundle_invalid' //           a trust bundle could not be read
  | 'identity_unavailable' //     no usable SVID yet
  | 'upstream_unavailable' //     a cloud or issuer could not be reached or answered 5xx / throttled
  | 'upstream_rejected' //        a cloud refused us for a reason retrying will not fix
  | 'upstream_malformed' //       a cloud answered something we could not read
  | 'credentials_unavailable' //  nothing valid to serve (none fetched yet, or expired)
  | 'throttled' //                too many new keys asked for; the caller should retry later
  | 'request_invalid' //          a request asked for something this sidecar will not serve
  | 'timeout'
  | 'internal';

export interface ConnectorErrorOptions {
  cause?: unknown;
  /** Whether trying again later (with backoff) can succeed. Never guessed from message text. */
  retryable?: boolean;
  /** The upstream's own error code (AWS `Code`, OAuth `error`, AADSTS number) when there is one. */
  upstreamCode?: string;
  /** The upstream HTTP status when there is one. */
  upstreamStatus?: number;
}

export class ConnectorError extends Error {
  override readonly name = 'ConnectorError';
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly upstreamCode: string | undefined;
  readonly upstreamStatus: number | undefined;

  constructor(code: ErrorCode, message: string, options: ConnectorErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.upstreamCode = options.upstreamCode;
    this.upstreamStatus = options.upstreamStatus;
  }
}

export function isConnectorError(value: unknown): value is ConnectorError {
  return value instanceof ConnectorError;
}

/** Wraps anything thrown into a ConnectorError, keeping an existing one as it is. */
export function toConnectorError(value: unknown, fallback: ErrorCode = 'internal'): ConnectorError {
  if (value instanceof ConnectorError) return value;
  const message = value instanceof Error ? value.message : String(value);
  return new ConnectorError(fallback, message, { cause: value });
}
