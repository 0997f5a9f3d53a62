// The JWT-SVID file source: re-read before expiry and on change, refusals keep the last good token
// while it is valid, and a token for the wrong audience is an error that says what to fix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/base/clock.ts';
import { DevOidcSigner } from '../../src/dev/oidc-signer.ts';
import { silentLogger } from '../../src/ops/logger.ts';
import { JwtFileSource } from '../../src/sources/jwt-file.ts';
import type { ConnectorError } from '../../src/base/errors.ts';

const ID = 'spiffe://example.org/ns/default/sa/app';

async function setup(t: import('node:test').TestContext) {
  const clock = new ManualClock(Date.now());
  const signer = await DevOidcSigner.start();
  t.after(() => signer.close());
  let content = '';
  let reads = 0;
  const sign = (sub = ID, ttlSeconds = 600) => signer.sign({ sub, aud: ['sts.amazonaws.com', 'api://AzureADTokenExchange'], ttlSeconds, iat: Math.floor(clock.now() / 1000) });
  content = await sign();
  const source = new JwtFileSource({
    file: '/tokens/jwt-svid',
    trustDomain: 'example.org',
    clock,
    logger: silentLogger(),
    watch: false,
    pollIntervalMs: 30_000,
    readFile: async () => {
      reads += 1;
      return `${content}\n`;
    },
  });
  t.after(() => source.close());
  await source.start();
  return { clock, source, sign, set: (c: string) => (content = c), reads: () => reads };
}

test('serves the file token for each of its audiences; another audience says what to fix', async (t) => {
  const { source } = await setup(t);
  const svid = await source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(1000));
  assert.equal(svid.id.toString(), ID);
  await source.fetchJwtSvid('api://AzureADTokenExchange', AbortSignal.timeout(1000));
  await assert.rejects(source.fetchJwtSvid('//iam.googleapis.com/projects/1/x', AbortSignal.timeout(1000)), (e: ConnectorError) => {
    assert.equal(e.code, 'jwt_svid_invalid');
    assert.match(e.message, /is for audience sts\.amazonaws\.com, api:\/\/AzureADTokenExchange, not \/\/iam\.googleapis\.com/);
    return true;
  });
});

test('re-reads on its own before expiry and tells subscribers of a new token', async (t) => {
  const h = await setup(t);
  let changes = 0;
  h.source.subscribe(() => changes++);
  const first = await h.source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(1000));
  h.set(await h.sign());
  const readsBefore = h.reads();
  await h.clock.advance(31_000);
  assert.ok(h.reads() > readsBefore, 'polled');
  const second = await h.source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(1000));
  assert.notEqual(second.token.reveal(), first.token.reveal());
  assert.equal(changes, 1);
});

test('a bad token is refused and the last good one served until it expires, never after', async (t) => {
  const h = await setup(t);
  h.set('not a jwt');
  await h.source.reload('test');
  assert.ok(await h.source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(1000)), 'last good kept');
  h.set(await h.sign('spiffe://other.org/ns/default/sa/app'));
  await h.source.reload('test');
  assert.equal((await h.source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(1000))).id.toString(), ID);
  await h.clock.advance(601_000);
  await assert.rejects(h.source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(1000)), (e: ConnectorError) => e.code === 'identity_unavailable' && /no valid JWT-SVID/.test(e.message));
});
