// A hostile or buggy process in the pod asks for 10,000 keys it made up, on every surface where the caller
// chooses the key. What must hold: the cloud is called at most the new-key bucket's worth, what the sidecar
// holds stays bounded, the pod's own warm credential is still served without a call, and the process answers.
// Loopback only; every loop is bounded in count, and each surface's part in time by the test runner.

import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { test } from 'node:test';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { ManualClock } from '../../src/base/clock.ts';
import { silentLogger } from '../../src/ops/logger.ts';
import { imdsSurface } from '../../src/providers/aws/endpoints.ts';
import { createWorkloadApiSource } from '../../src/sources/workload-api/client.ts';
import { runAzure, startWorld } from '../azure/fixtures.ts';
import { FLAVOR, get, jwtSource, startGoogleWorld, startSidecar } from '../gcp/support.ts';
import { awsCredentials, fixedLookup } from '../helpers/credentials.ts';
import { FakeWorkloadApi, x509Entry } from '../helpers/fake-workload-api.ts';
import { type RawResponse, testListener } from '../helpers/http.ts';
import { DevCa } from '../helpers/pki.ts';

const KEYS = 10_000;
test.after(() => pool.destroy());
/** The new-key bucket's burst (credential-cache.ts default) plus what it refills while a test runs (0.2/s). */
const allowed = (startedAt: number): number => 16 + Math.ceil(((Date.now() - startedAt) / 1000) * 0.2) + 1;

/**
 * One request over kept-alive connections (fetch's pool): 10,000 requests on fresh connections would leave
 * as many sockets in TIME_WAIT and starve the machine of ports.
 */
const pool = new Agent({ keepAlive: true, maxSockets: 100 });

async function kept(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers, agent: pool, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
      );
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within 30 s to ${method} ${path}`)));
    req.on('error', reject);
    req.end();
  });
}

/** Runs `one(i)` for i in [0, n), `width` at a time, and tallies the statuses. */
async function flood(n: number, width: number, one: (i: number) => Promise<RawResponse>): Promise<Map<number, number>> {
  const statuses = new Map<number, number>();
  for (let i = 0; i < n; i += width) {
    const batch = await Promise.all(Array.from({ length: Math.min(width, n - i) }, (_, j) => one(i + j)));
    for (const r of batch) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
  }
  return statuses;
}

test(`GCE: ${KEYS} made-up scope sets and ${KEYS} ID-token audiences call Google at most the bucket's worth; the default token stays served`, {
  timeout: 480_000,
}, async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const s = await startSidecar({ world, jwt: jwtSource(world), serviceAccount: true });
  t.after(() => s.close());
  const token = '/computeMetadata/v1/instance/service-accounts/default/token';
  assert.equal((await get(s.port, token)).status, 200);
  const before = {
    sts: world.fake.stats.stsRequests,
    access: world.fake.stats.generateAccessToken,
    id: world.fake.stats.generateIdToken,
  };

  const started = Date.now();
  const scopes = await flood(KEYS, 100, (i) =>
    kept(s.port, 'GET', `${token}?scopes=https://www.googleapis.com/auth/made-up-${i}`, FLAVOR),
  );
  assert.ok((scopes.get(429) ?? 0) > KEYS * 0.9, `most are throttled: ${JSON.stringify([...scopes])}`);
  assert.ok(
    world.fake.stats.generateAccessToken - before.access <= allowed(started),
    `generateAccessToken calls: ${world.fake.stats.generateAccessToken - before.access}`,
  );

  const idStarted = Date.now();
  const ids = await flood(KEYS, 100, (i) =>
    kept(
      s.port,
      'GET',
      `/computeMetadata/v1/instance/service-accounts/default/identity?audience=https://made-up-${i}.example`,
      FLAVOR,
    ),
  );
  assert.ok((ids.get(429) ?? 0) > KEYS * 0.9, `most are throttled: ${JSON.stringify([...ids])}`);
  assert.ok(
    world.fake.stats.generateIdToken - before.id <= allowed(idStarted),
    `generateIdToken calls: ${world.fake.stats.generateIdToken - before.id}`,
  );

  const callsNow = world.fake.stats.stsRequests + world.fake.stats.generateAccessToken;
  const again = await get(s.port, token);
  assert.equal(again.status, 200, 'the default token is still served');
  assert.equal(
    world.fake.stats.stsRequests + world.fake.stats.generateAccessToken,
    callsNow,
    'from the cache, without a call',
  );
  assert.ok(s.provider.readiness().ready, 'readiness holds');
});

