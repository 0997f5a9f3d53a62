// `spiffe-connector gcp-credentials` outside Kubernetes: the printed external-account file, given to an
// unmodified google-auth-library app as GOOGLE_APPLICATION_CREDENTIALS, runs `gcp-subject-token` for the
// host's JWT-SVID and gets a token from the Google stand-ins (STS, then IAM impersonation when configured).

import assert from 'node:assert/strict';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeAtomicDir } from '@spiffe-connector/dev/atomic-dir.ts';
import { cli, runNode } from '../helpers/sidecar.ts';
import {
  AUDIENCE,
  type GoogleWorld,
  PROJECT_ID,
  PROJECT_NUMBER,
  PROVIDER,
  SERVICE_ACCOUNT,
  SPIFFE_ID,
  startGoogleWorld,
} from './support.ts';

const CLIENT = fileURLToPath(new URL('./external-account-client.ts', import.meta.url));

async function setup(t: import('node:test').TestContext, o: { serviceAccount: boolean }) {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const jwtDir = join(world.dir, 'tokens');
  const writeJwt = async (sub = SPIFFE_ID, aud = AUDIENCE): Promise<void> => {
    await writeAtomicDir(jwtDir, [
      { name: 'jwt-svid', content: await world.signer.sign({ sub, aud, ttlSeconds: 3600 }) },
    ]);
  };
  const configFile = join(world.dir, 'config.yaml');
  await writeFile(
    configFile,
    `spiffe:
  trustDomain: example.org
  jwt: { file: ${join(jwtDir, 'jwt-svid')} }
gcp:
  projectId: ${PROJECT_ID}
  projectNumber: "${PROJECT_NUMBER}"
  workloadIdentityProvider: ${PROVIDER}
${o.serviceAccount ? `  serviceAccount: ${SERVICE_ACCOUNT}\n` : ''}  stsEndpoint: ${world.fake.url}
  iamCredentialsEndpoint: ${world.fake.url}
`,
  );
  return { world, configFile, writeJwt };
}

async function credentialsFile(
  world: GoogleWorld,
  configFile: string,
  extra: string[] = [],
): Promise<{ path: string; json: Record<string, unknown> }> {
  const printed = await cli(['gcp-credentials', '--config', configFile, ...extra]);
  assert.equal(printed.code, 0, printed.stderr);
  const path = join(world.dir, 'credentials.json');
  await writeFile(path, printed.stdout);
  return { path, json: JSON.parse(printed.stdout) as Record<string, unknown> };
}

async function app(credentials: string, allow = true): Promise<{ token?: string; error?: string }> {
  // GOOGLE_CLOUD_PROJECT, as the README says: without it the library asks Cloud Resource Manager for the
  // project of the pool's number. The metadata host points at a closed loopback port: nothing leaves this host.
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '',
    HOME: '/nonexistent',
    GOOGLE_APPLICATION_CREDENTIALS: credentials,
    GOOGLE_CLOUD_PROJECT: PROJECT_ID,
    NO_GCE_CHECK: 'true',
    GCE_METADATA_HOST: '127.0.0.1:9',
  };
  if (allow) env['GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES'] = '1';
  const out = await runNode([CLIENT], env);
  assert.equal(out.code, 0, out.stderr);
  return JSON.parse(out.stdout) as { token?: string; error?: string };
}

test('google-auth-library with the printed file impersonates the service account through the executable source', async (t) => {
  const { world, configFile, writeJwt } = await setup(t, { serviceAccount: true });
  await writeJwt();
  const { path, json } = await credentialsFile(world, configFile);
  assert.equal(json['type'], 'external_account');
  assert.equal(json['audience'], AUDIENCE);
  assert.equal(json['subject_token_type'], 'urn:ietf:params:oauth:token-type:jwt');
  assert.equal(
    json['service_account_impersonation_url'],
    `${world.fake.url}/v1/projects/-/serviceAccounts/${SERVICE_ACCOUNT}:generateAccessToken`,
  );

  const got = await app(path);
  assert.ok(got.token, got.error);
  const issued = world.fake.tokenInfo(got.token);
  assert.equal(issued?.kind, 'service-account');
  assert.equal(issued?.email, SERVICE_ACCOUNT);
  assert.equal(world.fake.stats.lastSts?.subject, SPIFFE_ID, 'Google STS saw our SPIFFE ID as the subject');
  assert.equal(world.fake.stats.generateAccessToken, 1);
});

test('without a service account: the federated token itself', async (t) => {
  const { world, configFile, writeJwt } = await setup(t, { serviceAccount: false });
  await writeJwt();
  const { path, json } = await credentialsFile(world, configFile);
  assert.equal(json['service_account_impersonation_url'], undefined);
  const got = await app(path);
  assert.ok(got.token, got.error);
  assert.equal(world.fake.tokenInfo(got.token)?.kind, 'federated');
  assert.equal(world.fake.stats.generateAccessToken, 0);
});

test('the libraries refuse to run it unless GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1; an unusable SVID is their error, in our words', async (t) => {
  const { world, configFile, writeJwt } = await setup(t, { serviceAccount: true });
  const { path } = await credentialsFile(world, configFile);
  await writeJwt();
  assert.match((await app(path, false)).error ?? '', /GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES/);
  assert.equal(world.fake.stats.stsRequests, 0);

  await writeJwt('spiffe://other.example/vm/x');
  assert.match((await app(path)).error ?? '', /outside the configured trust domain example\.org/);
  await writeJwt(SPIFFE_ID, 'some-other-audience');
  assert.match((await app(path)).error ?? '', /lacks the audience \/\/iam\.googleapis\.com\/projects/);
  assert.equal(world.fake.stats.stsRequests, 0, 'nothing reached Google');

  // The executable alone: the response format, nothing on stderr, exit 1 on failure.
  const direct = await cli(['gcp-subject-token', '--config', configFile], {
    GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE:
      '//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q',
  });
  assert.equal(direct.code, 1);
  assert.equal(direct.stderr, '');
  const failed = JSON.parse(direct.stdout) as Record<string, unknown>;
  assert.equal(failed['version'], 1);
  assert.equal(failed['success'], false);
  assert.match(String(failed['message']), /the credentials file is for .*providers\/q, but this config's provider is/);
});

test('with --output-file the library reuses the cached response (mode 0600) until it expires', async (t) => {
  const { world, configFile, writeJwt } = await setup(t, { serviceAccount: true });
  await writeJwt();
  const output = join(world.dir, 'subject-token.json');
  const { path, json } = await credentialsFile(world, configFile, ['--output-file', output]);
  assert.equal((json['credential_source'] as { executable: { output_file?: string } }).executable.output_file, output);
  assert.ok((await app(path)).token);
  assert.equal((await stat(output)).mode & 0o777, 0o600);
  const cached = JSON.parse(await readFile(output, 'utf8')) as Record<string, unknown>;
  assert.equal(cached['success'], true);
  assert.equal(typeof cached['expiration_time'], 'number');
  // The SVID file is gone, yet a new process still gets a token: from the cached response.
  await rm(join(world.dir, 'tokens'), { recursive: true, force: true });
  assert.ok((await app(path)).token);
  assert.equal(world.fake.stats.stsSuccesses, 2);
});
