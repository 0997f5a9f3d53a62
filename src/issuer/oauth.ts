// The token endpoint's wire protocol: the RFC 8693 token-exchange request (form parameters, §2.1) with
// the mTLS subject of Venafi/token-exchange, its success body (§2.2.1) and OAuth error bodies (RFC 6749
// §5.2, RFC 8693 §2.2.2). Pure: no I/O.

export const GRANT_TYPE_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const TOKEN_TYPE_TLS_CLIENT_AUTH = 'urn:ietf:params:oauth:token-type:tls-client-auth';
export const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';

export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_target'
  | 'unsupported_grant_type'
  | 'server_error'
  | 'temporarily_unavailable';

/**
 * Why a request was refused, as a metric label (bounded set, never request data). Several reasons
 * share one OAuth error code; the reason says which rule.
 */
export type RefusalReason =
  | 'no_client_certificate'
  | 'untrusted_certificate'
  | 'foreign_trust_domain'
  | 'expired_certificate'
  | 'invalid_svid'
  | 'no_client_auth_usage'
  | 'rate_limited'
  | 'malformed_request'
  | 'unsupported_grant_type'
  | 'unsupported_subject_token_type'
  | 'unsupported_requested_token_type'
  | 'missing_audience'
  | 'disallowed_audience'
  | 'method_not_allowed'
  | 'not_found'
  | 'no_signing_key'
  | 'draining'
  | 'internal';

export class OAuthError extends Error {
  override readonly name = 'OAuthError';
  readonly error: OAuthErrorCode;
  readonly status: number;
  readonly reason: RefusalReason;
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    error: OAuthErrorCode,
    reason: RefusalReason,
    description: string,
    options: { status?: number; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(description, options.cause === undefined ? undefined : { cause: options.cause });
    this.error = error;
    this.reason = reason;
    this.status = options.status ?? defaultStatus(error);
    this.headers = options.headers ?? {};
  }

  /** RFC 6749 §5.2 body. The description is ours (never the client's input echoed at length). */
  body(): { error: OAuthErrorCode; error_description: string } {
    return { error: this.error, error_description: this.message };
  }
}

function defaultStatus(error: OAuthErrorCode): number {
  switch (error) {
    case 'invalid_client':
      return 401; // RFC 8705 §2: a client that failed mutual-TLS authentication
    case 'server_error':
      return 500;
    case 'temporarily_unavailable':
      return 503;
    default:
      return 400;
  }
}

export interface ExchangeRequest {
  readonly audience: string;
}

/** The RFC 8693 success body, with Venafi/token-exchange's `spiffe_id` so its clients can switch. */
export interface TokenResponse {
  readonly access_token: string;
  readonly issued_token_type: typeof TOKEN_TYPE_JWT;
  /** RFC 8693 §2.2.1: "N_A" when the issued token is not an OAuth access token (a JWT-SVID is an assertion). */
  readonly token_type: 'N_A';
  readonly expires_in: number;
  readonly spiffe_id: string;
}

const SINGLE_VALUED = [
  'grant_type',
  'subject_token_type',
  'requested_token_type',
  'audience',
  'resource',
  'scope',
  'subject_token',
  'actor_token',
  'actor_token_type',
] as const;

/**
 * Reads a token-exchange request from its form body. Refuses (OAuthError) a repeated parameter, a
 * grant other than token exchange, a subject other than the TLS client certificate, a requested type
 * other than JWT, a missing audience, and the RFC 8693 features this issuer does not offer
 * (subject_token, actor tokens, resource, scope). The audience is checked against the allow-list.
 */
export function parseExchangeRequest(
  contentType: string | undefined,
  body: string,
  allowedAudiences: ReadonlySet<string>,
): ExchangeRequest {
  const mediaType = (contentType ?? '').split(';')[0]?.trim().toLowerCase();
  if (mediaType !== 'application/x-www-form-urlencoded') {
    throw new OAuthError(
      'invalid_request',
      'malformed_request',
      'the request body must be application/x-www-form-urlencoded (RFC 6749 §4.1.3)',
    );
  }
  const form = new URLSearchParams(body);
  for (const name of SINGLE_VALUED) {
    if (form.getAll(name).length > 1) {
      if (name === 'audience')
        throw new OAuthError(
          'invalid_target',
          'disallowed_audience',
          'ask for exactly one audience per request; a JWT-SVID carries one',
        );
      throw new OAuthError('invalid_request', 'malformed_request', `parameter ${name} is repeated`);
    }
  }
  const grantType = form.get('grant_type');
  if (grantType === null || grantType === '')
    throw new OAuthError('invalid_request', 'malformed_request', 'grant_type is required');
  if (grantType !== GRANT_TYPE_TOKEN_EXCHANGE) {
    throw new OAuthError(
      'unsupported_grant_type',
      'unsupported_grant_type',
      `grant_type must be ${GRANT_TYPE_TOKEN_EXCHANGE}`,
    );
  }
  const subjectTokenType = form.get('subject_token_type');
  if (subjectTokenType !== TOKEN_TYPE_TLS_CLIENT_AUTH) {
    throw new OAuthError(
      'invalid_request',
      'unsupported_subject_token_type',
      `subject_token_type must be ${TOKEN_TYPE_TLS_CLIENT_AUTH}: the subject is the TLS client certificate`,
    );
  }
  if (form.has('subject_token'))
    throw new OAuthError(
      'invalid_request',
      'malformed_request',
      'subject_token must be absent: the subject is the TLS client certificate',
    );
  if (form.has('actor_token') || form.has('actor_token_type'))
    throw new OAuthError('invalid_request', 'malformed_request', 'delegation (actor_token) is not supported');
  const requested = form.get('requested_token_type');
  if (requested !== null && requested !== TOKEN_TYPE_JWT) {
    throw new OAuthError(
      'invalid_request',
      'unsupported_requested_token_type',
      `requested_token_type must be ${TOKEN_TYPE_JWT} when given`,
    );
  }
  if (form.has('resource'))
    throw new OAuthError(
      'invalid_target',
      'disallowed_audience',
      'resource is not supported; name the cloud in audience',
    );
  if (form.has('scope')) throw new OAuthError('invalid_request', 'malformed_request', 'scope is not supported');
  const audience = form.get('audience');
  if (audience === null || audience === '')
    throw new OAuthError('invalid_request', 'missing_audience', 'audience is required');
  if (!allowedAudiences.has(audience)) {
    throw new OAuthError(
      'invalid_target',
      'disallowed_audience',
      `audience ${JSON.stringify(audience.slice(0, 200))} is not one this issuer mints tokens for`,
    );
  }
  return { audience };
}
