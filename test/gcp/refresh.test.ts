// Time and identity (ManualClock): a rotated SVID leads to new tokens at once; STS faults keep the
// valid token flowing until it expires and never after; per-scope and per-audience caches are bounded.

import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { ManualClock } from '../../src/base/clock.ts';
import {
  exchangesSettled,
  get,
  jwtSource,
  type Sidecar,
  startGoogleWorld,
  startSidecar,
  until,
  x509Source,
} from './support.ts';

const TOKEN = '/computeMetadata/v1/instance/service-accounts/default/token';

async function token(
  s: Sidecar,
  query = '',
): Promise<{ status: number; token?: string; expiresIn?: number; body: string; retryAfter?: string }> {
  const r = await get(s.port, `${TOKEN}${query}`);
  if (r.status !== 200) return { status: r.status, body: r.body, retryAfter: String(r.headers['retry-after']) };
  const body = JSON.parse(r.body) as { access_token: string; expires_in: number };
  return { status: 200, token: body.access_token, expiresIn: body.expires_in, body: r.body };
}

async function gaugeCredentials(s: Sidecar, prefix: string): Promise<number> {
  const metric = await s.metrics.registry
    .getSingleMetric('spiffe_connector_credential_expiry_timestamp_seconds')
    ?.get();
  return (metric?.values ?? []).filter((v) => String(v.labels.credential).startsWith(prefix)).length;
}

test('JWT path: a new identity gets new tokens at once', async (t) => {
  const clock = new ManualClock(Date.now());
  const world = await startGoogleWorld({ clock });
  t.after(() => world.close());
  const jwt = jwtSource(world, { clock });
  const s = await startSidecar({ world, jwt, clock, serviceAccount: false });
  t.after(() => s.close());
  await until(() => s.provider.readiness().ready, 'first token');
  const first = await token(s);
  assert.equal(
    world.fake.tokenInfo(first.token as string)?.principal.endsWith('/subject/spiffe://example.org/ns/default/sa/app'),
    true,
  );

  jwt.rotate('spiffe://example.org/ns/default/sa/renamed');
  // Served anew without waiting for the old token to expire (the clock stands still). Waited for by what is served:
  // a count of settled exchanges can be another cache entry's, settling before this one's.
  const second = await until(async () => {
    const t = await token(s);
    return t.status === 200 && t.token !== first.token ? t : undefined;
  }, 'a token for the new identity');
  assert.equal(world.fake.stats.lastSts?.subject, 'spiffe://example.org/ns/default/sa/renamed');
  assert.ok(
    world.fake
      .tokenInfo(second.token as string)
      ?.principal.endsWith('/subject/spiffe://example.org/ns/default/sa/renamed'),
  );
});

test('X.509 path: a rotated SVID is written (private dir, atomic files) and exchanged over mTLS at once', async (t) => {
  const clock = new ManualClock(Date.now());
  const world = await startGoogleWorld({ clock });
  t.after(() => world.close());
  const x509 = await x509Source(world, { clock });
  const first = x509.current();
  assert.ok(first);
  const s = await startSidecar({ world, x509, clock, serviceAccount: true });
  t.after(() => s.close());
  await until(() => s.provider.readiness().ready, 'first token');
  const dir = join(s.stateDir, 'gcp-x509');
  assert.equal((await stat(dir)).mode & 0o777, 0o700);
  for (const f of ['tls.crt', 'tls.key', 'certificate_config.json'])
    assert.equal((await stat(join(dir, f))).mode & 0o777, 0o600, f);
  assert.equal(await readFile(join(dir, 'tls.crt'), 'utf8'), first.chainPem());
  const config = JSON.parse(await readFile(join(dir, 'certificate_config.json'), 'utf8')) as {
    cert_configs: { workload: { cert_path: string; key_path: string } };
  };
  assert.deepEqual(config.cert_configs.workload, { cert_path: join(dir, 'tls.crt'), key_path: join(dir, 'tls.key') });
  const before = await token(s);

  const mtls = world.fake.stats.stsByType.mtls ?? 0;
  const settled = await exchangesSettled(s, 'success');
  const second = await x509.rotate('spiffe://example.org/ns/default/sa/next');
  await until(() => (world.fake.stats.stsByType.mtls ?? 0) > mtls, 'mTLS exchange after rotation');
  // The default scope set is refreshed right after the files are written (STS, then
  // generateAccessToken); the cache holds the new token once that exchange has settled.
  await until(async () => (await exchangesSettled(s, 'success')) > settled, 'the new token in the cache');
  await until(() => s.provider.readiness().ready, 'token after rotation');
  assert.equal(await readFile(join(dir, 'tls.crt'), 'utf8'), second.chainPem());
  assert.equal(world.fake.stats.lastSts?.subject, 'spiffe://example.org/ns/default/sa/next');
  const after = await token(s);
  assert.notEqual(after.token, before.token);
  assert.equal(world.fake.tokenInfo(after.token as string)?.kind, 'service-account');
  await s.close();
  await assert.rejects(stat(dir), 'the key copy is removed on stop');
});

