// X.509 messages of the Workload API, both ways (docs/spiffe.md#workload-api-streams): an X509SVIDResponse
// read into one verified SVID and its bundle (the same checks as files), and our SVID written as one.
import { ConnectorError } from '../base/errors.ts';
import { X509Bundle } from '../spiffe/bundle.ts';
import { TrustDomain } from '../spiffe/spiffe-id.ts';
import { parseX509SvidDer, verifyX509Svid, type X509Svid } from '../spiffe/x509-svid.ts';
import type { X509BundlesResponseWire, X509SvidResponseWire, X509SvidWire } from './proto.ts';

/** Everything one X509SVIDResponse gave us; each message replaces the whole of it. */
export interface X509Context {
  readonly svid: X509Svid;
  /** The bundle of our trust domain, from the chosen SVID's entry. */
  readonly bundle: X509Bundle;
  /** Federated trust domains' bundles, keyed by trust domain name. */
  readonly federated: ReadonlyMap<string, X509Bundle>;
  readonly hint: string;
  /** Problems with parts that were skipped (a bad federated bundle), for the log. */
  readonly warnings: readonly string[];
}

export interface ReadX509Options {
  readonly trustDomain: TrustDomain;
  /**
   * Take the first SVID with this hint; without one, the first SVID (the default identity,
   * docs/spiffe.md#workload-api-streams).
   */
  readonly hint?: string | undefined;
  readonly now: Date;
}

/**
 * Picks, parses and verifies the SVID of an X509SVIDResponse. Throws ConnectorError('svid_invalid' or
 * 'bundle_invalid') when it cannot be used: the caller keeps its last good context.
 */
export function readX509SvidResponse(message: X509SvidResponseWire, options: ReadX509Options): X509Context {
  const { trustDomain: td, hint, now } = options;
  if (message.svids.length === 0) {
    throw new ConnectorError(
      'svid_invalid',
      'the Workload API sent a message with no X.509-SVID (no identity for this workload, or all redacted)',
    );
  }
  const entry = pick(message.svids, hint);
  const svid = parseX509SvidDer(entry.x509_svid, entry.x509_svid_key);
  if (entry.spiffe_id !== svid.id.toString()) {
    throw new ConnectorError(
      'svid_invalid',
      `the Workload API entry names ${JSON.stringify(entry.spiffe_id)} but its certificate is for ${svid.id.toString()}`,
    );
  }
  if (!svid.id.memberOf(td)) {
    throw new ConnectorError(
      'svid_invalid',
      `the X.509-SVID is for ${svid.id.toString()}, outside the configured trust domain ${td.name}`,
    );
  }
  const bundle = X509Bundle.fromDer(td, entry.bundle);
  verifyX509Svid(svid.certificates, bundle, now);

  const federated = new Map<string, X509Bundle>();
  const warnings: string[] = [];
  for (const [key, der] of Object.entries(message.federated_bundles)) {
    try {
      const other = TrustDomain.parse(key);
      if (other.equals(td)) continue;
      federated.set(other.name, X509Bundle.fromDer(other, der));
    } catch (error) {
      warnings.push(`federated bundle ${JSON.stringify(key)} skipped: ${(error as Error).message}`);
    }
  }
  return { svid, bundle, federated, hint: entry.hint, warnings };
}

/** Our trust domain's bundle from an X509BundlesResponse (keys may be `spiffe://td` or `td`), if present. */
export function readX509BundlesResponse(message: X509BundlesResponseWire, td: TrustDomain): X509Bundle | undefined {
  for (const [key, der] of Object.entries(message.bundles)) {
    let keyTd: TrustDomain;
    try {
      keyTd = TrustDomain.parse(key);
    } catch {
      continue;
    }
    if (keyTd.equals(td)) return X509Bundle.fromDer(td, der);
  }
  return undefined;
}

function pick(svids: readonly X509SvidWire[], hint: string | undefined): X509SvidWire {
  if (hint === undefined) return svids[0] as X509SvidWire;
  // docs/spiffe.md#workload-api-streams: hints are unique per response; if two entries share one, the first wins.
  const found = svids.find((s) => s.hint === hint);
  if (!found) {
    const hints = svids.map((s) => (s.hint === '' ? '(none)' : JSON.stringify(s.hint))).join(', ');
    throw new ConnectorError(
      'svid_invalid',
      `the Workload API sent ${svids.length} X.509-SVID(s), none with hint ${JSON.stringify(hint)} (hints: ${hints})`,
    );
  }
  return found;
}

// ---- building (our server) ----

function concatDer(certs: readonly { raw: Buffer }[]): Buffer {
  return Buffer.concat(certs.map((c) => c.raw));
}

/** One X509SVIDResponse with our SVID: chain as concatenated DER (leaf first), PKCS#8 DER key, bundle DER. */
export function buildX509SvidResponse(
  svid: X509Svid,
  bundle: X509Bundle,
): {
  svids: { spiffe_id: string; x509_svid: Buffer; x509_svid_key: Buffer; bundle: Buffer; hint: string }[];
  crl: Buffer[];
  federated_bundles: Record<string, Buffer>;
} {
  return {
    svids: [
      {
        spiffe_id: svid.id.toString(),
        x509_svid: concatDer(svid.certificates),
        x509_svid_key: svid.privateKey.export({ type: 'pkcs8', format: 'der' }),
        bundle: concatDer(bundle.authorities),
        hint: '',
      },
    ],
    crl: [],
    federated_bundles: {},
  };
}

/** One X509BundlesResponse: our trust domain's bundle, keyed by its ID as SPIRE does (`spiffe://td`). */
export function buildX509BundlesResponse(bundle: X509Bundle): { crl: Buffer[]; bundles: Record<string, Buffer> } {
  return { crl: [], bundles: { [bundle.trustDomain.idString()]: concatDer(bundle.authorities) } };
}
