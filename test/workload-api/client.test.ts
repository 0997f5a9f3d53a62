// The Workload API client against a fake agent written from the spec: the header on every call,
// rotations picked up, last good SVID kept through drops, Unavailable and bad input, final statuses
// not retried, JWT-SVIDs cached per audience and refreshed at half life.

import assert from 'node:assert/strict';
import { mkdtemp, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { ManualClock } from '../../src/base/clock.ts';
import { ConnectorError } from '../../src/base/errors.ts';
import { createLogger, silentLogger } from '../../src/ops/logger.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { createWorkloadApiSource, type WorkloadApiSource } from '../../src/sources/workload-api/client.ts';
import type { X509Svid } from '../../src/spiffe/x509-svid.ts';
import { FakeWorkloadApi, pemChainToDer, pemKeyToPkcs8Der, x509Entry } from '../helpers/fake-workload-api.ts';
import { DevCa, mintBad } from '../helpers/pki.ts';
import { until } from '../helpers/until.ts';

const TD = 'example.org';
const ID = `spiffe://${TD}/ns/default/sa/app`;
// Manual clocks start a minute ahead of the real time at which SVIDs are minted (notBefore = minting time).

async function refusedCount(metrics: Metrics): Promise<number> {
  const { values } = await metrics.svidUpdates.get();
  return values.find((v) => v.labels['kind'] === 'x509' && v.labels['outcome'] === 'refused')?.value ?? 0;
}

async function setup(t: import('node:test').TestContext, opts: { hint?: string } = {}) {
  const ca = await DevCa.create({ trustDomain: TD });
  const fake = await FakeWorkloadApi.start();
  const clock = new ManualClock(Date.now() + 60_000);
  const metrics = new Metrics();
  const source = createWorkloadApiSource({
    socket: fake.address,
    trustDomain: TD,
    clock,
    logger: process.env.WL_DEBUG ? createLogger({ level: 'debug', destination: process.stdout }) : silentLogger(),
    metrics,
    random: () => 0.5,
    ...(opts.hint ? { hint: opts.hint } : {}),
  });
  const seen: X509Svid[] = [];
  source.subscribe((svid) => seen.push(svid));
  t.after(async () => {
    await source.close();
    await fake.close();
  });
  return { ca, fake, clock, source, seen, metrics };
}

const serial = (source: WorkloadApiSource): string | undefined => source.current()?.certificates[0]?.serialNumber;

test('takes the first SVID from the stream, verified against its bundle, and sends the header on every call', async (t) => {
  const { ca, fake, source } = await setup(t);
  const svid = await ca.issueX509Svid({ spiffeId: ID });
  fake.setX509({ svids: [x509Entry(svid, ca)] });
  await source.start();
  await source.whenReady();
  assert.equal(source.current()?.id.toString(), ID);
  assert.equal(source.bundle()?.trustDomain.name, TD);
  assert.ok(source.bundle()?.authorities[0]?.raw.equals(pemChainToDer(ca.certPem)));
  await until(
    () => fake.callCount('FetchX509Bundles') > 0 && fake.callCount('FetchJWTBundles') > 0,
    "fake.callCount('FetchX509Bundles') > 0 && fake.callCount('FetchJWTBundles') > 0",
  );
  assert.ok(fake.calls.length >= 3);
  for (const call of fake.calls) assert.deepEqual(call.header, ['true'], `${call.rpc} carried the security header`);
});

test('picks the SVID by hint when configured', async (t) => {
  const { ca, fake, source } = await setup(t, { hint: 'external' });
  const internal = await ca.issueX509Svid({ spiffeId: `spiffe://${TD}/internal` });
  const external = await ca.issueX509Svid({ spiffeId: `spiffe://${TD}/external` });
  fake.setX509({ svids: [x509Entry(internal, ca, 'internal'), x509Entry(external, ca, 'external')] });
  await source.start();
  await source.whenReady();
  assert.equal(source.current()?.id.toString(), `spiffe://${TD}/external`);
});

test('picks up each rotation and keeps the last good SVID through a clean end, Unavailable and recovery', async (t) => {
  const { ca, fake, clock, source, seen } = await setup(t);
  const first = await ca.issueX509Svid({ spiffeId: ID });
  fake.setX509({ svids: [x509Entry(first, ca)] });
  await source.start();
  await source.whenReady();
  const firstSerial = serial(source);

  // Rotation on the open stream.
  const second = await ca.issueX509Svid({ spiffeId: ID });
  fake.setX509({ svids: [x509Entry(second, ca)] });
  await until(() => seen.length === 2, 'seen.length === 2');
  const secondSerial = serial(source);
  assert.notEqual(secondSerial, firstSerial);

  // The agent ends the stream cleanly: reopened at once (no backoff), SVID kept.
  const opened = fake.callCount('FetchX509SVID');
  fake.dropStreams(grpc.status.OK);
  await until(
    () => fake.callCount('FetchX509SVID') === opened + 1 && fake.openStreams('FetchX509SVID') === 1,
    "fake.callCount('FetchX509SVID') === opened + 1 && fake.openStreams('FetchX509SVID') === 1",
  );
  assert.equal(serial(source), secondSerial);

  // The agent restarts: the stream fails and new calls answer Unavailable. The SVID stays.
  fake.failWith(grpc.status.UNAVAILABLE, 'agent starting');
  fake.dropStreams(grpc.status.UNAVAILABLE, 'agent going away');
  const failingFrom = fake.callCount('FetchX509SVID');
  for (let i = 0; i < 3; i++) {
    await clock.advance(60_000);
    await until(
      () => fake.callCount('FetchX509SVID') > failingFrom + i,
      "fake.callCount('FetchX509SVID') > failingFrom + i",
    );
  }
  assert.equal(serial(source), secondSerial, 'the last good SVID is served while the agent is unavailable');
  assert.ok(source.current());

  // Recovery with a rotation: picked up on the next attempt.
  const third = await ca.issueX509Svid({ spiffeId: ID });
  fake.setX509({ svids: [x509Entry(third, ca)] });
  fake.failWith(undefined);
  await until(
    async () => {
      if (fake.openStreams('FetchX509SVID') > 0) return true;
      await clock.advance(1_000);
      return false;
    },
    'the FetchX509SVID stream to be reopened after the agent recovers',
    { intervalMs: 5 },
  );
  await until(() => serial(source) !== secondSerial, 'serial(source) !== secondSerial');
  assert.equal(seen.length, 3);
  assert.notEqual(serial(source), firstSerial);
});

test('refuses malformed DER, a key that does not match and an SVID of another trust domain; keeps the last good one', async (t) => {
  const { ca, fake, source, seen, metrics } = await setup(t);
  const good = await ca.issueX509Svid({ spiffeId: ID });
  fake.setX509({ svids: [x509Entry(good, ca)] });
  await source.start();
  await source.whenReady();
  const goodSerial = serial(source);
  const baseline = fake.callCount('FetchX509SVID');

  const mismatch = await mintBad(ca, 'key-mismatch');
  const otherTd = await mintBad(ca, 'other-trust-domain');
  const critical = await mintBad(ca, 'unknown-critical-extension');
  const otherCa = await DevCa.create({ trustDomain: 'other.example.org' });
  const otherSvid = await otherCa.issueX509Svid({ spiffeId: 'spiffe://other.example.org/ns/default/sa/app' });
  const entry = x509Entry(good, ca);
  const bad: [string, object | undefined][] = [
    ['truncated DER', { ...entry, x509_svid: entry.x509_svid.subarray(0, entry.x509_svid.length - 10) }],
    ['garbage DER', { ...entry, x509_svid: Buffer.from('not a certificate') }],
    ['garbage key', { ...entry, x509_svid_key: Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00]) }],
    [
      'key mismatch',
      { ...entry, x509_svid: pemChainToDer(mismatch.certPem), x509_svid_key: pemKeyToPkcs8Der(mismatch.keyPem) },
    ],
    ['other trust domain, its own bundle', x509Entry(otherSvid, otherCa)],
    [
      'other trust domain, our bundle',
      {
        spiffe_id: otherTd.spiffeId ?? '',
        x509_svid: pemChainToDer(otherTd.certPem),
        x509_svid_key: pemKeyToPkcs8Der(otherTd.keyPem),
        bundle: pemChainToDer(ca.certPem),
        hint: '',
      },
    ],
    ['no SVIDs', undefined],
    [
      'an unknown critical extension',
      { ...entry, x509_svid: pemChainToDer(critical.certPem), x509_svid_key: pemKeyToPkcs8Der(critical.keyPem) },
    ],
    ["entry spiffe_id not the certificate's URI SAN", { ...entry, spiffe_id: `spiffe://${TD}/ns/default/sa/admin` }],
  ];
  for (const [what, svid] of bad) {
    const refusedBefore = await refusedCount(metrics);
    fake.setX509({ svids: svid ? [svid as never] : [] });
    await until(async () => (await refusedCount(metrics)) === refusedBefore + 1, `${what}: the refusal to be counted`);
    assert.equal(serial(source), goodSerial, `${what}: last good SVID kept`);
    assert.equal(seen.length, 1, `${what}: subscribers not told`);
  }
  assert.equal(fake.callCount('FetchX509SVID'), baseline, 'bad messages do not break the stream');
  // And a good one after them is taken.
  fake.setX509({ svids: [x509Entry(await ca.issueX509Svid({ spiffeId: ID }), ca)] });
  await until(() => seen.length === 2, 'seen.length === 2');
  assert.notEqual(serial(source), goodSerial);
});

