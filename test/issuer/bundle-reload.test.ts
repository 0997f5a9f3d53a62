// The trust bundle file is reloaded on change: a new CA is trusted from the next request on, a CA
// removed is no longer trusted, and an unreadable bundle is refused with the last good one kept.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { test } from 'node:test';
import { DevCa } from '../helpers/pki.ts';
import { until } from '../helpers/until.ts';
import { AUDIENCES, FORM, postToken, startFixture, TRUST_DOMAIN } from './fixture.ts';

const ID = `spiffe://${TRUST_DOMAIN}/ns/default/sa/app`;

test('bundle reload: add a CA, refuse a broken bundle (old kept), drop a CA', async (t) => {
  const fx = await startFixture(t);
  const next = await DevCa.create({ trustDomain: TRUST_DOMAIN }); // the trust domain's next root
  const oldClient = await fx.ca.issueX509Svid({ spiffeId: ID });
  const newClient = await next.issueX509Svid({ spiffeId: ID });
  assert.equal((await postToken(fx, oldClient)).status, 200);
  assert.equal((await postToken(fx, newClient)).status, 401);
  // A keep-alive connection opened now, reused after the old root is dropped: re-verified, not remembered.
  const { Agent, request } = await import('undici');
  const kept = new Agent({ connect: { ca: fx.ca.certPem, cert: oldClient.certPem, key: oldClient.keyPem } });
  t.after(() => kept.close());
  const viaKept = async (): Promise<number> => {
    const res = await request(fx.issuer.tokenUrl, {
      method: 'POST',
      dispatcher: kept,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ ...FORM, audience: AUDIENCES[0] ?? '' }).toString(),
    });
    await res.body.text();
    return res.statusCode;
  };
  assert.equal(await viaKept(), 200);

  await writeFile(fx.bundleFile, fx.ca.certPem + next.certPem);
  await until(async () => (await postToken(fx, newClient)).status === 200, 'the new root is trusted');
  assert.equal((await postToken(fx, oldClient)).status, 200);

  const refused = async (): Promise<number> =>
    (await fx.issuer.metrics.reloads.get()).values.find(
      (v) => v.labels['what'] === 'bundle' && v.labels['outcome'] === 'refused',
    )?.value ?? 0;
  let before = await refused();
  await writeFile(fx.bundleFile, '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n');
  await until(async () => (await refused()) > before, 'the broken bundle is refused');
  assert.equal((await postToken(fx, newClient)).status, 200, 'the last good bundle stays');
  assert.equal((await postToken(fx, oldClient)).status, 200);

  // A leaf certificate is not a trust anchor: refused as well.
  before = await refused();
  await writeFile(fx.bundleFile, (await next.issueServerCert({ dnsNames: ['x.example.org'] })).certPem);
  await until(async () => (await refused()) > before, 'the non-CA bundle is refused');
  assert.equal((await postToken(fx, oldClient)).status, 200);

  await writeFile(fx.bundleFile, next.certPem);
  await until(async () => (await postToken(fx, oldClient)).status === 401, 'the old root is dropped');
  assert.equal((await postToken(fx, newClient)).status, 200);
  assert.equal(await viaKept(), 401, 'the kept-alive connection of the old root is refused too');
});
