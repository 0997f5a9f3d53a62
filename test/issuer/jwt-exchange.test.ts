// The sidecar's `spiffe.jwt.exchange` source against a real issuer over mTLS: one token per audience,
// cached; refreshed at half life (ManualClock); kept while the issuer is down until it expires; a
// rotated X.509-SVID is presented from the next request on; every answer is checked before use.
import assert from 'node:assert/strict';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { ManualClock } from '../../src/base/clock.ts';
import { isConnectorError } from '../../src/base/errors.ts';
import { silentLogger } from '../../src/ops/logger.ts';
import { createJwtExchangeSource } from '../../src/sources/jwt-exchange.ts';
import { until } from '../helpers/until.ts';
import { AUDIENCES, type Fixture, startFixture, TRUST_DOMAIN } from './fixture.ts';
import { TestX509Source } from './x509-source.ts';

const ID = `spiffe://${TRUST_DOMAIN}/ns/default/sa/app`;
const AWS = AUDIENCES[0] ?? '';
const AZURE = AUDIENCES[1] ?? '';
const signal = (): AbortSignal => AbortSignal.timeout(20_000);

function issued(fx: Fixture): Promise<number> {
  return fx.issuer.metrics.tokensIssued.get().then((m) => m.values.reduce((n, v) => n + v.value, 0));
}

async function setup(t: import('node:test').TestContext, options: { clock?: ManualClock } = {}) {
  const clock = options.clock ?? new ManualClock(Date.now());
  const fx = await startFixture(t, { clock });
  // SVIDs valid a day, from a minute before the manual clock's start.
  const mint = (path = '/ns/default/sa/app') =>
    fx.ca.issueX509Svid({
      spiffeId: `spiffe://${TRUST_DOMAIN}${path}`,
      ttlSeconds: 86400,
      now: new Date(clock.now() - 60_000),
    });
  const x509 = new TestX509Source(fx.ca, await mint());
  const source = createJwtExchangeSource({
    url: fx.issuer.tokenUrl,
    caPem: fx.ca.certPem,
    x509,
    clock,
    logger: silentLogger(),
  });
  t.after(() => source.close());
  return { clock, fx, x509, source, mint };
}

test('one JWT-SVID per audience, cached: a second fetch does not call the issuer', async (t) => {
  const { fx, source } = await setup(t);
  const a1 = await source.fetchJwtSvid(AWS, signal());
  assert.equal(a1.id.toString(), ID);
  assert.deepEqual(a1.audience, [AWS]);
  assert.equal(a1.issuer, fx.config.url);
  const a2 = await source.fetchJwtSvid(AWS, signal());
  assert.equal(a2.token.reveal(), a1.token.reveal());
  assert.equal(await issued(fx), 1);
  const z = await source.fetchJwtSvid(AZURE, signal());
  assert.deepEqual(z.audience, [AZURE]);
  assert.equal(await issued(fx), 2);
  // Concurrent first fetches of a new audience share one exchange.
  await assert.rejects(
    Promise.all([source.fetchJwtSvid('not-allowed', signal()), source.fetchJwtSvid('not-allowed', signal())]),
    (e: unknown) => {
      assert.ok(isConnectorError(e));
      assert.equal(e.code, 'upstream_rejected');
      assert.equal(e.upstreamCode, 'invalid_target');
      assert.equal(e.upstreamStatus, 400);
      assert.equal(e.retryable, false);
      return true;
    },
  );
  const refusals = await fx.issuer.metrics.refusals.get();
  assert.equal(refusals.values.find((v) => v.labels['reason'] === 'disallowed_audience')?.value, 1);
});

test('refreshed at half life', async (t) => {
  const { clock, fx, source } = await setup(t);
  const first = await source.fetchJwtSvid(AWS, signal());
  await clock.advance(1_600_000); // before the earliest refresh: half life (1800 s) less up to 10 % jitter = 1620 s
  assert.equal(await issued(fx), 1);
  await clock.advance(200_000);
  await until(async () => (await issued(fx)) === 2, 'the refresh reached the issuer');
  await until(
    async () => (await source.fetchJwtSvid(AWS, signal())).token.reveal() !== first.token.reveal(),
    'the new token is served',
  );
  const second = await source.fetchJwtSvid(AWS, signal());
  assert.ok(second.expiresAt > first.expiresAt);
});

test('issuer down: the cached token is served until it expires, then a retryable error', async (t) => {
  const { clock, fx, source } = await setup(t);
  const first = await source.fetchJwtSvid(AWS, signal());
  await fx.issuer.close();
  await clock.advance(1_800_000); // the refresh fails
  await clock.advance(600_000); // retries fail
  const still = await source.fetchJwtSvid(AWS, signal());
  assert.equal(still.token.reveal(), first.token.reveal());
  await clock.advance(first.expiresAt.getTime() - clock.now() + 1_000);
  await assert.rejects(source.fetchJwtSvid(AWS, signal()), (e: unknown) => {
    assert.ok(isConnectorError(e));
    assert.equal(e.code, 'credentials_unavailable');
    assert.equal(e.retryable, true);
    return true;
  });
});

