// Request checks every emulated surface shares (docs/architecture.md#the-metadata-listener): loopback
// Host only (DNS rebinding), no X-Forwarded-For, secrets compared in constant time.
import { createHash, hash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { GCE_METADATA_NAME, LINK_LOCAL_ADDRESSES, LINK_LOCAL_PORT, METADATA_IP } from '../base/link-local.ts';

/** A Host header's name (lowercase, IPv6 without brackets) and port (80 when absent), or undefined. */
function splitHost(host: string | undefined): { name: string; port: number } | undefined {
  if (!host) return undefined;
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:]+))(?::(\d{1,5}))?$/.exec(host.trim());
  if (!m) return undefined;
  return { name: (m[1] ?? m[2] ?? '').toLowerCase(), port: m[3] === undefined ? 80 : Number(m[3]) };
}

/** True when the Host header names a loopback address (127.0.0.0/8, localhost, [::1]) on `port`. */
export function hostIsLoopback(host: string | undefined, port: number): boolean {
  const h = splitHost(host);
  if (!h || h.port !== port) return false;
  if (h.name === 'localhost' || h.name === '::1') return true;
  return isIP(h.name) === 4 && h.name.startsWith('127.');
}

/** Whether a connection came in on one of link-local mode's addresses (server.linkLocal). */
export function isLinkLocalAddress(address: string | undefined): boolean {
  return address !== undefined && LINK_LOCAL_ADDRESSES.includes(address);
}

/**
 * True when the Host header names the link-local address the connection came in on, at port 80 or with no
 * port, as the real services' clients send it; on 169.254.169.254 also the GCE metadata server's name
 * (metadata.google.internal, with or without gcp-metadata's trailing dot). Nothing else: no loopback name,
 * no other address.
 */
export function hostIsLinkLocal(host: string | undefined, localAddress: string): boolean {
  const h = splitHost(host);
  if (!h || h.port !== LINK_LOCAL_PORT || !isLinkLocalAddress(localAddress)) return false;
  if (h.name === localAddress) return true;
  return localAddress === METADATA_IP && (h.name === GCE_METADATA_NAME || h.name === `${GCE_METADATA_NAME}.`);
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
