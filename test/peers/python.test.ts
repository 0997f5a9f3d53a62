// Black box: real Python SDKs at exact versions (scripts/install-peers.sh, from PyPI), each in a child process
// given only the lines `spiffe-connector env` prints (and PATH, and an empty HOME), against the sidecar's
// surfaces; the stand-ins check what the clients got. Each version a client reports must be the one the
// README's compatibility table names, so the table stays what these tests ran.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { LOOPBACK_NO_PROXY } from '../../src/env.ts';
import { awsEnv } from '../../src/providers/aws/env.ts';
import { ACCOUNT, awsJwtSource, startSidecar as startAwsSidecar, startStsWorld, until } from '../aws/support.ts';
import { runAzure, startWorld as startAzureWorld, TENANT_ID } from '../azure/fixtures.ts';
import {
  CLOUD_PLATFORM,
  jwtSource,
  PROJECT_ID,
  SERVICE_ACCOUNT,
  startSidecar as startGcpSidecar,
  startGoogleWorld,
} from '../gcp/support.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const PEERS = join(ROOT, '.tools', 'peers');
const README = await readFile(join(ROOT, 'README.md'), 'utf8');
const ARN = `arn:aws:sts::${ACCOUNT}:assumed-role/app/ns.default.sa.app`;
const TOKEN = 'legacy-literal-token-0123456789-abcdefghijklmnop';

type Answer = { ok: boolean; error?: string } & Record<string, unknown>;

function python(name: string): string | undefined {
  const bin = join(PEERS, `py-${name}`, 'bin', 'python');
  // The stamp is written once the environment is complete.
  return existsSync(join(PEERS, `py-${name}`, '.stamp')) ? bin : undefined;
}

const skip = (name: string): string | false =>
  python(name) ? false : `.tools/peers/py-${name} is not installed (run scripts/install-peers.sh)`;

/** Runs one client script with exactly `env` (plus PATH and a fresh HOME); bounded. */
async function run(
  t: TestContext,
  name: string,
  script: string,
  args: string[],
  env: Record<string, string>,
): Promise<Answer> {
  const home = await mkdtemp(join(tmpdir(), 'sc-peer-'));
  t.after(() => rm(home, { recursive: true, force: true }));
  const bin = python(name) as string;
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      [join(ROOT, 'test', 'peers', script), ...args],
      { env: { PATH: process.env['PATH'] ?? '', HOME: home, ...env }, timeout: 60_000 },
      (error, stdout, stderr) => {
        const line = stdout.trim().split('\n').at(-1) ?? '';
        try {
          resolve(JSON.parse(line) as Answer);
        } catch {
          reject(
            new Error(`${name} ${script} printed no answer (${error?.message ?? 'exit 0'}): ${stderr.slice(-2000)}`),
          );
        }
      },
    );
  });
}

/** The README's compatibility table names this client at the version it reported. */
function inReadme(client: string, version: unknown): void {
  assert.ok(
    README.includes(`| ${client} ${String(version)} |`),
    `README.md's compatibility table has no row "| ${client} ${String(version)} |"`,
  );
}

async function awsWorld(t: TestContext, containerAuthorizationToken?: string) {
  const sts = await startStsWorld();
  t.after(() => sts.close());
  const sidecar = await startAwsSidecar({
    stsEndpoint: sts.fake.url,
    jwt: awsJwtSource(sts.signer),
    ...(containerAuthorizationToken ? { containerAuthorizationToken } : {}),
  });
  t.after(() => sidecar.close());
  await until(() => sidecar.provider.readiness().ready, 'first credentials');
  const lines = awsEnv(sidecar.config, sidecar.origin);
  const env: Record<string, string> = {
    ...Object.fromEntries(lines),
    NO_PROXY: LOOPBACK_NO_PROXY,
    no_proxy: LOOPBACK_NO_PROXY,
  };
  return {
    fake: sts.fake,
    env,
    imdsOnly: Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('AWS_CONTAINER_'))),
  };
}

