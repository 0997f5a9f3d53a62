// JWT-SVID header/claim rules and signature validation against a JWT bundle, with tokens signed by
// jose at test time; every refusal is checked for a clear message that never contains the token.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inspect } from 'node:util';
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';
import { ConnectorError } from '../../src/base/errors.ts';
import { JwtBundle } from '../../src/spiffe/bundle.ts';
import { JWT_SVID_ALGORITHMS, parseJwtSvidInsecure, validateJwtSvid } from '../../src/spiffe/jwt-svid.ts';
import { TrustDomain } from '../../src/spiffe/spiffe-id.ts';

const NOW = new Date('2026-03-01T12:00:00Z');
const NOW_S = NOW.getTime() / 1000;
const ID = 'spiffe://example.org/ns/default/sa/app';
const AUD = 'sts.amazonaws.com';

type Alg = (typeof JWT_SVID_ALGORITHMS)[number];
type Signer = { kid: string; alg: Alg; privateKey: CryptoKey; jwk: JWK };

async function signer(alg: Alg, kid = `key-${alg}`): Promise<Signer> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, use: 'jwt-svid' } };
}

function claims(over: JWTPayload = {}): JWTPayload {
  return { sub: ID, aud: AUD, exp: NOW_S + 300, iat: NOW_S, iss: 'https://oidc.example.org', ...over };
}

async function sign(s: Signer, payload: JWTPayload = claims(), header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: s.alg, kid: s.kid, typ: 'JWT', ...header }).sign(s.privateKey);
}

function without(payload: JWTPayload, key: string): JWTPayload {
  const copy = { ...payload };
  delete copy[key];
  return copy;
}

function b64(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function bundleOf(td: string, ...signers: Signer[]): JwtBundle {
  return JwtBundle.parseJwks(td, JSON.stringify({ keys: signers.map((s) => s.jwk) }));
}

function refusal(token: string, includes: string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof ConnectorError, `expected a ConnectorError, got ${String(err)}`);
    assert.equal(err.code, 'jwt_svid_invalid');
    assert.ok(err.message.includes(includes), `"${err.message}" should include "${includes}"`);
    const signature = token.split('.')[2];
    if (signature) assert.ok(!err.message.includes(signature), 'the token must not appear in the message');
    assert.ok(!err.message.includes(token));
    return true;
  };
}

test('parseJwtSvidInsecure: a good token', async () => {
  const s = await signer('ES256');
  const token = await sign(s);
  const svid = parseJwtSvidInsecure(token, { now: NOW, audience: AUD });
  assert.equal(svid.id.toString(), ID);
  assert.deepEqual(svid.audience, [AUD]);
  assert.equal(svid.expiresAt.getTime(), (NOW_S + 300) * 1000);
  assert.equal(svid.issuedAt?.getTime(), NOW.getTime());
  assert.equal(svid.issuer, 'https://oidc.example.org');
  assert.equal(svid.algorithm, 'ES256');
  assert.equal(svid.keyId, s.kid);
  assert.equal(svid.claims['sub'], ID);
  assert.equal(Object.isFrozen(svid.claims), true);
  assert.equal(svid.token.reveal(), token);
  // No audience asked: any audience is fine.
  assert.equal(parseJwtSvidInsecure(token, { now: NOW }).id.toString(), ID);
});

test('parseJwtSvidInsecure: optional parts', async () => {
  const s = await signer('RS256');
  const minimal = await new SignJWT({ sub: ID, aud: [AUD, 'other'], exp: NOW_S + 60 })
    .setProtectedHeader({ alg: 'RS256' })
    .sign(s.privateKey);
  const svid = parseJwtSvidInsecure(minimal, { now: NOW, audience: 'other' });
  assert.equal(svid.issuer, undefined);
  assert.equal(svid.issuedAt, undefined);
  assert.equal(svid.keyId, undefined);
  assert.deepEqual(svid.audience, [AUD, 'other']);
  // typ JOSE is allowed too; other claims are kept.
  const jose = await sign(s, claims({ jti: 'abc', extra: { a: [1] } }), { typ: 'JOSE' });
  assert.deepEqual(parseJwtSvidInsecure(jose, { now: NOW }).claims['extra'], { a: [1] });
});