test(`Azure: ${KEYS} made-up resources call Entra at most the bucket's worth; the warm resource stays served`, {
  timeout: 480_000,
}, async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  const warm = 'https://management.azure.com';
  const imds = (resource: string): Promise<RawResponse> =>
    kept(
      run.port,
      'GET',
      `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(resource)}`,
      { Metadata: 'true' },
    );
  assert.equal((await imds(warm)).status, 200);
  const before = world.entra.counters.token;
  const started = Date.now();
  const statuses = await flood(KEYS, 100, (i) => imds(`api://made-up-${i}`));
  assert.ok((statuses.get(429) ?? 0) > KEYS * 0.9, JSON.stringify([...statuses]));
  assert.ok(
    world.entra.counters.token - before <= allowed(started),
    `Entra token calls: ${world.entra.counters.token - before}`,
  );
  const calls = world.entra.counters.token;
  assert.equal((await imds(warm)).status, 200, 'the warm resource is still served');
  assert.equal(world.entra.counters.token, calls, 'from the cache');
  assert.ok(run.provider.readiness().ready);
});

test(`IMDSv2: ${KEYS} token PUTs cannot evict the session token the app is using`, { timeout: 300_000 }, async (t) => {
  const clock = new ManualClock(Date.now());
  const creds = awsCredentials(clock.now());
  const listener = await testListener(t);
  listener.mount([
    imdsSurface({
      credentials: fixedLookup(creds, creds.expiration),
      roleArn: creds.roleArn,
      region: 'eu-west-1',
      clock,
    }),
  ]);
  const put = (): Promise<RawResponse> =>
    kept(listener.port, 'PUT', '/latest/api/token', { 'x-aws-ec2-metadata-token-ttl-seconds': '21600' });
  const appToken = (await put()).body;
  const read = (): Promise<RawResponse> =>
    kept(listener.port, 'GET', '/latest/meta-data/iam/security-credentials/app', {
      'x-aws-ec2-metadata-token': appToken,
    });
  assert.equal((await read()).status, 200);
  for (let round = 0; round < 10; round++) {
    const statuses = await flood(KEYS / 10, 100, () => put());
    assert.ok((statuses.get(429) ?? 0) > 0, 'token PUTs beyond the burst are throttled');
    await clock.advance(30_000); // the bucket refills; the flood goes on
  }
  assert.equal((await read()).status, 200, "the app's token still works");
});

test(`Workload API: ${KEYS} made-up JWT-SVID audiences reach the agent at most the bucket's worth; the clouds' own audience stays cached`, {
  timeout: 480_000,
}, async (t) => {
  const TD = 'example.org';
  const ID = `spiffe://${TD}/ns/default/sa/app`;
  const ca = await DevCa.create({ trustDomain: TD });
  const fake = await FakeWorkloadApi.start();
  const signer = await DevOidcSigner.start();
  const source = createWorkloadApiSource({
    socket: fake.address,
    trustDomain: TD,
    audiences: ['sts.amazonaws.com'],
    clock: new ManualClock(Date.now()),
    logger: silentLogger(),
  });
  t.after(async () => {
    await source.close();
    await fake.close();
    await signer.close();
  });
  fake.onFetchJwt(async (audience) => [
    { spiffe_id: ID, svid: await signer.sign({ sub: ID, aud: audience, ttlSeconds: 3600 }) },
  ]);
  fake.setX509({ svids: [x509Entry(await ca.issueX509Svid({ spiffeId: ID }), ca)] });
  await source.start();
  await source.whenReady();
  await source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(10_000));
  const before = fake.callCount('FetchJWTSVID');
  let throttled = 0;
  for (let i = 0; i < KEYS; i += 200) {
    const results = await Promise.allSettled(
      Array.from({ length: 200 }, (_, j) =>
        source.fetchJwtSvid(`aud-${i + j}-${'x'.repeat(1000)}`, AbortSignal.timeout(10_000)),
      ),
    );
    throttled += results.filter(
      (r) => r.status === 'rejected' && (r.reason as { code?: string }).code === 'throttled',
    ).length;
  }
  assert.ok(throttled > KEYS * 0.9, `throttled: ${throttled}`);
  assert.ok(
    fake.callCount('FetchJWTSVID') - before <= 16 + 2,
    `FetchJWTSVID calls: ${fake.callCount('FetchJWTSVID') - before}`,
  );
  const calls = fake.callCount('FetchJWTSVID');
  await source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(10_000));
  assert.equal(fake.callCount('FetchJWTSVID'), calls, "the clouds' own audience is answered from the cache");
});
