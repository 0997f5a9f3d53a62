// IMDSv2 session tokens (docs/aws.md "IMDSv2"): the TTL header's grammar, and the tokens themselves:
// random, kept by SHA-256 (a lookup reveals nothing), expiring, bounded in number.
import { hash, randomBytes } from 'node:crypto';
import type { Clock } from '../../base/clock.ts';

export const IMDS_TOKEN_PATH = '/latest/api/token';
export const IMDS_MAX_TTL_SECONDS = 21600;

/** `x-aws-ec2-metadata-token-ttl-seconds`: a whole number 1–21600, required. */
export function parseTtl(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string' || !/^\d{1,5}$/.test(value.trim())) return undefined;
  const ttl = Number(value.trim());
  return ttl >= 1 && ttl <= IMDS_MAX_TTL_SECONDS ? ttl : undefined;
}

/**
 * IMDSv2 session tokens. Bounded: beyond `limit`, expired tokens go first, then tokens never presented
 * (what a flood of PUTs leaves), then the least recently presented, so an app's token in use outlives
 * a flood of fresh ones.
 */
export class ImdsTokens {
  readonly #clock: Clock;
  readonly #limit: number;
  /** digest → expiry and whether it was ever presented; Map order is least recently issued or presented first. */
  readonly #byHash = new Map<string, { expiresAt: number; used: boolean }>();

  constructor(clock: Clock, limit: number) {
    this.#clock = clock;
    this.#limit = limit;
  }

  issue(ttlSeconds: number): string {
    const now = this.#clock.now();
    if (this.#byHash.size >= this.#limit) this.#makeRoom(now);
    const token = randomBytes(40).toString('base64url');
    this.#byHash.set(digest(token), { expiresAt: now + ttlSeconds * 1000, used: false });
    return token;
  }

  /** Whole seconds the presented token has left, or undefined when it is missing, unknown or expired. */
  remainingSeconds(presented: string | string[] | undefined): number | undefined {
    if (typeof presented !== 'string' || presented === '') return undefined;
    const key = digest(presented);
    const held = this.#byHash.get(key);
    if (held === undefined) return undefined;
    const left = held.expiresAt - this.#clock.now();
    this.#byHash.delete(key);
    if (left <= 0) return undefined;
    held.used = true;
    this.#byHash.set(key, held);
    return Math.ceil(left / 1000);
  }

  get size(): number {
    return this.#byHash.size;
  }

  #makeRoom(now: number): void {
    for (const [key, held] of this.#byHash) if (held.expiresAt <= now) this.#byHash.delete(key);
    if (this.#byHash.size < this.#limit) return;
    for (const [key, held] of this.#byHash) {
      if (!held.used) {
        this.#byHash.delete(key);
        return;
      }
    }
    const oldest = this.#byHash.keys().next();
    if (!oldest.done) this.#byHash.delete(oldest.value);
  }
}

function digest(token: string): string {
  return hash('sha256', token, 'base64');
}
