// The one credential cache's promises for keys that callers choose: bounded in number, length and rate
// of new keys, the pinned (configured) keys never evicted, refusals remembered, expiry never printed past.

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { ManualClock } from '../../src/base/clock.ts';
import { ConnectorError } from '../../src/base/errors.ts';
import { CredentialCache, type Lookup, SINGLE } from '../../src/cache/credential-cache.ts';
import { TOKEN_POLICY } from '../../src/cache/refresh-policy.ts';
import { createLogger, silentLogger } from '../../src/ops/logger.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { until } from '../helpers/until.ts';

const HOUR = 3_600_000;

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
    rememberRefusalMs?: number;
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
    ...(o.rememberRefusalMs === undefined ? {} : { rememberRefusalMs: o.rememberRefusalMs }),
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

test('the least recently used key is the one dropped; a dropped key refreshes no more and is fetched anew when asked', async () => {
  const { c, calls, clock } = cache({ maxKeys: 2 });
  assert.ok((await c.get('https://a.example')).ok);
  assert.ok((await c.get('https://b.example')).ok);
  assert.ok((await c.get('https://a.example')).ok, 'a is now the most recently used');
  assert.ok((await c.get('https://c.example')).ok, 'drops b');
  assert.ok(c.peek('https://a.example').ok, 'a is still held');
  assert.deepEqual(calls, ['https://a.example', 'https://b.example', 'https://c.example']);
  const again = await c.get('https://b.example'); // drops c, the least recently used now
  assert.ok(again.ok, 'a dropped key that had a credential is fetched again, not refused');
  assert.equal(calls.filter((k) => k === 'https://b.example').length, 2);
  await clock.advance(40 * 60_000); // past the half life of every credential fetched
  assert.equal(calls.filter((k) => k === 'https://c.example').length, 1, 'the dropped key is not refreshed');
  assert.equal(calls.filter((k) => k === 'https://a.example').length, 2, 'the held ones are');
  c.stop();
});

