// Signing keys: what is refused (weak, wrong type, malformed, encrypted, public), the RFC 7638 kid,
// the natural file-name order that decides which key is newest, and the activation delay.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { calculateJwkThumbprint } from 'jose';
import { Secret } from '../../src/base/secret.ts';
import { compareKeyNames, KeySet, parseSigningKey, type SigningKey } from '../../src/issuer/signing-key.ts';
import { ecKeyPem, rsaKeyPem } from './fixture.ts';

const refused = async (pem: string, alg: 'RS256' | 'ES256', pattern: RegExp): Promise<void> => {
  await assert.rejects(parseSigningKey('k.pem', new Secret(pem), alg), (e: Error) => {
    assert.match(e.message, /^signing key k\.pem: /);
    assert.match(e.message, pattern);
    assert.doesNotMatch(e.message, /MII/, 'no key material in the message');
    return true;
  });
};

test('RSA ≥ 2048 and P-256 keys are accepted in PKCS#8, PKCS#1 and SEC1; kid is the RFC 7638 thumbprint', async () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  for (const type of ['pkcs8', 'pkcs1'] as const) {
    const key = await parseSigningKey(
      'a.pem',
      new Secret(rsa.privateKey.export({ type, format: 'pem' }) as string),
      'RS256',
    );
    assert.equal(key.kid, await calculateJwkThumbprint(rsa.publicKey.export({ format: 'jwk' }) as never, 'sha256'));
    assert.deepEqual(Object.keys(key.jwk).sort(), ['alg', 'e', 'kid', 'kty', 'n', 'use']);
    assert.equal(key.jwk.use, 'sig');
    assert.equal(key.jwk.alg, 'RS256');
  }
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  for (const type of ['pkcs8', 'sec1'] as const) {
    const key = await parseSigningKey(
      'b.pem',
      new Secret(ec.privateKey.export({ type, format: 'pem' }) as string),
      'ES256',
    );
    assert.deepEqual(Object.keys(key.jwk).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
    assert.equal(key.jwk.crv, 'P-256');
  }
});

test('weak, mismatched and malformed keys are refused with a clear error', async () => {
  await refused(rsaKeyPem(1024), 'RS256', /1024 bits is too weak; use at least 2048/);
  await refused(ecKeyPem('P-384'), 'ES256', /curve secp384r1; ES256 needs P-256/);
  await refused(ecKeyPem(), 'RS256', /ec key; algorithm RS256 needs RSA/);
  await refused(rsaKeyPem(), 'ES256', /rsa key; algorithm ES256 needs EC P-256/);
  const ed = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  await refused(ed, 'RS256', /ed25519 key/);
  await refused('hello', 'RS256', /no PEM block/);
  const good = rsaKeyPem();
  await refused(good.slice(0, 200) + good.slice(-30), 'RS256', /not a readable PEM private key/);
  await refused(good + good, 'RS256', /2 PEM blocks/);
  const pub = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({
    type: 'spki',
    format: 'pem',
  }) as string;
  await refused(pub, 'RS256', /PUBLIC KEY, not a private key/);
  const encrypted = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
    type: 'pkcs8',
    format: 'pem',
    cipher: 'aes-256-cbc',
    passphrase: 'x',
  }) as string;
  await refused(encrypted, 'RS256', /encrypted/);
});

test('key names sort naturally: the last one is the newest', () => {
  const names = ['key-10.pem', 'key-9.pem', '2026-02-01.pem', '2026-01-15.pem', 'a.pem', 'b.pem'];
  assert.deepEqual([...names].sort(compareKeyNames), [
    '2026-01-15.pem',
    '2026-02-01.pem',
    'a.pem',
    'b.pem',
    'key-9.pem',
    'key-10.pem',
  ]);
});

test('KeySet: the newest signs, all are published; a new key waits for the activation delay', () => {
  const fake = (name: string, kid: string): SigningKey => ({
    name,
    kid,
    alg: 'RS256',
    privateKey: {} as never,
    jwk: { kty: 'RSA', kid, alg: 'RS256', use: 'sig' },
  });
  const old = fake('2026-01.pem', 'A');
  const neu = fake('2026-02.pem', 'B');
  const seen = new Map([
    ['A', 0],
    ['B', 1_000_000],
  ]);
  const set = new KeySet([neu, old], seen);
  assert.deepEqual(
    set.jwks().keys.map((k) => k.kid),
    ['A', 'B'],
  );
  assert.equal(set.signer(1_000_000, 0)?.kid, 'B');
  assert.equal(set.signer(1_000_000, 300_000)?.kid, 'A');
  assert.equal(set.nextActivation(1_000_000, 300_000), 1_300_000);
  assert.equal(set.signer(1_300_000, 300_000)?.kid, 'B');
  assert.equal(set.nextActivation(1_300_000, 300_000), undefined);
  // Every key new at once: the one seen first signs, ties go to the newest name.
  const fresh = new KeySet(
    [old, neu],
    new Map([
      ['A', 5],
      ['B', 5],
    ]),
  );
  assert.equal(fresh.signer(6, 300_000)?.kid, 'B');
});
