// How the emulated GCE metadata server answers (docs/gcp.md "Response format"): the headers on every
// answer, the token body, and the one function that turns a problem into the metadata server's status
// and text. Pure.
import { createHash } from 'node:crypto';
import type { ConnectorError } from '../../base/errors.ts';
import type { Answer, Problem } from '../contract.ts';

const BASE_HEADERS = {
  'Metadata-Flavor': 'Google',
  Server: 'Metadata Server for VM',
  'X-XSS-Protection': '0',
  'X-Frame-Options': 'SAMEORIGIN',
} as const;

/** Every metadata answer: the flavor and server headers, text or JSON. */
export function metadataAnswer(status: number, json: boolean, body: string, extra?: Record<string, string>): Answer {
  return {
    status,
    headers: {
      ...BASE_HEADERS,
      'Content-Type': json ? 'application/json' : 'application/text',
      'Content-Length': Buffer.byteLength(body),
      ...extra,
    },
    body,
  };
}

/** A value of the metadata tree, with the ETag the metadata server gives it (what wait_for_change's last_etag names). */
export function metadataValue(json: boolean, body: string): Answer {
  return metadataAnswer(200, json, body, { ETag: createHash('sha256').update(body).digest('hex').slice(0, 16) });
}

export function notFound(): Answer {
  return metadataAnswer(404, false, 'Not Found\n');
}

/** The token body as the metadata server writes it (expires_in: whole seconds left). */
export function tokenBody(token: string, expiresInSeconds: number): string {
  return `{"access_token":${JSON.stringify(token)},"expires_in":${expiresInSeconds},"token_type":"Bearer"}`;
}

export function metadataProblem(problem: Problem): Answer {
  switch (problem.kind) {
    case 'foreign-host':
      return metadataAnswer(
        403,
        false,
        'Forbidden: the Host header (or the request target) must name this metadata server.\n',
      );
    case 'forwarded':
      return metadataAnswer(403, false, 'Forbidden: requests with X-Forwarded-For are not accepted.\n');
    case 'ambiguous':
      return metadataAnswer(400, false, `Bad Request: the ${problem.header} header must appear once.\n`);
    case 'draining':
      return metadataAnswer(503, false, 'Service Unavailable: the metadata server is shutting down.\n', {
        'Retry-After': '1',
      });
    case 'refused-key':
      return metadataAnswer(400, false, `Bad Request: ${problem.message}\n`);
    case 'throttled':
      return metadataAnswer(429, false, 'Too Many Requests\n', { 'Retry-After': String(problem.retryAfterSeconds) });
    case 'unavailable': {
      const e = metadataError(problem.error, problem.retryAfterSeconds);
      return metadataAnswer(
        e.status,
        false,
        e.body,
        e.retryAfter === undefined ? undefined : { 'Retry-After': String(e.retryAfter) },
      );
    }
  }
}

/**
 * Errors as metadata-server answers: retryable → 503 with Retry-After (the Python and Go clients retry
 * 5xx); Google's refusal → its 4xx status with its text.
 */
export function metadataError(
  error: ConnectorError | undefined,
  retryAfterSeconds: number,
): { status: number; body: string; retryAfter?: number } {
  if (!error || error.retryable || error.code !== 'upstream_rejected') {
    const why = error ? `: ${error.message}` : '';
    return {
      status: 503,
      body: `Service Unavailable: no valid credentials yet${why}\n`,
      retryAfter: Math.max(1, retryAfterSeconds),
    };
  }
  const status =
    error.upstreamStatus !== undefined && error.upstreamStatus >= 400 && error.upstreamStatus < 500
      ? error.upstreamStatus
      : 403;
  return { status, body: `${error.message}\n` };
}