test('remembered refusals are bounded too: beyond 16, the oldest is forgotten and asked again', async () => {
  const { c, calls } = cache({ maxKeys: 1, refuse: (k) => k.startsWith('https://refused-') });
  for (let i = 0; i <= 16; i++) assert.ok(!(await c.get(`https://refused-${i}.example`)).ok);
  await c.get('https://fine.example'); // drops refused-16: 17 refusals remembered, one over the bound
  const asked = (k: string) => calls.filter((x) => x === k).length;
  await c.get('https://refused-0.example');
  assert.equal(asked('https://refused-0.example'), 2, 'the oldest refusal was forgotten');
  await c.get('https://refused-13.example');
  assert.equal(asked('https://refused-13.example'), 1, 'a recent refusal is still answered from memory');
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
  assert.ok((await c.get('x'.repeat(2048))).ok, '2048 characters are accepted');
  calls.length = 0;
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

test('a first exchange that does not answer: a lookup waits 10 s at most, or until its caller goes away', async () => {
  const clock = new ManualClock();
  const c = new CredentialCache<Cred>({
    cloud: 'azure',
    name: 'resource-token',
    clock,
    logger: silentLogger(),
    policy: TOKEN_POLICY,
    maxKeys: 4,
    expiresAt: (cred) => cred.expiresAt,
    exchange: () => new Promise<Cred>(() => undefined),
  });
  const seen: { answer?: Lookup<Cred> } = {};
  void c.get('https://storage.azure.com').then((r) => (seen.answer = r));
  await clock.advance(9_999);
  assert.equal(seen.answer, undefined, 'still waiting for the first exchange');
  await clock.advance(1);
  const answered = seen.answer as Lookup<Cred> | undefined; // set by the lookup meanwhile
  assert.ok(answered && !answered.ok, 'answered after 10 s');
  assert.equal(answered.error.code, 'credentials_unavailable');
  assert.ok(answered.error.retryable);
  const gone = new AbortController();
  let early: Lookup<Cred> | undefined;
  void c.get('https://vault.azure.net', gone.signal).then((r) => (early = r));
  await clock.advance(0);
  assert.equal(early, undefined);
  gone.abort();
  const r = await until(() => early, 'the lookup to answer once its caller went away');
  assert.equal(r.ok, false);
  c.stop();
});

test('a refresh under way never delays an answer: the valid credential is served at once', async () => {
  const clock = new ManualClock();
  let gate: Promise<void> | undefined;
  let n = 0;
  const c = new CredentialCache<Cred>({
    cloud: 'azure',
    name: 'resource-token',
    clock,
    logger: silentLogger(),
    policy: TOKEN_POLICY,
    pinned: [SINGLE],
    expiresAt: (cred) => cred.expiresAt,
    exchange: async (key) => {
      n += 1;
      if (gate) await gate;
      return { key, n, expiresAt: new Date(clock.now() + HOUR) };
    },
  });
  c.start();
  await settled(c.whenReady(), 'the first credential');
  gate = new Promise(() => undefined); // the next exchange never answers
  void c.refreshAll('identity changed');
  await clock.advance(0);
  assert.equal(n, 2, 'a refresh is in flight');
  let answered: Lookup<Cred> | undefined;
  void c.get(SINGLE).then((r) => (answered = r));
  const r = await until(() => answered, 'the lookup to answer while the refresh hangs');
  assert.ok(r.ok && r.value.n === 1);
  c.stop();
});

test('an identity change exchanges every held key anew and forgets the refusals', async () => {
  let refuse = true;
  const { c, calls } = cache({
    pinned: ['https://warm.example'],
    maxKeys: 1,
    refuse: (k) => refuse && k === 'https://unknown.example',
  });
  c.start();
  const warm = await c.get('https://warm.example');
  assert.ok(!(await c.get('https://unknown.example')).ok);
  const held = await c.get('https://other.example'); // drops the refused key, which is remembered
  refuse = false; // the new identity may use it
  await c.refreshAll('new SVID');
  const warmAfter = c.peek('https://warm.example');
  const heldAfter = c.peek('https://other.example');
  assert.ok(warm.ok && warmAfter.ok && warmAfter.value.n !== warm.value.n, 'the pinned key was exchanged anew');
  assert.ok(held.ok && heldAfter.ok && heldAfter.value.n !== held.value.n, 'the held key was exchanged anew');
  assert.ok((await c.get('https://unknown.example')).ok, 'the refusal was forgotten');
  assert.equal(calls.filter((k) => k === 'https://unknown.example').length, 2);
  c.stop();
});

test('another identity: after reset no credential of the old one is served; started pinned keys fetch again, the old entries stop', async () => {
  const { c, calls, clock } = cache({ pinned: ['https://a.example', 'https://b.example'], maxKeys: 2 });
  assert.ok((await c.get('https://a.example')).ok, 'a lookup starts its pinned key');
  assert.ok((await c.get('https://caller.example')).ok);
  c.reset();
  assert.equal(c.peek('https://a.example').ok, false, "the old identity's credential is gone");
  assert.equal(c.size, 0, 'caller keys are dropped');
  assert.ok((await c.get('https://caller.example')).ok, 'a caller key is fetched anew for the new identity');
  await settled(c.whenReady(), 'the first credential');
  assert.deepEqual(calls.filter((k) => k === 'https://a.example').length, 2, 'fetched again for the new identity');
  assert.ok(calls.includes('https://b.example'), 'every pinned key starts, since one had started');
  const before = calls.length;
  await clock.advance(40 * 60_000); // past one refresh (half life) of the new entries
  assert.equal(calls.length - before, 3, 'one refresh per key held: the dropped entries do not refresh any more');
  c.stop();
  const stopped = calls.length;
  await clock.advance(4 * HOUR);
  assert.equal(calls.length, stopped, 'a stopped cache exchanges nothing');
});

test('readiness: whenReady waits for every pinned key, and pinnedValid holds only while each is valid', async () => {
  let failB = true;
  const { c, clock } = cache({
    pinned: ['https://a.example', 'https://b.example'],
    refuse: (k) => failB && k === 'https://b.example',
  });
  let ready = false;
  void c.whenReady().then(() => (ready = true));
  assert.equal(c.pinnedValid(), false, 'nothing fetched yet');
  c.start();
  await clock.advance(0);
  assert.ok(c.peek('https://a.example').ok);
  assert.equal(ready, false, 'b has no credential');
  assert.equal(c.pinnedValid(), false);
  failB = false;
  await c.refreshAll('new SVID');
  await until(() => ready, 'whenReady once b is fetched');
  assert.equal(c.pinnedValid(), true);
  failB = true; // later refreshes of b fail: valid until its expiry, then not
  await clock.advance(HOUR + 1000);
  assert.equal(c.pinnedValid(), false);
  c.stop();
  const keyedOnly = cache();
  assert.equal(keyedOnly.c.pinnedValid(), true, 'a cache of caller keys only has nothing to wait for');
  await settled(keyedOnly.c.whenReady(), 'readiness of a cache without pinned keys');
  keyedOnly.c.start();
  await keyedOnly.clock.advance(0);
  assert.deepEqual(keyedOnly.calls, [], 'and fetches nothing on its own');
});

test('a refusal is forgotten on reset too: the new identity may be allowed', async () => {
  let refuse = true;
  const { c, calls } = cache({ maxKeys: 1, refuse: (k) => refuse && k === 'https://unknown.example' });
  assert.ok(!(await c.get('https://unknown.example')).ok);
  await c.get('https://other.example'); // drops the refused key, which is remembered
  refuse = false;
  c.reset();
  assert.ok((await c.get('https://unknown.example')).ok);
  assert.equal(calls.filter((k) => k === 'https://unknown.example').length, 2);
  c.stop();
});

test("the cache's per-attempt timeout and permanent-retry wait reach each key", async () => {
  const clock = new ManualClock();
  let calls = 0;
  const c = new CredentialCache<Cred>({
    cloud: 'gcp',
    name: 'access-token',
    clock,
    logger: silentLogger(),
    policy: TOKEN_POLICY,
    pinned: ['hangs', 'refused'],
    timeoutMs: 20,
    permanentRetryMs: 60_000,
    expiresAt: (cred) => cred.expiresAt,
    exchange: (key, signal) => {
      calls += 1;
      if (key === 'refused')
        return Promise.reject(new ConnectorError('upstream_rejected', 'denied', { retryable: false }));
      return new Promise<Cred>((_resolve, reject) =>
        signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
      );
    },
  });
  c.start();
  await until(() => {
    const r = c.peek('hangs');
    return !r.ok && /did not answer in time/.test(r.error.message);
  }, 'the 20 ms attempt timeout');
  await clock.advance(59_000);
  const refusedCalls = calls;
  await clock.advance(1_000);
  assert.ok(calls > refusedCalls, 'the refused key is asked again after 60 s, not 5 min');
  c.stop();
});

test('a remembered refusal lasts rememberRefusalMs: Retry-After says how long, then the cloud is asked again', async () => {
  const { c, calls, clock } = cache({
    maxKeys: 1,
    rememberRefusalMs: 60_000,
    refuse: (k) => k === 'https://unknown.example',
  });
  assert.ok(!(await c.get('https://unknown.example')).ok);
  await c.get('https://other.example'); // drops the refused key
  await clock.advance(20_000);
  const remembered = c.peek('https://unknown.example');
  assert.ok(!remembered.ok && remembered.error.code === 'upstream_rejected');
  assert.equal(remembered.retryAfterSeconds, 40);
  assert.equal(calls.filter((k) => k === 'https://unknown.example').length, 1);
  await clock.advance(40_000);
  await c.get('https://unknown.example');
  assert.equal(calls.filter((k) => k === 'https://unknown.example').length, 2, 'asked again once the time is up');
  c.stop();
});

test('the expiry gauge is the soonest expiry of the pinned credentials, and goes away with the cache', async () => {
  const metrics = new Metrics();
  const clock = new ManualClock();
  const lives: Record<string, number> = { 'https://a.example': 2 * HOUR, 'https://b.example': HOUR };
  const c = new CredentialCache<Cred>({
    cloud: 'azure',
    name: 'resource-token',
    clock,
    logger: silentLogger(),
    metrics,
    policy: TOKEN_POLICY,
    pinned: Object.keys(lives),
    maxKeys: 4,
    expiresAt: (cred) => cred.expiresAt,
    exchange: async (key) => ({ key, n: 0, expiresAt: new Date(clock.now() + (lives[key] ?? 3 * HOUR)) }),
  });
  c.start();
  await settled(c.whenReady(), 'the first credential');
  await c.get('https://caller.example'); // a caller key expiring later is not what the pod relies on
  const gauge =
    /spiffe_connector_credential_expiry_timestamp_seconds\{cloud="azure",credential="resource-token"\} (\d+)/;
  assert.equal(Number(gauge.exec(await metrics.text())?.[1]), Math.round((clock.now() + HOUR) / 1000));
  c.stop();
  assert.doesNotMatch(await metrics.text(), gauge);
  const keyed = cache({ metrics });
  await keyed.c.get('https://caller.example');
  assert.equal(
    Number(gauge.exec(await metrics.text())?.[1]),
    Math.round((keyed.clock.now() + HOUR) / 1000),
    'without pinned keys, the keys held',
  );
  keyed.c.stop();
});

test('each credential issued is one audit line and one count: the key in words for keyed caches, no secret', async () => {
  const chunks: string[] = [];
  const destination = new Writable({
    write: (chunk: Buffer, _enc, done) => {
      chunks.push(chunk.toString('utf8'));
      done();
    },
  });
  const metrics = new Metrics();
  const clock = new ManualClock();
  const make = (pinned: string[], maxKeys: number, withMetrics = true) =>
    new CredentialCache<Cred & { secret: string }>({
      cloud: 'azure',
      name: 'resource-token',
      clock,
      logger: createLogger({ level: 'info', destination }),
      metrics: withMetrics ? metrics : undefined,
      policy: TOKEN_POLICY,
      pinned,
      maxKeys,
      expiresAt: (cred) => cred.expiresAt,
      exchange: async (key) => ({ key, n: 0, secret: 'eyJ-secret-token', expiresAt: new Date(clock.now() + HOUR) }),
      audit: () => ({ principal: 'client-id-1', spiffeId: 'spiffe://example.org/app', upstreamRequestId: 'req-1' }),
    });
  const keyed = make([], 4);
  await keyed.get('https://storage.azure.com');
  const single = make([SINGLE], 0, false); // no metrics: the log line all the same
  single.start();
  await settled(single.whenReady(), 'the first credential');
  const audits = chunks
    .join('')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => r['audit'] === 'credential_issued');
  assert.equal(audits.length, 2);
  assert.deepEqual(
    audits.map((a) => [a['cacheKey'], a['principal'], a['spiffeId'], a['upstreamRequestId'], a['expiresAt']]),
    [
      [
        'https://storage.azure.com',
        'client-id-1',
        'spiffe://example.org/app',
        'req-1',
        new Date(clock.now() + HOUR).toISOString(),
      ],
      [undefined, 'client-id-1', 'spiffe://example.org/app', 'req-1', new Date(clock.now() + HOUR).toISOString()],
    ],
  );
  assert.ok(!chunks.join('').includes('eyJ-secret-token'));
  assert.match(
    await metrics.text(),
    /spiffe_connector_credentials_issued_total\{cloud="azure",credential="resource-token"\} 1/,
  );
  // A long key is logged by its first 200 characters.
  const long = `https://storage.azure.com/${'x'.repeat(400)}`;
  await keyed.get(long);
  const last = JSON.parse(chunks.join('').trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
  assert.equal(last['cacheKey'], long.slice(0, 200));
  keyed.stop();
  single.stop();
});
