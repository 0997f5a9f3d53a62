// The bodies and statuses of the Azure surfaces (reference/azure.md §1, §2, implications 3–6): IMDS and the
// MSI_ENDPOINT answer with every number as a string; App Service with a string epoch. One function per surface
// turns a problem into that surface's status and body: 400-class only for caller errors, 503 + Retry-After
// for anything upstream or not yet fetched. Pure.
import type { ConnectorError } from '../../base/errors.ts';
import type { Refusal } from './request.ts';
import type { AzureAccessToken } from './token.ts';

export type Problem =
  | { readonly kind: 'refused'; readonly status: 400 | 401 | 404 | 405; readonly refusal: Refusal }
  | { readonly kind: 'unavailable'; readonly error: ConnectorError; readonly retryAfterSeconds: number }
  | { readonly kind: 'draining' };

export interface Answer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: unknown;
}

const seconds = (ms: number): number => Math.floor(ms / 1000);

/** IMDS and MSI_ENDPOINT success body: every numeric field a JSON string, `resource` echoed. */
export function imdsTokenBody(token: AzureAccessToken, clientId: string, nowMs: number): Record<string, string> {
  const expiresIn = String(Math.max(0, seconds(token.expiresAt.getTime() - nowMs)));
  return {
    access_token: token.accessToken.reveal(),
    client_id: clientId,
    expires_in: expiresIn,
    expires_on: String(seconds(token.expiresAt.getTime())),
    ext_expires_in: expiresIn,
    not_before: String(seconds(token.obtainedAt.getTime())),
    refresh_token: '',
    resource: token.resource,
    token_type: 'Bearer',
  };
}

/** App Service 2019-08-01 success body. */
export function appServiceTokenBody(token: AzureAccessToken, clientId: string): Record<string, string> {
  return {
    access_token: token.accessToken.reveal(),
    expires_on: String(seconds(token.expiresAt.getTime())),
    resource: token.resource,
    token_type: 'Bearer',
    client_id: clientId,
  };
}

/** IMDS (and MSI_ENDPOINT): `{error, error_description}`. */
export function imdsProblem(problem: Problem): Answer {
  switch (problem.kind) {
    case 'refused':
      return { status: problem.status, headers: {}, body: { error: problem.refusal.error, error_description: problem.refusal.description } };
    case 'unavailable':
      return {
        status: 503,
        headers: { 'Retry-After': String(problem.retryAfterSeconds) },
        body: { error: problem.error.retryable ? 'temporarily_unavailable' : 'invalid_client', error_description: problem.error.message },
      };
    case 'draining':
      return { status: 503, headers: { 'Retry-After': '5' }, body: { error: 'temporarily_unavailable', error_description: 'The metadata endpoint is shutting down' } };
  }
}

/** App Service: `{statusCode, message, correlationId}`, the shape msal-node reads `message` from. */
export function appServiceProblem(problem: Problem, correlationId: string): Answer {
  switch (problem.kind) {
    case 'refused':
      return { status: problem.status, headers: {}, body: { statusCode: problem.status, message: `${problem.refusal.error}: ${problem.refusal.description}`, correlationId } };
    case 'unavailable':
      return {
        status: 503,
        headers: { 'Retry-After': String(problem.retryAfterSeconds) },
        body: { statusCode: 503, message: problem.error.message, correlationId },
      };
    case 'draining':
      return { status: 503, headers: { 'Retry-After': '5' }, body: { statusCode: 503, message: 'The identity endpoint is shutting down', correlationId } };
  }
}
