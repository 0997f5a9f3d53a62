// Upstream faults and identity changes, on a ManualClock: a valid cached credential keeps being served
// while STS fails (5xx, throttling, timeouts, garbage, resets), an expired one never is, and the sidecar
// recovers once STS is back. A new JWT-SVID identity means a new exchange at once.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { type TestContext, test } from 'node:test';
import type { StsFault } from '@spiffe-connector/dev/fake-sts.ts';
import { ManualClock } from '../../src/base/clock.ts';
import { awsJwtSource, raw, startSidecar, startStsWorld, until } from './support.ts';

async function world(t: TestContext, options: { faultsBeforeStart?: StsFault[]; expirationFractionMs?: number } = {}) {
  const clock = new ManualClock();
  const sts = await startStsWorld({
    clock,
    ...(options.expirationFractionMs ? { expirationFractionMs: options.expirationFractionMs } : {}),
  });
  t.after(() => sts.close());
  if (options.faultsBeforeStart) sts.fake.injectFaults(options.faultsBeforeStart);
  const jwt = awsJwtSource(sts.signer, { clock });
  // The request timeout is real time: well above what a good exchange takes on a loaded 2-core machine
  // (the first one also loads the SDK and has the fake fetch the issuer's JWKS), well below the 10 s
  // hang of a { delayMs } fault.
  const sidecar = await startSidecar({ stsEndpoint: sts.fake.url, jwt, clock, stsRequestTimeoutMs: 2_000 });
  t.after(() => sidecar.close());
  const idle = () => until(() => clock.pendingTimers() > 0, 'the refresh to settle');
  await idle();
  const token = await readFile(sidecar.tokenFile, 'utf8');
  const container = () => raw(sidecar.port, 'GET', '/v1/credentials', { authorization: token });
  /** Moves the clock to `target` in steps, letting each refresh attempt finish over real sockets. */
  const advanceTo = async (target: number) => {
    while (clock.now() < target) {
      await clock.advance(Math.min(30_000, target - clock.now()));
      await idle();
    }
  };
  return { clock, ...sts, jwt, sidecar, container, advanceTo, idle };
}

const OUTAGE: StsFault[] = [
  { status: 500 },
  { status: 503 },
  { status: 400, code: 'Throttling' },
  { delayMs: 10_000 },
  { garbage: true },
  { reset: true },
];

test('during an STS outage the cached credentials are served until they expire, never after; then recovery', async (t) => {
  const { clock, fake, sidecar, container, advanceTo, idle } = await world(t);
  const first = fake.issued()[0];
  assert.ok(first);
  assert.ok(sidecar.provider.readiness().ready);
  const requestsBefore = fake.stats.assumeRoleRequests;
  for (let i = 0; i < 20; i++) assert.equal((await container()).status, 200);
  assert.equal(fake.stats.assumeRoleRequests, requestsBefore, 'answering never calls STS');
  fake.injectFaults(Array.from({ length: 600 }, (_, i) => OUTAGE[i % OUTAGE.length] as StsFault));

  await advanceTo(first.expiration - 1_000);
  assert.ok(fake.stats.faultsServed >= 10, `refreshes were attempted and failed (${fake.stats.faultsServed})`);
  assert.equal(fake.stats.assumeRoleSuccesses, 1);
  const stale = await container();
  assert.equal(stale.status, 200);
  assert.equal(JSON.parse(stale.body).AccessKeyId, first.accessKeyId, 'the still-valid credential is served');
  assert.ok(sidecar.provider.readiness().ready);

  await advanceTo(first.expiration);
  const expired = await container();
  assert.equal(expired.status, 503);
  assert.match(String(expired.headers['retry-after']), /^\d+$/);
  assert.equal(JSON.parse(expired.body).code, 'CredentialsUnavailable');
  assert.ok(!expired.body.includes(first.accessKeyId), 'an expired credential is never served');
  const imdsToken = (
    await raw(sidecar.port, 'PUT', '/latest/api/token', { 'x-aws-ec2-metadata-token-ttl-seconds': '60' })
  ).body;
  const imds = await raw(sidecar.port, 'GET', '/latest/meta-data/iam/security-credentials/app', {
    'x-aws-ec2-metadata-token': imdsToken,
  });
  assert.equal(imds.status, 503);
  assert.ok(!imds.body.includes(first.accessKeyId));
  assert.equal(sidecar.provider.readiness().ready, false);

  fake.clearFaults();
  await advanceTo(clock.now() + 60_000);
  await idle();
  const recovered = await container();
  assert.equal(recovered.status, 200);
  const latest = fake.issued().at(-1);
  assert.equal(JSON.parse(recovered.body).AccessKeyId, latest?.accessKeyId);
  assert.notEqual(latest?.accessKeyId, first.accessKeyId);
  assert.ok(sidecar.provider.readiness().ready);
});

