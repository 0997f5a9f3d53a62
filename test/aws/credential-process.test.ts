// `spiffe-connector credential-process` outside Kubernetes: an AWS config profile whose credential_process
// runs the CLI gets role credentials from the SVID files or the Workload API, through the SDK's process
// provider and the real AWS CLI; what STS issued signs GetCallerIdentity at the STS stand-in. Bad config
// or an unusable SVID: one line on stderr, nothing on stdout, a non-zero exit.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { fromProcess } from '@aws-sdk/credential-providers';
import { writeAtomicDir } from '@spiffe-connector/dev/atomic-dir.ts';
import { DevCa } from '@spiffe-connector/dev/dev-ca.ts';
import { FakeSts } from '@spiffe-connector/dev/fake-sts.ts';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { FakeWorkloadApi, x509Entry } from '../helpers/fake-workload-api.ts';
import { cli, MAIN } from '../helpers/sidecar.ts';

const TD = 'example.org';
const ID = 'spiffe://example.org/vm/reports';
const ROLE = 'arn:aws:iam::111122223333:role/reports';

async function world(t: import('node:test').TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'credential-process-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const signer = await DevOidcSigner.start();
  t.after(() => signer.close());
  const sts = await FakeSts.start({
    allowLoopbackHttpIssuers: true,
    region: 'eu-west-1',
    providers: [{ issuer: signer.issuer, audiences: ['sts.amazonaws.com'] }],
    roles: [{ arn: ROLE, issuer: signer.issuer, audience: 'sts.amazonaws.com', subject: 'spiffe://example.org/vm/*' }],
  });
  t.after(() => sts.close());
  const jwtFile = join(dir, 'tokens', 'jwt-svid');
  const writeJwt = async (claims: { sub?: string; ttlSeconds?: number; aud?: string } = {}): Promise<void> => {
    const token = await signer.sign({
      sub: claims.sub ?? ID,
      aud: claims.aud ?? 'sts.amazonaws.com',
      ttlSeconds: claims.ttlSeconds ?? 3600,
    });
    await writeAtomicDir(join(dir, 'tokens'), [{ name: 'jwt-svid', content: token }]);
  };
  const awsSection = `aws:
  roleArn: ${ROLE}
  region: eu-west-1
  stsEndpoint: ${sts.url}
`;
  const configFile = join(dir, 'config.yaml');
  await writeFile(
    configFile,
    `spiffe:\n  trustDomain: ${TD}\n  jwt: { file: ${jwtFile} }\nserver: { stateDir: ${join(dir, 'state')} }\n${awsSection}`,
  );
  const awsConfigFile = join(dir, 'aws-config');
  await writeFile(
    awsConfigFile,
    `[profile spiffe]\ncredential_process = ${process.execPath} ${MAIN} credential-process --config ${configFile}\nregion = eu-west-1\n`,
  );
  return { dir, signer, sts, configFile, awsConfigFile, writeJwt, awsSection };
}

test("the SDK's process provider, through an AWS config profile, gets the role's credentials", async (t) => {
  const w = await world(t);
  await w.writeJwt();
  const credentials = await fromProcess({
    profile: 'spiffe',
    configFilepath: w.awsConfigFile,
    filepath: join(w.dir, 'no-credentials'),
  })();
  const issued = w.sts.issued().at(-1);
  assert.equal(credentials.accessKeyId, issued?.accessKeyId);
  assert.equal(credentials.expiration?.getTime(), issued?.expiration);
  const identity = await new STSClient({ endpoint: w.sts.url, region: 'eu-west-1', credentials }).send(
    new GetCallerIdentityCommand({}),
  );
  assert.equal(identity.Arn, `arn:aws:sts::111122223333:assumed-role/reports/${w.sts.stats.lastSessionName}`);
  assert.equal(w.sts.stats.lastSubject, ID);
  assert.equal(w.sts.stats.signaturesVerified, 1);
});

test('stdout carries exactly the credential_process JSON, Version 1 with a whole-second Expiration', async (t) => {
  const w = await world(t);
  await w.writeJwt();
  const out = await cli(['credential-process', '--config', w.configFile]);
  assert.equal(out.code, 0, out.stderr);
  assert.equal(out.stderr, '');
  assert.match(out.stdout, /^\{.*\}\n$/);
  const parsed = JSON.parse(out.stdout) as Record<string, unknown>;
  const issued = w.sts.issued().at(-1);
  assert.deepEqual(parsed, {
    Version: 1,
    AccessKeyId: issued?.accessKeyId,
    SecretAccessKey: issued?.secretAccessKey,
    SessionToken: issued?.sessionToken,
    Expiration: new Date(issued?.expiration ?? 0).toISOString().replace('.000Z', 'Z'),
  });
});

