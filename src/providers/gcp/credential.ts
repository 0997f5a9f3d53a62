// The credential the Google side passes between exchange, cache and endpoints.
import type { Secret } from '../../base/secret.ts';

/** An OAuth access token or an ID token, with when it stops being valid. */
export interface GcpToken {
  readonly token: Secret;
  readonly expiresAt: Date;
  /** Who it acts as (the impersonated service account, or the federated principal) and for which SPIFFE ID: for the audit event. */
  readonly principal?: string | undefined;
  readonly spiffeId?: string | undefined;
}

/** Scopes as a cache key: deduplicated, sorted, comma-joined. */
export function scopeKey(scopes: readonly string[]): string {
  return [...new Set(scopes)].sort().join(',');
}
