// Trust bundles: PEM and concatenated-DER X.509 authorities, JWKS / SPIFFE bundle JWT authorities,
// and the DER splitter the Workload API needs.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import { exportJWK, generateKeyPair } from 'jose';
import { ConnectorError } from '../../src/base/errors.ts';
import { JwtBundle, splitDer, X509Bundle } from '../../src/spiffe/bundle.ts';
import { TrustDomain } from '../../src/spiffe/spiffe-id.ts';
import { DevCa } from '../helpers/pki.ts';

const td = TrustDomain.parse('example.org');

function refused(fn: () => unknown, code: string, includes: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConnectorError, String(err));
    assert.equal(err.code, code);
    assert.ok(err.message.includes(includes), `"${err.message}" should include "${includes}"`);
    return true;
  });
}

function der(pem: string): Buffer {
  return new X509Certificate(pem).raw;
}

test('X509Bundle.parsePem: one or more CA certificates, text between blocks ignored', async () => {
  const a = await DevCa.create({ trustDomain: 'example.org' });
  const b = await DevCa.create({ trustDomain: 'example.org', keyType: 'rsa-2048' });
  const bundle = X509Bundle.parsePem(td, `# root A\n${a.certPem}\n# root B\n${b.certPem}${a.certPem}`);
  assert.equal(bundle.trustDomain.name, 'example.org');
  assert.equal(bundle.authorities.length, 2, 'duplicates are dropped');
  assert.ok(bundle.has(new X509Certificate(b.certPem)));
  assert.ok(X509Bundle.parsePem('example.org', bundle.toPem()).equals(bundle));
  assert.equal(Object.isFrozen(bundle.authorities), true);
});

test('X509Bundle.parsePem: refuses empty, garbage, non-CA, keys and truncated PEM', async () => {
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const svid = await ca.issueX509Svid({ spiffeId: 'spiffe://example.org/app' });
  refused(() => X509Bundle.parsePem(td, ''), 'bundle_invalid', 'no PEM CERTIFICATE block');
  refused(() => X509Bundle.parsePem(td, 'hello'), 'bundle_invalid', 'no PEM CERTIFICATE block');
  refused(
    () => X509Bundle.parsePem(td, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'),
    'bundle_invalid',
    'certificate 1 is not a valid X.509 certificate',
  );
  refused(() => X509Bundle.parsePem(td, svid.certPem), 'bundle_invalid', 'is not a CA certificate');
  refused(() => X509Bundle.parsePem(td, ca.certPem.slice(0, 200)), 'bundle_invalid', 'BEGIN without a matching END');
  refused(
    () => X509Bundle.parsePem(td, `${ca.certPem.slice(0, 200)}\n-----END CERTIFICATE-----\n`),
    'bundle_invalid',
    'not valid base64',
  );
  assert.throws(
    () => X509Bundle.parsePem(td, ca.certPem + svid.keyPem),
    (err: unknown) =>
      err instanceof ConnectorError &&
      err.message.includes('is a PRIVATE KEY, not a CERTIFICATE') &&
      !err.message.includes(svid.keyPem.split('\n')[1] ?? 'x'),
  );
});

test('X509Bundle.fromDer: concatenated DER', async () => {
  const a = await DevCa.create({ trustDomain: 'example.org' });
  const b = await DevCa.create({ trustDomain: 'example.org' });
  const bundle = X509Bundle.fromDer(td, Buffer.concat([der(a.certPem), der(b.certPem)]));
  assert.equal(bundle.authorities.length, 2);
  refused(() => X509Bundle.fromDer(td, new Uint8Array()), 'bundle_invalid', 'is empty');
  refused(() => X509Bundle.fromDer(td, der(a.certPem).subarray(0, 100)), 'bundle_invalid', 'truncated');
});

test('splitDer walks short and long ASN.1 lengths and refuses what is not a SEQUENCE', async () => {
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const rsa = await DevCa.create({ trustDomain: 'example.org', keyType: 'rsa-2048' });
  const certs = [der(ca.certPem), der(rsa.certPem)];
  const parts = splitDer(Buffer.concat(certs));
  assert.deepEqual(
    parts.map((p) => Buffer.from(p)),
    certs,
  );
  assert.deepEqual(splitDer(new Uint8Array([0x30, 0x00, 0x30, 0x01, 0x05])), [
    new Uint8Array([0x30, 0x00]),
    new Uint8Array([0x30, 0x01, 0x05]),
  ]);
  assert.deepEqual(splitDer(new Uint8Array()), []);
  refused(() => splitDer(new Uint8Array([0x02, 0x01, 0x00])), 'bundle_invalid', 'is not an ASN.1 SEQUENCE');
  refused(() => splitDer(new Uint8Array([0x30, 0x80, 0x00, 0x00])), 'bundle_invalid', 'indefinite length');
  refused(() => splitDer(new Uint8Array([0x30])), 'bundle_invalid', 'ends before its length');
  refused(() => splitDer(new Uint8Array([0x30, 0x82, 0x01])), 'bundle_invalid', 'ends inside its length');
  refused(() => splitDer(new Uint8Array([0x30, 0x85, 1, 1, 1, 1, 1])), 'bundle_invalid', 'does not fit in 4 bytes');
  refused(
    () => splitDer(new Uint8Array([0x30, 0x05, 0x00]), 'chain', 'svid_invalid'),
    'svid_invalid',
    'chain: DER element 1',
  );
});

async function publicJwk(alg: 'ES256' | 'RS256', kid: string, use?: string) {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, ...(use === undefined ? {} : { use }) };
  return { jwk, privateJwk: { ...(await exportJWK(privateKey)), kid } };
}