test('from the Workload API: the JWT-SVID the agent mints for the STS audience', async (t) => {
  const w = await world(t);
  const agent = await FakeWorkloadApi.start();
  t.after(() => agent.close());
  const ca = await DevCa.create({ trustDomain: TD });
  agent.setX509({ svids: [x509Entry(await ca.issueX509Svid({ spiffeId: ID }), ca)] });
  agent.onFetchJwt(async (audience) => [
    { spiffe_id: ID, svid: await w.signer.sign({ sub: ID, aud: audience, ttlSeconds: 3600 }) },
  ]);
  const configFile = join(w.dir, 'workload-api.yaml');
  await writeFile(
    configFile,
    `spiffe:\n  trustDomain: ${TD}\n  workloadApi: { socket: ${agent.address} }\nserver: { stateDir: ${join(w.dir, 'state')} }\n${w.awsSection}`,
  );
  const out = await cli(['credential-process', '--config', configFile]);
  assert.equal(out.code, 0, out.stderr);
  assert.equal((JSON.parse(out.stdout) as { AccessKeyId: string }).AccessKeyId, w.sts.issued().at(-1)?.accessKeyId);
  assert.equal(w.sts.stats.lastSubject, ID);
});

function oneLineFailure(out: { code: number | null; stdout: string; stderr: string }, pattern: RegExp): void {
  assert.notEqual(out.code, 0);
  assert.equal(out.stdout, '', 'nothing on stdout: the SDKs would try to parse it');
  assert.match(out.stderr, /^spiffe-connector credential-process: [^\n]+\n$/, `one line on stderr, got: ${out.stderr}`);
  assert.match(out.stderr, pattern);
}

test('bad config, a missing or unusable SVID, and a refusing STS: one line on stderr, a non-zero exit', async (t) => {
  const w = await world(t);
  oneLineFailure(
    await cli(['credential-process', '--config', join(w.dir, 'absent.yaml')]),
    /cannot read the file: ENOENT/,
  );

  const bad = join(w.dir, 'bad.yaml');
  await writeFile(
    bad,
    `spiffe:\n  trustDomain: ${TD}\n  jwt: { file: /x }\naws:\n  roleArn: not-an-arn\n  region: nowhere\n`,
  );
  oneLineFailure(
    await cli(['credential-process', '--config', bad]),
    /invalid configuration: .*aws\.roleArn: must be an IAM role ARN.*; aws\.region: must be an AWS region/,
  );

  const noAws = join(w.dir, 'no-aws.yaml');
  await writeFile(
    noAws,
    `spiffe:\n  trustDomain: ${TD}\n  jwt: { file: /x }\nazure: { tenantId: 00000000-0000-0000-0000-000000000000, clientId: 00000000-0000-0000-0000-000000000001 }\n`,
  );
  oneLineFailure(await cli(['credential-process', '--config', noAws]), /no aws section/);

  oneLineFailure(
    await cli(['credential-process', '--config', w.configFile]),
    /no valid JWT-SVID in .*jwt-svid: cannot read .*ENOENT/,
  );

  await w.writeJwt({ sub: 'spiffe://other.example/vm/reports' });
  oneLineFailure(
    await cli(['credential-process', '--config', w.configFile]),
    /outside the configured trust domain example\.org/,
  );

  await w.writeJwt({ aud: 'something-else' });
  oneLineFailure(await cli(['credential-process', '--config', w.configFile]), /lacks the audience sts\.amazonaws\.com/);

  await w.writeJwt({ sub: 'spiffe://example.org/ns/default/sa/other' });
  oneLineFailure(await cli(['credential-process', '--config', w.configFile]), /AccessDenied|Not authorized/);

  await w.writeJwt();
  oneLineFailure(await cli(['credential-process', '--config', w.configFile, '--role', 'nope']), /no role "nope"/);
  assert.equal(w.sts.stats.assumeRoleSuccesses, 0);
});

function awsCli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('aws', args, { env, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

const hasCli = await new Promise<boolean>((resolve) => execFile('aws', ['--version'], (error) => resolve(!error)));

test('the AWS CLI with credential_process in a config profile: aws sts get-caller-identity --profile', {
  skip: hasCli ? false : 'the aws CLI is not installed',
}, async (t) => {
  const w = await world(t);
  await w.writeJwt();
  const env = {
    PATH: process.env['PATH'] ?? '',
    HOME: w.dir,
    AWS_CONFIG_FILE: w.awsConfigFile,
    AWS_SHARED_CREDENTIALS_FILE: join(w.dir, 'no-credentials'),
  };
  const out = await awsCli(
    ['sts', 'get-caller-identity', '--profile', 'spiffe', '--endpoint-url', w.sts.url, '--output', 'json'],
    env,
  );
  assert.equal(out.code, 0, out.stderr);
  assert.equal(
    (JSON.parse(out.stdout) as { Arn: string }).Arn,
    `arn:aws:sts::111122223333:assumed-role/reports/${w.sts.stats.lastSessionName}`,
  );
  assert.equal(w.sts.stats.signaturesVerified, 1);

  // An unusable SVID: the CLI fails and shows our line.
  await w.writeJwt({ sub: 'spiffe://other.example/vm/reports' });
  const refused = await awsCli(
    ['sts', 'get-caller-identity', '--profile', 'spiffe', '--endpoint-url', w.sts.url, '--output', 'json'],
    env,
  );
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /outside the configured trust domain/);
});
