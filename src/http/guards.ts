// Request checks every emulated surface shares (docs/architecture.md#the-metadata-listener): loopback
// Host only (DNS rebinding), no X-Forwarded-For, secrets compared in constant time.
import { createHash, hash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';

/** True when the Host header names a loopback address (127.0.0.0/8, localhost, [::1]) on `port`. */
export function hostIsLoopback(host: string | undefined, port: number): boolean {
  if (!host) return false;
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:]+))(?::(\d{1,5}))?$/.exec(host.trim());
  if (!m) return false;
  const name = (m[1] ?? m[2] ?? '').toLowerCase();
  const hostPort = m[3] === undefined ? 80 : Number(m[3]);
  if (hostPort !== port) return false;
  if (name === 'localhost' || name === '::1') return true;
  return isIP(name) === 4 && name.startsWith('127.');
}

/** A request relayed by a proxy, which the real metadata services refuse. */
export function isForwarded(req: IncomingMessage): boolean {
  return req.headers['x-forwarded-for'] !== undefined || req.headers['forwarded'] !== undefined;
}

/** Compares a presented secret with the expected one in time independent of where they differ. */
export function secretEquals(presented: string | undefined, expected: string): boolean {
  if (presented === undefined) return false;
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b) && presented.length === expected.length;
}

/** secretEquals against a fixed secret whose digest is computed once: for per-request checks. */
export function secretMatcher(expected: string): (presented: string | undefined) => boolean {
  const want = hash('sha256', expected, 'buffer');
  return (presented) => {
    if (presented === undefined) return false;
    return timingSafeEqual(hash('sha256', presented, 'buffer'), want) && presented.length === expected.length;
  };
}