test('JwtBundle.parseJwks: SPIFFE bundle with x509-svid and jwt-svid entries', async () => {
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const { jwk } = await publicJwk('ES256', 'k1', 'jwt-svid');
  const doc = {
    spiffe_sequence: 7,
    spiffe_refresh_hint: 300,
    keys: [
      { kty: 'EC', use: 'x509-svid', crv: 'P-256', x5c: [der(ca.certPem).toString('base64')] },
      jwk,
      { kty: 'EC', use: 'enc', kid: 'ignored' },
    ],
  };
  const bundle = JwtBundle.parseJwks(td, JSON.stringify(doc));
  assert.equal(bundle.keys.length, 1);
  assert.equal(bundle.findKey('k1')?.kid, 'k1');
  assert.equal(bundle.findKey('nope'), undefined);
  assert.equal(bundle.sequence, 7);
  assert.equal(bundle.refreshHintSeconds, 300);
  assert.deepEqual(bundle.toJwks(), { keys: [jwk] });
});

test('JwtBundle.parseJwks: plain JWKS, OIDC "sig" keys, empty keys', async () => {
  const a = await publicJwk('RS256', 'a');
  const b = await publicJwk('ES256', 'b', 'sig');
  const bundle = JwtBundle.parseJwks('example.org', JSON.stringify({ keys: [a.jwk, b.jwk] }));
  assert.deepEqual(
    bundle.keys.map((k) => k.kid),
    ['a', 'b'],
  );
  assert.equal(bundle.sequence, undefined);
  assert.equal(JwtBundle.parseJwks(td, '{"keys":[]}').keys.length, 0);
});

