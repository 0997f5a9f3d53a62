// Token buckets: the burst, the refill rate, the wait a refusal reports, and a bounded number of keys.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/base/clock.ts';
import { KeyedTokenBuckets, retryAfterSeconds, TokenBucket } from '../../src/base/token-bucket.ts';

test('a bucket grants its capacity as a burst, then refuses with the wait for the next token', () => {
  const clock = new ManualClock();
  const bucket = new TokenBucket({ capacity: 5, refillPerSecond: 2, clock });
  for (let i = 0; i < 5; i++) assert.deepEqual(bucket.take(), { ok: true });
  assert.deepEqual(bucket.take(), { ok: false, retryAfterMs: 500 });
  // A refusal takes nothing: the wait does not grow with the number of refused calls.
  for (let i = 0; i < 100; i++) bucket.take();
  assert.equal(bucket.retryAfterMs(), 500);
});

test('a bucket refills continuously at its rate and never above capacity', async () => {
  const clock = new ManualClock();
  const bucket = new TokenBucket({ capacity: 3, refillPerSecond: 10, clock });
  for (let i = 0; i < 3; i++) assert.ok(bucket.tryTake());
  assert.equal(bucket.tryTake(), false);
  await clock.advance(99);
  assert.equal(bucket.tryTake(), false);
  await clock.advance(1);
  assert.equal(bucket.tryTake(), true);
  assert.equal(bucket.tryTake(), false);
  await clock.advance(3_600_000);
  assert.equal(bucket.available(), 3);
  assert.ok(bucket.isFull());
  // Over 10 simulated seconds at most capacity + rate × time tokens are granted.
  const t = { now: 0 };
  const steady = new TokenBucket({ capacity: 3, refillPerSecond: 10, clock: { now: () => t.now } });
  let granted = 0;
  for (; t.now < 10_000; t.now += 10) while (steady.tryTake()) granted += 1;
  assert.ok(granted <= 3 + 100, `granted ${granted}`);
  assert.ok(granted >= 100, `granted ${granted}`);
});

test('taking several tokens is all or nothing; more than capacity is never granted', () => {
  const clock = new ManualClock();
  const bucket = new TokenBucket({ capacity: 4, refillPerSecond: 1, clock });
  assert.ok(bucket.tryTake(3));
  assert.deepEqual(bucket.take(2), { ok: false, retryAfterMs: 1000 });
  assert.equal(bucket.available(), 1);
  assert.deepEqual(bucket.take(5), { ok: false, retryAfterMs: Number.POSITIVE_INFINITY });
  bucket.give(10);
  assert.equal(bucket.available(), 4);
});

test('a bucket that never refills says so; a clock that steps back adds nothing', async () => {
  const now = { t: 1_000_000 };
  const clock = { now: () => now.t };
  const fixed = new TokenBucket({ capacity: 1, refillPerSecond: 0, clock });
  assert.ok(fixed.tryTake());
  assert.equal(fixed.retryAfterMs(), Number.POSITIVE_INFINITY);
  const bucket = new TokenBucket({ capacity: 1, refillPerSecond: 1, clock });
  assert.ok(bucket.tryTake());
  now.t -= 60_000;
  assert.equal(bucket.tryTake(), false);
  now.t += 1000;
  assert.equal(bucket.tryTake(), true);
});

test('bad options are refused at construction', () => {
  const clock = new ManualClock();
  assert.throws(() => new TokenBucket({ capacity: 0, refillPerSecond: 1, clock }), RangeError);
  assert.throws(() => new TokenBucket({ capacity: Number.NaN, refillPerSecond: 1, clock }), RangeError);
  assert.throws(() => new TokenBucket({ capacity: 1, refillPerSecond: -1, clock }), RangeError);
  assert.throws(() => new KeyedTokenBuckets({ capacity: 1, refillPerSecond: 1, maxKeys: 0, clock }), RangeError);
});

test('keyed buckets limit each key on its own', async () => {
  const clock = new ManualClock();
  const buckets = new KeyedTokenBuckets({ capacity: 2, refillPerSecond: 1, maxKeys: 10, clock });
  assert.ok(buckets.tryTake('a'));
  assert.ok(buckets.tryTake('a'));
  assert.deepEqual(buckets.take('a'), { ok: false, retryAfterMs: 1000 });
  assert.ok(buckets.tryTake('b'));
  assert.equal(buckets.retryAfterMs('a'), 1000);
  assert.equal(buckets.retryAfterMs('never-seen'), 0);
  await clock.advance(1000);
  assert.ok(buckets.tryTake('a'));
});

test('keyed buckets hold at most maxKeys; full buckets go first, then the least recently used', async () => {
  const clock = new ManualClock();
  const buckets = new KeyedTokenBuckets({ capacity: 2, refillPerSecond: 1, maxKeys: 3, clock });
  buckets.take('busy');
  buckets.take('busy');
  buckets.take('idle');
  buckets.take('other');
  await clock.advance(10_000); // every bucket full again
  buckets.take('busy');
  buckets.take('busy');
  buckets.take('x'); // room: the full ones ('idle', 'other') are dropped, 'busy' stays drained
  assert.ok(buckets.size <= 3);
  assert.equal(buckets.tryTake('busy'), false);
  // 10,000 callers with fresh keys: the count stays bounded.
  for (let i = 0; i < 10_000; i++) {
    buckets.take(`k${i}`);
    buckets.take(`k${i}`);
  }
  assert.equal(buckets.size, 3);
});

test('Retry-After is whole seconds, at least one', () => {
  assert.equal(retryAfterSeconds(1), 1);
  assert.equal(retryAfterSeconds(1000), 1);
  assert.equal(retryAfterSeconds(1001), 2);
  assert.equal(retryAfterSeconds(0), 1);
  assert.equal(retryAfterSeconds(Number.POSITIVE_INFINITY), 3600);
});
