// cert-manager users: `spiffe-connector run` with server.workloadApiSocket serves the SPIFFE Workload
// API to the pod from the csi-driver-spiffe files; a client written from the spec sees each rotation.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { writeAtomicDir } from '@spiffe-connector/dev/atomic-dir.ts';
import { DevCa } from '@spiffe-connector/dev/dev-ca.ts';
import { FakeSts } from '@spiffe-connector/dev/fake-sts.ts';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { loadSpecProto } from '../helpers/fake-workload-api.ts';
import { cli, freePort, parseEnvLines, startSidecar, waitFor200 } from '../helpers/sidecar.ts';

const ID = 'spiffe://example.org/ns/default/sa/app';

test('the sidecar serves the Workload API on a socket, and an open stream sees the next rotation', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'e2e-wl-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const signer = await DevOidcSigner.start();
  t.after(() => signer.close());
  const sts = await FakeSts.start({
    allowLoopbackHttpIssuers: true,
    region: 'eu-west-1',
    providers: [{ issuer: signer.issuer, audiences: ['sts.amazonaws.com'] }],
    roles: [{ arn: 'arn:aws:iam::111122223333:role/app', issuer: signer.issuer, audience: 'sts.amazonaws.com' }],
  });
  t.after(() => sts.close());
  const rotate = async (): Promise<void> => {
    const svid = await ca.issueX509Svid({ spiffeId: ID });
    await writeAtomicDir(join(dir, 'svid'), [
      { name: 'tls.crt', content: svid.certPem },
      { name: 'tls.key', content: svid.keyPem },
      { name: 'ca.crt', content: ca.certPem },
    ]);
  };
  await rotate();
  await writeAtomicDir(join(dir, 'tokens'), [
    { name: 'jwt', content: await signer.sign({ sub: ID, aud: 'sts.amazonaws.com' }) },
  ]);
  const socket = join(dir, 'state', 'spiffe.sock');
  const ops = await freePort();
  const configFile = join(dir, 'config.yaml');
  await writeFile(
    configFile,
    `spiffe: { trustDomain: example.org, x509: { dir: ${join(dir, 'svid')} }, jwt: { file: ${join(dir, 'tokens', 'jwt')} } }
server: { metadataAddress: "127.0.0.1:${await freePort()}", opsAddress: "127.0.0.1:${ops}", stateDir: ${join(dir, 'state')}, workloadApiSocket: ${socket}, drainSeconds: 0 }
aws: { roleArn: "arn:aws:iam::111122223333:role/app", region: eu-west-1, stsEndpoint: ${sts.url} }
`,
  );
  const env = parseEnvLines((await cli(['env', '--config', configFile])).stdout);
  assert.equal(env['SPIFFE_ENDPOINT_SOCKET'], `unix://${socket}`);

  const sidecar = await startSidecar(configFile);
  t.after(() => sidecar.stop('SIGKILL'));
  await waitFor200(`http://127.0.0.1:${ops}/readyz`);

  const Client = loadSpecProto();
  const client = new Client(
    env['SPIFFE_ENDPOINT_SOCKET'] ?? '',
    grpc.credentials.createInsecure(),
  ) as unknown as grpc.Client & Record<string, (...a: unknown[]) => grpc.ClientReadableStream<unknown>>;
  t.after(() => client.close());
  const metadata = new grpc.Metadata();
  metadata.set('workload.spiffe.io', 'true');
  const stream = client['FetchX509SVID']?.({}, metadata);
  assert.ok(stream, 'the generated client has FetchX509SVID');
  t.after(() => stream.cancel());
  const messages: Array<{ svids: Array<{ spiffe_id: string; x509_svid: Buffer }> }> = [];
  let notify: (() => void) | undefined;
  stream.on('data', (m: (typeof messages)[number]) => {
    messages.push(m);
    notify?.();
  });
  stream.on('error', () => {});
  const next = (count: number): Promise<void> =>
    new Promise((resolve) => {
      if (messages.length >= count) return resolve();
      notify = () => messages.length >= count && resolve();
    });
  await next(1);
  assert.equal(messages[0]?.svids[0]?.spiffe_id, ID);
  await rotate();
  await next(2);
  assert.equal(messages[1]?.svids[0]?.spiffe_id, ID);
  assert.notDeepEqual(messages[1]?.svids[0]?.x509_svid, messages[0]?.svids[0]?.x509_svid, 'the rotated certificate');
});
