// The credential values the Google side passes between exchange, cache and endpoints.
import type { Lookup } from '../../cache/refreshing-credential.ts';
import type { Secret } from '../../base/secret.ts';

/** An OAuth access token or an ID token, with when it stops being valid. */
export interface GcpToken {
  readonly token: Secret;
  readonly expiresAt: Date;
}

/** What the metadata endpoints ask for; answered from the caches, never by calling Google inline. */
export interface GcpTokens {
  /** The cached access token for these scopes (undefined: the default set) at once; starts fetching a set not seen before. */
  peekAccessToken(scopes: readonly string[] | undefined): Lookup<GcpToken>;
  /** An access token for these scopes (undefined: the default set). A scope set seen first waits for its first exchange. */
  accessToken(scopes: readonly string[] | undefined, signal: AbortSignal): Promise<Lookup<GcpToken>>;
  /** An ID token for `audience`; undefined when no service account is configured (no ID tokens). */
  readonly idToken: ((audience: string, signal: AbortSignal) => Promise<Lookup<GcpToken>>) | undefined;
}

/** Scopes as a cache key: deduplicated, sorted, comma-joined. */
export function scopeKey(scopes: readonly string[]): string {
  return [...new Set(scopes)].sort().join(',');
}
