// The credential cache's promises to every cloud: fetched at start, refreshed ahead of expiry, one
// fetch at a time, backoff on failure, a valid value served while refreshes fail, an expired never.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/base/clock.ts';
import { ConnectorError } from '../../src/base/errors.ts';
import { AWS_POLICY, backoffDelay, refreshDelay, TOKEN_POLICY } from '../../src/cache/refresh-policy.ts';
import { RefreshingCredential } from '../../src/cache/refreshing-credential.ts';
import { silentLogger } from '../../src/ops/logger.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { until } from '../helpers/until.ts';

const HOUR = 3_600_000;
const MIN = 60_000;

/** Awaits a promise no clock ends (readiness) with until's bound, so a broken cache fails naming it instead of hanging. */
async function settled<T>(promise: Promise<T>, what: string): Promise<T> {
  const box: { value?: T; done?: true } = {};
  void promise.then((value) => {
    box.value = value;
    box.done = true;
  });
  await until(() => box.done, what);
  return box.value as T;
}

interface Cred {
  id: number;
  expiresAt: Date;
}

function harness(options: { lifeMs?: number; policy?: typeof AWS_POLICY } = {}) {
  const clock = new ManualClock();
  const metrics = new Metrics();
  let calls = 0;
  let failWith: ConnectorError | undefined;
  let gate: Promise<void> | undefined;
  const cred = new RefreshingCredential<Cred>({
    cloud: 'aws',
    name: 'role',
    clock,
    logger: silentLogger(),
    metrics,
    policy: options.policy ?? AWS_POLICY,
    random: () => 0.5,
    expiresAt: (c) => c.expiresAt,
    fetch: async () => {
      calls += 1;
      if (gate) await gate;
      if (failWith) throw failWith;
      return { id: calls, expiresAt: new Date(clock.now() + (options.lifeMs ?? HOUR)) };
    },
  });
  return {
    clock,
    metrics,
    cred,
    calls: () => calls,
    fail: (e: ConnectorError | undefined) => (failWith = e),
    hold: () => {
      let release!: () => void;
      gate = new Promise((r) => (release = r));
      return () => {
        gate = undefined;
        release();
      };
    },
  };
}

test('refresh timing: half life, pulled in to keep the margin, never a busy loop', () => {
  const now = 0;
  assert.equal(refreshDelay({ ...AWS_POLICY, jitter: 0 }, now, now + 4 * HOUR, now), 2 * HOUR);
  // 1 h AWS credentials: half life and the 30-minute margin agree.
  assert.equal(refreshDelay({ ...AWS_POLICY, jitter: 0 }, now, now + HOUR, now), 30 * MIN);
  // 12 h credentials: half life (6 h) is well before expiry − 30 min.
  assert.equal(refreshDelay({ ...AWS_POLICY, jitter: 0 }, now, now + 12 * HOUR, now), 6 * HOUR);
  // 40 min credentials: margin says at 10 min.
  assert.equal(refreshDelay({ ...AWS_POLICY, jitter: 0 }, now, now + 40 * MIN, now), 10 * MIN);
  // 15 min credentials shorter than the margin: a tenth of life, not zero.
  assert.equal(refreshDelay({ ...AWS_POLICY, jitter: 0 }, now, now + 15 * MIN, now), 1.5 * MIN);
  // 1 h tokens with a 5-minute margin: half life.
  assert.equal(refreshDelay({ ...TOKEN_POLICY, jitter: 0 }, now, now + HOUR, now), 30 * MIN);
  // 8 min tokens: the 5-minute margin says at 3 min, before half life.
  assert.equal(refreshDelay({ ...TOKEN_POLICY, jitter: 0 }, now, now + 8 * MIN, now), 3 * MIN);
  // Jitter only pulls earlier, by at most its fraction.
  assert.ok(refreshDelay(AWS_POLICY, now, now + HOUR, now, () => 1) < 30 * MIN);
  assert.equal(
    refreshDelay(AWS_POLICY, now, now + HOUR, now, () => 0.5),
    30 * MIN * 0.95,
  );
});