test('InvalidArgument is not retried: whenReady rejects and no further call is made', async (t) => {
  const { fake, clock, source } = await setup(t);
  fake.failWith(grpc.status.INVALID_ARGUMENT, 'bad request');
  await source.start();
  await assert.rejects(
    source.whenReady(),
    (e: unknown) => e instanceof ConnectorError && e.code === 'upstream_rejected' && !e.retryable,
  );
  await until(
    () => fake.callCount('FetchX509Bundles') === 1 && fake.callCount('FetchJWTBundles') === 1,
    "fake.callCount('FetchX509Bundles') === 1 && fake.callCount('FetchJWTBundles') === 1",
  );
  // Nothing left that could call again: no retry on the clock, no stream open. Then ten minutes pass.
  assert.equal(clock.pendingTimers(), 0, 'no retry is scheduled');
  assert.equal(
    fake.openStreams('FetchX509SVID') + fake.openStreams('FetchX509Bundles') + fake.openStreams('FetchJWTBundles'),
    0,
  );
  await clock.advance(10 * 60_000);
  assert.equal(fake.callCount('FetchX509SVID'), 1);
  assert.equal(fake.callCount('FetchX509Bundles'), 1);
  assert.equal(fake.callCount('FetchJWTBundles'), 1);
  assert.equal(source.finalError()?.upstreamCode, 'INVALID_ARGUMENT');
});

