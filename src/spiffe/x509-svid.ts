// X.509-SVIDs: load-time checks (go-spiffe x509svid.Parse) and RFC 5280 path validation to the bundle of
// the leaf's own trust domain (x509svid.Verify), per docs/spiffe.md#x509-svid-validation; EKU is not enforced, as in
// go-spiffe.
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { inspect } from 'node:util';
import { ConnectorError } from '../base/errors.ts';
import { Secret } from '../base/secret.ts';
import type { X509Bundle } from './bundle.ts';
import { splitDer } from './bundle.ts';
import { decodePem, encodePem } from './pem.ts';
import { SpiffeId, type TrustDomain } from './spiffe-id.ts';
import { type CertificateFacts, certificateFacts, describeCertificate } from './x509-lib.ts';

/** Most certificates (leaf and intermediates) a presented chain may hold; the path adds the root. */
const MAX_CHAIN_LENGTH = 10;
/** Issuer candidates one path search may try, so a hostile chain cannot make it exponential. */
const MAX_ISSUER_CHECKS = 1000;
const SUPPORTED_KEY_TYPES = new Set(['ec', 'rsa', 'ed25519']);

export type BundleLookup = (td: TrustDomain) => X509Bundle | undefined;

export class X509Svid {
  readonly id: SpiffeId;
  /** Leaf first, then intermediates. */
  readonly certificates: readonly X509Certificate[];
  readonly privateKey: KeyObject;
  /** The latest notBefore in the chain: before it, the SVID does not verify. */
  readonly notBefore: Date;
  /** The earliest notAfter in the chain: after it, the SVID does not verify. */
  readonly notAfter: Date;

  private constructor(id: SpiffeId, certificates: X509Certificate[], privateKey: KeyObject) {
    this.id = id;
    this.certificates = Object.freeze(certificates);
    this.privateKey = privateKey;
    this.notBefore = new Date(Math.max(...certificates.map((c) => c.validFromDate.getTime())));
    this.notAfter = new Date(Math.min(...certificates.map((c) => c.validToDate.getTime())));
  }

  /** PEM chain (leaf first) and a PKCS#8, SEC1 (EC PRIVATE KEY) or PKCS#1 (RSA PRIVATE KEY) PEM key. */
  static parse(certPem: string, keyPem: string): X509Svid {
    const blocks = decodePem(certPem, 'X.509-SVID certificate chain', 'svid_invalid');
    if (blocks.length === 0) {
      throw new ConnectorError('svid_invalid', 'X.509-SVID certificate chain holds no PEM CERTIFICATE block');
    }
    const ders = blocks.map((block, i) => {
      if (block.label !== 'CERTIFICATE') {
        throw new ConnectorError(
          'svid_invalid',
          `X.509-SVID certificate chain: PEM block ${i + 1} is a ${block.label}, not a CERTIFICATE`,
        );
      }
      return block.der;
    });
    return X509Svid.#build(parseCertificates(ders), parsePemKey(keyPem));
  }

  /** Workload API form: concatenated DER chain (leaf first) and a PKCS#8 DER key. */
  static parseDer(chainDer: Uint8Array, pkcs8KeyDer: Uint8Array): X509Svid {
    const ders = splitDer(chainDer, 'X.509-SVID certificate chain', 'svid_invalid');
    if (ders.length === 0) throw new ConnectorError('svid_invalid', 'X.509-SVID certificate chain is empty');
    return X509Svid.#build(parseCertificates(ders), parseKeyDer(pkcs8KeyDer, 'pkcs8'));
  }

  static #build(certificates: X509Certificate[], key: KeyObject): X509Svid {
    const [leaf, ...intermediates] = certificates;
    if (!leaf) throw new ConnectorError('svid_invalid', 'X.509-SVID certificate chain is empty');
    const id = checkLeaf(leaf);
    for (const [i, cert] of intermediates.entries()) checkSigner(cert, `certificate ${i + 2} of the chain`, id);
    const keyType = key.asymmetricKeyType ?? 'unknown';
    if (!SUPPORTED_KEY_TYPES.has(keyType)) {
      throw svidError(id, `the private key is of type ${keyType}; supported are EC, RSA and Ed25519`);
    }
    if (!leaf.checkPrivateKey(key)) {
      throw svidError(
        id,
        'the private key does not match the leaf certificate (was the key file replaced without the certificate?)',
      );
    }
    return new X509Svid(id, certificates, key);
  }

  /** Leaf first, then intermediates, as PEM (a tls.crt). */
  chainPem(): string {
    return this.certificates.map((c) => encodePem('CERTIFICATE', c.raw)).join('');
  }

  keyPkcs8Pem(): Secret {
    return new Secret(this.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  }

  toJSON(): { id: string; notBefore: string; notAfter: string; serial: string | undefined } {
    return {
      id: this.id.toString(),
      notBefore: this.notBefore.toISOString(),
      notAfter: this.notAfter.toISOString(),
      serial: this.certificates[0]?.serialNumber,
    };
  }

  [inspect.custom](): string {
    return `X509Svid(${this.id.toString()}, ${this.certificates.length} certificate(s), notAfter ${this.notAfter.toISOString()}, key [redacted])`;
  }
}

