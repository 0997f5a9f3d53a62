// The serving certificate is reloaded when cert-manager renews it, without a restart; a bad new pair
// is refused and the last good one keeps serving.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { test } from 'node:test';
import { ManualClock } from '../../src/base/clock.ts';
import { until } from '../helpers/until.ts';
import { podReview, startHarness } from './harness.ts';

test('a renewed serving certificate is picked up on the next poll; a broken one is refused', async (t) => {
  const clock = new ManualClock(Date.now());
  const h = await startHarness(t, { clock });
  const before = await h.peerFingerprint();
  assert.equal(before, new X509Certificate(await readFile(h.certFile)).fingerprint256);

  // cert-manager writes a new pair (same CA, new key).
  const renewed = await h.ca.issueServerCert({
    dnsNames: ['spiffe-connector-webhook.spiffe-connector.svc'],
    ipAddresses: ['127.0.0.1'],
  });
  await writeFile(h.keyFile, renewed.keyPem);
  await writeFile(h.certFile, renewed.certPem);
  await clock.advance(60_000);
  const expected = new X509Certificate(renewed.certPem).fingerprint256;
  await until(async () => (await h.peerFingerprint()) === expected, 'the renewed certificate to be served');

  // A half-written pair (new key, old cert) is refused; the renewed pair keeps serving.
  const other = await h.ca.issueServerCert({ dnsNames: ['x.example'] });
  await writeFile(h.keyFile, other.keyPem);
  await clock.advance(60_000);
  await until(
    async () => /tls_reloads_total\{outcome="refused"\} 1/.test((await h.get('/metrics')).text),
    'the half-written pair to be counted as refused',
  );
  assert.equal(await h.peerFingerprint(), expected);
  const review = podReview({ metadata: {}, spec: { containers: [{ name: 'a' }] } }, 'default');
  assert.equal((await h.post(review)).status, 200, 'admission keeps working');
});