test('PermissionDenied is retried with backoff; Unimplemented is not retried', async (t) => {
  const { fake, clock, source } = await setup(t);
  fake.failWith(grpc.status.PERMISSION_DENIED, 'no identity issued');
  await source.start();
  await until(() => fake.callCount('FetchX509SVID') === 1, "fake.callCount('FetchX509SVID') === 1");
  await clock.advance(60_000);
  await until(() => fake.callCount('FetchX509SVID') >= 2, "fake.callCount('FetchX509SVID') >= 2");
  fake.failWith(grpc.status.UNIMPLEMENTED, 'not here');
  await until(
    async () => {
      if (source.finalError() !== undefined) return true;
      await clock.advance(30_000);
      return false;
    },
    'Unimplemented to end the retries',
    { intervalMs: 5 },
  );
  assert.equal(source.finalError()?.upstreamCode, 'UNIMPLEMENTED');
  const calls = fake.callCount('FetchX509SVID');
  assert.equal(clock.pendingTimers(), 0, 'no retry is scheduled after Unimplemented');
  assert.equal(fake.openStreams('FetchX509SVID'), 0);
  await clock.advance(10 * 60_000);
  assert.equal(fake.callCount('FetchX509SVID'), calls, 'no call after Unimplemented');
});

test('JWT-SVIDs: fetched per audience with the header, cached, refreshed at half life', async (t) => {
  const { ca, fake, clock, source } = await setup(t);
  const signer = await DevOidcSigner.start();
  t.after(() => signer.close());
  const minted: string[][] = [];
  fake.onFetchJwt(async (audience) => {
    minted.push(audience);
    return [
      {
        spiffe_id: ID,
        svid: await signer.sign({ sub: ID, aud: audience, ttlSeconds: 300, iat: Math.floor(clock.now() / 1000) }),
      },
    ];
  });
  fake.setX509({ svids: [x509Entry(await ca.issueX509Svid({ spiffeId: ID }), ca)] });
  await source.start();
  await source.whenReady();

  const a = await source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(60_000));
  assert.equal(a.id.toString(), ID);
  assert.deepEqual(a.audience, ['sts.amazonaws.com']);
  const again = await source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(60_000));
  assert.equal(again.token.reveal(), a.token.reveal(), 'served from the cache');
  const b = await source.fetchJwtSvid('api://AzureADTokenExchange', AbortSignal.timeout(60_000));
  assert.deepEqual(b.audience, ['api://AzureADTokenExchange']);
  assert.deepEqual(minted, [['sts.amazonaws.com'], ['api://AzureADTokenExchange']], 'one audience per request');

  // Half of a 300 s life (minus at most 10 % jitter) later, both are fetched again.
  await clock.advance(151_000);
  await until(() => minted.length === 4, 'minted.length === 4');
  for (const call of fake.calls.filter((c) => c.rpc === 'FetchJWTSVID')) assert.deepEqual(call.header, ['true']);
});