test('boto3 1.44 (botocore with the token file): container credentials with the token file, and IMDSv2', {
  skip: skip('boto3-new'),
}, async (t) => {
  const { fake, env, imdsOnly } = await awsWorld(t);
  const viaContainer = await run(t, 'boto3-new', 'aws_client.py', [fake.url], env);
  assert.equal(viaContainer.ok, true, viaContainer.error);
  assert.equal(viaContainer['arn'], ARN);
  assert.equal(viaContainer['method'], 'container-role');
  const viaImds = await run(t, 'boto3-new', 'aws_client.py', [fake.url], imdsOnly);
  assert.equal(viaImds.ok, true, viaImds.error);
  assert.equal(viaImds['method'], 'iam-role');
  assert.equal(fake.stats.signaturesVerified, 2);
  inReadme('boto3/botocore', viaContainer['botocore']);
});

test('boto3 1.28 (botocore before the token file): refused without the literal token, served with it, and IMDSv2', {
  skip: skip('boto3-old'),
}, async (t) => {
  const plain = await awsWorld(t);
  const refused = await run(t, 'boto3-old', 'aws_client.py', [plain.fake.url], plain.env);
  assert.equal(refused.ok, false, 'an SDK without token-file support cannot use the default lines');
  assert.match(refused.error ?? '', /401|Unauthorized/i);
  const viaImds = await run(t, 'boto3-old', 'aws_client.py', [plain.fake.url], plain.imdsOnly);
  assert.equal(viaImds.ok, true, viaImds.error);
  assert.equal(viaImds['arn'], ARN);

  const legacy = await awsWorld(t, TOKEN);
  assert.equal(legacy.env['AWS_CONTAINER_AUTHORIZATION_TOKEN'], TOKEN);
  const served = await run(t, 'boto3-old', 'aws_client.py', [legacy.fake.url], legacy.env);
  assert.equal(served.ok, true, served.error);
  assert.equal(served['arn'], ARN);
  assert.equal(served['method'], 'container-role');
  assert.equal(legacy.fake.stats.signaturesVerified, 1);
  inReadme('boto3/botocore', served['botocore']);
});

test('google-auth: google.auth.default() through the metadata server, a token of the service account', {
  skip: skip('google-auth'),
}, async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const sidecar = await startGcpSidecar({ world, jwt: jwtSource(world), serviceAccount: true });
  t.after(() => sidecar.close());
  const answer = await run(t, 'google-auth', 'gcp_client.py', [], {
    ...sidecar.env,
    NO_PROXY: LOOPBACK_NO_PROXY,
    no_proxy: LOOPBACK_NO_PROXY,
  });
  assert.equal(answer.ok, true, answer.error);
  assert.equal(answer['kind'], 'google.auth.compute_engine.credentials.Credentials');
  assert.equal(answer['project'], PROJECT_ID);
  const info = world.fake.tokenInfo(String(answer['token']));
  assert.equal(info?.email, SERVICE_ACCOUNT);
  assert.ok(info?.scopes.includes(CLOUD_PLATFORM));
  inReadme('google-auth', answer['version']);
});

const STORAGE = 'https://storage.azure.com';

test('azure-identity: ManagedIdentityCredential through App Service, and through IMDS alone', {
  skip: skip('azure-identity'),
}, async (t) => {
  const world = await startAzureWorld(t);
  const azure = await runAzure(t, world, { azure: { imds: true } });
  const env = { ...azure.env, NO_PROXY: LOOPBACK_NO_PROXY, no_proxy: LOOPBACK_NO_PROXY };
  const viaAppService = await run(t, 'azure-identity', 'azure_client.py', [`${STORAGE}/.default`], env);
  assert.equal(viaAppService.ok, true, viaAppService.error);
  assert.equal((await world.entra.verifyAccessToken(String(viaAppService['token']), STORAGE)).tid, TENANT_ID);
  const imdsOnly = Object.fromEntries(
    Object.entries(env).filter(([k]) => !['IDENTITY_ENDPOINT', 'IDENTITY_HEADER', 'MSI_ENDPOINT'].includes(k)),
  );
  const viaImds = await run(t, 'azure-identity', 'azure_client.py', [`${STORAGE}/.default`], imdsOnly);
  assert.equal(viaImds.ok, true, viaImds.error);
  assert.equal((await world.entra.verifyAccessToken(String(viaImds['token']), STORAGE)).tid, TENANT_ID);
  inReadme('azure-identity', viaAppService['version']);
});