test('parseJwtSvidInsecure: exp leeway (default 30 s) and custom leeway', async () => {
  const s = await signer('ES256');
  const token = await sign(s, claims({ exp: NOW_S - 20 }));
  assert.equal(parseJwtSvidInsecure(token, { now: NOW }).id.toString(), ID);
  assert.throws(
    () => parseJwtSvidInsecure(token, { now: NOW, leewaySeconds: 10 }),
    refusal(token, 'expired at 2026-03-01T11:59:40.000Z'),
  );
  const late = await sign(s, claims({ exp: NOW_S - 31 }));
  assert.throws(() => parseJwtSvidInsecure(late, { now: NOW }), refusal(late, 'expired at'));
});

test('parseJwtSvidInsecure: every refusal', async () => {
  const es = await signer('ES256');
  const hsKey = new TextEncoder().encode('0123456789abcdef0123456789abcdef');
  const hs256 = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256' }).sign(hsKey);
  const none = `${b64({ alg: 'none' })}.${b64(claims())}.`;
  const noneSigned = `${b64({ alg: 'none' })}.${b64(claims())}.c2ln`;
  const good = await sign(es);
  const [h, p, sig] = good.split('.');

  const cases: [string, string][] = [
    [none, 'empty signature'],
    [noneSigned, 'header alg "none" is not one of RS256'],
    [hs256, 'header alg "HS256" is not one of'],
    [await sign(es, without(claims(), 'aud')), 'has no aud claim'],
    [await sign(es, claims({ aud: [] })), 'aud claim is an empty array'],
    [await sign(es, claims({ aud: '' })), 'aud claim is empty'],
    [await sign(es, claims({ aud: [AUD, 5] as unknown as string[] })), 'neither a string nor an array of strings'],
    [await sign(es, without(claims(), 'exp')), 'has no exp claim'],
    [await sign(es, claims({ exp: NOW_S + 0.5 })), 'exp claim is not an integer'],
    [await sign(es, claims({ exp: String(NOW_S + 60) as unknown as number })), 'exp claim is not an integer'],
    [await sign(es, claims({ exp: NOW_S - 3600 })), 'expired at'],
    [await sign(es, claims({ nbf: NOW_S + 3600 })), 'not valid before'],
    [await sign(es, claims({ iat: NOW_S + 3600 })), 'issued in the future'],
    [await sign(es, without(claims(), 'sub')), 'has no sub claim'],
    [await sign(es, claims({ sub: 'spiffe://Example.org/app' })), 'sub claim is not a valid SPIFFE ID'],
    [await sign(es, claims({ sub: 'https://example.org/app' })), 'sub claim is not a valid SPIFFE ID'],
    [await sign(es, claims({ sub: 42 as unknown as string })), 'sub claim is not a string'],
    [await sign(es, claims({ aud: 'someone-else' })), 'does not include "sts.amazonaws.com"'],
    [await sign(es, claims({ iss: 7 as unknown as string })), 'iss claim is not a string'],
    [await sign(es, claims(), { typ: 'at+jwt' }), 'header typ "at+jwt" is neither JWT nor JOSE'],
    [await sign(es, claims(), { crit: ['b64'], b64: true }), '"crit"'],
    [`${h}.${p}`, 'expected 3 dot-separated parts, found 2'],
    [`${h}.${p}.${sig}.x.y`, 'it is a JWE'],
    [`${h}!.${p}.${sig}`, 'header is not base64url'],
    [`${b64('x').slice(0, -1)}.${p}.${sig}`, 'header is not'],
    [`${b64([1])}.${p}.${sig}`, 'header is not a JSON object'],
    [`${h}.${Buffer.from('not json').toString('base64url')}.${sig}`, 'payload is not JSON'],
    [`${h}.${p}.${sig}===`, 'signature is not base64url'],
  ];
  for (const [token, includes] of cases) {
    assert.throws(() => parseJwtSvidInsecure(token, { now: NOW, audience: AUD }), refusal(token, includes), includes);
  }
});

test('validateJwtSvid: each allowed algorithm verifies against the bundle', async () => {
  for (const alg of JWT_SVID_ALGORITHMS) {
    const s = await signer(alg);
    const token = await sign(s);
    const svid = await validateJwtSvid(token, bundleOf('example.org', s), AUD, NOW);
    assert.equal(svid.id.toString(), ID, alg);
  }
});

