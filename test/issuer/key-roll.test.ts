// Rolling signing keys in a running issuer: files laid out as a Kubernetes Secret mount (`..data`
// symlink swap); a new key signs at once (or after the activation delay), old tokens verify until their
// key is removed; a weak or malformed key refuses the whole new set and the old one stays.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { ManualClock } from '../../src/base/clock.ts';
import { until } from '../helpers/until.ts';
import { AUDIENCES, type Fixture, postToken, rsaKeyPem, startFixture, TRUST_DOMAIN, writeSecret } from './fixture.ts';

const ID = `spiffe://${TRUST_DOMAIN}/ns/default/sa/app`;

async function jwksKids(fx: Fixture): Promise<string[]> {
  const jwks = (await (await fetch(new URL('/spiffe/.well-known/jwks.json', fx.issuer.discoveryUrl))).json()) as {
    keys: Array<{ kid: string }>;
  };
  return jwks.keys.map((k) => k.kid);
}

async function token(fx: Fixture, svid: { certPem: string; keyPem: string }): Promise<string> {
  const answer = await postToken(fx, svid);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return answer.body['access_token'] as string;
}

/** Verifies as a verifier whose JWKS cache is empty: a fresh remote set per call. */
function verify(fx: Fixture, jwt: string, at?: ManualClock): Promise<unknown> {
  const jwks = createRemoteJWKSet(new URL('/spiffe/.well-known/jwks.json', fx.issuer.discoveryUrl));
  return jwtVerify(jwt, jwks, {
    issuer: fx.config.url,
    audience: AUDIENCES[0] ?? '',
    ...(at ? { currentDate: new Date(at.now()) } : {}),
  });
}

const kidOf = (jwt: string): string | undefined => decodeProtectedHeader(jwt).kid;

test('key roll in a Secret mount: add → the new key signs, old tokens verify; remove → they stop; bad keys are refused', async (t) => {
  const keyA = rsaKeyPem();
  const fx = await startFixture(t, { keys: { '2026-01.pem': keyA }, secretLayout: true });
  const svid = await fx.ca.issueX509Svid({ spiffeId: ID });
  const [kidA] = await jwksKids(fx);
  const t1 = await token(fx, svid);
  assert.equal(kidOf(t1), kidA);

  // Add a newer key (by name): published and signing once the watcher has seen the swap.
  const keyB = rsaKeyPem();
  await writeSecret(fx.keysDir, { '2026-01.pem': keyA, '2026-02.pem': keyB });
  await until(async () => (await jwksKids(fx)).length === 2, 'the JWKS holds both keys');
  const kidB = (await jwksKids(fx)).find((k) => k !== kidA);
  const t2 = await token(fx, svid);
  assert.equal(kidOf(t2), kidB);
  await verify(fx, t1);
  await verify(fx, t2);

  // A weak key in the next version: the whole set is refused, the last good one stays.
  await writeSecret(fx.keysDir, { '2026-01.pem': keyA, '2026-02.pem': keyB, '2026-03.pem': rsaKeyPem(1024) });
  await until(
    async () => /reloads_total\{what="keys",outcome="refused"\} 1/.test(await fx.issuer.metrics.text()),
    'the weak key is refused',
  );
  assert.deepEqual((await jwksKids(fx)).sort(), [kidA, kidB].sort());
  assert.equal(kidOf(await token(fx, svid)), kidB);

  // A malformed key likewise.
  await writeSecret(fx.keysDir, {
    '2026-01.pem': keyA,
    '2026-02.pem': keyB,
    '2026-03.pem': '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n',
  });
  await until(
    async () => /reloads_total\{what="keys",outcome="refused"\} 2/.test(await fx.issuer.metrics.text()),
    'the malformed key is refused',
  );
  assert.equal(kidOf(await token(fx, svid)), kidB);

  // Retire the old key: tokens it signed stop verifying, the new key's still do.
  await writeSecret(fx.keysDir, { '2026-02.pem': keyB });
  await until(async () => (await jwksKids(fx)).length === 1, 'the JWKS holds only the new key');
  assert.deepEqual(await jwksKids(fx), [kidB]);
  await assert.rejects(verify(fx, t1), { code: 'ERR_JWKS_NO_MATCHING_KEY' });
  await verify(fx, t2);
});

