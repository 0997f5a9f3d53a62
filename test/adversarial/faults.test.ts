// Every kind of upstream fault, one at a time, on Google (STS) and Entra: 5xx, throttling, a hang past the
// request timeout, a reset connection, a slow answer within it, and garbage. Whatever the fault, a valid
// token keeps being served until it expires and never after (then 503 with Retry-After in the cloud's shape),
// and the sidecar recovers once the upstream heals. The AWS side is in test/aws/faults.test.ts. ManualClock;
// real sockets on loopback.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { EntraFault } from '@spiffe-connector/dev/fake-entra.ts';
import type { GcpFault } from '@spiffe-connector/dev/fake-gcp.ts';
import { ManualClock } from '../../src/base/clock.ts';
import { runAzure, startWorld } from '../azure/fixtures.ts';
import { get, jwtSource, startGoogleWorld, startSidecar } from '../gcp/support.ts';
import { raw } from '../helpers/http.ts';
import { until } from '../helpers/until.ts';

/** Waits over real sockets on a loaded 2-core machine: bounded, but generous. */
const SLOW = { timeoutMs: 90_000 };

/** The request timeout given to the sidecar (real time): a hang is a fault held longer than this. */
const TIMEOUT_MS = 1_000;
/**
 * The slow answer's case: an answer slower than TIMEOUT_MS, well within a timeout this long. With TIMEOUT_MS
 * itself, a loaded machine's TLS handshake and signing pushed a 200 ms answer past the timeout, and the retry
 * waited on the manual clock.
 */
const SLOW_ANSWER_TIMEOUT_MS = 20_000;
const SLOW_ANSWER_DELAY_MS = 1_500;

const GOOGLE: ReadonlyArray<readonly [string, GcpFault, boolean]> = [
  ['503', { status: 503 }, false],
  ['429', { status: 429 }, false],
  ['a hang', { delayMs: 3_000 }, false],
  ['a reset', { reset: true }, false],
  ['a slow answer', { delayMs: SLOW_ANSWER_DELAY_MS }, true],
  ['garbage', { status: 200, body: '<html>not a token</html>' }, false],
];

for (const [what, fault, succeeds] of GOOGLE) {
  test(`Google STS ${what}: the token is served until it expires, never after; then recovery`, {
    timeout: 300_000,
  }, async (t) => {
    const clock = new ManualClock(Date.now());
    const world = await startGoogleWorld({ clock });
    t.after(() => world.close());
    const s = await startSidecar({
      world,
      jwt: jwtSource(world, { clock }),
      clock,
      serviceAccount: false,
      options: { random: () => 0, requestTimeoutMs: succeeds ? SLOW_ANSWER_TIMEOUT_MS : TIMEOUT_MS },
    });
    t.after(() => s.close());
    await until(() => s.provider.readiness().ready, 'the first token', SLOW);
    const path = '/computeMetadata/v1/instance/service-accounts/default/token';
    const read = async (): Promise<{
      status: number;
      token?: string;
      expiresIn?: number;
      retryAfter?: string;
      flavor?: string;
    }> => {
      const r = await get(s.port, path);
      const body = r.status === 200 ? (JSON.parse(r.body) as { access_token: string; expires_in: number }) : undefined;
      return {
        status: r.status,
        ...(body ? { token: body.access_token, expiresIn: body.expires_in } : {}),
        retryAfter: String(r.headers['retry-after']),
        flavor: String(r.headers['metadata-flavor']),
      };
    };
    const good = await read();
    assert.equal(good.status, 200);
    world.fake.setOutage('sts', fault);
    const served = world.fake.stats.faultsServed;
    await clock.advance(2_000_000); // past half life: refreshes meet the fault
    await until(() => world.fake.stats.faultsServed > served, 'a refresh to meet the fault', SLOW);
    if (succeeds) {
      await until(async () => (await read()).token !== good.token, 'the slow refresh to land', SLOW);
      return;
    }
    const during = await read();
    assert.equal(during.token, good.token, 'the valid token is still served');
    await clock.advance(((good.expiresIn ?? 0) - 2_000 + 2) * 1000);
    const after = await read();
    assert.equal(after.status, 503, 'never after it expired');
    assert.equal(after.token, undefined);
    assert.match(after.retryAfter ?? '', /^\d+$/);
    assert.equal(after.flavor, 'Google', "in the metadata server's shape");
    world.fake.setOutage('sts', undefined);
    await clock.advance(61_000);
    await until(async () => (await read()).status === 200, 'recovery', SLOW);
    assert.notEqual((await read()).token, good.token);
  });
}

const ENTRA: ReadonlyArray<readonly [string, EntraFault, boolean]> = [
  ['503', { status: 503, times: 1_000_000 }, false],
  ['429', { status: 429, retryAfterSeconds: 1, times: 1_000_000 }, false],
  ['a hang', { delayMs: 3_000, times: 1_000_000 }, false],
  ['a reset', { drop: true, times: 1_000_000 }, false],
  ['a slow answer', { delayMs: SLOW_ANSWER_DELAY_MS, times: 1 }, true],
  ['garbage', { garbage: true, times: 1_000_000 }, false],
];

for (const [what, fault, succeeds] of ENTRA) {
  test(`Entra ${what}: the token is served until it expires, never after; then recovery`, {
    timeout: 300_000,
  }, async (t) => {
    const clock = new ManualClock();
    const world = await startWorld(t);
    const run = await runAzure(t, world, {
      clock,
      provider: { requestTimeoutMs: succeeds ? SLOW_ANSWER_TIMEOUT_MS : TIMEOUT_MS },
    });
    const path = `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent('https://storage.azure.com')}`;
    const read = async (): Promise<{
      status: number;
      token?: string;
      expiresOn?: number;
      error?: string;
      retryAfter?: string;
    }> => {
      const r = await raw(run.port, 'GET', path, { Metadata: 'true' });
      const body = JSON.parse(r.body) as Record<string, string>;
      return {
        status: r.status,
        ...(body['access_token'] ? { token: body['access_token'], expiresOn: Number(body['expires_on']) } : {}),
        ...(body['error'] ? { error: body['error'] } : {}),
        retryAfter: String(r.headers['retry-after']),
      };
    };
    await until(async () => (await read()).status === 200, 'the first token', SLOW);
    const good = await read();
    assert.equal(good.status, 200);
    world.entra.injectFault(fault);
    const faulted = world.entra.counters.faulted;
    await clock.advance(31 * 60_000);
    await until(() => world.entra.counters.faulted > faulted, 'a refresh to meet the fault', SLOW);
    if (succeeds) {
      await until(async () => (await read()).token !== good.token, 'the slow refresh to land', SLOW);
      return;
    }
    assert.equal((await read()).token, good.token, 'the valid token is still served');
    await clock.advance((good.expiresOn ?? 0) * 1000 - clock.now() + 1_000);
    const after = await read();
    assert.equal(after.status, 503, 'never after it expired');
    assert.equal(after.token, undefined);
    assert.equal(after.error, 'temporarily_unavailable', "in IMDS's shape");
    assert.match(after.retryAfter ?? '', /^\d+$/);
    world.entra.clearFaults();
    await clock.advance(61_000);
    await until(async () => (await read()).status === 200, 'recovery', SLOW);
    assert.notEqual((await read()).token, good.token);
  });
}
