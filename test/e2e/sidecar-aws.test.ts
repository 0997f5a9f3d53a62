// The whole sidecar as a user runs it: `check` and `env` on a config, `run` as a process, and an
// unmodified AWS SDK app that gets nothing but the `env` lines. Rotation, refusal, secrecy, SIGTERM.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeAtomicDir } from '@spiffe-connector/dev/atomic-dir.ts';
import { DevCa } from '@spiffe-connector/dev/dev-ca.ts';
import { FakeSts } from '@spiffe-connector/dev/fake-sts.ts';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { MALFORMED_TARGETS, sendTarget } from '../helpers/http.ts';
import { cli, freePort, parseEnvLines, runNode, startSidecar, waitFor200 } from '../helpers/sidecar.ts';

const TD = 'example.org';
const ID = 'spiffe://example.org/ns/payments/sa/api';
const ROLE = 'arn:aws:iam::111122223333:role/payments';
const CLIENT = fileURLToPath(new URL('./clients/aws-sdk-client.mjs', import.meta.url));

async function fixture(t: import('node:test').TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'e2e-aws-'));
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
  const writeSvid = async (): Promise<void> => {
    const svid = await ca.issueX509Svid({ spiffeId: ID });
    await writeAtomicDir(join(dir, 'svid'), [
      { name: 'tls.crt', content: svid.certPem },
      { name: 'tls.key', content: svid.keyPem, mode: 0o600 },
      { name: 'ca.crt', content: ca.certPem },
    ]);
  };
  const writeJwt = async (sub = ID): Promise<string> => {
    const token = await signer.sign({ sub, aud: 'sts.amazonaws.com', ttlSeconds: 3600 });
    await writeAtomicDir(join(dir, 'tokens'), [{ name: 'jwt-svid', content: token }]);
    return token;
  };
  await writeSvid();
  const firstJwt = await writeJwt();
  const [metadataPort, opsPort] = [await freePort(), await freePort()];
  const configFile = join(dir, 'config.yaml');
  await writeFile(
    configFile,
    `spiffe:
  trustDomain: ${TD}
  x509: { dir: ${join(dir, 'svid')}, pollIntervalSeconds: 1 }
  jwt: { file: ${join(dir, 'tokens', 'jwt-svid')} }
server:
  metadataAddress: 127.0.0.1:${metadataPort}
  opsAddress: 127.0.0.1:${opsPort}
  stateDir: ${join(dir, 'state')}
  drainSeconds: 1
aws:
  roleArn: ${ROLE}
  region: eu-west-1
  stsEndpoint: ${sts.url}
`,
  );
  return {
    dir,
    ca,
    signer,
    sts,
    configFile,
    writeSvid,
    writeJwt,
    firstJwt,
    metadataOrigin: `http://127.0.0.1:${metadataPort}`,
    opsUrl: `http://127.0.0.1:${opsPort}`,
  };
}

