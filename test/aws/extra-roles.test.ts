// Several roles in one pod: aws.extraRoles becomes an AWS shared config file (AWS_CONFIG_FILE in the state
// dir) with a profile per role, chained from the pod's role through the container endpoint. An unmodified
// SDK app with AWS_PROFILE=reports gets the chained role's credentials, AssumeRole signed with the base
// credentials and checked by the STS stand-in as AWS checks it; `credential-process --role` does the same.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { validate } from '../../src/config/common.ts';
import { sidecarSchema } from '../../src/config/schema.ts';
import { awsEnv } from '../../src/providers/aws/env.ts';
import { createAwsProvider } from '../../src/providers/aws/module.ts';
import { mountProvider } from '../helpers/provider-harness.ts';
import { cli, runNode } from '../helpers/sidecar.ts';
import { ACCOUNT, AUDIENCE, awsJwtSource, ROLE_ARN, SPIFFE_ID, startStsWorld, until } from './support.ts';

const REPORTS = `arn:aws:iam::${ACCOUNT}:role/reports`;
const AUDIT = `arn:aws:iam::${ACCOUNT}:role/audit`;
const CLIENT = fileURLToPath(new URL('../e2e/clients/aws-sdk-client.mjs', import.meta.url));

function config(stateDir: string, stsEndpoint: string, o: { containerCredentials?: boolean } = {}) {
  return validate(
    sidecarSchema,
    {
      spiffe: { trustDomain: 'example.org', jwt: { file: '/unused/jwt-svid' } },
      server: { metadataAddress: '127.0.0.1:0', stateDir },
      aws: {
        roleArn: ROLE_ARN,
        region: 'eu-west-1',
        stsEndpoint,
        containerCredentials: o.containerCredentials ?? true,
        extraRoles: [
          { name: 'reports', roleArn: REPORTS },
          { name: 'audit', roleArn: AUDIT, sessionDurationSeconds: 900 },
        ],
      },
    },
    'test config',
  );
}

async function world(t: import('node:test').TestContext, o: { containerCredentials?: boolean } = {}) {
  const sts = await startStsWorld();
  t.after(() => sts.close());
  // reports trusts the pod's role; audit trusts someone else.
  sts.fake.addChainedRole({ arn: REPORTS, trustedRoles: [ROLE_ARN] });
  sts.fake.addChainedRole({ arn: AUDIT, trustedRoles: [`arn:aws:iam::${ACCOUNT}:role/other`] });
  const sidecar = await mountProvider({
    config: (stateDir) => config(stateDir, sts.fake.url, o),
    identity: { x509: undefined, jwt: awsJwtSource(sts.signer) },
    create: (ctx) => createAwsProvider(ctx),
  });
  t.after(() => sidecar.close());
  await until(() => sidecar.provider.readiness().ready, 'the pod role credentials');
  // What the app container is told, and nothing else (the STS stand-in stands for the regional endpoint).
  const env: Record<string, string> = {
    ...Object.fromEntries(awsEnv(sidecar.config, sidecar.origin)),
    PATH: process.env['PATH'] ?? '',
    HOME: sidecar.stateDir,
    AWS_ENDPOINT_URL_STS: sts.fake.url,
  };
  return { sts, sidecar, env };
}