test('validateJwtSvid: refusals', async () => {
  const a = await signer('ES256', 'a');
  const b = await signer('ES256', 'b');
  const rsa = await signer('RS256', 'r');
  const bundle = bundleOf('example.org', a, rsa);
  const refuse = async (token: string, includes: string, using: Parameters<typeof validateJwtSvid>[1] = bundle) =>
    assert.rejects(validateJwtSvid(token, using, AUD, NOW), refusal(token, includes));

  // Claims are checked before the signature.
  const expired = await sign(a, claims({ exp: NOW_S - 3600 }));
  await refuse(expired, 'expired at');
  const wrongAud = await sign(a, claims({ aud: 'api://AzureADTokenExchange' }));
  await refuse(wrongAud, 'does not include "sts.amazonaws.com"');

  await refuse(await sign(b), 'has no key with kid "b"');
  const noKid = await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256' }).sign(a.privateKey);
  await refuse(noKid, 'has no kid');

  // Signed by b's key, but claiming a's kid.
  const forged = await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', kid: 'a' }).sign(b.privateKey);
  await refuse(forged, 'its signature does not verify with key "a"');

  // A payload swapped under a good signature.
  const [h, , sig] = (await sign(a)).split('.');
  const swapped = `${h}.${b64(claims({ sub: 'spiffe://example.org/admin' }))}.${sig}`;
  await refuse(swapped, 'its signature does not verify');

  // An RSA key named by an ES256 header.
  const mismatched = await new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', kid: 'r' }).sign(a.privateKey);
  await refuse(mismatched, 'key "r" (kty RSA) cannot verify ES256 signatures');

  // A key pinned to another algorithm.
  const pinned = JwtBundle.parseJwks('example.org', JSON.stringify({ keys: [{ ...rsa.jwk, alg: 'PS256' }] }));
  await refuse(await sign(rsa), 'signed with RS256 but key "r" is for PS256', pinned);
  // A key pinned to the token's own algorithm (OIDC-style JWKS publish "alg") verifies it.
  const same = JwtBundle.parseJwks('example.org', JSON.stringify({ keys: [{ ...rsa.jwk, alg: 'RS256' }] }));
  assert.equal((await validateJwtSvid(await sign(rsa), same, AUD, NOW)).id.toString(), ID);

  // An empty bundle trusts nothing.
  await refuse(await sign(a), 'has no key with kid "a"', JwtBundle.parseJwks('example.org', '{"keys":[]}'));
});

test('validateJwtSvid: only the bundle of the sub trust domain', async () => {
  const ours = await signer('ES256', 'ours');
  const theirs = await signer('ES256', 'theirs');
  const ourBundle = bundleOf('example.org', ours);
  const theirBundle = bundleOf('other.org', theirs);
  const theirToken = await sign(theirs, claims({ sub: 'spiffe://other.org/app' }));

  await assert.rejects(
    validateJwtSvid(theirToken, ourBundle, AUD, NOW),
    refusal(theirToken, 'no JWT bundle for its trust domain "other.org"; the JWT bundle is for "example.org"'),
  );
  const lookup = (td: TrustDomain) =>
    td.name === 'example.org' ? ourBundle : td.name === 'other.org' ? theirBundle : undefined;
  assert.equal((await validateJwtSvid(theirToken, lookup, AUD, NOW)).id.toString(), 'spiffe://other.org/app');

  // A key of another trust domain cannot sign for ours, even when a lookup knows both.
  const crossed = await new SignJWT(claims())
    .setProtectedHeader({ alg: 'ES256', kid: 'theirs' })
    .sign(theirs.privateKey);
  await assert.rejects(validateJwtSvid(crossed, lookup, AUD, NOW), refusal(crossed, 'has no key with kid "theirs"'));
  await assert.rejects(
    validateJwtSvid(theirToken, () => ourBundle, AUD, NOW),
    refusal(theirToken, 'the JWT bundle looked up for "other.org" is for "example.org"'),
  );
  await assert.rejects(
    validateJwtSvid(theirToken, () => undefined, AUD, NOW),
    refusal(theirToken, 'no JWT bundle'),
  );
  assert.equal(TrustDomain.parse('other.org').name, 'other.org');
});

test('a JwtSvid never shows its token', async () => {
  const s = await signer('ES256');
  const token = await sign(s);
  const svid = parseJwtSvidInsecure(token, { now: NOW });
  const signature = token.split('.')[2] ?? '';
  for (const shown of [
    JSON.stringify(svid),
    inspect(svid),
    inspect({ svid }, { depth: 5 }),
    String(svid.token),
    JSON.stringify({ t: svid.token }),
  ]) {
    assert.ok(!shown.includes(signature), shown);
    assert.ok(!shown.includes(token.split('.')[1] ?? ''), shown);
  }
  assert.deepEqual(JSON.parse(JSON.stringify(svid)), {
    id: ID,
    audience: [AUD],
    issuer: 'https://oidc.example.org',
    expiresAt: new Date((NOW_S + 300) * 1000).toISOString(),
    keyId: s.kid,
  });
});

