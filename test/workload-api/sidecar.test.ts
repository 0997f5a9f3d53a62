// SPIRE users: the whole sidecar (`spiffe-connector run` in a child process) takes its identity from a
// fake Workload API agent and serves AWS credentials from the AWS stand-in, through agent restarts,
// Unavailable, a bad SVID and rotations, without one failed request.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { FakeSts } from '@spiffe-connector/dev/fake-sts.ts';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { FakeWorkloadApi, pemChainToDer, pemKeyToPkcs8Der, x509Entry } from '../helpers/fake-workload-api.ts';
import { DevCa, mintBad } from '../helpers/pki.ts';
import { freePort, startSidecar, waitFor200 } from '../helpers/sidecar.ts';
import { until } from '../helpers/until.ts';

const TD = 'example.org';
const ID = 'spiffe://example.org/ns/payments/sa/api';
const ROLE = 'arn:aws:iam::111122223333:role/payments';

test('the sidecar serves AWS credentials from a Workload API identity throughout drops, Unavailable and rotations', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wl-sidecar-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ca = await DevCa.create({ trustDomain: TD });
  const signer = await DevOidcSigner.start();
  t.after(() => signer.close());
  const sts = await FakeSts.start({
    allowLoopbackHttpIssuers: true,
    region: 'eu-west-1',
    providers: [{ issuer: signer.issuer, audiences: ['sts.amazonaws.com'] }],
    roles: [
      {
        arn: ROLE,
        issuer: signer.issuer,
        audience: 'sts.amazonaws.com',
        subject: 'spiffe://example.org/ns/payments/*',
      },
    ],
  });
  t.after(() => sts.close());
  const agent = await FakeWorkloadApi.start();
  t.after(() => agent.close());
  agent.setX509({ svids: [x509Entry(await ca.issueX509Svid({ spiffeId: ID }), ca)] });
  agent.onFetchJwt(async (audience) => [
    { spiffe_id: ID, svid: await signer.sign({ sub: ID, aud: audience, ttlSeconds: 600 }) },
  ]);

  const [metadataPort, opsPort] = [await freePort(), await freePort()];
  const configFile = join(dir, 'config.yaml');
  await writeFile(
    configFile,
    `spiffe:
  trustDomain: ${TD}
  workloadApi: { socket: "${agent.address}" }
server:
  metadataAddress: 127.0.0.1:${metadataPort}
  opsAddress: 127.0.0.1:${opsPort}
  stateDir: ${join(dir, 'state')}
  drainSeconds: 0
aws:
  roleArn: ${ROLE}
  region: eu-west-1
  stsEndpoint: ${sts.url}
`,
  );
  const sidecar = await startSidecar(configFile);
  t.after(() => sidecar.stop('SIGKILL'));
  await waitFor200(`http://127.0.0.1:${opsPort}/readyz`);

  const token = await readFile(join(dir, 'state', 'aws-container-token'), 'utf8');
  const statuses: number[] = [];
  const get = async (): Promise<string | undefined> => {
    const r = await fetch(`http://127.0.0.1:${metadataPort}/v1/credentials`, { headers: { authorization: token } });
    statuses.push(r.status);
    return r.status === 200 ? ((await r.json()) as { AccessKeyId: string }).AccessKeyId : undefined;
  };
  const first = await get();
  assert.ok(first);
  assert.equal(sts.stats.lastSubject, ID, 'STS saw the SPIFFE ID from the agent');
  const jwtCalls = agent.calls.filter((c) => c.rpc === 'FetchJWTSVID');
  assert.ok(jwtCalls.length >= 1);
  for (const call of agent.calls) assert.deepEqual(call.header, ['true'], `${call.rpc} carried the security header`);
  assert.deepEqual((jwtCalls[0]?.request as { audience: string[] } | undefined)?.audience, ['sts.amazonaws.com']);

  // The agent goes away: streams fail, new calls answer Unavailable. Credentials keep being served.
  agent.failWith(grpc.status.UNAVAILABLE, 'agent restarting');
  agent.dropStreams(grpc.status.UNAVAILABLE, 'agent restarting');
  await sidecar.waitForLog(
    (l) => l['msg'] === 'the Workload API stream FetchX509SVID failed; reconnecting after a backoff',
    'the Workload API stream FetchX509SVID failed; reconnecting after a backoff',
  );
  for (let i = 0; i < 5; i++) assert.equal(await get(), first);
  assert.equal((await fetch(`http://127.0.0.1:${opsPort}/readyz`)).status, 200, 'still ready on the last good SVID');

  // It comes back with a bad SVID (another trust domain): refused, the last good SVID stays.
  const other = await mintBad(ca, 'other-trust-domain');
  agent.setX509({
    svids: [
      {
        spiffe_id: other.spiffeId ?? '',
        x509_svid: pemChainToDer(other.certPem),
        x509_svid_key: pemKeyToPkcs8Der(other.keyPem),
        bundle: pemChainToDer(ca.certPem),
        hint: '',
      },
    ],
  });
  agent.failWith(undefined);
  await sidecar.waitForLog(
    (l) => l['msg'] === 'refused the X.509-SVID from the Workload API; keeping the last good SVID',
    'refused the X.509-SVID from the Workload API; keeping the last good SVID',
  );
  assert.equal(await get(), first);

  // Then with a good rotation: picked up, and the identity change brings new AWS credentials.
  const exchanges = sts.stats.assumeRoleSuccesses;
  agent.setX509({ svids: [x509Entry(await ca.issueX509Svid({ spiffeId: ID }), ca)] });
  await sidecar.waitForLog((l) => l['msg'] === 'X.509-SVID rotated', 'X.509-SVID rotated');
  await until(async () => (await get()) !== first, 'new AWS credentials after the rotation', { intervalMs: 25 });
  assert.ok(sts.stats.assumeRoleSuccesses > exchanges);
  assert.deepEqual([...new Set(statuses)], [200], 'no failed request throughout');
});