/** Load-time checks of a PEM chain and key (see X509Svid.parse). Does not verify the chain. */
export function parseX509Svid(certPem: string, keyPem: string): X509Svid {
  return X509Svid.parse(certPem, keyPem);
}

/** Load-time checks of a Workload API DER chain and PKCS#8 DER key. Does not verify the chain. */
export function parseX509SvidDer(chainDer: Uint8Array, pkcs8KeyDer: Uint8Array): X509Svid {
  return X509Svid.parseDer(chainDer, pkcs8KeyDer);
}

/**
 * Verifies an X.509-SVID chain (leaf first, then intermediates) at `now`: the leaf rules of
 * docs/spiffe.md#x509-svid-validation, then RFC 5280 path validation to an authority of the bundle of the leaf's
 * trust domain only — signatures, names, validity of every certificate, CA flags, key usage and
 * pathLenConstraint of issuers, unhandled critical extensions. EKU is not enforced (go-spiffe).
 */
export function verifyX509Svid(
  certificates: readonly X509Certificate[],
  bundle: X509Bundle | BundleLookup,
  now: Date,
): { id: SpiffeId; chain: X509Certificate[] } {
  const [leaf, ...rest] = certificates;
  if (!leaf) throw new ConnectorError('svid_invalid', 'X.509-SVID certificate chain is empty');
  const id = checkLeaf(leaf);
  if (certificates.length > MAX_CHAIN_LENGTH) {
    throw svidError(id, `its chain has ${certificates.length} certificates; at most ${MAX_CHAIN_LENGTH} are accepted`);
  }
  const td = id.trustDomain;
  const trusted = typeof bundle === 'function' ? bundle(td) : bundle.trustDomain.equals(td) ? bundle : undefined;
  if (!trusted) {
    const known = typeof bundle === 'function' ? '' : `; the trust bundle is for "${bundle.trustDomain.name}"`;
    throw svidError(id, `there is no trust bundle for its trust domain "${td.name}"${known}`);
  }
  if (!trusted.trustDomain.equals(td)) {
    throw svidError(id, `the bundle looked up for "${td.name}" is for "${trusted.trustDomain.name}"`);
  }

  const linkProblems: string[] = [];
  const pathProblems: string[] = [];
  for (const chain of candidateChains(leaf, rest, trusted, linkProblems)) {
    const problem = checkPath(chain, now);
    if (problem === undefined) return { id, chain };
    pathProblems.push(problem);
  }
  const reason =
    pathProblems[0] ??
    linkProblems[0] ??
    `its chain does not lead to any of the ${trusted.authorities.length} authority(ies) in the trust bundle of "${td.name}"`;
  throw svidError(id, reason);
}

/** The SPIFFE ID of a leaf after the leaf rules of docs/spiffe.md#x509-svid-validation. */
function checkLeaf(leaf: X509Certificate): SpiffeId {
  const facts = readFacts(leaf, 'the leaf certificate');
  if (facts.uris.length === 0) {
    throw new ConnectorError(
      'svid_invalid',
      `X.509-SVID leaf ${describeCertificate(leaf)} has no URI SAN; an SVID carries its SPIFFE ID as exactly one URI SAN`,
    );
  }
  if (facts.uris.length > 1) {
    throw new ConnectorError(
      'svid_invalid',
      `X.509-SVID leaf has ${facts.uris.length} URI SANs (${facts.uris.map((u) => JSON.stringify(u)).join(', ')}); an SVID must have exactly one (X509-SVID.md §2)`,
    );
  }
  const uri = facts.uris[0] ?? '';
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(uri);
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    throw new ConnectorError('svid_invalid', `X.509-SVID leaf URI SAN is not a valid SPIFFE ID: ${detail}`, { cause });
  }
  if (id.isTrustDomainId()) {
    throw svidError(
      id,
      'the leaf carries a trust domain ID with no path; leaf SVIDs need a workload path (X509-SVID.md §3.1)',
    );
  }
  if (facts.ca) {
    throw svidError(id, 'the leaf is a CA certificate (basicConstraints cA=true); SVID leaves must not be CAs');
  }
  if (!facts.keyUsage) {
    throw svidError(
      id,
      'the leaf has no key usage extension; SVID leaves need key usage with digitalSignature (X509-SVID.md §4.3)',
    );
  }
  if (!facts.keyUsage.has('digitalSignature')) {
    throw svidError(id, 'the leaf key usage lacks digitalSignature, which SVID leaves must have (X509-SVID.md §4.3)');
  }
  for (const bit of ['keyCertSign', 'cRLSign'] as const) {
    if (facts.keyUsage.has(bit)) {
      throw svidError(
        id,
        `the leaf key usage includes ${bit}; SVID leaves must not sign certificates or CRLs (X509-SVID.md §4.3)`,
      );
    }
  }
  return id;
}

