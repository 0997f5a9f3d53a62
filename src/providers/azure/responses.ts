// The bodies and statuses of the Azure surfaces (docs/azure.md "Token fields", "Errors"): IMDS and the
// MSI_ENDPOINT answer with every number as a string; App Service with a string epoch. One function per surface
// turns a problem into that surface's status and body: 400-class only for caller errors, 429 when throttled,
// 503 + Retry-After for anything upstream, not yet fetched, or while shutting down. Pure.
import type { Answer, Problem } from '../contract.ts';
import type { AzureAccessToken } from './credential.ts';
import type { Refusal } from './request.ts';

/** A problem of the Azure surfaces: the shared ones, or a caller error with its status. */
export type AzureProblem =
  | Problem
  | { readonly kind: 'refused'; readonly status: 400 | 401 | 404 | 405; readonly refusal: Refusal };

const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8' } as const;

function json(status: number, body: unknown, headers: Record<string, string> = {}): Answer {
  return { status, headers: { ...JSON_HEADERS, ...headers }, body: JSON.stringify(body) };
}

/** The caller error each shared problem is, for the checks the pipeline makes before the surface. */
function asRefusal(problem: Problem & { kind: 'foreign-host' | 'forwarded' | 'ambiguous' }): {
  status: 400;
  refusal: Refusal;
} {
  const description =
    problem.kind === 'foreign-host'
      ? 'The request must name this metadata address as its host'
      : problem.kind === 'forwarded'
        ? 'Request contains a forwarding header (X-Forwarded-For or Forwarded); the identity endpoint answers this pod only'
        : `The ${problem.header} header must appear once`;
  return { status: 400, refusal: { error: 'invalid_request', description } };
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
export function imdsProblem(problem: AzureProblem): Answer {
  switch (problem.kind) {
    case 'refused':
      return json(problem.status, { error: problem.refusal.error, error_description: problem.refusal.description });
    case 'foreign-host':
    case 'forwarded':
    case 'ambiguous': {
      const r = asRefusal(problem);
      return json(r.status, { error: r.refusal.error, error_description: r.refusal.description });
    }
    case 'refused-key':
      return json(400, { error: 'invalid_resource', error_description: problem.message });
    case 'throttled':
      return json(
        429,
        { error: 'too_many_requests', error_description: 'Too many requests; retry later' },
        { 'Retry-After': String(problem.retryAfterSeconds) },
      );
    case 'unavailable':
      return json(
        503,
        {
          error: problem.error.retryable ? 'temporarily_unavailable' : 'invalid_client',
          error_description: problem.error.message,
        },
        { 'Retry-After': String(problem.retryAfterSeconds) },
      );
    case 'draining':
      return json(
        503,
        { error: 'temporarily_unavailable', error_description: 'The metadata endpoint is shutting down' },
        { 'Retry-After': '5' },
      );
  }
}

/** App Service: `{statusCode, message, correlationId}`, the shape msal-node reads `message` from. */
export function appServiceProblem(problem: AzureProblem, correlationId: string): Answer {
  switch (problem.kind) {
    case 'refused':
      return json(problem.status, {
        statusCode: problem.status,
        message: `${problem.refusal.error}: ${problem.refusal.description}`,
        correlationId,
      });
    case 'foreign-host':
    case 'forwarded':
    case 'ambiguous': {
      const r = asRefusal(problem);
      return json(r.status, {
        statusCode: r.status,
        message: `${r.refusal.error}: ${r.refusal.description}`,
        correlationId,
      });
    }
    case 'refused-key':
      return json(400, { statusCode: 400, message: `invalid_resource: ${problem.message}`, correlationId });
    case 'throttled':
      return json(
        429,
        { statusCode: 429, message: 'Too many requests; retry later', correlationId },
        { 'Retry-After': String(problem.retryAfterSeconds) },
      );
    case 'unavailable':
      return json(
        503,
        { statusCode: 503, message: problem.error.message, correlationId },
        { 'Retry-After': String(problem.retryAfterSeconds) },
      );
    case 'draining':
      return json(
        503,
        { statusCode: 503, message: 'The identity endpoint is shutting down', correlationId },
        { 'Retry-After': '5' },
      );
  }
}
