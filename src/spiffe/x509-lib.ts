// The one import point for @peculiar/x509, and what node:crypto cannot tell about a certificate:
// key-usage bits, basic constraints, URI SANs, critical extensions (RFC 5280 §4.2, docs/spiffe.md#x509-svid).
import 'reflect-metadata'; // tsyringe, under @peculiar/x509, refuses to load without it
import type { X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';

export { x509 };

export type KeyUsageBit = 'digitalSignature' | 'keyEncipherment' | 'keyAgreement' | 'keyCertSign' | 'cRLSign';

export interface CertificateFacts {
  /** basicConstraints cA; false when the extension is absent. */
  readonly ca: boolean;
  /** basicConstraints pathLenConstraint, when present. */
  readonly pathLength: number | undefined;
  /** Key-usage bits, or undefined when the extension is absent. */
  readonly keyUsage: ReadonlySet<KeyUsageBit> | undefined;
  /** URI SANs in certificate order. */
  readonly uris: readonly string[];
  /** OIDs of critical extensions this code does not process (RFC 5280 §4.2: such certificates must be refused). */
  readonly unhandledCritical: readonly string[];
}

const OID = {
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
} as const;

const HANDLED = new Set<string>(Object.values(OID));

const BITS: readonly [KeyUsageBit, number][] = [
  ['digitalSignature', x509.KeyUsageFlags.digitalSignature],
  ['keyEncipherment', x509.KeyUsageFlags.keyEncipherment],
  ['keyAgreement', x509.KeyUsageFlags.keyAgreement],
  ['keyCertSign', x509.KeyUsageFlags.keyCertSign],
  ['cRLSign', x509.KeyUsageFlags.cRLSign],
];

const cache = new WeakMap<X509Certificate, CertificateFacts>();

/** Reads the extensions of a node:crypto certificate. Throws (a plain Error) when they cannot be decoded. */
export function certificateFacts(cert: X509Certificate): CertificateFacts {
  const cached = cache.get(cert);
  if (cached) return cached;
  const parsed = new x509.X509Certificate(new Uint8Array(cert.raw));
  const bc = parsed.getExtension(x509.BasicConstraintsExtension);
  const ku = parsed.getExtension(x509.KeyUsagesExtension);
  const uris: string[] = [];
  for (const san of parsed.getExtensions(x509.SubjectAlternativeNameExtension)) {
    for (const name of san.names.items) if (name.type === 'url') uris.push(name.value);
  }
  const facts: CertificateFacts = {
    ca: bc?.ca ?? false,
    pathLength: bc?.pathLength,
    keyUsage: ku ? new Set(BITS.filter(([, bit]) => (ku.usages & bit) !== 0).map(([name]) => name)) : undefined,
    uris,
    unhandledCritical: parsed.extensions.filter((e) => e.critical && !HANDLED.has(e.type)).map((e) => e.type),
  };
  cache.set(cert, facts);
  return facts;
}

/** A short, non-secret name for a certificate in error messages: its subject, else its URI SAN, else its serial. */
export function describeCertificate(cert: X509Certificate): string {
  const subject = cert.subject?.replace(/\n/g, ', ');
  if (subject) return `"${subject}"`;
  try {
    const uri = certificateFacts(cert).uris[0];
    if (uri) return `"${uri}"`;
  } catch {
    // fall through to the serial
  }
  return `serial ${cert.serialNumber}`;
}