/** Returns why `cert` may not sign certificates (docs/spiffe.md#x509-svid), or undefined. */
function signerProblem(cert: X509Certificate, facts: CertificateFacts, position: string): string | undefined {
  if (!facts.ca) {
    return `${position} ${describeCertificate(cert)} is not a CA (basicConstraints cA is not true) but is used to sign`;
  }
  if (facts.keyUsage && !facts.keyUsage.has('keyCertSign')) {
    return `${position} ${describeCertificate(cert)} is a CA whose key usage lacks keyCertSign`;
  }
  return undefined;
}

function checkSigner(cert: X509Certificate, position: string, id: SpiffeId): void {
  const facts = readFacts(cert, position);
  const problem = signerProblem(cert, facts, position);
  if (problem) throw svidError(id, problem);
  if (!facts.keyUsage)
    throw svidError(
      id,
      `${position} ${describeCertificate(cert)} has no key usage extension; SVID signing certificates need keyCertSign`,
    );
}

/** Every chain leaf → (intermediates from `pool`) → authority of `bundle`, by name and signature. */
function* candidateChains(
  leaf: X509Certificate,
  pool: readonly X509Certificate[],
  bundle: X509Bundle,
  problems: string[],
): Generator<X509Certificate[]> {
  let budget = MAX_ISSUER_CHECKS;
  const issues = (issuer: X509Certificate, subject: X509Certificate, problems: string[]): boolean => {
    if (budget-- <= 0) {
      throw new ConnectorError(
        'svid_invalid',
        `X.509-SVID refused: building a path through its chain took more than ${MAX_ISSUER_CHECKS} issuer checks`,
      );
    }
    return issuedBy(issuer, subject, problems);
  };
  const walk = function* (path: X509Certificate[]): Generator<X509Certificate[]> {
    const current = path[path.length - 1];
    if (!current || path.length > MAX_CHAIN_LENGTH) return;
    for (const root of bundle.authorities) {
      if (root.raw.equals(current.raw)) continue;
      if (issues(root, current, problems)) yield [...path, root];
    }
    for (const next of pool) {
      if (path.some((c) => c.raw.equals(next.raw))) continue;
      if (bundle.has(next)) {
        // The chain repeats an authority of the bundle: it is the anchor, not an intermediate.
        if (issues(next, current, problems)) yield [...path, next];
        continue;
      }
      if (issues(next, current, problems)) yield* walk([...path, next]);
    }
  };
  yield* walk([leaf]);
}

/** Whether `issuer` issued `subject`: names and key identifiers match (OpenSSL X509_check_issued) and the signature verifies. */
function issuedBy(issuer: X509Certificate, subject: X509Certificate, problems: string[]): boolean {
  if (!subject.checkIssued(issuer)) {
    // Same name and a good signature, yet refused: the issuer's key usage lacks keyCertSign.
    if (issuer.subject === subject.issuer && signatureVerifies(subject, issuer)) {
      problems.push(
        `${describeCertificate(issuer)} signed ${describeCertificate(subject)} but its key usage does not allow signing certificates (no keyCertSign)`,
      );
    }
    return false;
  }
  const signed = signatureVerifies(subject, issuer);
  if (!signed) {
    problems.push(
      `the signature of ${describeCertificate(subject)} does not verify with the key of ${describeCertificate(issuer)}`,
    );
  }
  return signed;
}