test('JwtBundle.parseJwks: refusals', async () => {
  const { jwk, privateJwk } = await publicJwk('ES256', 'k1');
  const bad = (doc: unknown, includes: string) =>
    refused(
      () => JwtBundle.parseJwks(td, typeof doc === 'string' ? doc : JSON.stringify(doc)),
      'bundle_invalid',
      includes,
    );
  bad('not json', 'is not valid JSON');
  bad([], 'is not a JSON object');
  bad({}, 'has no "keys" array');
  bad({ keys: {} }, 'has no "keys" array');
  bad({ keys: [1] }, 'keys[0] is not a JSON object');
  bad({ keys: [{ use: 'jwt-svid' }] }, 'has no "kty"');
  bad({ keys: [{ ...jwk, kid: undefined }] }, 'without a "kid"');
  bad({ keys: [{ ...jwk, kid: '' }] }, 'without a "kid"');
  bad({ keys: [jwk, jwk] }, 'appears twice');
  bad({ keys: [{ ...jwk, use: 5 }] }, '"use" that is not a string');
  bad({ keys: [{ kty: 'EC', kid: 'x', crv: 'P-256', x: 'AA', y: 'AA' }] }, 'is not a usable public key');
  bad({ keys: [], spiffe_sequence: -1 }, '"spiffe_sequence" must be a non-negative integer');
  bad({ keys: [], spiffe_refresh_hint: '300' }, '"spiffe_refresh_hint" must be a non-negative integer');
  assert.throws(
    () => JwtBundle.parseJwks(td, JSON.stringify({ keys: [privateJwk] })),
    (err: unknown) =>
      err instanceof ConnectorError &&
      err.message.includes('holds private or symmetric key material') &&
      !err.message.includes(String(privateJwk.d)),
  );
  bad({ keys: [{ kty: 'oct', kid: 's', k: 'c2VjcmV0' }] }, 'private or symmetric key material');
});

test('X509Bundle.equals: the same trust domain and the same authorities, in any order', async () => {
  const a = await DevCa.create({ trustDomain: 'example.org' });
  const b = await DevCa.create({ trustDomain: 'example.org' });
  const ab = X509Bundle.parsePem(td, a.certPem + b.certPem);
  assert.equal(ab.equals(X509Bundle.parsePem(td, b.certPem + a.certPem)), true);
  assert.equal(ab.equals(X509Bundle.parsePem(td, a.certPem)), false, 'an authority fewer');
  assert.equal(X509Bundle.parsePem(td, a.certPem).equals(ab), false, 'an authority more');
  assert.equal(X509Bundle.parsePem(td, a.certPem).equals(X509Bundle.parsePem(td, b.certPem)), false);
  const c = await DevCa.create({ trustDomain: 'example.org' });
  assert.equal(ab.equals(X509Bundle.parsePem(td, a.certPem + c.certPem)), false, 'one authority replaced');
  assert.equal(ab.equals(X509Bundle.parsePem('other.org', a.certPem + b.certPem)), false, 'another trust domain');
});

test('splitDer: a 4-byte long-form length, and a long-form length that ends the buffer', () => {
  const four = new Uint8Array([0x30, 0x84, 0, 0, 0, 1, 0x05]);
  assert.deepEqual(splitDer(four), [four]);
  const empty = new Uint8Array([0x30, 0x81, 0x00]);
  assert.deepEqual(splitDer(empty), [empty]);
});

test('JwtBundle.parseJwks: frozen keys, zero sequence and hint, and more refusals', async () => {
  const { jwk } = await publicJwk('ES256', 'k1');
  const bundle = JwtBundle.parseJwks(td, JSON.stringify({ keys: [jwk], spiffe_sequence: 0, spiffe_refresh_hint: 0 }));
  assert.equal(bundle.sequence, 0);
  assert.equal(bundle.refreshHintSeconds, 0);
  assert.equal(Object.isFrozen(bundle.keys), true);
  assert.equal(Object.isFrozen(bundle.keys[0]), true);
  const bad = (doc: string, includes: string) =>
    refused(() => JwtBundle.parseJwks(td, doc), 'bundle_invalid', includes);
  bad('null', 'is not a JSON object');
  bad(JSON.stringify({ keys: [null] }), 'keys[0] is not a JSON object');
  bad(JSON.stringify({ keys: [{ ...jwk, kty: '' }] }), 'has no "kty"');
  bad(JSON.stringify({ keys: [{ ...jwk, kid: 7 }] }), 'without a "kid"');
  bad(JSON.stringify({ keys: [], spiffe_sequence: 1.5 }), '"spiffe_sequence" must be a non-negative integer');
  bad(JSON.stringify({ keys: [], spiffe_refresh_hint: -1 }), '"spiffe_refresh_hint" must be a non-negative integer');
});