test('AWS_PROFILE=reports: the SDK assumes the extra role with the pod role credentials it gets from the sidecar', async (t) => {
  const { sts, sidecar, env } = await world(t);
  assert.equal(env['AWS_CONFIG_FILE'], join(sidecar.stateDir, 'aws-config'));
  const file = await readFile(env['AWS_CONFIG_FILE'] ?? '', 'utf8');
  assert.match(
    file,
    /\[profile reports\]\nrole_arn = arn:aws:iam::111122223333:role\/reports\ncredential_source = EcsContainer\n/,
  );
  assert.match(file, /\[profile audit\]\n(?:.*\n)*?role_session_name = audit@ns\.default\.sa\.app\n/);
  assert.equal((await stat(env['AWS_CONFIG_FILE'] ?? '')).mode & 0o777, 0o640);

  const chained = await runNode([CLIENT, sts.fake.url], { ...env, AWS_PROFILE: 'reports' });
  assert.equal(chained.code, 0, chained.stderr);
  const got = JSON.parse(chained.stdout) as { arn: string; accessKeyId: string };
  assert.match(got.arn, /^arn:aws:sts::111122223333:assumed-role\/reports\//);
  assert.equal(sts.fake.stats.chainedAssumeRoleSuccesses, 1);
  assert.equal(
    sts.fake.stats.lastChainedFrom,
    `arn:aws:sts::${ACCOUNT}:assumed-role/app/ns.default.sa.app`,
    'AssumeRole was signed with the pod role session',
  );
  // The chained session is named for the profile and the pod (role_session_name), not aws-sdk-js-<time>.
  assert.equal(got.arn, `arn:aws:sts::${ACCOUNT}:assumed-role/reports/reports@ns.default.sa.app`);
  assert.equal(
    sts.fake.issued().find((c) => c.accessKeyId === got.accessKeyId)?.sessionName,
    'reports@ns.default.sa.app',
  );

  // No profile: the pod's own role, as before.
  const own = await runNode([CLIENT, sts.fake.url], env);
  assert.equal(own.code, 0, own.stderr);
  assert.match((JSON.parse(own.stdout) as { arn: string }).arn, /assumed-role\/app\//);

  // A role whose trust policy does not name the pod's role: STS refuses, and the SDK says so.
  const refused = await runNode([CLIENT, sts.fake.url], { ...env, AWS_PROFILE: 'audit' });
  assert.notEqual(refused.code, 0);
  assert.match(
    refused.stderr,
    /not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::111122223333:role\/audit/,
  );
  assert.equal(sts.fake.stats.chainedAssumeRoleSuccesses, 1);
});

test('with only IMDS, the profiles chain from Ec2InstanceMetadata', async (t) => {
  const { sts, env } = await world(t, { containerCredentials: false });
  assert.match(await readFile(env['AWS_CONFIG_FILE'] ?? '', 'utf8'), /credential_source = Ec2InstanceMetadata/);
  const chained = await runNode([CLIENT, sts.fake.url], { ...env, AWS_PROFILE: 'reports' });
  assert.equal(chained.code, 0, chained.stderr);
  assert.match((JSON.parse(chained.stdout) as { arn: string }).arn, /assumed-role\/reports\//);
});

test('credential-process --role reports: the chained role, signed with the base session; an untrusting role is one line', async (t) => {
  const sts = await startStsWorld();
  t.after(() => sts.close());
  sts.fake.addChainedRole({ arn: REPORTS, trustedRoles: [ROLE_ARN] });
  sts.fake.addChainedRole({ arn: AUDIT, trustedRoles: [] });
  const d = await mkdtemp(join(tmpdir(), 'extra-roles-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  const jwtFile = join(d, 'jwt-svid');
  await writeFile(jwtFile, await sts.signer.sign({ sub: SPIFFE_ID, aud: AUDIENCE, ttlSeconds: 3600 }));
  const configFile = join(d, 'config.yaml');
  await writeFile(
    configFile,
    `spiffe: { trustDomain: example.org, jwt: { file: ${jwtFile} } }
aws:
  roleArn: ${ROLE_ARN}
  region: eu-west-1
  stsEndpoint: ${sts.fake.url}
  extraRoles:
    - { name: reports, roleArn: ${REPORTS}, sessionDurationSeconds: 1800 }
    - { name: audit, roleArn: ${AUDIT} }
`,
  );
  const out = await cli(['credential-process', '--config', configFile, '--role', 'reports']);
  assert.equal(out.code, 0, out.stderr);
  const printed = JSON.parse(out.stdout) as { AccessKeyId: string; Expiration: string };
  const issued = sts.fake.issued().find((c) => c.accessKeyId === printed.AccessKeyId);
  assert.equal(issued?.roleArn, REPORTS);
  assert.equal(issued?.subject, SPIFFE_ID);
  assert.equal(issued?.sessionName, 'reports@ns.default.sa.app', 'named as the profiles the sidecar writes name it');
  assert.equal(new Date(printed.Expiration).getTime(), issued?.expiration);
  assert.ok(
    Math.abs((issued?.expiration ?? 0) - Date.now() - 1800_000) < 120_000,
    'the role’s session duration was asked for',
  );

  const refused = await cli(['credential-process', '--config', configFile, '--role', 'audit']);
  assert.notEqual(refused.code, 0);
  assert.equal(refused.stdout, '');
  assert.match(
    refused.stderr,
    /^spiffe-connector credential-process: [^\n]*not authorized to perform: sts:AssumeRole[^\n]*\n$/,
  );

  const unknown = await cli(['credential-process', '--config', configFile, '--role', 'nope']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /no role "nope" in aws\.extraRoles \(it names reports, audit\)/);
});

test('config: extra role names are profile names, unique, not "default"; chained sessions at most an hour', async () => {
  const base = {
    spiffe: { trustDomain: 'example.org', jwt: { file: '/x' } },
    aws: { roleArn: ROLE_ARN, region: 'eu-west-1' },
  };
  const problems = (extraRoles: unknown[]): string => {
    try {
      validate(sidecarSchema, { ...base, aws: { ...base.aws, extraRoles } }, 'c');
      return '';
    } catch (error) {
      return (error as Error).message;
    }
  };
  assert.match(problems([{ name: 'default', roleArn: REPORTS }]), /extraRoles\[0\]\.name: must not be "default"/);
  assert.match(problems([{ name: 'a b', roleArn: REPORTS }]), /extraRoles\[0\]\.name: must be a profile name/);
  assert.match(
    problems([
      { name: 'r', roleArn: REPORTS },
      { name: 'r', roleArn: AUDIT },
    ]),
    /extraRoles\[1\]\.name: repeats the profile name r/,
  );
  assert.match(
    problems([{ name: 'r', roleArn: REPORTS, sessionDurationSeconds: 7200 }]),
    /at most 3600: STS limits role chaining to one hour/,
  );
  assert.match(
    problems([{ name: 'r', roleArn: 'arn:aws:iam::1:role/x' }]),
    /extraRoles\[0\]\.roleArn: must be an IAM role ARN/,
  );
  assert.equal(problems([{ name: 'r', roleArn: REPORTS }]), '');
});

const hasCli = await new Promise<boolean>((resolve) => execFile('aws', ['--version'], (error) => resolve(!error)));

test('the AWS CLI (botocore) with --profile reports chains the same way', {
  skip: hasCli ? false : 'the aws CLI is not installed',
}, async (t) => {
  const { sts, env } = await world(t);
  const out = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      'aws',
      ['sts', 'get-caller-identity', '--profile', 'reports', '--endpoint-url', sts.fake.url, '--output', 'json'],
      { env: { ...env, AWS_SHARED_CREDENTIALS_FILE: '/dev/null' }, timeout: 60_000 },
      (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
  assert.equal(out.code, 0, out.stderr);
  assert.match((JSON.parse(out.stdout) as { Arn: string }).Arn, /^arn:aws:sts::111122223333:assumed-role\/reports\//);
  assert.equal(sts.fake.stats.chainedAssumeRoleSuccesses, 1);
});

test('the STS stand-in refuses AssumeRole as AWS does: a wrong secret, no session, over an hour of chaining', async (t) => {
  const { STSClient, AssumeRoleCommand, AssumeRoleWithWebIdentityCommand } = await import('@aws-sdk/client-sts');
  const sts = await startStsWorld();
  t.after(() => sts.close());
  sts.fake.addChainedRole({ arn: REPORTS, trustedRoles: [ROLE_ARN], maxSessionDurationSeconds: 43200 });
  const anonymous = new STSClient({
    endpoint: sts.fake.url,
    region: 'eu-west-1',
    credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
  });
  const base = await anonymous.send(
    new AssumeRoleWithWebIdentityCommand({
      RoleArn: ROLE_ARN,
      RoleSessionName: 'base',
      WebIdentityToken: await sts.signer.sign({ sub: SPIFFE_ID, aud: AUDIENCE }),
    }),
  );
  const c = base.Credentials;
  const signedWith = (secret: string, token = c?.SessionToken) =>
    new STSClient({
      endpoint: sts.fake.url,
      region: 'eu-west-1',
      maxAttempts: 1,
      credentials: {
        accessKeyId: c?.AccessKeyId ?? '',
        secretAccessKey: secret,
        ...(token ? { sessionToken: token } : {}),
      },
    });
  const ask = (client: InstanceType<typeof STSClient>, DurationSeconds = 3600) =>
    client.send(new AssumeRoleCommand({ RoleArn: REPORTS, RoleSessionName: 'chained', DurationSeconds }));
  await assert.rejects(ask(signedWith('wrong')), { name: 'SignatureDoesNotMatch' });
  await assert.rejects(ask(signedWith(c?.SecretAccessKey ?? '', 'IQoJ-not-issued')), { name: 'InvalidClientTokenId' });
  await assert.rejects(
    ask(signedWith(c?.SecretAccessKey ?? ''), 7200),
    /1 hour session limit for roles assumed by role chaining/,
  );
  const ok = await ask(signedWith(c?.SecretAccessKey ?? ''));
  assert.equal(ok.AssumedRoleUser?.Arn, `arn:aws:sts::${ACCOUNT}:assumed-role/reports/chained`);
  assert.equal(sts.fake.stats.chainedAssumeRoleSuccesses, 1);
});