test('backoff grows exponentially with jitter and is capped', () => {
  const p = { ...AWS_POLICY, backoffBaseMs: 1000, backoffMaxMs: 60_000 };
  assert.equal(
    backoffDelay(p, 1, () => 1),
    1000,
  );
  assert.equal(
    backoffDelay(p, 1, () => 0),
    500,
  );
  assert.equal(
    backoffDelay(p, 4, () => 1),
    8000,
  );
  assert.equal(
    backoffDelay(p, 20, () => 1),
    60_000,
  );
});

test('fetched at start; served without calls; refreshed at half life', async () => {
  const h = harness();
  assert.equal(h.cred.get().ok, false, 'nothing before the first fetch');
  h.cred.start();
  await settled(h.cred.whenReady(), 'the first credential');
  const first = h.cred.get();
  assert.ok(first.ok);
  assert.equal(first.value.id, 1);
  for (let i = 0; i < 100; i++) h.cred.get();
  assert.equal(h.calls(), 1, 'reads never fetch');
  await h.clock.advance(20 * MIN);
  assert.equal(h.calls(), 1);
  await h.clock.advance(10 * MIN);
  assert.equal(h.calls(), 2, 'refreshed by half life');
  const second = h.cred.get();
  assert.ok(second.ok && second.value.id === 2);
  h.cred.stop();
});

test('a failing refresh keeps the valid credential until it expires, never after; then recovers', async () => {
  const h = harness();
  h.cred.start();
  await settled(h.cred.whenReady(), 'the first credential');
  h.fail(new ConnectorError('upstream_unavailable', 'STS 500', { retryable: true }));
  await h.clock.advance(31 * MIN);
  assert.ok(h.calls() >= 2, 'refresh attempted');
  const during = h.cred.get();
  assert.ok(during.ok, 'still serving the cached credential');
  assert.equal(during.value.id, 1);
  await h.clock.advance(29 * MIN + 1000);
  const after = h.cred.get();
  assert.equal(after.ok, false, 'expired credential is never served');
  if (!after.ok) {
    assert.equal(after.error.code, 'credentials_unavailable');
    assert.ok(after.retryAfterSeconds >= 1 && after.retryAfterSeconds <= 60);
  }
  h.fail(undefined);
  await h.clock.advance(2 * MIN);
  const recovered = h.cred.get();
  assert.ok(recovered.ok, 'recovers once upstream is back');
  assert.ok(recovered.value.id > 1);
  h.cred.stop();
});

test('retries back off: attempts spread out, counted in metrics', async () => {
  const h = harness();
  h.fail(new ConnectorError('upstream_unavailable', 'down', { retryable: true }));
  h.cred.start();
  await h.clock.advance(0);
  assert.equal(h.calls(), 1);
  await h.clock.advance(60_000);
  const inAMinute = h.calls();
  assert.ok(inAMinute >= 4 && inAMinute <= 8, `exponential, not a tight loop: ${inAMinute}`);
  const text = await h.metrics.text();
  assert.match(text, /spiffe_connector_refresh_retries_total\{cloud="aws",credential="role"\} \d+/);
  assert.match(text, /spiffe_connector_exchanges_total\{cloud="aws",outcome="retryable_error"\}/);
  h.cred.stop();
});

test('a permanent error is not retried in a loop', async () => {
  const h = harness();
  h.fail(new ConnectorError('upstream_rejected', 'AccessDenied', { retryable: false, upstreamCode: 'AccessDenied' }));
  h.cred.start();
  await h.clock.advance(4 * MIN);
  assert.equal(h.calls(), 1);
  const r = h.cred.get();
  assert.equal(r.ok, false);
  if (!r.ok) {
    assert.equal(r.error.code, 'upstream_rejected');
    assert.equal(r.error.upstreamCode, 'AccessDenied');
  }
  // An identity change tries at once.
  h.fail(undefined);
  await h.cred.refreshNow('new SVID');
  assert.ok(h.cred.get().ok);
  h.cred.stop();
});

test('single flight: concurrent refreshes share one fetch; a change during a fetch gets its own', async () => {
  const h = harness();
  const release = h.hold();
  h.cred.start();
  const a = h.cred.refreshNow('x');
  const b = h.cred.refreshNow('y');
  await h.clock.advance(0);
  assert.equal(h.calls(), 1, 'one fetch in flight');
  release();
  await Promise.all([a, b]);
  await h.clock.advance(0);
  assert.equal(h.calls(), 2, 'the change queued during the fetch ran after it');
  h.cred.stop();
});