test('credentials are refreshed ahead of expiry: clients never see less than 30 minutes left', async (t) => {
  const { clock, fake, container, advanceTo } = await world(t);
  for (let hour = 1; hour <= 4; hour++) {
    await advanceTo(clock.now() + 3_600_000);
    const res = await container();
    assert.equal(res.status, 200);
    const left = Date.parse(JSON.parse(res.body).Expiration) - clock.now();
    assert.ok(left >= 30 * 60_000, `hour ${hour}: ${left / 60_000} minutes left`);
  }
  assert.ok(fake.stats.assumeRoleSuccesses >= 5);
});

test('until the first exchange succeeds: not ready, 503 with Retry-After; a permanent refusal is reported as such', async (t) => {
  const { clock, fake, sidecar, container, advanceTo } = await world(t, {
    faultsBeforeStart: [
      { status: 403, code: 'AccessDenied', message: 'Not authorized to perform sts:AssumeRoleWithWebIdentity' },
    ],
  });
  const readiness = sidecar.provider.readiness();
  assert.equal(readiness.ready, false);
  assert.match(readiness.reason ?? '', /AccessDenied/);
  const res = await container();
  assert.equal(res.status, 503);
  assert.ok(Number(res.headers['retry-after']) >= 1);
  assert.match(JSON.parse(res.body).message, /AccessDenied/);
  assert.equal(fake.stats.assumeRoleRequests, 1, 'a permanent refusal is not retried in a loop');
  await advanceTo(clock.now() + 5 * 60_000);
  assert.equal((await container()).status, 200);
  assert.equal(fake.stats.assumeRoleRequests, 2);
});

test('a JWT-SVID identity change triggers a fresh exchange at once', async (t) => {
  const { fake, jwt, container, idle } = await world(t);
  const before = fake.stats.assumeRoleSuccesses;
  const old = JSON.parse((await container()).body).AccessKeyId;
  jwt.rotate('spiffe://example.org/ns/default/sa/new-app');
  await until(() => fake.stats.assumeRoleSuccesses === before + 1, 'the exchange for the new identity');
  await idle();
  assert.equal(fake.stats.lastSubject, 'spiffe://example.org/ns/default/sa/new-app');
  assert.equal(fake.stats.lastSessionName, 'ns.default.sa.new-app');
  const served = JSON.parse((await container()).body).AccessKeyId;
  assert.notEqual(served, old);
  assert.equal(served, fake.issued().at(-1)?.accessKeyId);
});

test('an upstream Expiration with a fraction of a second: no answer ever carries an Expiration that has passed', async (t) => {
  const { clock, fake, container, advanceTo } = await world(t, { expirationFractionMs: 999 });
  const first = fake.issued()[0];
  assert.ok(first && first.expiration % 1000 === 999);
  fake.injectFaults(Array.from({ length: 600 }, (_, i) => OUTAGE[i % OUTAGE.length] as StsFault));
  const printed = first.expiration - 999; // the whole second every surface prints
  await advanceTo(printed - 1);
  const last = await container();
  assert.equal(last.status, 200);
  assert.ok(Date.parse(JSON.parse(last.body).Expiration) > clock.now(), 'served while its printed expiry is ahead');
  await advanceTo(printed);
  const at = await container();
  assert.equal(at.status, 503, 'not served at the printed second, although STS said 999 ms more');
});
