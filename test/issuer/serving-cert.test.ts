// The token endpoint's serving certificate is reloaded on change (cert-manager renews it in place); a
// certificate and key that do not match are refused and the last good pair keeps serving.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect } from 'node:tls';
import { until } from '../helpers/until.ts';
import { type Fixture, startFixture } from './fixture.ts';

/** The serial number of the certificate the token endpoint presents to a new connection. */
function servedSerial(fx: Fixture): Promise<string> {
  const url = new URL(fx.issuer.tokenUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(
      { host: url.hostname, port: Number(url.port), ca: fx.ca.certPem, servername: 'localhost' },
      () => {
        const serial = socket.getPeerX509Certificate()?.serialNumber ?? '';
        socket.destroy();
        resolve(serial);
      },
    );
    socket.once('error', reject);
  });
}

test('serving certificate: renewed in place → served to new connections; a mismatched pair is refused', async (t) => {
  const fx = await startFixture(t);
  const first = await servedSerial(fx);
  const renewed = await fx.ca.issueServerCert({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const { X509Certificate } = await import('node:crypto');
  const renewedSerial = new X509Certificate(renewed.certPem).serialNumber;
  await writeFile(join(fx.dir, 'tls.key'), renewed.keyPem);
  await writeFile(join(fx.dir, 'tls.crt'), renewed.certPem);
  await until(async () => (await servedSerial(fx)) === renewedSerial, 'the renewed certificate is served');
  assert.notEqual(renewedSerial, first);

  const refused = async (): Promise<number> =>
    (await fx.issuer.metrics.reloads.get()).values.find(
      (v) => v.labels['what'] === 'serving_cert' && v.labels['outcome'] === 'refused',
    )?.value ?? 0;
  const before = await refused();
  const other = await fx.ca.issueServerCert({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  await writeFile(join(fx.dir, 'tls.crt'), other.certPem); // the key stays the renewed one: a mismatch
  await until(async () => (await refused()) > before, 'the mismatched pair is refused');
  assert.equal(await servedSerial(fx), renewedSerial);
});