test('check, env, run: an unmodified AWS SDK app gets role credentials from the SPIFFE identity', async (t) => {
  const f = await fixture(t);

  const checked = await cli(['check', '--config', f.configFile]);
  assert.equal(checked.code, 0, checked.stderr);
  assert.match(checked.stdout, new RegExp(`X\\.509-SVID: ${ID}, valid until`));
  assert.match(checked.stdout, /JWT-SVID: spiffe:\/\/example\.org\/ns\/payments\/sa\/api for sts\.amazonaws\.com/);

  const printed = await cli(['env', '--config', f.configFile]);
  assert.equal(printed.code, 0, printed.stderr);
  const appEnv = parseEnvLines(printed.stdout);
  assert.equal(appEnv['AWS_CONTAINER_CREDENTIALS_FULL_URI'], `${f.metadataOrigin}/v1/credentials`);
  assert.equal(appEnv['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'], join(f.dir, 'state', 'aws-container-token'));
  assert.equal(appEnv['AWS_EC2_METADATA_SERVICE_ENDPOINT'], f.metadataOrigin);
  assert.equal(appEnv['AWS_REGION'], 'eu-west-1');
  assert.match(appEnv['NO_PROXY'] ?? '', /127\.0\.0\.1/);

  const sidecar = await startSidecar(f.configFile);
  t.after(() => sidecar.stop('SIGKILL'));
  await waitFor200(`${f.opsUrl}/readyz`);

  // The container-credentials provider, through the SDK's default chain.
  const viaChain = await runNode([CLIENT, f.sts.url], appEnv);
  assert.equal(viaChain.code, 0, viaChain.stderr);
  const chain = JSON.parse(viaChain.stdout) as { arn: string; account: string; accessKeyId: string; region: string };
  assert.equal(chain.arn, `arn:aws:sts::111122223333:assumed-role/payments/${f.sts.stats.lastSessionName}`);
  assert.equal(chain.account, '111122223333');
  assert.equal(chain.region, 'eu-west-1');
  assert.match(f.sts.stats.lastSessionName ?? '', /payments/, 'the session name carries the SPIFFE ID');
  assert.equal(f.sts.stats.lastSubject, ID, 'STS saw our SPIFFE ID as sub');
  assert.ok(f.sts.stats.signaturesVerified >= 1, 'GetCallerIdentity was signed with the issued secret');

  // IMDSv2, the same credentials.
  const viaImds = await runNode([CLIENT, f.sts.url, 'imds'], appEnv);
  assert.equal(viaImds.code, 0, viaImds.stderr);
  assert.equal((JSON.parse(viaImds.stdout) as { accessKeyId: string }).accessKeyId, chain.accessKeyId);

  // Secrets never reach the logs.
  const token = await readFile(appEnv['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'] ?? '', 'utf8');
  assert.doesNotMatch(token, /\n$/, 'token file has no trailing newline');
  const creds = (await (
    await fetch(`${f.metadataOrigin}/v1/credentials`, { headers: { authorization: token } })
  ).json()) as Record<string, string>;
  const logs = sidecar.logs();
  for (const secret of [token, creds['SecretAccessKey'], creds['Token'], f.firstJwt]) {
    assert.ok(secret && !logs.includes(secret), 'a secret appeared in the logs');
  }

  const metrics = await (await fetch(`${f.opsUrl}/metrics`)).text();
  assert.match(metrics, /spiffe_connector_requests_total\{surface="aws-container",status="200"\} \d+/);
  assert.match(metrics, /spiffe_connector_exchanges_total\{cloud="aws",outcome="success"\} \d+/);
  // The expiry as a Unix timestamp (it does not go stale between refreshes): the credentials' own Expiration.
  const expiry = /spiffe_connector_credential_expiry_timestamp_seconds\{cloud="aws"[^}]*\} (\d+)/.exec(metrics)?.[1];
  assert.ok(expiry, 'the credential expiry gauge');
  assert.ok(
    Math.abs(Number(expiry) - Date.parse(creds['Expiration'] ?? '') / 1000) <= 1,
    `${expiry} vs ${creds['Expiration']}`,
  );
  assert.match(metrics, /spiffe_connector_svid_expiry_timestamp_seconds\{kind="x509"\} \d{10}/);
  for (const secret of [token, creds['SecretAccessKey'], creds['Token']])
    assert.ok(secret && !metrics.includes(secret));

  // Request targets that make URL parsers throw: every listener answers and closes, and the sidecar stays up.
  for (const origin of [f.metadataOrigin, f.opsUrl]) {
    const answers = await Promise.all(
      MALFORMED_TARGETS.flatMap((target) =>
        Array.from({ length: 10 }, () => sendTarget(Number(new URL(origin).port), target)),
      ),
    );
    assert.equal(
      answers.filter((a) => a.statusLine !== undefined && a.closed).length,
      answers.length,
      `${origin}: every malformed request answered and closed`,
    );
  }
  assert.equal(sidecar.child.exitCode, null, 'the sidecar is still running');
  assert.equal((await fetch(`${f.opsUrl}/readyz`)).status, 200);
  assert.doesNotMatch(sidecar.logs(), /uncaught exception/);
});

