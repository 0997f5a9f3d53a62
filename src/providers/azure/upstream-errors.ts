// Entra token-endpoint errors: the wire JSON read through a type guard, then turned into a ConnectorError by
// AADSTS code (docs/azure.md#aadsts-codes): whether retrying can help, and for a federated-credential mismatch,
// exactly what to change in Entra. Codes come from `error_codes`, the "AADSTSnnnn:" prefix only as a fallback.
import { ConnectorError } from '../../base/errors.ts';

/** Entra's OAuth error body (reference-error-codes.md). */
export interface EntraErrorWire {
  readonly error: string;
  readonly error_description?: string;
  readonly error_codes?: readonly number[];
  readonly correlation_id?: string;
  readonly trace_id?: string;
}

export function isEntraErrorWire(value: unknown): value is EntraErrorWire {
  if (value === null || typeof value !== 'object') return false;
  const v = value as Record<string, unknown>;
  if (typeof v['error'] !== 'string') return false;
  if (v['error_description'] !== undefined && typeof v['error_description'] !== 'string') return false;
  if (
    v['error_codes'] !== undefined &&
    !(Array.isArray(v['error_codes']) && v['error_codes'].every((c) => typeof c === 'number'))
  )
    return false;
  if (v['correlation_id'] !== undefined && typeof v['correlation_id'] !== 'string') return false;
  if (v['trace_id'] !== undefined && typeof v['trace_id'] !== 'string') return false;
  return true;
}

/** The AADSTS number of an error body. */
export function aadstsCode(wire: EntraErrorWire): number | undefined {
  const first = wire.error_codes?.[0];
  if (first !== undefined) return first;
  const m = /^AADSTS(\d+):/.exec(wire.error_description ?? '');
  return m ? Number(m[1]) : undefined;
}

/** What we presented to Entra: the facts a federated identity credential must match. */
export interface AssertionFacts {
  readonly tenantId: string;
  readonly clientId: string;
  /** The JWT-SVID's `iss`: the FIC issuer, character for character. */
  readonly issuer: string;
  /** The JWT-SVID's `sub` (the SPIFFE ID): the FIC subject. */
  readonly subject: string;
  readonly audience: string;
}

/** A failed answer from Entra as seen on the wire. */
export interface EntraFailure {
  readonly status: number;
  /** The body, when it passed the type guard. */
  readonly wire: EntraErrorWire | undefined;
}

export const NO_MATCHING_FIC = new Set([70021, 700211, 700212, 700213]);
export const ASSERTION_TIME_WINDOW = 700024;

/** The sentence that tells an operator which federated identity credential to create. */
export function ficFix(facts: AssertionFacts): string {
  return (
    `On application (client) ${facts.clientId} in tenant ${facts.tenantId}, add a federated identity credential with ` +
    `issuer "${facts.issuer}" (exactly, mind a trailing slash), subject "${facts.subject}" and audience "${facts.audience}"; ` +
    'a new credential can take a few minutes to take effect'
  );
}

/** Turns an Entra error answer into a ConnectorError with the right code, retryability and advice. */
export function entraError(failure: EntraFailure, facts: AssertionFacts | undefined): ConnectorError {
  const { status, wire } = failure;
  const code = wire ? aadstsCode(wire) : undefined;
  const upstreamCode = code !== undefined ? `AADSTS${code}` : (wire?.error ?? `HTTP${status}`);
  const said = wire?.error_description
    ? firstLine(wire.error_description)
    : `HTTP ${status}${wire ? ` ${wire.error}` : ''}`;
  const opts = (retryable: boolean) => ({ retryable, upstreamCode, upstreamStatus: status });
  const who = facts ? ` (issuer "${facts.issuer}", subject "${facts.subject}")` : '';

  if (code !== undefined && NO_MATCHING_FIC.has(code)) {
    // Also answered while a new federated credential propagates, so it is retried with backoff.
    const fix = facts
      ? ficFix(facts)
      : 'Check the federated identity credential: issuer, subject and audience must match the JWT-SVID exactly';
    return new ConnectorError(
      'upstream_rejected',
      `Entra found no federated identity credential matching our JWT-SVID (${upstreamCode}). ${fix}. Entra said: ${said}`,
      opts(true),
    );
  }
  if (code === ASSERTION_TIME_WINDOW) {
    return new ConnectorError(
      'upstream_rejected',
      `Entra says the JWT-SVID${who} is outside its valid time window (${upstreamCode}); check the clocks and the SVID lifetime. Entra said: ${said}`,
      opts(true),
    );
  }
  if (code === 90061) {
    const issuer = facts
      ? `${facts.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`
      : "the issuer's /.well-known/openid-configuration";
    return new ConnectorError(
      'upstream_unavailable',
      `Entra could not fetch ${issuer} or its JWKS (${upstreamCode}); they must be reachable from the public internet. Entra said: ${said}`,
      opts(true),
    );
  }
  if (code === 50027) {
    return new ConnectorError(
      'upstream_rejected',
      `Entra refused the JWT-SVID${who} as invalid or malformed (${upstreamCode}). Entra said: ${said}`,
      opts(false),
    );
  }
  if (code === 700027 || code === 7000272) {
    // Entra caches the issuer's JWKS; right after a signing-key rotation this can pass on its own
    // (7000272: the assertion's key is not in the JWKS Entra holds).
    return new ConnectorError(
      'upstream_rejected',
      `Entra could not verify the JWT-SVID signature${who} against the issuer's JWKS (${upstreamCode}). Entra said: ${said}`,
      opts(true),
    );
  }
  if (code === 5002738) {
    return new ConnectorError(
      'upstream_rejected',
      `Entra accepts only RS256-signed federated tokens (${upstreamCode}); configure the JWT issuer with RSA keys. Entra said: ${said}`,
      opts(false),
    );
  }
  if (code === 700016 || code === 90002 || code === 900023) {
    return new ConnectorError(
      'upstream_rejected',
      `Entra does not know the configured application or tenant (${upstreamCode}); check azure.clientId and azure.tenantId. Entra said: ${said}`,
      opts(false),
    );
  }
  if (status === 429 || status >= 500 || wire?.error === 'temporarily_unavailable') {
    return new ConnectorError(
      'upstream_unavailable',
      `Entra is unavailable or throttling (HTTP ${status}${code !== undefined ? `, ${upstreamCode}` : ''}). Entra said: ${said}`,
      opts(true),
    );
  }
  return new ConnectorError(
    'upstream_rejected',
    `Entra refused the token request (HTTP ${status}, ${upstreamCode}). Entra said: ${said}`,
    opts(false),
  );
}

function firstLine(text: string): string {
  return (text.split(/\r?\n/)[0] ?? '').slice(0, 500);
}