test('credentials that arrive already expired are refused', async () => {
  const h = harness({ lifeMs: -1000 });
  h.cred.start();
  await h.clock.advance(0);
  const r = h.cred.get();
  assert.equal(r.ok, false);
  if (!r.ok) assert.match(r.error.message, /already expired/);
  await h.clock.advance(10_000);
  assert.ok(h.calls() >= 3, `asked again with backoff, as for any retryable failure: ${h.calls()} calls`);
  h.cred.stop();
  const now = harness({ lifeMs: 0 }); // expiring the very millisecond it arrives
  now.cred.start();
  await now.clock.advance(0);
  assert.equal(now.cred.get().ok, false);
  now.cred.stop();
});

/** A credential whose fetch does what `next` says; options as the cache passes them. */
function scripted(
  next: (signal: AbortSignal) => Promise<Cred>,
  options: { permanentRetryMs?: number; timeoutMs?: number; policy?: typeof AWS_POLICY } = {},
) {
  const clock = new ManualClock();
  let calls = 0;
  const cred = new RefreshingCredential<Cred>({
    cloud: 'gcp',
    name: 'access-token',
    clock,
    logger: silentLogger(),
    policy: options.policy ?? TOKEN_POLICY,
    random: () => 0.5,
    expiresAt: (c) => c.expiresAt,
    ...options,
    fetch: (signal) => {
      calls += 1;
      return next(signal);
    },
  });
  return { clock, cred, calls: () => calls };
}

test('an upstream that does not answer in time is a retryable timeout, retried with backoff', async () => {
  const s = scripted(
    (signal) =>
      new Promise<Cred>((_resolve, reject) =>
        signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
      ),
    { timeoutMs: 20 },
  );
  s.cred.start();
  const error = await until(() => s.cred.lastError(), 'the attempt to time out');
  assert.equal(error.code, 'timeout');
  assert.equal(error.retryable, true);
  const r = s.cred.get();
  assert.ok(!r.ok && r.error.code === 'credentials_unavailable' && r.error.retryable);
  s.cred.stop();
});

test('a refresh that ended leaves no time limit behind to wake the process later', async () => {
  // The limit's timer ends with the refresh: an idle sidecar does not wake 15 s after each refresh to abort it.
  const signals: AbortSignal[] = [];
  const s = scripted(
    async (signal) => {
      signals.push(signal);
      return { id: 1, expiresAt: new Date(Date.now() + HOUR) };
    },
    { timeoutMs: 20 },
  );
  s.cred.start();
  await until(() => s.cred.get().ok, 'the first value');
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(signals.length, 1);
  assert.equal(signals[0]?.aborted, false, 'the limit of a refresh that ended did not fire');
  s.cred.stop();
});

test('an unexpected failure of the exchange (not a ConnectorError) is retryable: tried again soon, not in 5 min', async () => {
  const s = scripted(() => Promise.reject(new TypeError('fetch failed')));
  s.cred.start();
  await s.clock.advance(0);
  const error = s.cred.lastError();
  assert.ok(error, 'failed');
  assert.equal(error.retryable, true);
  assert.match(error.message, /fetch failed/);
  await s.clock.advance(10_000);
  assert.ok(s.calls() >= 3, `retried with backoff: ${s.calls()} calls`);
  s.cred.stop();
});

test("before a first value, the lookup carries the upstream's code and HTTP status (surfaces answer with them)", async () => {
  const s = scripted(() =>
    Promise.reject(
      new ConnectorError('upstream_rejected', 'PERMISSION_DENIED', {
        retryable: false,
        upstreamCode: 'PERMISSION_DENIED',
        upstreamStatus: 403,
      }),
    ),
  );
  s.cred.start();
  await s.clock.advance(0);
  const r = s.cred.get();
  assert.ok(!r.ok);
  assert.deepEqual(
    [r.error.code, r.error.upstreamCode, r.error.upstreamStatus, r.error.retryable],
    ['upstream_rejected', 'PERMISSION_DENIED', 403, false],
  );
  s.cred.stop();
});

