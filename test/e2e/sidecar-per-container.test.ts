// A role per container as a user runs it: `run` on a config with aws.containers, and two unmodified AWS SDK
// apps (child processes) that get nothing but what `env --container api` and `env` print: one gets role/api,
// the other the pod's role, from the STS stand-in, which verifies the signatures made with them. `run` says
// when the config makes the roles per container no boundary (IMDS on).

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeAtomicDir } from '@spiffe-connector/dev/atomic-dir.ts';
import { DevCa } from '@spiffe-connector/dev/dev-ca.ts';
import { FakeSts } from '@spiffe-connector/dev/fake-sts.ts';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { cli, freePort, parseEnvLines, runNode, startSidecar, waitFor200 } from '../helpers/sidecar.ts';

const TD = 'example.org';
const ID = 'spiffe://example.org/ns/shop/sa/orders';
const POD_ROLE = 'arn:aws:iam::111122223333:role/orders';
const API_ROLE = 'arn:aws:iam::111122223333:role/api';
const CLIENT = fileURLToPath(new URL('./clients/aws-sdk-client.mjs', import.meta.url));

test('run serves each container its own role to an unmodified SDK app told only `env --container`', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'e2e-per-container-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ca = await DevCa.create({ trustDomain: TD });
  const signer = await DevOidcSigner.start();
  t.after(() => signer.close());
  const trusting = (arn: string) => ({ arn, issuer: signer.issuer, audience: 'sts.amazonaws.com', subject: ID });
  const sts = await FakeSts.start({
    allowLoopbackHttpIssuers: true,
    region: 'eu-west-1',
    providers: [{ issuer: signer.issuer, audiences: ['sts.amazonaws.com'] }],
    roles: [trusting(POD_ROLE), trusting(API_ROLE)],
  });
  t.after(() => sts.close());
  const svid = await ca.issueX509Svid({ spiffeId: ID });
  await writeAtomicDir(join(dir, 'svid'), [
    { name: 'tls.crt', content: svid.certPem },
    { name: 'tls.key', content: svid.keyPem, mode: 0o600 },
    { name: 'ca.crt', content: ca.certPem },
  ]);
  const token = await signer.sign({ sub: ID, aud: 'sts.amazonaws.com', ttlSeconds: 3600 });
  await writeAtomicDir(join(dir, 'tokens'), [{ name: 'jwt-svid', content: token }]);
  const [metadataPort, opsPort] = [await freePort(), await freePort()];
  const configFile = join(dir, 'config.yaml');
  // aws.imds left at its default (on): served, but `check` refuses it and `run` says why.
  await writeFile(
    configFile,
    `spiffe:
  trustDomain: ${TD}
  x509: { dir: ${join(dir, 'svid')} }
  jwt: { file: ${join(dir, 'tokens', 'jwt-svid')} }
server:
  metadataAddress: 127.0.0.1:${metadataPort}
  opsAddress: 127.0.0.1:${opsPort}
  stateDir: ${join(dir, 'state')}
  drainSeconds: 0
aws:
  roleArn: ${POD_ROLE}
  region: eu-west-1
  stsEndpoint: ${sts.url}
  containers:
    api: { roleArn: ${API_ROLE} }
`,
  );
  const checked = await cli(['check', '--config', configFile]);
  assert.equal(checked.code, 1);
  assert.match(checked.stdout + checked.stderr, /aws\.imds: EC2 IMDS carries no per-container secret/);

  const sidecar = await startSidecar(configFile);
  t.after(() => sidecar.stop('SIGKILL'));
  await waitFor200(`http://127.0.0.1:${opsPort}/readyz`);
  const warned = await sidecar.waitForLog(
    (l) => l['level'] === 'warn' && String(l['msg']).startsWith('the roles per container are no boundary: aws.imds'),
    'the boundary warning',
  );
  assert.equal(warned['setting'], 'aws.imds');

  const base = {
    PATH: process.env['PATH'] ?? '',
    HOME: dir,
    AWS_CONFIG_FILE: '/dev/null',
    AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
  };
  const apiEnv = parseEnvLines((await cli(['env', '--config', configFile, '--container', 'api'])).stdout);
  const podEnv = parseEnvLines((await cli(['env', '--config', configFile])).stdout);
  // Only the container-credentials lines: IMDS would give any process the pod role.
  const own = (env: Record<string, string>) =>
    Object.fromEntries(Object.entries(env).filter(([k]) => k !== 'AWS_EC2_METADATA_SERVICE_ENDPOINT'));
  const api = await runNode([CLIENT, sts.url], { ...base, ...own(apiEnv) });
  assert.equal(api.code, 0, api.stderr);
  assert.equal(
    (JSON.parse(api.stdout) as { arn: string }).arn,
    `arn:aws:sts::111122223333:assumed-role/api/api@ns.shop.sa.orders`,
  );
  const pod = await runNode([CLIENT, sts.url], { ...base, ...own(podEnv) });
  assert.equal(pod.code, 0, pod.stderr);
  assert.equal(
    (JSON.parse(pod.stdout) as { arn: string }).arn,
    `arn:aws:sts::111122223333:assumed-role/orders/ns.shop.sa.orders`,
  );
  // api's path with the pod's token file: refused, so the SDK fails.
  const crossed = await runNode([CLIENT, sts.url], {
    ...base,
    AWS_CONTAINER_CREDENTIALS_FULL_URI: apiEnv['AWS_CONTAINER_CREDENTIALS_FULL_URI'] ?? '',
    AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: podEnv['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'] ?? '',
    AWS_REGION: 'eu-west-1',
  });
  assert.notEqual(crossed.code, 0);
  assert.equal(sts.stats.signaturesVerified, 2);
  // No secret in the logs.
  assert.ok(!sidecar.logs().includes(token.slice(-20)));
});
