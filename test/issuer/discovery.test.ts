// OIDC discovery on the plain listener: the document at <issuer path>/.well-known/openid-configuration
// names the configured issuer and a jwks_uri under it, with cache headers; issuer URLs with and without a path.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { discoveryPaths } from '../../src/issuer/discovery.ts';
import { MALFORMED_TARGETS, sendTarget } from '../helpers/http.ts';
import { startFixture } from './fixture.ts';

test('discovery paths follow OIDC Discovery §4 (trailing slash removed before appending)', () => {
  assert.deepEqual(discoveryPaths('https://oidc.example.org'), {
    discovery: '/.well-known/openid-configuration',
    jwks: '/.well-known/jwks.json',
    jwksUri: 'https://oidc.example.org/.well-known/jwks.json',
  });
  assert.deepEqual(discoveryPaths('https://oidc.example.org/td/example.org/'), {
    discovery: '/td/example.org/.well-known/openid-configuration',
    jwks: '/td/example.org/.well-known/jwks.json',
    jwksUri: 'https://oidc.example.org/td/example.org/.well-known/jwks.json',
  });
});

for (const issuerPath of ['', '/td/example.org']) {
  test(`discovery document and JWKS for an issuer URL ${issuerPath ? 'with a path' : 'without a path'}`, async (t) => {
    const fx = await startFixture(t, { issuerPath });
    assert.ok(fx.issuer.discoveryUrl.endsWith(`${issuerPath}/.well-known/openid-configuration`));
    const res = await fetch(fx.issuer.discoveryUrl);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'public, max-age=300');
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    const doc = (await res.json()) as Record<string, unknown>;
    assert.equal(doc['issuer'], fx.config.url);
    assert.equal(doc['jwks_uri'], `${fx.config.url}/.well-known/jwks.json`);
    assert.deepEqual(doc['id_token_signing_alg_values_supported'], ['RS256']);
    assert.deepEqual(doc['response_types_supported'], ['id_token']);
    assert.deepEqual(doc['subject_types_supported'], ['public']);
    const jwks = await fetch(new URL(`${issuerPath}/.well-known/jwks.json`, fx.issuer.discoveryUrl));
    assert.equal(jwks.status, 200);
    assert.equal(jwks.headers.get('cache-control'), 'public, max-age=300');
    const set = (await jwks.json()) as { keys: Array<Record<string, unknown>> };
    assert.equal(set.keys.length, 1);
    assert.deepEqual(Object.keys(set.keys[0] ?? {}).sort(), ['alg', 'e', 'kid', 'kty', 'n', 'use']);
    const head = await fetch(fx.issuer.discoveryUrl, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
    assert.equal((await fetch(fx.issuer.discoveryUrl, { method: 'POST' })).status, 405);
    assert.equal((await fetch(new URL('/nothing', fx.issuer.discoveryUrl))).status, 404);
  });
}

test('ops listener: healthz, readyz (503 while draining), metrics', async (t) => {
  const fx = await startFixture(t);
  assert.equal((await fetch(`${fx.issuer.opsUrl}/healthz`)).status, 200);
  assert.equal((await fetch(`${fx.issuer.opsUrl}/readyz`)).status, 200);
  await fetch(fx.issuer.discoveryUrl);
  const metrics = await (await fetch(`${fx.issuer.opsUrl}/metrics`)).text();
  assert.match(metrics, /spiffe_connector_issuer_signing_keys 1/);
  assert.match(metrics, /spiffe_connector_issuer_discovery_requests_total\{document="discovery",status="200"\} 1/);
  fx.issuer.beginDrain();
  const ready = await fetch(`${fx.issuer.opsUrl}/readyz`);
  assert.equal(ready.status, 503);
  assert.match(await ready.text(), /shutting down/);
});

test('every issuer listener answers malformed request targets and closes the connection', async (t) => {
  const fx = await startFixture(t);
  const uncaught: unknown[] = [];
  const onUncaught = (e: unknown): void => void uncaught.push(e);
  process.on('uncaughtException', onUncaught);
  t.after(() => process.off('uncaughtException', onUncaught));
  const port = (url: string): number => Number(new URL(url).port);
  for (const target of MALFORMED_TARGETS) {
    for (const [name, url] of [
      ['discovery', fx.issuer.discoveryUrl],
      ['ops', fx.issuer.opsUrl],
    ] as const) {
      const answer = await sendTarget(port(url), target);
      assert.match(answer.statusLine ?? 'no answer', /^HTTP\/1\.1 (400|404|405) /, `${name}: GET ${target}`);
      assert.ok(answer.closed, `${name}: GET ${target}: closed`);
    }
    // The token endpoint takes mTLS clients only: without a certificate it may refuse the handshake, but never hang.
    const token = await sendTarget(port(fx.issuer.tokenUrl), target, { tls: true });
    assert.ok(token.closed, `token: GET ${target}: closed`);
    if (token.statusLine) assert.match(token.statusLine, /^HTTP\/1\.1 (400|401|404|405) /, `token: GET ${target}`);
  }
  assert.deepEqual(uncaught, []);
});
