// The X.509 file source as csi-driver-spiffe feeds it: atomic `..data` swaps become new SVIDs;
// every kind of bad or half-written set is refused with the last good SVID kept.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeAtomicDir } from '@spiffe-connector/dev/atomic-dir.ts';
import { systemClock } from '../../src/base/clock.ts';
import { createLogger } from '../../src/ops/logger.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { X509FilesSource } from '../../src/sources/x509-files.ts';
import type { X509Svid } from '../../src/spiffe/x509-svid.ts';
import { countedFiles } from '../helpers/counted-files.ts';
import { BAD_SVID_KINDS, DevCa, mintBad } from '../helpers/pki.ts';
import { until } from '../helpers/until.ts';

const TD = 'example.org';
const ID = 'spiffe://example.org/ns/default/sa/app';

interface Captured {
  lines: Array<Record<string, unknown>>;
}

function capturingLogger(): { logger: ReturnType<typeof createLogger>; captured: Captured } {
  const captured: Captured = { lines: [] };
  const logger = createLogger({
    level: 'debug',
    destination: { write: (s: string) => void captured.lines.push(JSON.parse(s)) },
  });
  return { logger, captured };
}

async function setup(
  t: import('node:test').TestContext,
  options: { watch?: boolean; pollIntervalSeconds?: number; disk?: ReturnType<typeof countedFiles> } = {},
) {
  const dir = await mkdtemp(join(tmpdir(), 'svid-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ca = await DevCa.create({ trustDomain: TD });
  const write = async (certPem: string, keyPem: string, bundlePem = ca.certPem): Promise<void> =>
    writeAtomicDir(dir, [
      { name: 'tls.crt', content: certPem },
      { name: 'tls.key', content: keyPem, mode: 0o600 },
      { name: 'ca.crt', content: bundlePem },
    ]);
  const first = await ca.issueX509Svid({ spiffeId: ID });
  await write(first.certPem, first.keyPem);
  const { logger, captured } = capturingLogger();
  const metrics = new Metrics();
  const source = new X509FilesSource({
    dir,
    certFile: 'tls.crt',
    keyFile: 'tls.key',
    bundleFile: 'ca.crt',
    trustDomain: TD,
    pollIntervalSeconds: options.pollIntervalSeconds ?? 1,
    clock: systemClock,
    logger,
    metrics,
    debounceMs: 50,
    watch: options.watch ?? false,
    ...(options.disk ? { readFile: options.disk.readFile, stat: options.disk.stat } : {}),
  });
  t.after(() => source.close());
  await source.start();
  return { dir, ca, write, source, captured, metrics, first };
}

function serial(svid: X509Svid | undefined): string | undefined {
  return svid?.certificates[0]?.serialNumber;
}

test('loads the csi-driver-spiffe layout and verifies it against ca.crt', async (t) => {
  const { source } = await setup(t);
  const svid = source.current();
  assert.ok(svid);
  assert.equal(svid.id.toString(), ID);
  assert.equal(source.bundle()?.authorities.length, 1);
});

test('an atomic ..data swap is picked up by the watcher and announced', async (t) => {
  const { source, ca, write } = await setup(t, { watch: true });
  const before = serial(source.current());
  const announced = new Promise<X509Svid>((resolve) => source.subscribe(resolve));
  const next = await ca.issueX509Svid({ spiffeId: ID });
  await write(next.certPem, next.keyPem);
  const svid = await announced;
  assert.notEqual(serial(svid), before);
  assert.equal(serial(source.current()), serial(svid));
});

test('the directory removed and created again is still watched (no wait for the poll)', async (t) => {
  // Polling every 10 minutes: only the watcher can see the new set within the test's bound.
  const { source, ca, dir } = await setup(t, { watch: true, pollIntervalSeconds: 600 });
  for (let round = 0; round < 2; round++) {
    const before = serial(source.current());
    const announced = new Promise<X509Svid>((resolve) => {
      const stop = source.subscribe((svid) => {
        stop();
        resolve(svid);
      });
    });
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir);
    const next = await ca.issueX509Svid({ spiffeId: ID });
    await writeAtomicDir(dir, [
      { name: 'tls.crt', content: next.certPem },
      { name: 'tls.key', content: next.keyPem, mode: 0o600 },
      { name: 'ca.crt', content: ca.certPem },
    ]);
    const svid = await Promise.race([
      announced,
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 10_000).unref()),
    ]);
    assert.ok(svid, `round ${round}: the new SVID was not seen within 10 s`);
    assert.notEqual(serial(svid), before);
  }
});