function signatureVerifies(subject: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return subject.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/** Checks a structurally complete chain [leaf, ...intermediates, anchor]; returns the problem or undefined. */
function checkPath(chain: readonly X509Certificate[], now: Date): string | undefined {
  const t = now.getTime();
  for (let i = 0; i < chain.length; i++) {
    const cert = chain[i];
    if (!cert) continue;
    const position = i === 0 ? 'the leaf' : i === chain.length - 1 ? 'the trust bundle authority' : `intermediate ${i}`;
    let facts: CertificateFacts;
    try {
      facts = certificateFacts(cert);
    } catch {
      return `the extensions of ${position} ${describeCertificate(cert)} cannot be decoded`;
    }
    if (t < cert.validFromDate.getTime()) {
      return `${position} ${describeCertificate(cert)} is not valid until ${cert.validFromDate.toISOString()} (now is ${now.toISOString()})`;
    }
    if (t > cert.validToDate.getTime()) {
      return `${position} ${describeCertificate(cert)} expired at ${cert.validToDate.toISOString()} (now is ${now.toISOString()})`;
    }
    if (facts.unhandledCritical.length > 0) {
      return `${position} ${describeCertificate(cert)} has critical extension(s) ${facts.unhandledCritical.join(', ')} that this verifier does not process (RFC 5280 §4.2)`;
    }
    if (i === 0) continue;
    const problem = signerProblem(cert, facts, position);
    if (problem) return problem;
    // RFC 5280 §4.2.1.9: at most pathLength intermediates may follow this certificate.
    const below = i - 1;
    if (facts.pathLength !== undefined && below > facts.pathLength) {
      return `${position} ${describeCertificate(cert)} allows ${facts.pathLength} intermediate(s) below it (pathLenConstraint) but the chain has ${below}`;
    }
  }
  return undefined;
}

function parseCertificates(ders: Uint8Array[]): X509Certificate[] {
  return ders.map((der, i) => {
    try {
      return new X509Certificate(der);
    } catch (cause) {
      throw new ConnectorError(
        'svid_invalid',
        `X.509-SVID certificate chain: certificate ${i + 1} is not a valid X.509 certificate`,
        { cause },
      );
    }
  });
}

const KEY_LABELS: Record<string, 'pkcs8' | 'sec1' | 'pkcs1'> = {
  'PRIVATE KEY': 'pkcs8',
  'EC PRIVATE KEY': 'sec1',
  'RSA PRIVATE KEY': 'pkcs1',
};

function parsePemKey(keyPem: string): KeyObject {
  const blocks = decodePem(keyPem, 'X.509-SVID private key', 'svid_invalid').filter((b) => b.label !== 'EC PARAMETERS');
  const [block, extra] = blocks;
  if (!block) throw new ConnectorError('svid_invalid', 'X.509-SVID private key file holds no PEM private key block');
  if (extra) {
    throw new ConnectorError(
      'svid_invalid',
      `X.509-SVID private key file holds ${blocks.length} PEM blocks; expected exactly one private key`,
    );
  }
  if (block.label === 'ENCRYPTED PRIVATE KEY') {
    throw new ConnectorError(
      'svid_invalid',
      'X.509-SVID private key is encrypted; an unencrypted PKCS#8, SEC1 or PKCS#1 key is required',
    );
  }
  const type = KEY_LABELS[block.label];
  if (!type) {
    throw new ConnectorError(
      'svid_invalid',
      `X.509-SVID private key file holds a ${block.label} block; expected PRIVATE KEY (PKCS#8), EC PRIVATE KEY (SEC1) or RSA PRIVATE KEY (PKCS#1)`,
    );
  }
  return parseKeyDer(block.der, type);
}

function parseKeyDer(der: Uint8Array, type: 'pkcs8' | 'sec1' | 'pkcs1'): KeyObject {
  const name = { pkcs8: 'PKCS#8', sec1: 'SEC1', pkcs1: 'PKCS#1' }[type];
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: Buffer.from(der.buffer, der.byteOffset, der.byteLength), format: 'der', type });
  } catch {
    // The cause is dropped on purpose: it is about key bytes.
    throw new ConnectorError(
      'svid_invalid',
      `X.509-SVID private key cannot be read as a ${name} private key (corrupted or truncated?)`,
    );
  }
  // OpenSSL reads any encoding it recognises; hold the PEM label to its word.
  const expected = { pkcs8: undefined, sec1: 'ec', pkcs1: 'rsa' }[type];
  if (expected !== undefined && key.asymmetricKeyType !== expected) {
    throw new ConnectorError(
      'svid_invalid',
      `X.509-SVID private key cannot be read as a ${name} private key: the block holds a ${key.asymmetricKeyType ?? 'unknown'} key, not ${expected}`,
    );
  }
  return key;
}

function readFacts(cert: X509Certificate, position: string): CertificateFacts {
  try {
    return certificateFacts(cert);
  } catch (cause) {
    throw new ConnectorError('svid_invalid', `X.509-SVID: the extensions of ${position} cannot be decoded`, { cause });
  }
}

function svidError(id: SpiffeId, problem: string): ConnectorError {
  return new ConnectorError('svid_invalid', `X.509-SVID ${id.toString()} refused: ${problem}`);
}
