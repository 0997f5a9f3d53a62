// Black box: the AWS SDK for Java v2, google-auth-library-java and azure-identity for Java at the exact versions
// their pom.xml pins (test/peers/java/*, resolved and compiled by scripts/install-peers.sh), each a JVM given only
// the lines `spiffe-connector env` prints (and PATH, JAVA_HOME, and an empty HOME that is also user.home); the
// stand-ins check what they got: STS verifies the signature, the Google and Entra stand-ins the token.

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
  SERVICE_ACCOUNT,
  startSidecar as startGoogleSidecar,
  startGoogleWorld,
} from '../gcp/support.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const PEERS = join(ROOT, '.tools', 'peers');
const README = await readFile(join(ROOT, 'README.md'), 'utf8');
const ARN = `arn:aws:sts::${ACCOUNT}:assumed-role/app/ns.default.sa.app`;
const TOKEN = 'legacy-literal-token-0123456789-abcdefghijklmnop';
const OTHER = 'another-literal-token-0123456789-abcdefghijklmno';

type Answer = { ok: boolean; error?: string } & Record<string, unknown>;

// What the credentials' providerName() says in this SDK: its business-metric ids (BusinessMetricFeatureId).
const CREDENTIALS_HTTP = 'z';
const CREDENTIALS_IMDS = '0';

const skip = (name: string): string | false =>
  existsSync(join(PEERS, `java-${name}`, '.stamp'))
    ? false
    : `.tools/peers/java-${name} is not built (run scripts/install-peers.sh; it needs java, javac and mvn)`;

/** The README's table names the artifact (group:artifact) at the version Maven resolved for this client (its classpath). */
async function inReadme(name: string, coordinates: string): Promise<void> {
  const [group = '', artifact = ''] = coordinates.split(':');
  const classpath = await readFile(join(PEERS, `java-${name}`, 'classpath'), 'utf8');
  const dir = `/${group.replaceAll('.', '/')}/${artifact}/`;
  const at = classpath.indexOf(dir);
  const version = at < 0 ? '?' : classpath.slice(at + dir.length).split('/')[0];
  assert.ok(
    README.includes(`| ${coordinates} ${version} |`),
    `README.md's compatibility table has no row "| ${coordinates} ${version} |"`,
  );
}

async function run(t: TestContext, name: string, args: string[], env: Record<string, string>): Promise<Answer> {
  const home = await mkdtemp(join(tmpdir(), 'sc-peer-'));
  t.after(() => rm(home, { recursive: true, force: true }));
  const dir = join(PEERS, `java-${name}`);
  const classpath = `${join(dir, 'classes')}:${(await readFile(join(dir, 'classpath'), 'utf8')).trim()}`;
  const base: Record<string, string> = {
    PATH: process.env['PATH'] ?? '',
    HOME: home,
    NO_PROXY: LOOPBACK_NO_PROXY,
    no_proxy: LOOPBACK_NO_PROXY,
  };
  if (process.env['JAVA_HOME']) base['JAVA_HOME'] = process.env['JAVA_HOME'];
  const java = process.env['JAVA_HOME'] ? join(process.env['JAVA_HOME'], 'bin', 'java') : 'java';
  const jvm = [`-Duser.home=${home}`, '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-cp', classpath, 'Main'];
  return new Promise((resolve, reject) => {
    execFile(java, [...jvm, ...args], { env: { ...base, ...env }, timeout: 120_000 }, (error, stdout, stderr) => {
      try {
        resolve(JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as Answer);
      } catch {
        reject(new Error(`java-${name} printed no answer (${error?.message ?? 'exit 0'}): ${stderr.slice(-2000)}`));
      }
    });
  });
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
  const env = Object.fromEntries(awsEnv(sidecar.config, sidecar.origin));
  return {
    fake: sts.fake,
    env,
    imdsOnly: Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('AWS_CONTAINER_'))),
  };
}

test('AWS SDK for Java v2: container credentials with the token file, and IMDSv2', { skip: skip('aws') }, async (t) => {
  const { fake, env, imdsOnly } = await awsWorld(t);
  const viaContainer = await run(t, 'aws', [fake.url], env);
  assert.equal(viaContainer.ok, true, viaContainer.error);
  assert.equal(viaContainer.arn, ARN);
  assert.equal(viaContainer.source, CREDENTIALS_HTTP);
  const viaImds = await run(t, 'aws', [fake.url], imdsOnly);
  assert.equal(viaImds.ok, true, viaImds.error);
  assert.equal(viaImds.arn, ARN);
  assert.equal(viaImds.source, CREDENTIALS_IMDS);
  assert.equal(fake.stats.signaturesVerified, 2);
  await inReadme('aws', 'software.amazon.awssdk:sts');
});

test('AWS SDK for Java v2 with both variables set: it sends the literal AWS_CONTAINER_AUTHORIZATION_TOKEN', {
  skip: skip('aws'),
}, async (t) => {
  const { fake, env } = await awsWorld(t, TOKEN);
  assert.equal(env['AWS_CONTAINER_AUTHORIZATION_TOKEN'], TOKEN);
  const served = await run(t, 'aws', [fake.url], env);
  assert.equal(served.ok, true, served.error);
  assert.equal(served.arn, ARN);
  assert.equal(served.source, CREDENTIALS_HTTP);
  // Which one it sends: the file still holds the right token, the literal a wrong one. The container endpoint
  // refuses it, and this SDK's chain (unlike botocore's) then goes on to IMDS, which the env lines also name.
  const literalWins = await run(t, 'aws', [fake.url], { ...env, AWS_CONTAINER_AUTHORIZATION_TOKEN: OTHER });
  assert.equal(literalWins.ok, true, literalWins.error);
  assert.equal(literalWins.source, CREDENTIALS_IMDS, 'Java v2 sent the file, not the literal');
  assert.equal(fake.stats.signaturesVerified, 2);
});

test('google-auth-library-java: ADC through the metadata server (GCE_METADATA_HOST)', {
  skip: skip('gcp'),
}, async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const sidecar = await startGoogleSidecar({ world, jwt: jwtSource(world), serviceAccount: true });
  t.after(() => sidecar.close());
  const answer = await run(t, 'gcp', [], sidecar.env);
  assert.equal(answer.ok, true, answer.error);
  assert.equal(answer['kind'], 'ComputeEngineCredentials');
  assert.equal(answer['email'], SERVICE_ACCOUNT);
  const info = world.fake.tokenInfo(String(answer['token']));
  assert.equal(info?.email, SERVICE_ACCOUNT);
  assert.ok(info?.scopes.includes(CLOUD_PLATFORM));
  await inReadme('gcp', 'com.google.auth:google-auth-library-oauth2-http');
});

const STORAGE = 'https://storage.azure.com';

test('azure-identity for Java: ManagedIdentityCredential through App Service (IDENTITY_ENDPOINT)', {
  skip: skip('azure'),
}, async (t) => {
  const world = await startAzureWorld(t);
  const azure = await runAzure(t, world);
  const answer = await run(t, 'azure', [`${STORAGE}/.default`], azure.env);
  assert.equal(answer.ok, true, answer.error);
  assert.equal((await world.entra.verifyAccessToken(String(answer['token']), STORAGE)).tid, TENANT_ID);
  await inReadme('azure', 'com.azure:azure-identity');
});
