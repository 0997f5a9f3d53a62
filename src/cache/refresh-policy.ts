// When to refresh a credential and how long to wait after a failure (docs/architecture.md#the-credential-cache: refresh
// at half life, never later than a cloud-specific margin before expiry; jittered exponential backoff).

export interface RefreshPolicy {
  /** Refresh no later than this many ms before expiry (AWS: 30 min; tokens: 5 min). */
  marginMs: number;
  /** First backoff after a failure. */
  backoffBaseMs: number;
  /** Longest backoff. */
  backoffMaxMs: number;
  /** Jitter as a fraction of the delay, e.g. 0.1 for ±10 %. */
  jitter: number;
}

export const AWS_POLICY: RefreshPolicy = {
  marginMs: 30 * 60_000,
  backoffBaseMs: 1_000,
  backoffMaxMs: 60_000,
  jitter: 0.1,
};
export const TOKEN_POLICY: RefreshPolicy = {
  marginMs: 5 * 60_000,
  backoffBaseMs: 1_000,
  backoffMaxMs: 60_000,
  jitter: 0.1,
};

/**
 * Delay from `now` until the next refresh of a credential obtained at `issuedAt` that expires at
 * `expiresAt`: half its life, pulled earlier to keep `marginMs`, but never sooner than a tenth of
 * its life (a credential shorter than the margin would otherwise be refreshed in a loop).
 */
export function refreshDelay(
  policy: RefreshPolicy,
  issuedAt: number,
  expiresAt: number,
  now: number,
  random: () => number = Math.random,
): number {
  const life = Math.max(0, expiresAt - issuedAt);
  let at = Math.min(issuedAt + life / 2, expiresAt - policy.marginMs);
  at = Math.max(at, issuedAt + life / 10);
  const delay = Math.max(0, at - now);
  return Math.round(delay * (1 - policy.jitter * random()));
}

/** Backoff before retry number `attempt` (1-based): base·2^(attempt-1), capped, with "equal jitter". */
export function backoffDelay(policy: RefreshPolicy, attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}