test('JWT-SVID refusals: InvalidArgument is final, a token of another trust domain is refused', async (t) => {
  const { ca, fake, source } = await setup(t);
  const signer = await DevOidcSigner.start();
  t.after(() => signer.close());
  fake.setX509({ svids: [x509Entry(await ca.issueX509Svid({ spiffeId: ID }), ca)] });
  await source.start();
  await source.whenReady();
  fake.failJwtWith(grpc.status.INVALID_ARGUMENT, 'bad audience');
  await assert.rejects(
    source.fetchJwtSvid('a', AbortSignal.timeout(60_000)),
    (e: unknown) => e instanceof ConnectorError && !e.retryable,
  );
  fake.failJwtWith(undefined);
  const other = 'spiffe://other.org/app';
  fake.onFetchJwt(async (audience) => [{ spiffe_id: other, svid: await signer.sign({ sub: other, aud: audience }) }]);
  await assert.rejects(
    source.fetchJwtSvid('b', AbortSignal.timeout(60_000)),
    (e: unknown) => e instanceof ConnectorError && /outside the configured trust domain/.test(e.message),
  );
  // An entry that names one identity and carries a token for another is refused.
  const admin = `spiffe://${TD}/ns/default/sa/admin`;
  fake.onFetchJwt(async (audience) => [{ spiffe_id: ID, svid: await signer.sign({ sub: admin, aud: audience }) }]);
  await assert.rejects(
    source.fetchJwtSvid('c', AbortSignal.timeout(60_000)),
    (e: unknown) => e instanceof ConnectorError && /the entry names .* but the token's sub is/.test(e.message),
  );
});

test('an agent that goes away and comes back on the same socket is reconnected to', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wl-restart-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'agent.sock');
  const ca = await DevCa.create({ trustDomain: TD });
  const fake = await FakeWorkloadApi.start({ path });
  const clock = new ManualClock(Date.now() + 60_000);
  const source = createWorkloadApiSource({ socket: `unix:${path}`, trustDomain: TD, clock, logger: silentLogger() });
  t.after(() => source.close());
  fake.setX509({ svids: [x509Entry(await ca.issueX509Svid({ spiffeId: ID }), ca)] });
  await source.start();
  await source.whenReady();
  const before = serial(source);
  await fake.close();
  await unlink(path).catch(() => undefined);
  const revived = await FakeWorkloadApi.start({ path });
  t.after(() => revived.close());
  revived.setX509({ svids: [x509Entry(await ca.issueX509Svid({ spiffeId: ID }), ca)] });
  assert.equal(serial(source), before, 'kept while the agent is gone');
  await until(
    async () => {
      if (serial(source) !== before) return true;
      await clock.advance(1_000);
      return false;
    },
    'an SVID from the revived agent',
    { intervalMs: 20 },
  );
  assert.equal(source.current()?.id.toString(), ID);
});