test('with an activation delay, a new key is published first and signs only after the delay', async (t) => {
  const clock = new ManualClock(Date.now());
  const fx = await startFixture(t, { clock, keyActivationDelaySeconds: 300 });
  const svid = await fx.ca.issueX509Svid({ spiffeId: ID, ttlSeconds: 7200, now: new Date(clock.now() - 60_000) });
  const [kidA] = await jwksKids(fx);
  await writeFile(join(fx.keysDir, '2026-02.pem'), rsaKeyPem());
  await fx.issuer.reload();
  const kids = await jwksKids(fx);
  assert.equal(kids.length, 2);
  assert.equal(kidOf(await token(fx, svid)), kidA, 'the old key still signs');
  await clock.advance(299_000);
  assert.equal(kidOf(await token(fx, svid)), kidA);
  await clock.advance(1_000);
  assert.equal(
    kidOf(await token(fx, svid)),
    kids.find((k) => k !== kidA),
    'the new key signs after the delay',
  );
});

test('a key rotated in place (cert-manager tls.key): the replaced key stays published and signs until the new one is past the delay', async (t) => {
  const clock = new ManualClock(Date.now());
  const keyA = rsaKeyPem();
  const fx = await startFixture(t, {
    clock,
    keyActivationDelaySeconds: 600,
    retainReplacedKey: true,
    secretLayout: true,
    keys: { 'tls.key': keyA },
  });
  const svid = await fx.ca.issueX509Svid({ spiffeId: ID, ttlSeconds: 7200, now: new Date(clock.now() - 60_000) });
  const [kidA] = await jwksKids(fx);
  const tA = await token(fx, svid);
  assert.equal(kidOf(tA), kidA);

  // cert-manager renews the Certificate: a new private key in the same file.
  await writeSecret(fx.keysDir, { 'tls.key': rsaKeyPem() });
  await fx.issuer.reload();
  const kids = await jwksKids(fx);
  assert.equal(kids.length, 2, 'the previous and the current key are published');
  assert.equal(kids[0], kidA, 'the previous key first');
  const kidB = kids[1];
  assert.equal(kidOf(await token(fx, svid)), kidA, 'the previous key signs while the clouds may not have the new one');
  await verify(fx, tA, clock);
  await clock.advance(599_000);
  assert.equal(kidOf(await token(fx, svid)), kidA);
  await clock.advance(1_000);
  const tB = await token(fx, svid);
  assert.equal(kidOf(tB), kidB, 'the new key signs after the delay');
  await verify(fx, tA, clock);
  await verify(fx, tB, clock);

  // The next rotation drops the oldest: previous (B) and current (C) only.
  await writeSecret(fx.keysDir, { 'tls.key': rsaKeyPem() });
  await fx.issuer.reload();
  const next = await jwksKids(fx);
  assert.equal(next.length, 2);
  assert.equal(next[0], kidB);
  assert.ok(!next.includes(kidA ?? ''), 'the key before the previous one is gone');
  assert.equal(kidOf(await token(fx, svid)), kidB);
});

test('without retainReplacedKey a key rotated in place is replaced at once (the files layout: removing a key retires it)', async (t) => {
  const fx = await startFixture(t, { secretLayout: true, keys: { 'tls.key': rsaKeyPem() } });
  const [kidA] = await jwksKids(fx);
  await writeSecret(fx.keysDir, { 'tls.key': rsaKeyPem() });
  await fx.issuer.reload();
  const kids = await jwksKids(fx);
  assert.equal(kids.length, 1);
  assert.notEqual(kids[0], kidA);
});

test('a keys directory that is bad at start stops the issuer from starting, naming the file', async (t) => {
  await assert.rejects(
    startFixture(t, { keys: { 'weak.pem': rsaKeyPem(1024) } }),
    /signing key weak\.pem: RSA key of 1024 bits is too weak/,
  );
  await assert.rejects(startFixture(t, { keys: {} }), /holds no signing key/);
});