test('STS faults: the valid token keeps flowing until it expires, never after; then recovery', async (t) => {
  const clock = new ManualClock(Date.now());
  const world = await startGoogleWorld({ clock });
  t.after(() => world.close());
  const s = await startSidecar({
    world,
    jwt: jwtSource(world, { clock }),
    clock,
    serviceAccount: false,
    options: { random: () => 0 },
  });
  t.after(() => s.close());
  await until(() => s.provider.readiness().ready, 'first token');
  const good = await token(s);
  assert.equal(good.status, 200);

  world.fake.setOutage('sts', { status: 503 });
  const faults = world.fake.stats.faultsServed;
  // Past the refresh point (half life): refreshes fail, the held token is still served.
  await clock.advance(2000 * 1000);
  await until(() => world.fake.stats.faultsServed > faults, 'a failed refresh');
  const during = await token(s);
  assert.equal(during.token, good.token);
  assert.ok((during.expiresIn as number) < (good.expiresIn as number) - 1900);

  // Just before expiry: still the same token, with what is left of its life.
  await clock.advance(((good.expiresIn as number) - 2000 - 3) * 1000);
  const last = await token(s);
  assert.equal(last.token, good.token);
  assert.ok((last.expiresIn as number) >= 1 && (last.expiresIn as number) <= 3);

  // Expired: 503 with Retry-After, and the old token is never served again.
  await clock.advance(5000);
  const expired = await token(s);
  assert.equal(expired.status, 503);
  assert.match(expired.retryAfter as string, /^\d+$/);
  assert.ok(!expired.body.includes(good.token as string));
  assert.equal(s.provider.readiness().ready, false);

  // STS is back: the next retry fetches a new token.
  world.fake.setOutage('sts', undefined);
  const successes = world.fake.stats.stsSuccesses;
  await clock.advance(61_000);
  await until(() => world.fake.stats.stsSuccesses > successes, 'recovery exchange');
  await until(() => s.provider.readiness().ready, 'ready again');
  const recovered = await token(s);
  assert.equal(recovered.status, 200);
  assert.notEqual(recovered.token, good.token);
});

test('per-scope and per-audience caches are bounded: the least recently used set is dropped', async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const s = await startSidecar({
    world,
    jwt: jwtSource(world),
    serviceAccount: true,
    options: { maxScopeSets: 2, maxAudiences: 2 },
  });
  t.after(() => s.close());
  await until(() => s.provider.readiness().ready, 'first token');

  const tokens = new Map<string, string>();
  for (const scope of ['s1', 's2', 's3']) {
    const r = await token(s, `?scopes=${scope}`);
    assert.equal(r.status, 200);
    tokens.set(scope, r.token as string);
    assert.ok((await gaugeCredentials(s, 'access-token:')) <= 2);
  }
  // s1 (and the default set) were dropped: asking again exchanges anew.
  const calls = world.fake.stats.generateAccessToken;
  const again = await token(s, '?scopes=s1');
  assert.equal(again.status, 200);
  assert.notEqual(again.token, tokens.get('s1'));
  assert.equal(world.fake.stats.generateAccessToken, calls + 1);
  // s3 is still held: no exchange.
  assert.equal((await token(s, '?scopes=s3')).token, tokens.get('s3'));
  assert.equal(world.fake.stats.generateAccessToken, calls + 1);

  for (const aud of ['https://a.example', 'https://b.example', 'https://c.example']) {
    const r = await get(s.port, `/computeMetadata/v1/instance/service-accounts/default/identity?audience=${aud}`);
    assert.equal(r.status, 200);
    assert.ok((await gaugeCredentials(s, 'id-token:')) <= 2);
  }
  const idCalls = world.fake.stats.generateIdToken;
  await get(s.port, '/computeMetadata/v1/instance/service-accounts/default/identity?audience=https://a.example');
  assert.equal(world.fake.stats.generateIdToken, idCalls + 1);
});