test('a rotated X.509-SVID is presented from the next request on; subscribers hear of it after the new token is held', async (t) => {
  const { source, x509, mint } = await setup(t);
  assert.equal((await source.fetchJwtSvid(AWS, signal())).id.toString(), ID);
  const rotatedId = `spiffe://${TRUST_DOMAIN}/ns/default/sa/app-v2`;
  const heard: string[] = [];
  source.subscribe(() => {
    void source.fetchJwtSvid(AWS, signal()).then((s) => heard.push(s.id.toString()));
  });
  x509.rotate(await mint('/ns/default/sa/app-v2'));
  await until(() => heard.length > 0, 'subscribers were told');
  assert.deepEqual(heard, [rotatedId]);
  assert.equal((await source.fetchJwtSvid(AWS, signal())).id.toString(), rotatedId);
  // A new audience also goes out with the new certificate.
  assert.equal((await source.fetchJwtSvid(AZURE, signal())).id.toString(), rotatedId);
});

test('an X.509-SVID that arrives before anyone asked for a JWT-SVID is not announced as a change (one exchange per cloud at start)', async (t) => {
  const { source, x509, mint } = await setup(t);
  let told = 0;
  source.subscribe(() => {
    told += 1;
  });
  x509.rotate(await mint());
  // The fetch takes the issuer's round trip; the rotation's handling (nothing held to refresh) is long done by then.
  assert.equal((await source.fetchJwtSvid(AWS, signal())).id.toString(), ID);
  assert.equal(told, 0, 'nobody held a JWT-SVID: nothing to tell');
  x509.rotate(await mint());
  await until(() => told === 1, 'subscribers were told of a rotation after a JWT-SVID went out');
});

test('without caFile the system roots are used: a private issuer certificate is not trusted', async (t) => {
  const { fx, x509, clock } = await setup(t);
  const source = createJwtExchangeSource({ url: fx.issuer.tokenUrl, x509, clock, logger: silentLogger() });
  t.after(() => source.close());
  await assert.rejects(source.fetchJwtSvid(AWS, signal()), (e: unknown) => {
    assert.ok(isConnectorError(e));
    assert.equal(e.retryable, true);
    assert.match(e.message, /could not be reached/);
    return true;
  });
});

test("an issuer's answer is checked: sub must be our SPIFFE ID, aud must hold the audience", async (t) => {
  const { fx, x509, clock } = await setup(t);
  const signer = await DevOidcSigner.start();
  t.after(() => signer.close());
  let answer: () => Promise<unknown> = async () => ({});
  const serving = await fx.ca.issueServerCert({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const server = createServer(
    { cert: serving.certPem, key: serving.keyPem, requestCert: true, rejectUnauthorized: false },
    (req, res) => {
      req.resume();
      void answer().then((body) =>
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body)),
      );
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  server.closeIdleConnections();
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
  const token = (sub: string, aud: string) => signer.sign({ sub, aud, iat: Math.floor(clock.now() / 1000) });
  const cases: Array<{ name: string; body: () => Promise<unknown>; code: string }> = [
    {
      name: 'another subject',
      body: async () => ({
        access_token: await token(`spiffe://${TRUST_DOMAIN}/ns/other/sa/x`, AWS),
        issued_token_type: 'urn:ietf:params:oauth:token-type:jwt',
      }),
      code: 'jwt_svid_invalid',
    },
    {
      name: 'another audience',
      body: async () => ({
        access_token: await token(ID, 'something-else'),
        issued_token_type: 'urn:ietf:params:oauth:token-type:jwt',
      }),
      code: 'jwt_svid_invalid',
    },
    {
      name: 'not a JWT type',
      body: async () => ({
        access_token: await token(ID, AWS),
        issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      }),
      code: 'upstream_malformed',
    },
    {
      name: 'no access_token',
      body: async () => ({ issued_token_type: 'urn:ietf:params:oauth:token-type:jwt' }),
      code: 'upstream_malformed',
    },
  ];
  for (const c of cases) {
    answer = c.body;
    const source = createJwtExchangeSource({ url, caPem: fx.ca.certPem, x509, clock, logger: silentLogger() });
    await assert.rejects(source.fetchJwtSvid(AWS, signal()), (e: unknown) => {
      assert.ok(isConnectorError(e), c.name);
      assert.equal(
        e.code === 'credentials_unavailable' ? (e.cause as { code?: string }).code : e.code,
        c.code,
        `${c.name}: ${e.message}`,
      );
      return true;
    });
    await source.close();
  }
  // And a good answer passes.
  answer = async () => ({
    access_token: await token(ID, AWS),
    issued_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    token_type: 'N_A',
    expires_in: 3600,
    spiffe_id: ID,
  });
  const source = createJwtExchangeSource({ url, caPem: fx.ca.certPem, x509, clock, logger: silentLogger() });
  t.after(() => source.close());
  assert.equal((await source.fetchJwtSvid(AWS, signal())).id.toString(), ID);
});