test('Retry-After: 1 while a fetch is under way, else the seconds until the next attempt, at most 60', async () => {
  const hanging = scripted(() => new Promise<Cred>(() => undefined));
  hanging.cred.start();
  await hanging.clock.advance(0);
  const during = hanging.cred.get();
  assert.ok(!during.ok && during.retryAfterSeconds === 1, 'in flight');
  hanging.cred.stop();
  const refuse = () => Promise.reject(new ConnectorError('upstream_rejected', 'denied', { retryable: false }));
  const s = scripted(refuse, { permanentRetryMs: 30_000 });
  s.cred.start();
  await s.clock.advance(0);
  const after = s.cred.get();
  assert.ok(!after.ok && after.retryAfterSeconds === 30, 'the next attempt is in 30 s');
  await s.clock.advance(10_000);
  const later = s.cred.get();
  assert.ok(!later.ok && later.retryAfterSeconds === 20);
  s.cred.stop();
  const long = scripted(refuse);
  long.cred.start();
  await long.clock.advance(0);
  const capped = long.cred.get();
  assert.ok(!capped.ok && capped.retryAfterSeconds === 60, 'a 5-minute wait is said as 60 s at most');
  long.cred.stop();
});

test('a refusal while a valid credential is held is tried again no later than its expiry', async () => {
  let fail = false;
  const s = scripted(
    async () => {
      if (fail) throw new ConnectorError('upstream_rejected', 'denied', { retryable: false });
      return { id: 1, expiresAt: new Date(s.clock.now() + HOUR) };
    },
    { permanentRetryMs: 4 * HOUR },
  );
  s.cred.start();
  await settled(s.cred.whenReady(), 'the first credential');
  fail = true;
  const expiry = s.clock.now() + HOUR;
  await s.clock.advance(30 * MIN); // the refresh at half life (less jitter) is refused
  assert.equal(s.calls(), 2);
  await s.clock.advance(expiry - s.clock.now() - 1000);
  assert.equal(s.calls(), 2, 'not before the expiry');
  await s.clock.advance(2000);
  assert.equal(s.calls(), 3, 'tried again at the expiry, not after the 4 h wait of a refusal');
  // Expired and refused: the surfaces answer "unavailable, retry" (503), naming the refusal.
  const expired = s.cred.get();
  assert.ok(!expired.ok);
  assert.deepEqual([expired.error.code, expired.error.retryable], ['credentials_unavailable', true]);
  assert.match(expired.error.message, /expired and could not be refreshed: denied/);
  s.cred.stop();
});

test('stopped: no more fetches, and whenReady no longer waits', async () => {
  const h = harness();
  let ready = false;
  void h.cred.whenReady().then(() => (ready = true));
  h.cred.stop();
  await until(() => ready, 'whenReady to resolve once stopped');
  h.cred.start();
  await h.cred.refreshNow('after stop');
  await h.clock.advance(2 * HOUR);
  assert.equal(h.calls(), 0);
  const running = harness();
  running.cred.start();
  await settled(running.cred.whenReady(), 'the first credential');
  running.cred.stop();
  await running.clock.advance(4 * HOUR);
  assert.equal(running.calls(), 1, 'the scheduled refresh was cancelled');
  // A fetch under way when the credential stops, answering or failing after it: nothing is kept or retried.
  for (const outcome of ['answers', 'fails'] as const) {
    const late = harness();
    const release = late.hold();
    if (outcome === 'fails') late.fail(new ConnectorError('upstream_unavailable', 'down', { retryable: true }));
    late.cred.start();
    await late.clock.advance(0);
    late.cred.stop();
    release();
    await late.clock.advance(0);
    assert.equal(late.cred.get().ok, false, `the value of a fetch that ${outcome} after stop is not kept`);
    await late.clock.advance(4 * HOUR);
    assert.equal(late.calls(), 1, `the fetch that ${outcome} after stop schedules nothing`);
  }
});

test('an exchange aborted on its own (AbortError) is a retryable timeout', async () => {
  const s = scripted(() => Promise.reject(new DOMException('This operation was aborted', 'AbortError')));
  s.cred.start();
  await s.clock.advance(0);
  const error = s.cred.lastError();
  assert.ok(error);
  assert.deepEqual([error.code, error.retryable], ['timeout', true]);
  s.cred.stop();
});
