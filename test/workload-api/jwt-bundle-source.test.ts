// The JWT bundle behind our Workload API server: a JWKS URL or an OIDC issuer (discovery → jwks_uri),
// polled, the last good bundle kept while fetches fail, a jwks_uri that is not https refused.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { ManualClock } from '../../src/base/clock.ts';
import { silentLogger } from '../../src/ops/logger.ts';
import { startJwksBundleSource } from '../../src/surfaces/workload-api/jwt-bundle-source.ts';
import { until } from '../helpers/until.ts';

async function serve(
  handler: (path: string) => { status: number; body: unknown },
): Promise<{ url: string; server: Server; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    const path = req.url ?? '/';
    hits.push(path);
    const { status, body } = handler(path);
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, hits };
}

test('an OIDC issuer URL is followed through discovery to its JWKS; a JWKS URL is used as it is', async (t) => {
  const signer = await DevOidcSigner.start();
  t.after(() => signer.close());
  const clock = new ManualClock();
  const viaIssuer = await startJwksBundleSource({
    url: signer.issuer,
    trustDomain: 'example.org',
    clock,
    logger: silentLogger(),
  });
  const viaJwks = await startJwksBundleSource({
    url: signer.jwksUri,
    trustDomain: 'example.org',
    clock,
    logger: silentLogger(),
  });
  t.after(async () => {
    await viaIssuer.close();
    await viaJwks.close();
  });
  const published = (await (await fetch(signer.jwksUri)).json()) as { keys: { kid: string }[] };
  assert.deepEqual(
    viaIssuer.current()?.keys.map((k) => k.kid),
    published.keys.map((k) => k.kid),
  );
  assert.deepEqual(
    viaJwks.current()?.keys.map((k) => k.kid),
    published.keys.map((k) => k.kid),
  );
  assert.equal(viaIssuer.current()?.trustDomain.name, 'example.org');
});

test('keeps the last good bundle while fetches fail, retries with backoff, and tells subscribers of a new one', async (t) => {
  let keys: unknown[] = [
    {
      kty: 'EC',
      crv: 'P-256',
      x: 'WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis',
      y: 'y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE',
      kid: 'one',
      use: 'sig',
    },
  ];
  let status = 200;
  const jwks = await serve(() => ({ status, body: { keys } }));
  t.after(() => new Promise<void>((resolve) => jwks.server.close(() => resolve())));
  const clock = new ManualClock();
  const source = await startJwksBundleSource({
    url: `${jwks.url}/keys`,
    trustDomain: 'example.org',
    clock,
    logger: silentLogger(),
    refreshSeconds: 60,
    random: () => 0.5,
  });
  t.after(() => source.close());
  const seen: string[][] = [];
  source.subscribe((b) => seen.push(b.keys.map((k) => String(k.kid))));
  assert.deepEqual(
    source.current()?.keys.map((k) => k.kid),
    ['one'],
  );

  status = 503;
  const before = jwks.hits.length;
  await clock.advance(60_000);
  await until(() => jwks.hits.length > before, 'jwks.hits.length > before');
  assert.deepEqual(
    source.current()?.keys.map((k) => k.kid),
    ['one'],
    'kept while the JWKS is unavailable',
  );

  status = 200;
  keys = [{ ...(keys[0] as object), kid: 'two' }];
  const failing = jwks.hits.length;
  await clock.advance(5_000);
  await until(() => jwks.hits.length > failing && seen.length === 1, 'jwks.hits.length > failing && seen.length === 1');
  assert.deepEqual(seen, [['two']]);
});

test('a discovery document whose jwks_uri is plain http on a non-loopback host is refused', async (t) => {
  const issuer = await serve((path) =>
    path === '/.well-known/openid-configuration'
      ? { status: 200, body: { issuer: 'x', jwks_uri: 'http://keys.example.org/jwks' } }
      : { status: 404, body: {} },
  );
  t.after(() => new Promise<void>((resolve) => issuer.server.close(() => resolve())));
  const source = await startJwksBundleSource({
    url: issuer.url,
    trustDomain: 'example.org',
    clock: new ManualClock(),
    logger: silentLogger(),
  });
  t.after(() => source.close());
  assert.equal(source.current(), undefined);
  assert.deepEqual(issuer.hits, ['/', '/.well-known/openid-configuration'], 'no request to the http jwks_uri');
});
