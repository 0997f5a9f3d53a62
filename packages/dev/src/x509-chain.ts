// How the Google stand-in checks an X.509 client chain against a pool's trust anchors, with code of its own
// (node:crypto for signatures and validity, @peculiar/x509 for extensions), never the product's verifier:
// every certificate within its validity window at the stand-in's time, each one signed by the next, the last
// one signed by (or being) a trust anchor, every issuer a CA allowed to sign certificates, and the leaf not a
// CA, with exactly one URI SAN that is a SPIFFE ID with a path.
import { X509Certificate } from 'node:crypto';
import { parseSpiffeId } from './spiffe-id.ts';
import { x509 } from './x509.ts';

/** The PEM certificates of `pem`, parsed. */
export function parsePemCertificates(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (block) => new X509Certificate(block),
  );
}

/** Verifies `chain` (leaf first) against `anchors` at `nowMs`; returns the leaf's SPIFFE ID or throws an Error saying why not. */
export function verifyClientChain(
  chain: readonly X509Certificate[],
  anchors: readonly X509Certificate[],
  nowMs: number,
): string {
  const leaf = chain[0];
  if (!leaf) throw new Error('the chain is empty');
  if (anchors.length === 0) throw new Error('the trust store has no trust anchors');
  for (const [i, cert] of chain.entries()) checkValidity(cert, nowMs, i === 0 ? 'the leaf' : `intermediate ${i}`);
  for (let i = 0; i + 1 < chain.length; i++) {
    const child = chain[i] as X509Certificate;
    const parent = chain[i + 1] as X509Certificate;
    checkSigner(parent, `intermediate ${i + 1}`);
    if (!child.checkIssued(parent) || !child.verify(parent.publicKey))
      throw new Error(`certificate ${i} is not signed by certificate ${i + 1}`);
  }
  const top = chain[chain.length - 1] as X509Certificate;
  const anchor =
    anchors.find((a) => a.raw.equals(top.raw)) ?? anchors.find((a) => top.checkIssued(a) && top.verify(a.publicKey));
  if (!anchor) throw new Error('the chain does not lead to a trust anchor of the pool');
  checkValidity(anchor, nowMs, 'the trust anchor');
  checkSigner(anchor, 'the trust anchor');

  if (leaf.ca) throw new Error('the leaf is a CA certificate');
  const uris = uriSans(leaf);
  if (uris.length !== 1) throw new Error(`the leaf has ${uris.length} URI SANs; exactly one SPIFFE ID is required`);
  const id = parseSpiffeId(uris[0] as string);
  if (id.path === '') throw new Error(`the leaf's SPIFFE ID ${id.id} has no path`);
  return id.id;
}

function checkValidity(cert: X509Certificate, nowMs: number, what: string): void {
  if (nowMs < cert.validFromDate.getTime())
    throw new Error(`${what} is not valid before ${cert.validFromDate.toISOString()}`);
  if (nowMs > cert.validToDate.getTime()) throw new Error(`${what} expired at ${cert.validToDate.toISOString()}`);
}

function checkSigner(cert: X509Certificate, what: string): void {
  if (!cert.ca) throw new Error(`${what} is not a CA certificate`);
  const usage = new x509.X509Certificate(new Uint8Array(cert.raw)).getExtension(x509.KeyUsagesExtension);
  if (usage && (usage.usages & x509.KeyUsageFlags.keyCertSign) === 0)
    throw new Error(`${what} may not sign certificates (no keyCertSign key usage)`);
}

function uriSans(cert: X509Certificate): string[] {
  const parsed = new x509.X509Certificate(new Uint8Array(cert.raw));
  return parsed
    .getExtensions(x509.SubjectAlternativeNameExtension)
    .flatMap((san) => san.names.items.filter((n) => n.type === 'url').map((n) => n.value));
}