test('every bad SVID is refused with a clear log line and the last good one kept', async (t) => {
  const { source, ca, write, captured, metrics } = await setup(t);
  const good = serial(source.current());
  let announcements = 0;
  source.subscribe(() => announcements++);
  for (const kind of BAD_SVID_KINDS) {
    const bad = await mintBad(ca, kind, { path: '/ns/default/sa/app' });
    await write(bad.certPem, bad.keyPem, bad.bundlePem);
    captured.lines.length = 0;
    await source.reload(`test ${kind}`);
    assert.equal(serial(source.current()), good, `${kind}: the last good SVID stays`);
    const refusal = captured.lines.find(
      (l) => l['msg'] === 'refused the new X.509-SVID files; keeping the last good ones',
    );
    assert.ok(refusal, `${kind}: a refusal is logged`);
    assert.equal(refusal['keeping'], ID);
    assert.ok(typeof refusal['err'] === 'string' && (refusal['err'] as string).length > 10, `${kind}: says why`);
    assert.doesNotMatch(JSON.stringify(refusal), /PRIVATE KEY/, `${kind}: no key material in the log`);
  }
  assert.equal(announcements, 0, 'no refused SVID is announced');
  assert.match(await metrics.text(), /spiffe_connector_svid_updates_total\{kind="x509",outcome="refused"\} \d+/);
});

test('a half-written set (new certificate, old key) is refused until the key arrives', async (t) => {
  const { source, ca, dir, first } = await setup(t);
  const next = await ca.issueX509Svid({ spiffeId: ID });
  // Non-atomic writer (spiffe-helper style): the certificate lands first.
  await writeFile(join(dir, 'tls.crt'), next.certPem);
  await source.reload('half written');
  assert.equal(serial(source.current()), serial(await toSvid(first)));
  await writeFile(join(dir, 'tls.key'), next.keyPem);
  await source.reload('complete');
  assert.notEqual(serial(source.current()), serial(await toSvid(first)));
});

test('missing or truncated files are refused, not fatal', async (t) => {
  const { source, dir } = await setup(t);
  const good = serial(source.current());
  await writeFile(join(dir, 'tls.crt'), '-----BEGIN CERTIFICATE-----\nMIIB');
  await source.reload('truncated');
  await rm(join(dir, 'ca.crt'));
  await source.reload('missing bundle');
  assert.equal(serial(source.current()), good);
});

test('no usable SVID at start: not ready, and ready as soon as a good one lands', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'svid-empty-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ca = await DevCa.create({ trustDomain: TD });
  const { logger } = capturingLogger();
  const source = new X509FilesSource({
    dir,
    certFile: 'tls.crt',
    keyFile: 'tls.key',
    bundleFile: 'ca.crt',
    trustDomain: TD,
    pollIntervalSeconds: 1,
    clock: systemClock,
    logger,
    watch: false,
  });
  t.after(() => source.close());
  await source.start();
  assert.equal(source.current(), undefined);
  const ready = source.whenReady();
  const svid = await ca.issueX509Svid({ spiffeId: ID });
  await writeAtomicDir(dir, [
    { name: 'tls.crt', content: svid.certPem },
    { name: 'tls.key', content: svid.keyPem },
    { name: 'ca.crt', content: ca.certPem },
  ]);
  await ready; // the 1 s poll finds it
  assert.equal(source.current()?.id.toString(), ID);
});

async function toSvid(minted: { certPem: string; keyPem: string }): Promise<X509Svid> {
  const { parseX509Svid } = await import('../../src/spiffe/x509-svid.ts');
  return parseX509Svid(minted.certPem, minted.keyPem);
}

test('a poll reads, parses and verifies the files again only when they were replaced', async (t) => {
  const disk = countedFiles(10_000);
  const { source, ca, write } = await setup(t, { disk });
  assert.equal(disk.reads(), 3, 'the first load reads the three files');
  const seen = disk.stats();
  await until(() => disk.stats() >= seen + 6, 'two polls to stat the three files');
  assert.equal(disk.reads(), 3, 'unchanged files are not read again');
  const before = serial(source.current());
  const next = await ca.issueX509Svid({ spiffeId: ID });
  await write(next.certPem, next.keyPem);
  await until(() => serial(source.current()) !== before, 'the next poll to load the new SVID');
  assert.equal(disk.reads(), 6);
});