test('a rotated JWT-SVID gives fresh credentials with no failed request; a bad one is refused and the last good kept', async (t) => {
  const f = await fixture(t);
  const sidecar = await startSidecar(f.configFile);
  t.after(() => sidecar.stop('SIGKILL'));
  await waitFor200(`${f.opsUrl}/readyz`);
  const token = await readFile(join(f.dir, 'state', 'aws-container-token'), 'utf8');
  const get = async (): Promise<{ status: number; key: string | undefined }> => {
    const r = await fetch(`${f.metadataOrigin}/v1/credentials`, { headers: { authorization: token } });
    return {
      status: r.status,
      key: r.status === 200 ? ((await r.json()) as { AccessKeyId: string }).AccessKeyId : undefined,
    };
  };
  const before = await get();
  assert.equal(before.status, 200);

  const exchangesBefore = f.sts.stats.assumeRoleSuccesses;
  await f.writeJwt();
  const statuses: number[] = [];
  let after = before;
  for (let i = 0; i < 400 && after.key === before.key; i++) {
    after = await get();
    statuses.push(after.status);
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.notEqual(after.key, before.key, 'new credentials after the JWT-SVID rotated');
  assert.ok(f.sts.stats.assumeRoleSuccesses > exchangesBefore);
  assert.deepEqual([...new Set(statuses)], [200], 'no failed request during the swap');

  // Another trust domain's JWT-SVID lands in the file: refused, credentials unchanged, still ready.
  await f.writeJwt('spiffe://evil.example/ns/payments/sa/api');
  await sidecar.waitForLog(
    (l) => l['msg'] === 'refused the JWT-SVID file' && /outside the configured trust domain/.test(String(l['err'])),
    'refused the JWT-SVID file (outside the configured trust domain)',
  );
  const kept = await get();
  assert.equal(kept.status, 200);
  assert.equal(kept.key, after.key);
  assert.equal((await fetch(`${f.opsUrl}/readyz`)).status, 200);

  // A corrupt X.509-SVID set is refused too.
  await writeAtomicDir(join(f.dir, 'svid'), [
    { name: 'tls.crt', content: 'garbage' },
    { name: 'tls.key', content: 'garbage' },
    { name: 'ca.crt', content: f.ca.certPem },
  ]);
  await sidecar.waitForLog(
    (l) => l['msg'] === 'refused the new X.509-SVID files; keeping the last good ones',
    'refused the new X.509-SVID files; keeping the last good ones',
  );
  assert.equal((await fetch(`${f.opsUrl}/readyz`)).status, 200);
});

test('SIGTERM drains (readyz 503) and exits 0', async (t) => {
  const f = await fixture(t);
  // A drain window long enough that the probe below is answered within it even on a loaded machine.
  await writeFile(f.configFile, (await readFile(f.configFile, 'utf8')).replace('drainSeconds: 1', 'drainSeconds: 5'));
  const sidecar = await startSidecar(f.configFile);
  t.after(() => sidecar.stop('SIGKILL'));
  await waitFor200(`${f.opsUrl}/readyz`);
  sidecar.child.kill('SIGTERM');
  await sidecar.waitForLog((l) => l['msg'] === 'draining', 'draining');
  const during = await fetch(`${f.opsUrl}/readyz`);
  assert.equal(during.status, 503, 'not ready while draining');
  assert.equal(await sidecar.stop(), 0);
});

test('check lists every problem and exits 1; a usage error exits 2', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'e2e-check-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const bad = join(dir, 'bad.yaml');
  await writeFile(
    bad,
    'spiffe:\n  trustDomain: example.org\n  x509: { dir: /nonexistent }\n  jwt: { file: /nonexistent/jwt }\naws:\n  roleArn: nope\n  region: eu-west-1\n',
  );
  const invalid = await cli(['check', '--config', bad]);
  assert.equal(invalid.code, 1);
  assert.match(invalid.stderr, /aws\.roleArn: must be an IAM role ARN/);

  const good = join(dir, 'good.yaml');
  await writeFile(
    good,
    'spiffe:\n  trustDomain: example.org\n  x509: { dir: /nonexistent }\n  jwt: { file: /nonexistent/jwt }\naws:\n  roleArn: arn:aws:iam::111122223333:role/app\n  region: eu-west-1\n',
  );
  const missing = await cli(['check', '--config', good]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /2 problems/);
  assert.match(missing.stderr, /spiffe\.x509: cannot read the certificate file \/nonexistent\/tls\.crt/);
  assert.match(missing.stderr, /spiffe\.jwt\.file: .*\/nonexistent\/jwt/);
  assert.match(missing.stdout, /aws: /, 'still says what would be served');

  assert.equal((await cli(['frobnicate'])).code, 2);
  assert.equal((await cli(['check'])).code, 2);
  assert.equal((await cli(['run'])).code, 2);
  assert.equal((await cli(['--help'])).code, 0);
});