test('parseJwtSvidInsecure: a signature cut short is refused for every algorithm (the Workload API and issuer paths too)', async () => {
  for (const alg of JWT_SVID_ALGORITHMS) {
    const s = await signer(alg);
    const token = await sign(s);
    assert.ok(parseJwtSvidInsecure(token, { now: NOW }), `${alg} whole`);
    for (const keep of [1, 2, 3, 4, 40]) {
      const cut = token.slice(0, token.length - keep);
      assert.throws(() => parseJwtSvidInsecure(cut, { now: NOW }), refusal(cut, 'cut short'), `${alg} cut by ${keep}`);
    }
  }
});

test('parseJwtSvidInsecure: time claims at the leeway boundary, exactly', async () => {
  const s = await signer('ES256');
  const ok = async (over: JWTPayload) => parseJwtSvidInsecure(await sign(s, claims(over)), { now: NOW });
  const no = async (over: JWTPayload, includes: string) => {
    const token = await sign(s, claims(over));
    assert.throws(() => parseJwtSvidInsecure(token, { now: NOW }), refusal(token, includes));
  };
  await no({ exp: NOW_S - 30 }, 'expired at');
  assert.ok(await ok({ exp: NOW_S - 29 }));
  assert.ok(await ok({ nbf: NOW_S - 60 }), 'a past nbf');
  assert.ok(await ok({ nbf: NOW_S + 10 }), 'an nbf within the leeway');
  assert.ok(await ok({ nbf: NOW_S + 30 }), 'an nbf at the leeway');
  await no({ nbf: NOW_S + 31 }, 'not valid before');
  assert.ok(await ok({ iat: NOW_S + 30 }), 'an iat at the leeway');
  await no({ iat: NOW_S + 31 }, 'issued in the future');
  await no({ nbf: String(NOW_S) as unknown as number }, 'nbf claim is not a NumericDate');
});

test('parseJwtSvidInsecure: more refusals (kid, audience, segments, signature sizes)', async () => {
  const es = await signer('ES256');
  const es384 = await signer('ES384');
  const good = await sign(es);
  const [h, p, sig = ''] = good.split('.');
  const rsaWith = (bytes: number) =>
    `${b64({ alg: 'RS256', kid: 'r' })}.${p}.${Buffer.alloc(bytes, 1).toString('base64url')}`;
  const cases: [string, string][] = [
    [await sign(es, claims(), { kid: 5 }), 'header kid is not a string'],
    [await sign(es, claims({ aud: [AUD, ''] })), 'neither a string nor an array of strings'],
    [`${b64(null)}.${p}.${sig}`, 'header is not a JSON object'],
    [`${b64(5)}.${p}.${sig}`, 'header is not a JSON object'],
    [`${h}.${b64('spiffe://example.org/app')}.${sig}`, 'payload is not a JSON object'],
    [`${h}.${p}.*${sig.slice(1)}`, 'signature is not base64url'],
    [`${await sign(es384)}A`, 'cut short'],
    [rsaWith(224), 'signatures are the size of the RSA modulus'],
    [rsaWith(2080), 'signatures are the size of the RSA modulus'],
    [rsaWith(260), 'signatures are the size of the RSA modulus'],
  ];
  for (const [token, includes] of cases) {
    assert.throws(() => parseJwtSvidInsecure(token, { now: NOW }), refusal(token, includes), includes);
  }
  // The largest RSA modulus taken: 16384 bits.
  assert.equal(parseJwtSvidInsecure(rsaWith(2048), { now: NOW }).algorithm, 'RS256');
});

test('parseJwtSvidInsecure: claims are frozen all the way down; inspect names the ID', async () => {
  const s = await signer('ES256');
  const svid = parseJwtSvidInsecure(await sign(s, claims({ extra: { a: [1] }, none: null })), { now: NOW });
  const extra = svid.claims['extra'] as { a: number[] };
  assert.equal(Object.isFrozen(extra), true);
  assert.equal(Object.isFrozen(extra.a), true);
  assert.equal(svid.claims['none'], null);
  assert.match(inspect(svid), /^JwtSvid\(spiffe:\/\/example\.org\/ns\/default\/sa\/app, aud \["sts\.amazonaws\.com"\]/);
});
