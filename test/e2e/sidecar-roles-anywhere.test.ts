// The whole sidecar (`spiffe-connector run` in a child process) in Roles Anywhere mode: SPIRE's way, the
// X.509-SVID (with a subject) from a Workload API agent, CreateSession at the stand-in, the AWS SDK in the
// app with nothing but the env lines, a rotation signing a new session; and csi-driver-spiffe's way, an
// SVID with an empty subject from files, which `check` and the logs name plainly.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fromHttp } from '@aws-sdk/credential-providers';
import {
  issueSvid,
  PROFILE_ARN,
  REGION,
  ROLE_ARN,
  SPIFFE_ID,
  startFakeRolesAnywhere,
  TD,
  TRUST_ANCHOR_ARN,
} from '../aws/roles-anywhere-support.ts';
import { FakeWorkloadApi, pemChainToDer, pemKeyToPkcs8Der } from '../helpers/fake-workload-api.ts';
import { DevCa } from '../helpers/pki.ts';
import { cli, freePort, parseEnvLines, startSidecar, waitFor200 } from '../helpers/sidecar.ts';
import { until } from '../helpers/until.ts';

function configText(o: {
  dir: string;
  identity: string;
  metadataPort: number;
  opsPort: number;
  endpoint: string;
}): string {
  return `spiffe:
  trustDomain: ${TD}
${o.identity}
server:
  metadataAddress: 127.0.0.1:${o.metadataPort}
  opsAddress: 127.0.0.1:${o.opsPort}
  stateDir: ${join(o.dir, 'state')}
  drainSeconds: 0
aws:
  roleArn: ${ROLE_ARN}
  region: ${REGION}
  rolesAnywhere:
    trustAnchorArn: ${TRUST_ANCHOR_ARN}
    profileArn: ${PROFILE_ARN}
    endpoint: ${o.endpoint}
`;
}

test('Workload API SVID → Roles Anywhere → the AWS SDK in the app; a rotation signs a new session, no request fails', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ra-sidecar-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ca = await DevCa.create({ trustDomain: TD });
  const fake = await startFakeRolesAnywhere(ca);
  t.after(() => fake.close());
  const agent = await FakeWorkloadApi.start();
  t.after(() => agent.close());
  const entry = async () => {
    const issued = await issueSvid(ca, { subject: 'O=SPIRE, C=US' });
    return {
      spiffe_id: SPIFFE_ID,
      x509_svid: pemChainToDer(issued.chainPem),
      x509_svid_key: pemKeyToPkcs8Der(issued.keyPem),
      bundle: pemChainToDer(ca.certPem),
      hint: '',
    };
  };
  agent.setX509({ svids: [await entry()] });
  const [metadataPort, opsPort] = [await freePort(), await freePort()];
  const configFile = join(dir, 'config.yaml');
  await writeFile(
    configFile,
    configText({
      dir,
      identity: `  workloadApi: { socket: "${agent.address}" }`,
      metadataPort,
      opsPort,
      endpoint: fake.url,
    }),
  );
  const env = parseEnvLines((await cli(['env', '--config', configFile])).stdout);
  assert.equal(agent.calls.filter((c) => c.rpc === 'FetchJWTSVID').length, 0);

  const sidecar = await startSidecar(configFile);
  t.after(() => sidecar.stop('SIGKILL'));
  await waitFor200(`http://127.0.0.1:${opsPort}/readyz`);
  assert.equal(fake.stats.sessions, 1);
  assert.equal(agent.calls.filter((c) => c.rpc === 'FetchJWTSVID').length, 0, 'no JWT-SVID is asked for');
  const provider = () =>
    fromHttp({
      awsContainerCredentialsFullUri: env['AWS_CONTAINER_CREDENTIALS_FULL_URI'] ?? '',
      awsContainerAuthorizationTokenFile: env['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'] ?? '',
    })();
  const first = await provider();
  assert.equal(first.accessKeyId, fake.sessions()[0]?.accessKeyId);

  const token = await readFile(env['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'] ?? '', 'utf8');
  const statuses: number[] = [];
  let current = first.accessKeyId;
  agent.setX509({ svids: [await entry()] });
  await sidecar.waitForLog((l) => l['msg'] === 'X.509-SVID rotated', 'X.509-SVID rotated');
  await until(
    async () => {
      const r = await fetch(`http://127.0.0.1:${metadataPort}/v1/credentials`, { headers: { authorization: token } });
      statuses.push(r.status);
      if (r.status === 200) current = ((await r.json()) as { AccessKeyId: string }).AccessKeyId;
      return current !== first.accessKeyId;
    },
    'the session signed with the rotated certificate',
    { intervalMs: 20 },
  );
  assert.equal(fake.stats.sessions, 2);
  assert.equal(current, fake.sessions()[1]?.accessKeyId);
  assert.notEqual(fake.sessions()[1]?.serial, fake.sessions()[0]?.serial, 'signed with the new certificate');
  assert.deepEqual([...new Set(statuses)], [200], 'no failed request during the rotation');
});

test('a csi-driver-spiffe SVID (empty subject): check says so, the log warns and names the refusal, not ready', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ra-sidecar-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ca = await DevCa.create({ trustDomain: TD });
  const fake = await startFakeRolesAnywhere(ca);
  t.after(() => fake.close());
  const svidDir = join(dir, 'spiffe.io');
  const svid = await ca.issueX509Svid({ spiffeId: SPIFFE_ID });
  await mkdir(svidDir);
  await writeFile(join(svidDir, 'tls.crt'), svid.certPem);
  await writeFile(join(svidDir, 'tls.key'), svid.keyPem);
  await writeFile(join(svidDir, 'ca.crt'), ca.certPem);
  const [metadataPort, opsPort] = [await freePort(), await freePort()];
  const configFile = join(dir, 'config.yaml');
  await writeFile(
    configFile,
    configText({ dir, identity: `  x509: { dir: ${svidDir} }`, metadataPort, opsPort, endpoint: fake.url }),
  );

  const checked = await cli(['check', '--config', configFile]);
  assert.equal(checked.code, 1, checked.stdout + checked.stderr);
  assert.match(
    checked.stdout + checked.stderr,
    /aws\.rolesAnywhere: the X\.509-SVID has an empty subject \(csi-driver-spiffe issues SVIDs so/,
  );

  const sidecar = await startSidecar(configFile);
  t.after(() => sidecar.stop('SIGKILL'));
  const warning = await sidecar.waitForLog(
    (l) => typeof l['msg'] === 'string' && l['msg'].startsWith('the X.509-SVID has an empty subject'),
    'the X.509-SVID has an empty subject warning',
  );
  assert.equal(warning['level'], 'warn');
  const refused = await sidecar.waitForLog(
    (l) => l['msg'] === 'credential refresh failed' && l['upstreamCode'] === 'AccessDeniedException',
    'credential refresh failed (AccessDeniedException)',
  );
  assert.equal(refused['retryable'], false);
  assert.match(
    String(refused['err']),
    /refused CreateSession \(AccessDeniedException\): Untrusted certificate\. Certificates with an empty subject are not supported .*The X\.509-SVID has an empty subject, which AWS documents as unsupported by Roles Anywhere \(csi-driver-spiffe issues SVIDs so\)/,
  );
  assert.equal((await fetch(`http://127.0.0.1:${opsPort}/readyz`)).status, 503);
  assert.ok(!sidecar.logs().includes('BEGIN'), 'no certificate or key material in the logs');
  assert.equal(fake.stats.sessions, 0);
  assert.equal(fake.stats.errors['AccessDeniedException'], 1);
});
