// The literal AWS_CONTAINER_AUTHORIZATION_TOKEN (aws.containerAuthorizationToken) for AWS SDKs released before
// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: real JS SDK providers configured to read only the literal token, and
// a raw client that does what those SDKs do (GET FULL_URI with `Authorization: <token>` from the environment,
// no file), each given only the lines `env` prints; the fake STS verifies the signature made with the result.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { type TestContext, test } from 'node:test';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { fromContainerMetadata, fromHttp } from '@aws-sdk/credential-providers';
import { checkConfig } from '../../src/commands/check.ts';
import { awsEnv } from '../../src/providers/aws/env.ts';
import { ACCOUNT, awsJwtSource, startSidecar, startStsWorld, until } from './support.ts';

const TOKEN = 'legacy-literal-token-0123456789-abcdefghijklmnop';
const ARN = `arn:aws:sts::${ACCOUNT}:assumed-role/app/ns.default.sa.app`;

async function world(t: TestContext, containerAuthorizationToken: string | null = TOKEN) {
  const sts = await startStsWorld();
  t.after(() => sts.close());
  const sidecar = await startSidecar({
    stsEndpoint: sts.fake.url,
    jwt: awsJwtSource(sts.signer),
    ...(containerAuthorizationToken === null ? {} : { containerAuthorizationToken }),
  });
  t.after(() => sidecar.close());
  await until(() => sidecar.provider.readiness().ready, 'first credentials');
  return { ...sts, sidecar, env: Object.fromEntries(awsEnv(sidecar.config, sidecar.origin)) };
}

async function callerArn(
  stsUrl: string,
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string },
): Promise<string | undefined> {
  const client = new STSClient({ region: 'eu-west-1', endpoint: stsUrl, credentials, maxAttempts: 1 });
  try {
    return (await client.send(new GetCallerIdentityCommand({}))).Arn;
  } finally {
    client.destroy();
  }
}

/**
 * What the SDKs before the token file do (botocore's ContainerMetadataFetcher, aws-sdk-go-v2's endpointcreds,
 * smithy's fromContainerMetadata): FULL_URI, and the Authorization header only from the literal variable.
 */
function oldSdkFetch(
  env: Record<string, string | undefined>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const url = new URL(env['AWS_CONTAINER_CREDENTIALS_FULL_URI'] ?? '');
  const token = env['AWS_CONTAINER_AUTHORIZATION_TOKEN'];
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'GET',
        timeout: 5_000,
        headers: { accept: 'application/json', ...(token === undefined ? {} : { authorization: token }) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

test('env prints the literal token beside the file, and the file holds the same value', async (t) => {
  const { sidecar, env } = await world(t);
  assert.equal(env['AWS_CONTAINER_AUTHORIZATION_TOKEN'], TOKEN);
  assert.equal(env['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'], sidecar.tokenFile);
  // Java v2 prefers the literal, JS v3, botocore and Go v2 the file: the same value, the same answer.
  assert.equal(await readFile(sidecar.tokenFile, 'utf8'), TOKEN);
});

test('without aws.containerAuthorizationToken there is no literal token, and an old SDK gets 401 (why the option exists)', async (t) => {
  const { env } = await world(t, null);
  assert.equal(env['AWS_CONTAINER_AUTHORIZATION_TOKEN'], undefined);
  const answer = await oldSdkFetch(env);
  assert.equal(answer.status, 401);
});

test('a client written from the old SDKs gets working credentials with only the literal token', async (t) => {
  const { fake, env } = await world(t);
  const answer = await oldSdkFetch({
    AWS_CONTAINER_CREDENTIALS_FULL_URI: env['AWS_CONTAINER_CREDENTIALS_FULL_URI'],
    AWS_CONTAINER_AUTHORIZATION_TOKEN: env['AWS_CONTAINER_AUTHORIZATION_TOKEN'],
  });
  assert.equal(answer.status, 200);
  const { AccessKeyId, SecretAccessKey, Token, Expiration } = answer.body;
  assert.ok(
    typeof AccessKeyId === 'string' &&
      typeof SecretAccessKey === 'string' &&
      typeof Token === 'string' &&
      typeof Expiration === 'string',
  );
  assert.equal(
    await callerArn(fake.url, { accessKeyId: AccessKeyId, secretAccessKey: SecretAccessKey, sessionToken: Token }),
    ARN,
  );
  // A wrong literal token is refused.
  assert.equal((await oldSdkFetch({ ...env, AWS_CONTAINER_AUTHORIZATION_TOKEN: `${TOKEN}x` })).status, 403);
});

test('the AWS SDK for JavaScript reading only the literal token: smithy fromContainerMetadata and fromHttp', async (t) => {
  const { fake, env } = await world(t);
  const fullUri = env['AWS_CONTAINER_CREDENTIALS_FULL_URI'] ?? '';
  const saved = {
    full: process.env['AWS_CONTAINER_CREDENTIALS_FULL_URI'],
    token: process.env['AWS_CONTAINER_AUTHORIZATION_TOKEN'],
  };
  process.env['AWS_CONTAINER_CREDENTIALS_FULL_URI'] = fullUri;
  process.env['AWS_CONTAINER_AUTHORIZATION_TOKEN'] = env['AWS_CONTAINER_AUTHORIZATION_TOKEN'] ?? '';
  try {
    // fromContainerMetadata reads the literal token from the environment only (it has no file support).
    const legacy = await fromContainerMetadata()();
    assert.equal(legacy.accessKeyId, fake.issued().at(-1)?.accessKeyId);
    assert.equal(await callerArn(fake.url, legacy), ARN);
  } finally {
    for (const [k, v] of [
      ['AWS_CONTAINER_CREDENTIALS_FULL_URI', saved.full],
      ['AWS_CONTAINER_AUTHORIZATION_TOKEN', saved.token],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
  const current = await fromHttp({
    awsContainerCredentialsFullUri: fullUri,
    awsContainerAuthorizationToken: env['AWS_CONTAINER_AUTHORIZATION_TOKEN'] ?? '',
  })();
  assert.equal(await callerArn(fake.url, current), ARN);
  assert.equal(fake.stats.signaturesVerified, 2);
});

test('the token is the same across sidecar restarts (it is configured, so the app’s copy stays valid for the pod’s life)', async (t) => {
  const first = await world(t);
  await first.sidecar.close();
  const second = await world(t);
  assert.equal((await oldSdkFetch(second.env)).status, 200);
  assert.equal(await readFile(second.sidecar.tokenFile, 'utf8'), TOKEN);
});

test('check names the literal token but never shows it', async (t) => {
  const { sidecar } = await world(t);
  const report = await checkConfig(sidecar.config, new Date());
  const text = report.lines.join('\n');
  assert.doesNotMatch(text, new RegExp(TOKEN));
  assert.match(text, /AWS_CONTAINER_AUTHORIZATION_TOKEN=\[redacted/);
  assert.match(text, /AWS_CONTAINER_AUTHORIZATION_TOKEN for SDKs that predate the token file/);
});

test('the config refuses a literal token too short or with characters a header cannot carry', async () => {
  const { awsSchema } = await import('../../src/config/aws.ts');
  const base = { roleArn: 'arn:aws:iam::111122223333:role/app', region: 'eu-west-1' };
  assert.equal(awsSchema.safeParse({ ...base, containerAuthorizationToken: 'short' }).success, false);
  assert.equal(
    awsSchema.safeParse({ ...base, containerAuthorizationToken: `${TOKEN}\r\nX-Injected: 1` }).success,
    false,
  );
  assert.equal(awsSchema.safeParse({ ...base, containerAuthorizationToken: TOKEN }).success, true);
});
