// X.509-SVID load checks and chain verification, against certificates minted at test time:
// every bad variant of the PKI helper, three key formats, EC/RSA/Ed25519, long chains, trust domains.

import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import { inspect } from 'node:util';
import { x509 } from '@spiffe-connector/dev/x509.ts';
import { ConnectorError } from '../../src/base/errors.ts';
import { Secret } from '../../src/base/secret.ts';
import { X509Bundle } from '../../src/spiffe/bundle.ts';
import type { TrustDomain } from '../../src/spiffe/spiffe-id.ts';
import { parseX509Svid, parseX509SvidDer, verifyX509Svid, X509Svid } from '../../src/spiffe/x509-svid.ts';
import { BAD_SVID_KINDS, type BadSvidKind, DevCa, mintBad } from '../helpers/pki.ts';

const TD = 'example.org';
const ID = 'spiffe://example.org/ns/default/sa/app';
const NOW = new Date('2026-03-01T12:00:00Z');
const HOUR = 3600_000;

function certsOf(pem: string): X509Certificate[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)].map(
    (m) => new X509Certificate(m[0]),
  );
}

function refusal(includes: string | RegExp, code = 'svid_invalid') {
  return (err: unknown): boolean => {
    assert.ok(err instanceof ConnectorError, `expected a ConnectorError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (typeof includes === 'string') {
      assert.ok(err.message.includes(includes), `"${err.message}" should include "${includes}"`);
    } else {
      assert.match(err.message, includes);
    }
    return true;
  };
}

async function rootCa(trustDomain = TD): Promise<DevCa> {
  return DevCa.create({ trustDomain, now: new Date(NOW.getTime() - 24 * HOUR) });
}

test('parse + verify: csi-driver-spiffe shaped SVID (EC P-256, PKCS#8)', async () => {
  const ca = await rootCa();
  const issued = await ca.issueX509Svid({ spiffeId: ID, now: NOW });
  const svid = parseX509Svid(issued.certPem, issued.keyPem);
  assert.equal(svid.id.toString(), ID);
  assert.equal(svid.certificates.length, 1);
  assert.equal(svid.privateKey.asymmetricKeyType, 'ec');
  assert.equal(svid.notBefore.getTime(), NOW.getTime());
  assert.equal(svid.notAfter.getTime(), NOW.getTime() + HOUR);
  const bundle = X509Bundle.parsePem(TD, ca.certPem);
  const { id, chain } = verifyX509Svid(svid.certificates, bundle, NOW);
  assert.equal(id.toString(), ID);
  assert.equal(chain.length, 2);
  assert.ok(chain[1]?.raw.equals(bundle.authorities[0]?.raw ?? Buffer.alloc(0)));
});

for (const [keyType, keyFormat, expectedLabel] of [
  ['ec-p256', 'pkcs8', 'PRIVATE KEY'],
  ['ec-p256', 'sec1', 'EC PRIVATE KEY'],
  ['rsa-2048', 'pkcs8', 'PRIVATE KEY'],
  ['rsa-2048', 'pkcs1', 'RSA PRIVATE KEY'],
  ['ed25519', 'pkcs8', 'PRIVATE KEY'],
] as const) {
  test(`parse: ${keyType} key as ${expectedLabel} (${keyFormat})`, async () => {
    const ca = await rootCa();
    const issued = await ca.issueX509Svid({ spiffeId: ID, now: NOW, keyType, keyFormat });
    assert.ok(issued.keyPem.startsWith(`-----BEGIN ${expectedLabel}-----`));
    const svid = parseX509Svid(issued.certPem, issued.keyPem);
    verifyX509Svid(svid.certificates, X509Bundle.parsePem(TD, ca.certPem), NOW);
    // Whatever came in, the key goes out as PKCS#8.
    const pkcs8 = svid.keyPkcs8Pem();
    assert.ok(pkcs8 instanceof Secret);
    assert.ok(pkcs8.reveal().startsWith('-----BEGIN PRIVATE KEY-----'));
    assert.ok(createPrivateKey(pkcs8.reveal()).equals(svid.privateKey));
  });
}

test('parse: SEC1 key preceded by an EC PARAMETERS block (openssl ecparam -genkey)', async () => {
  const ca = await rootCa();
  const issued = await ca.issueX509Svid({ spiffeId: ID, now: NOW, keyFormat: 'sec1' });
  const params = '-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n';
  assert.equal(parseX509Svid(issued.certPem, params + issued.keyPem).id.toString(), ID);
});

test('an RSA CA signing an EC leaf and the other way round', async () => {
  const rsaCa = await DevCa.create({ trustDomain: TD, keyType: 'rsa-2048', now: NOW });
  const ecLeaf = await rsaCa.issueX509Svid({ spiffeId: ID, now: NOW });
  verifyX509Svid(
    parseX509Svid(ecLeaf.certPem, ecLeaf.keyPem).certificates,
    X509Bundle.parsePem(TD, rsaCa.certPem),
    NOW,
  );
  const ecCa = await rootCa();
  const rsaLeaf = await ecCa.issueX509Svid({ spiffeId: ID, now: NOW, keyType: 'rsa-2048' });
  verifyX509Svid(
    parseX509Svid(rsaLeaf.certPem, rsaLeaf.keyPem).certificates,
    X509Bundle.parsePem(TD, ecCa.certPem),
    NOW,
  );
});

test('parseDer: Workload API concatenated DER chain and PKCS#8 DER key', async () => {
  const ca = await rootCa();
  const intermediate = await ca.issueIntermediate({ now: NOW });
  const issued = await intermediate.issueX509Svid({ spiffeId: ID, now: NOW });
  const chainDer = Buffer.concat(certsOf(issued.certPem).map((c) => c.raw));
  const keyDer = createPrivateKey(issued.keyPem).export({ type: 'pkcs8', format: 'der' });
  const svid = parseX509SvidDer(chainDer, keyDer);
  assert.equal(svid.certificates.length, 2);
  const bundle = X509Bundle.fromDer(TD, new X509Certificate(ca.certPem).raw);
  assert.equal(verifyX509Svid(svid.certificates, bundle, NOW).chain.length, 3);
  assert.throws(() => parseX509SvidDer(new Uint8Array(), keyDer), refusal('chain is empty'));
  assert.throws(() => parseX509SvidDer(chainDer.subarray(0, 50), keyDer), refusal('truncated'));
  assert.throws(
    () => parseX509SvidDer(chainDer, keyDer.subarray(0, 20)),
    refusal('cannot be read as a PKCS#8 private key'),
  );
});

test('a 3-long chain (leaf, intermediate, root) and a 4-long one', async () => {
  const ca = await rootCa();
  const bundle = X509Bundle.parsePem(TD, ca.certPem);
  const one = await ca.issueIntermediate({ now: NOW });
  const leaf3 = await one.issueX509Svid({ spiffeId: ID, now: NOW });
  const svid3 = parseX509Svid(leaf3.certPem, leaf3.keyPem);
  assert.equal(svid3.certificates.length, 2);
  assert.equal(verifyX509Svid(svid3.certificates, bundle, NOW).chain.length, 3);

  const two = await one.issueIntermediate({ now: NOW, keyType: 'rsa-2048' });
  const leaf4 = await two.issueX509Svid({ spiffeId: ID, now: NOW });
  const svid4 = parseX509Svid(leaf4.certPem, leaf4.keyPem);
  assert.equal(verifyX509Svid(svid4.certificates, bundle, NOW).chain.length, 4);

  // Intermediates given out of order are still found.
  const [leaf, i2, i1] = svid4.certificates;
  assert.ok(leaf && i1 && i2);
  assert.equal(verifyX509Svid([leaf, i1, i2], bundle, NOW).chain.length, 4);
  // A missing intermediate leaves no path.
  assert.throws(() => verifyX509Svid([leaf, i2], bundle, NOW), refusal('does not lead to any of the 1 authority(ies)'));
});

test('a chain that repeats the root (tls.crt with ca.crt appended) verifies', async () => {
  const ca = await rootCa();
  const intermediate = await ca.issueIntermediate({ now: NOW });
  const issued = await intermediate.issueX509Svid({ spiffeId: ID, now: NOW });
  const svid = parseX509Svid(issued.certPem + ca.certPem, issued.keyPem);
  assert.equal(svid.certificates.length, 3);
  assert.equal(verifyX509Svid(svid.certificates, X509Bundle.parsePem(TD, ca.certPem), NOW).chain.length, 3);
});

test('pathLenConstraint is enforced', async () => {
  const ca = await rootCa();
  const zero = await ca.issueIntermediate({ now: NOW, override: { basicConstraints: { ca: true, pathLength: 0 } } });
  const below = await zero.issueIntermediate({ now: NOW });
  const issued = await below.issueX509Svid({ spiffeId: ID, now: NOW });
  const svid = parseX509Svid(issued.certPem, issued.keyPem);
  assert.throws(
    () => verifyX509Svid(svid.certificates, X509Bundle.parsePem(TD, ca.certPem), NOW),
    refusal('allows 0 intermediate(s) below it (pathLenConstraint) but the chain has 1'),
  );
  const ok = await (await ca.issueIntermediate({ now: NOW, pathLength: 0 })).issueX509Svid({ spiffeId: ID, now: NOW });
  verifyX509Svid(parseX509Svid(ok.certPem, ok.keyPem).certificates, X509Bundle.parsePem(TD, ca.certPem), NOW);
});

/** What each refusal says: the platform engineer's clue. */
const EXPECTED: Record<BadSvidKind, string> = {
  'leaf-is-ca': 'the leaf is a CA certificate (basicConstraints cA=true); SVID leaves must not be CAs',
  'leaf-key-cert-sign': 'the leaf key usage includes keyCertSign',
  'leaf-crl-sign': 'the leaf key usage includes cRLSign',
  'leaf-no-digital-signature': 'the leaf key usage lacks digitalSignature',
  'leaf-no-key-usage': 'the leaf has no key usage extension',
  'no-uri-san': 'has no URI SAN',
  'two-uri-sans': 'has 2 URI SANs',
  'uri-san-not-spiffe': 'URI SAN is not a valid SPIFFE ID',
  'uri-san-invalid-spiffe-id': 'path cannot contain dot segments',
  'root-path-id': 'trust domain ID with no path',
  expired: 'the leaf "spiffe://example.org/ns/default/sa/app" expired at',
  'not-yet-valid': 'the leaf "spiffe://example.org/ns/default/sa/app" is not valid until',
  'foreign-ca': 'does not lead to any of the 1 authority(ies) in the trust bundle of "example.org"',
  'other-trust-domain':
    'there is no trust bundle for its trust domain "other.example.org"; the trust bundle is for "example.org"',
  'intermediate-not-ca': 'is not a CA (basicConstraints cA is not true)',
  'intermediate-no-key-cert-sign': 'lacks keyCertSign',
  'key-mismatch': 'the private key does not match the leaf certificate',
  'truncated-pem': 'BEGIN without a matching END',
  'unknown-critical-extension': 'has critical extension(s) 1.3.6.1.4.1.99999.1.2.3 that this verifier does not process',
};

/** The same certificates refused by verifyX509Svid alone (the issuer's mTLS path, no key). */
const EXPECTED_AT_VERIFY: Partial<Record<BadSvidKind, string>> = {
  'intermediate-not-ca': 'intermediate 1 "CN=example.org intermediate CA',
  'intermediate-no-key-cert-sign': 'its key usage does not allow signing certificates (no keyCertSign)',
};

for (const kind of BAD_SVID_KINDS) {
  test(`refused: ${kind}`, async () => {
    const ca = await rootCa();
    const bad = await mintBad(ca, kind, { now: NOW });
    const bundle = X509Bundle.parsePem(TD, bad.bundlePem);
    if (bad.refusedAt === 'parse') {
      assert.throws(() => parseX509Svid(bad.certPem, bad.keyPem), refusal(EXPECTED[kind]));
    } else {
      const svid = parseX509Svid(bad.certPem, bad.keyPem);
      assert.throws(() => verifyX509Svid(svid.certificates, bundle, NOW), refusal(EXPECTED[kind]));
    }
    if (kind === 'truncated-pem' || kind === 'key-mismatch') return;
    // Without a key, verification alone refuses it too.
    assert.throws(
      () => verifyX509Svid(certsOf(bad.certPem), bundle, NOW),
      refusal(EXPECTED_AT_VERIFY[kind] ?? EXPECTED[kind]),
    );
  });
}

test('expired or not yet valid intermediates and roots are refused', async () => {
  const ca = await DevCa.create({ trustDomain: TD, now: NOW, ttlSeconds: 3 * 3600 });
  const intermediate = await ca.issueIntermediate({ now: NOW, ttlSeconds: 2 * 3600 });
  const issued = await intermediate.issueX509Svid({ spiffeId: ID, now: NOW, ttlSeconds: 10 * 3600 });
  const svid = parseX509Svid(issued.certPem, issued.keyPem);
  const bundle = X509Bundle.parsePem(TD, ca.certPem);
  assert.equal(svid.notAfter.getTime(), NOW.getTime() + 2 * HOUR, 'notAfter is the earliest in the chain');
  verifyX509Svid(svid.certificates, bundle, new Date(NOW.getTime() + HOUR));
  assert.throws(
    () => verifyX509Svid(svid.certificates, bundle, new Date(NOW.getTime() + 2.5 * HOUR)),
    refusal(/intermediate 1 "CN=example\.org intermediate CA .*" expired at/),
  );
  assert.throws(
    () => verifyX509Svid(svid.certificates, bundle, new Date(NOW.getTime() + 3.5 * HOUR)),
    refusal('expired at'),
  );
  assert.throws(
    () => verifyX509Svid(svid.certificates, bundle, new Date(NOW.getTime() - 1000)),
    refusal('is not valid until 2026-03-01T12:00:00.000Z (now is 2026-03-01T11:59:59.000Z)'),
  );
});

test('verify uses only the bundle of the leaf trust domain', async () => {
  const ours = await rootCa(TD);
  const theirs = await rootCa('other.org');
  const ourBundle = X509Bundle.parsePem(TD, ours.certPem);
  const theirBundle = X509Bundle.parsePem('other.org', theirs.certPem);
  const theirIssued = await theirs.issueX509Svid({ spiffeId: 'spiffe://other.org/app', now: NOW });
  const theirCerts = certsOf(theirIssued.certPem);

  // One bundle: another trust domain's SVID is refused even though it is well formed.
  assert.throws(
    () => verifyX509Svid(theirCerts, ourBundle, NOW),
    refusal('no trust bundle for its trust domain "other.org"'),
  );

  // A lookup picks the bundle by the leaf's trust domain.
  const lookup = (td: TrustDomain) => (td.name === TD ? ourBundle : td.name === 'other.org' ? theirBundle : undefined);
  assert.equal(verifyX509Svid(theirCerts, lookup, NOW).id.toString(), 'spiffe://other.org/app');
  assert.throws(
    () => verifyX509Svid(theirCerts, () => undefined, NOW),
    refusal('no trust bundle for its trust domain "other.org"'),
  );

  // A leaf claiming our trust domain but issued by their CA must not verify, even through a lookup.
  const impostor = await theirs.issueCertificate({
    uris: ['spiffe://example.org/ns/default/sa/app'],
    basicConstraints: { ca: false },
    keyUsage: ['digitalSignature'],
    notBefore: NOW,
    notAfter: new Date(NOW.getTime() + HOUR),
  });
  assert.throws(() => verifyX509Svid([impostor.certificate], lookup, NOW), refusal('does not lead to any'));
  // A lookup that answers with the wrong trust domain's bundle is caught.
  assert.throws(
    () => verifyX509Svid(theirCerts, () => ourBundle, NOW),
    refusal('the bundle looked up for "other.org" is for "example.org"'),
  );
});

test('a leaf whose signature was made by another key with the same issuer name is refused', async () => {
  const real = await rootCa();
  const twin = await rootCa(); // same subject DN, different key
  const issued = await twin.issueX509Svid({ spiffeId: ID, now: NOW });
  assert.throws(
    () => verifyX509Svid(certsOf(issued.certPem), X509Bundle.parsePem(TD, real.certPem), NOW),
    refusal(/does not lead to any|does not verify/),
  );
});

test('key file refusals never show key material', async () => {
  const ca = await rootCa();
  const issued = await ca.issueX509Svid({ spiffeId: ID, now: NOW });
  const keyBody = issued.keyPem.split('\n')[1] ?? '';
  const cases: [string, string][] = [
    ['', 'holds no PEM private key block'],
    [issued.certPem, 'holds a CERTIFICATE block'],
    [issued.keyPem + issued.keyPem, 'holds 2 PEM blocks'],
    [issued.keyPem.replace(/PRIVATE KEY/g, 'ENCRYPTED PRIVATE KEY'), 'is encrypted'],
    [issued.keyPem.replace(/PRIVATE KEY/g, 'RSA PRIVATE KEY'), 'cannot be read as a PKCS#1 private key'],
    [issued.keyPem.slice(0, 60), 'BEGIN without a matching END'],
  ];
  for (const [keyPem, includes] of cases) {
    assert.throws(
      () => parseX509Svid(issued.certPem, keyPem),
      (err: unknown) => {
        refusal(includes)(err);
        assert.ok(!(err as Error).message.includes(keyBody));
        return true;
      },
    );
  }
  assert.throws(() => parseX509Svid('', issued.keyPem), refusal('holds no PEM CERTIFICATE block'));
  assert.throws(
    () => parseX509Svid(issued.keyPem, issued.keyPem),
    refusal('PEM block 1 is a PRIVATE KEY, not a CERTIFICATE'),
  );
  assert.throws(() => verifyX509Svid([], X509Bundle.parsePem(TD, ca.certPem), NOW), refusal('chain is empty'));
});

test('an X509Svid never shows its key in JSON, inspect or string form', async () => {
  const ca = await rootCa();
  const issued = await ca.issueX509Svid({ spiffeId: ID, now: NOW });
  const svid = X509Svid.parse(issued.certPem, issued.keyPem);
  const body = issued.keyPem.split('\n')[1] ?? '';
  const json = JSON.stringify(svid);
  assert.deepEqual(Object.keys(JSON.parse(json) as object), ['id', 'notBefore', 'notAfter', 'serial']);
  for (const shown of [
    json,
    inspect(svid),
    inspect({ svid }, { depth: 5 }),
    String(svid.keyPkcs8Pem()),
    JSON.stringify(svid.keyPkcs8Pem()),
  ]) {
    assert.ok(!shown.includes(body));
    assert.ok(!shown.includes('PRIVATE KEY'));
  }
  assert.match(inspect(svid), /X509Svid\(spiffe:\/\/example\.org\/ns\/default\/sa\/app, 1 certificate\(s\)/);
  // chainPem round-trips.
  assert.equal(
    X509Svid.parse(svid.chainPem(), issued.keyPem).certificates[0]?.fingerprint256,
    svid.certificates[0]?.fingerprint256,
  );
});

test('chains of more than 10 certificates are refused before path building', async () => {
  const ca = await rootCa();
  let issuer = ca;
  for (let i = 0; i < 10; i++) issuer = await issuer.issueIntermediate({ now: NOW });
  const eleven = certsOf((await issuer.issueX509Svid({ spiffeId: ID, now: NOW })).certPem);
  assert.equal(eleven.length, 11);
  const bundle = X509Bundle.parsePem(TD, ca.certPem);
  assert.throws(() => verifyX509Svid(eleven, bundle, NOW), refusal('its chain has 11 certificates; at most 10'));
  // A leaf and nine intermediates, plus the root: the longest path accepted.
  let nine = ca;
  for (let i = 0; i < 9; i++) nine = await nine.issueIntermediate({ now: NOW });
  const ten = certsOf((await nine.issueX509Svid({ spiffeId: ID, now: NOW })).certPem);
  assert.equal(verifyX509Svid(ten, bundle, NOW).chain.length, 11);
});

test('a leaf signed by another key is refused even with the trust bundle root appended to its chain', async () => {
  const real = await rootCa();
  const twin = await rootCa(); // same subject DN, different key
  const issued = await twin.issueX509Svid({ spiffeId: ID, now: NOW });
  assert.throws(
    () => verifyX509Svid(certsOf(issued.certPem + real.certPem), X509Bundle.parsePem(TD, real.certPem), NOW),
    refusal(/does not lead to any|does not verify/),
  );
  // With a genuine leaf the appended root is the anchor, and the verified path (which bounds how long a
  // verification may be remembered) holds every certificate.
  const good = await real.issueX509Svid({ spiffeId: ID, now: NOW });
  const path = verifyX509Svid(certsOf(good.certPem + real.certPem), X509Bundle.parsePem(TD, real.certPem), NOW).chain;
  assert.deepEqual(
    path.map((c) => c.fingerprint256),
    certsOf(good.certPem + real.certPem).map((c) => c.fingerprint256),
  );
});

test('path building is bounded: CA certificates that all issue one another are refused quickly, with the reason', async () => {
  // Nine CA certificates with one name and one key each verify as the issuer of the others and of the
  // leaf: 9! orderings to try, none ending at the bundle's root. The walk stops after its issuer-check budget.
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await crypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const name = 'CN=loop, O=spiffe-connector test';
  const notBefore = new Date(NOW.getTime() - HOUR);
  const notAfter = new Date(NOW.getTime() + HOUR);
  const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey);
  const aki = await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey);
  const mint = (serial: number, leaf: boolean) =>
    x509.X509CertificateGenerator.create({
      serialNumber: (serial + 1).toString(16).padStart(2, '0'),
      subject: leaf ? '' : name,
      issuer: name,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: keys.privateKey,
      signingAlgorithm: alg,
      extensions: [
        new x509.BasicConstraintsExtension(!leaf, undefined, true),
        new x509.KeyUsagesExtension(
          leaf ? x509.KeyUsageFlags.digitalSignature : x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
          true,
        ),
        ...(leaf ? [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }], true)] : []),
        ski,
        aki,
      ],
    });
  const chain = [await mint(0, true), ...(await Promise.all(Array.from({ length: 9 }, (_, i) => mint(i + 1, false))))];
  const certs = chain.map((c) => new X509Certificate(c.toString('pem')));
  const ca = await rootCa();
  const started = Date.now();
  assert.throws(
    () => verifyX509Svid(certs, X509Bundle.parsePem(TD, ca.certPem), NOW),
    refusal('took more than 1000 issuer checks'),
  );
  assert.ok(Date.now() - started < 30_000, 'refused without trying every ordering');
});

test('validity includes notBefore and notAfter themselves (RFC 5280 §4.1.2.5)', async () => {
  const ca = await rootCa();
  const issued = await ca.issueX509Svid({ spiffeId: ID, now: NOW, ttlSeconds: 3600 });
  const bundle = X509Bundle.parsePem(TD, ca.certPem);
  const certs = certsOf(issued.certPem);
  const leaf = certs[0];
  assert.ok(leaf);
  assert.equal(verifyX509Svid(certs, bundle, leaf.validToDate).id.toString(), ID);
  assert.equal(verifyX509Svid(certs, bundle, leaf.validFromDate).id.toString(), ID);
  assert.throws(() => verifyX509Svid(certs, bundle, new Date(leaf.validToDate.getTime() + 1)), refusal('expired'));
});

test('a leaf without basicConstraints is not a CA and verifies (as go-spiffe accepts it)', async () => {
  const ca = await rootCa();
  const issued = await ca.issueCertificate({
    uris: [ID],
    basicConstraints: null,
    keyUsage: ['digitalSignature'],
    notBefore: new Date(NOW.getTime() - HOUR),
    notAfter: new Date(NOW.getTime() + HOUR),
  });
  const svid = parseX509Svid(issued.chainPem, issued.keyPem);
  assert.equal(verifyX509Svid(svid.certificates, X509Bundle.parsePem(TD, ca.certPem), NOW).id.toString(), ID);
});

test('load refusals: an intermediate without key usage, a certificate that is not DER, BEGIN and END that differ', async () => {
  const ca = await rootCa();
  const noKeyUsage = await ca.issueIntermediate({ now: NOW, override: { keyUsage: null } });
  const issued = await noKeyUsage.issueX509Svid({ spiffeId: ID, now: NOW });
  assert.throws(() => parseX509Svid(issued.certPem, issued.keyPem), refusal('certificate 2 of the chain'));
  assert.throws(() => parseX509Svid(issued.certPem, issued.keyPem), refusal(/no key usage extension/));
  const good = await ca.issueX509Svid({ spiffeId: ID, now: NOW });
  const garbage = `-----BEGIN CERTIFICATE-----\n${Buffer.from('not a certificate at all').toString('base64')}\n-----END CERTIFICATE-----\n`;
  assert.throws(
    () => parseX509Svid(good.certPem + garbage, good.keyPem),
    refusal('certificate 2 is not a valid X.509 certificate'),
  );
  const mismatched = good.certPem.replace('-----END CERTIFICATE-----', '-----END PRIVATE KEY-----');
  assert.throws(
    () => parseX509Svid(mismatched, good.keyPem),
    refusal(/begins as "CERTIFICATE" but ends as "PRIVATE KEY"/),
  );
});

test('PEM: written in 64-character lines; read back when its line breaks became spaces', async () => {
  const ca = await rootCa();
  const issued = await ca.issueX509Svid({ spiffeId: ID, now: NOW });
  const svid = parseX509Svid(issued.certPem, issued.keyPem);
  const body = svid
    .chainPem()
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('-----'));
  assert.ok(body.length > 1);
  assert.ok(
    body.slice(0, -1).every((l) => l.length === 64),
    'full lines of 64 characters (RFC 7468 §2)',
  );
  assert.ok((body.at(-1)?.length ?? 0) <= 64);
  const flattened = parseX509Svid(issued.certPem.replaceAll('\n', ' '), issued.keyPem);
  assert.equal(flattened.id.toString(), ID);
});
