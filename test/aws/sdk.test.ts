// Black box: the real AWS SDK for JavaScript v3 (and the AWS CLI when installed) gets credentials from the
// sidecar's endpoints, then signs GetCallerIdentity with them; the fake STS verifies that signature.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { type TestContext, test } from 'node:test';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { fromContainerMetadata, fromHttp, fromInstanceMetadata } from '@aws-sdk/credential-providers';
import { awsEnv } from '../../src/providers/aws/env.ts';
import { ACCOUNT, awsJwtSource, SPIFFE_ID, startSidecar, startStsWorld, until } from './support.ts';

type AwsCredentialIdentity = Awaited<ReturnType<ReturnType<typeof fromHttp>>>;

async function world(t: TestContext) {
  const sts = await startStsWorld();
  t.after(() => sts.close());
  const jwt = awsJwtSource(sts.signer);
  const sidecar = await startSidecar({ stsEndpoint: sts.fake.url, jwt });
  t.after(() => sidecar.close());
  await until(() => sidecar.provider.readiness().ready, 'first credentials');
  return { ...sts, jwt, sidecar };
}

/** Signs GetCallerIdentity with what the SDK provider returned; the fake recomputes the signature. */
async function callerArn(stsUrl: string, credentials: AwsCredentialIdentity): Promise<string | undefined> {
  const client = new STSClient({ region: 'eu-west-1', endpoint: stsUrl, credentials, maxAttempts: 1 });
  try {
    return (await client.send(new GetCallerIdentityCommand({}))).Arn;
  } finally {
    client.destroy();
  }
}

/** Runs `fn` with these environment variables set, restoring the previous values after. */
async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

const ARN = `arn:aws:sts::${ACCOUNT}:assumed-role/app/ns.default.sa.app`;

test('the token file: random, base64url, no trailing newline, mode 0640 (owner and the pod fsGroup only)', async (t) => {
  const { sidecar } = await world(t);
  const token = await readFile(sidecar.tokenFile, 'utf8');
  assert.match(token, /^[\w-]{43,}$/);
  assert.ok(!token.endsWith('\n'));
  assert.equal((await stat(sidecar.tokenFile)).mode & 0o777, 0o640);
});

test('fromHttp (the default chain’s container provider) with FULL_URI and TOKEN_FILE', async (t) => {
  const { sidecar, fake } = await world(t);
  const env = Object.fromEntries(awsEnv(sidecar.config, sidecar.origin));
  const fullUri = env['AWS_CONTAINER_CREDENTIALS_FULL_URI'];
  const tokenFile = env['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'];
  assert.ok(fullUri && tokenFile);
  const provider = fromHttp({ awsContainerCredentialsFullUri: fullUri, awsContainerAuthorizationTokenFile: tokenFile });
  const creds = await provider();
  const issued = fake.issued().at(-1);
  assert.ok(issued);
  assert.equal(creds.accessKeyId, issued.accessKeyId);
  assert.equal(creds.secretAccessKey, issued.secretAccessKey);
  assert.equal(creds.sessionToken, issued.sessionToken);
  assert.equal(creds.expiration?.getTime(), issued.expiration);
  const verified = fake.stats.signaturesVerified;
  assert.equal(await callerArn(fake.url, creds), ARN);
  assert.equal(fake.stats.signaturesVerified, verified + 1);
  assert.equal(fake.stats.lastSubject, SPIFFE_ID);
});

test('fromContainerMetadata (smithy’s container provider) with FULL_URI and the token in the environment', async (t) => {
  const { sidecar, fake } = await world(t);
  const token = await readFile(sidecar.tokenFile, 'utf8');
  const creds = await withEnv(
    {
      AWS_CONTAINER_CREDENTIALS_FULL_URI: `${sidecar.origin}/v1/credentials`,
      AWS_CONTAINER_AUTHORIZATION_TOKEN: token,
    },
    () => fromContainerMetadata()(),
  );
  assert.equal(creds.accessKeyId, fake.issued().at(-1)?.accessKeyId);
  assert.equal(await callerArn(fake.url, creds), ARN);
  assert.equal(fake.stats.signaturesVerified, 1);
});

test('fromInstanceMetadata over IMDSv2 only (v1 fallback disabled)', async (t) => {
  const { sidecar, fake } = await world(t);
  const creds = await withEnv(
    { AWS_EC2_METADATA_SERVICE_ENDPOINT: sidecar.origin, AWS_EC2_METADATA_V1_DISABLED: 'true' },
    () => fromInstanceMetadata({ maxRetries: 0 })(),
  );
  assert.equal(creds.accessKeyId, fake.issued().at(-1)?.accessKeyId);
  assert.equal(creds.accountId, ACCOUNT);
  assert.equal(await callerArn(fake.url, creds), ARN);
  assert.equal(fake.stats.signaturesVerified, 1);
  const imds = await sidecar.metrics.registry.getSingleMetric('spiffe_connector_requests_total')?.get();
  const served = (imds?.values ?? [])
    .filter((v) => v.labels['surface'] === 'aws-imds' && v.labels['status'] === '200')
    .reduce((n, v) => n + v.value, 0);
  assert.equal(served, 3, 'token PUT, role listing, role document');
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

test('the AWS CLI with only the env lines: aws sts get-caller-identity through both surfaces', {
  skip: hasCli ? false : 'the aws CLI is not installed',
}, async (t) => {
  const { sidecar, fake } = await world(t);
  const base: Record<string, string> = {
    PATH: process.env['PATH'] ?? '',
    HOME: sidecar.stateDir,
    AWS_CONFIG_FILE: '/dev/null',
    AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    NO_PROXY: '127.0.0.1',
  };
  const lines = awsEnv(sidecar.config, sidecar.origin);
  const container = Object.fromEntries(lines.filter(([k]) => k !== 'AWS_EC2_METADATA_SERVICE_ENDPOINT'));
  const viaContainer = await awsCli(['sts', 'get-caller-identity', '--endpoint-url', fake.url, '--output', 'json'], {
    ...base,
    ...container,
  });
  assert.equal(viaContainer.code, 0, viaContainer.stderr);
  assert.equal(JSON.parse(viaContainer.stdout).Arn, ARN);
  const imdsOnly = Object.fromEntries(lines.filter(([k]) => !k.startsWith('AWS_CONTAINER_')));
  const viaImds = await awsCli(['sts', 'get-caller-identity', '--endpoint-url', fake.url, '--output', 'json'], {
    ...base,
    ...imdsOnly,
  });
  assert.equal(viaImds.code, 0, viaImds.stderr);
  assert.equal(JSON.parse(viaImds.stdout).Arn, ARN);
  assert.equal(fake.stats.signaturesVerified, 2);
});
