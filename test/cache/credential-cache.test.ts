// The one credential cache's promises for keys that callers choose: bounded in number, length and rate
// of new keys, the pinned (configured) keys never evicted, refusals remembered, expiry never printed past.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/base/clock.ts';
import { ConnectorError } from '../../src/base/errors.ts';
import { CredentialCache, SINGLE } from '../../src/cache/credential-cache.ts';
import { TOKEN_POLICY } from '../../src/cache/refresh-policy.ts';
import { silentLogger } from '../../src/ops/logger.ts';
import { Metrics } from '../../src/ops/metrics.ts';

const HOUR = 3_600_000;

interface Cred {
  readonly key: string;
  readonly n: number;
  readonly expiresAt: Date;
}

function cache(
  o: {
    allow?: (key: string) => boolean;
    pinned?: string[];
    maxKeys?: number;
    burst?: number;
    perSecond?: number;
    refuse?: (key: string) => boolean;
    lifeMs?: number;
    metrics?: Metrics;
  } = {},
) {
  const clock = new ManualClock();
  const calls: string[] = [];
  const c = new CredentialCache<Cred>({
    cloud: 'azure',
    name: 'resource-token',
    clock,
    logger: silentLogger(),
    metrics: o.metrics,
    policy: TOKEN_POLICY,
    random: () => 0.5,
    pinned: o.pinned ?? [],
    maxKeys: o.maxKeys ?? 4,
    newKeyBurst: o.burst ?? 100,
    newKeysPerSecond: o.perSecond ?? 1,
    allow: o.allow,
    expiresAt: (cred) => cred.expiresAt,
    exchange: async (key) => {
      calls.push(key);
      if (o.refuse?.(key))
        throw new ConnectorError('upstream_rejected', `AADSTS500011: ${key} was not found`, { retryable: false });
      return { key, n: calls.length, expiresAt: new Date(clock.now() + (o.lifeMs ?? HOUR)) };
    },
  });
  return { clock, calls, c };
}

test('a new key waits for its first exchange; the next lookups are served from the cache', async () => {
  const { c, calls } = cache();
  const first = await c.get('https://storage.azure.com');
  assert.ok(first.ok);
  const again = await c.get('https://storage.azure.com');
  assert.ok(again.ok && again.value.n === first.value.n);
  assert.deepEqual(calls, ['https://storage.azure.com']);
  c.stop();
});

test('caller keys are bounded (least recently used dropped) and the pinned ones are never evicted', async () => {
  const { c, calls } = cache({ pinned: ['https://warm.example'], maxKeys: 2 });
  c.start();
  assert.ok((await c.get('https://warm.example')).ok);
  for (let i = 0; i < 50; i++) await c.get(`https://flood-${i}.example`);
  assert.equal(c.size, 2, 'two caller keys held');
  const warm = c.peek('https://warm.example');
  assert.ok(warm.ok, 'the pinned key is still served');
  assert.equal(calls.filter((k) => k === 'https://warm.example').length, 1, 'and was not fetched again');
  c.stop();
});

test('new keys beyond the bucket are throttled without an upstream call, and allowed again as it refills', async () => {
  const { c, calls, clock } = cache({ maxKeys: 64, burst: 3, perSecond: 0.5 });
  const results = [];
  for (let i = 0; i < 10_000; i++) results.push(c.peek(`aud-${i}`));
  assert.equal(calls.length, 3, 'only the burst reached upstream');
  const throttled = results.filter((r) => !r.ok && r.error.code === 'throttled');
  assert.equal(throttled.length, 9_997);
  const last = throttled[0];
  assert.ok(
    last && !last.ok && last.retryAfterSeconds >= 1 && last.retryAfterSeconds <= 2,
    'Retry-After says when a token is back',
  );
  await clock.advance(2_000);
  assert.ok(!c.peek('aud-late').ok, 'fetching now');
  assert.equal(calls.length, 4);
  c.stop();
});

test('a key the cloud refused is remembered after it was dropped: one call, not one per request', async () => {
  const { c, calls } = cache({ maxKeys: 1, refuse: (k) => k === 'https://unknown.example' });
  const refused = await c.get('https://unknown.example');
  assert.ok(!refused.ok && refused.error.code === 'upstream_rejected');
  await c.get('https://other.example'); // drops the refused key (maxKeys 1)
  const again = await c.get('https://unknown.example');
  assert.ok(!again.ok && again.error.code === 'upstream_rejected', 'the refusal is answered from memory');
  assert.equal(calls.filter((k) => k === 'https://unknown.example').length, 1);
  c.stop();
});

test('over-long keys and, with no room for caller keys, any unpinned key are refused at once', async () => {
  const { c, calls } = cache({ maxKeys: 4 });
  const long = c.peek('x'.repeat(2049));
  assert.ok(!long.ok && long.error.code === 'request_invalid');
  const only = cache({ pinned: [SINGLE], maxKeys: 0 });
  const other = only.c.peek('something-else');
  assert.ok(!other.ok && other.error.code === 'request_invalid');
  assert.deepEqual([...calls, ...only.calls], []);
  c.stop();
  only.c.stop();
});

test('an upstream expiry with a fraction of a second is held to the whole second before it, so no surface prints a past time', async () => {
  let fail = false;
  const { c, clock } = cache({ pinned: [SINGLE], lifeMs: HOUR + 999, refuse: () => fail });
  c.start();
  const got = await c.get(SINGLE);
  assert.ok(got.ok);
  fail = true; // later refreshes fail: the first credential is served until its (printed) expiry
  const printedSecond = Math.floor(got.value.expiresAt.getTime() / 1000) * 1000;
  assert.equal(got.expiresAt.getTime(), printedSecond);
  await clock.advance(printedSecond - clock.now() - 1);
  assert.ok(c.peek(SINGLE).ok, 'served up to the last millisecond before the printed second');
  await clock.advance(1);
  assert.equal(
    c.peek(SINGLE).ok,
    false,
    'not served once the printed expiry is reached, although upstream said 999 ms more',
  );
  c.stop();
});

test('metrics carry the cache name, never a key', async () => {
  const metrics = new Metrics();
  const { c } = cache({ metrics, maxKeys: 8, refuse: (k) => k.startsWith('bad') });
  await c.get('https://secret-looking-resource.example/abc');
  await c.get('bad-key-from-a-caller');
  const text = await metrics.text();
  assert.doesNotMatch(text, /secret-looking|bad-key/);
  assert.match(text, /credential="resource-token"/);
  c.stop();
});

test('with an allow-list, other caller keys are refused at once without a call or a token of the bucket; pinned keys always pass', async () => {
  const { c, calls } = cache({
    pinned: ['https://warm.example'],
    burst: 1,
    allow: (k) => k === 'https://storage.azure.com',
  });
  c.start();
  for (let i = 0; i < 100; i++) {
    const r = c.peek(`https://other-${i}.example`);
    assert.ok(!r.ok && r.error.code === 'request_invalid');
  }
  assert.ok((await c.get('https://storage.azure.com')).ok, 'the allowed key still gets the one token of the burst');
  assert.ok((await c.get('https://warm.example')).ok);
  assert.deepEqual(calls.sort(), ['https://storage.azure.com', 'https://warm.example']);
  c.stop();
});
