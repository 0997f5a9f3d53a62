// Black box: Google's and Azure's Go clients (test/peers/go/{gcp,azure}, built by scripts/install-peers.sh at the
// versions their go.mod pins), each a child process given only the lines `spiffe-connector env` prints (and
// PATH, and an empty HOME); the stand-ins check the tokens they got.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { LOOPBACK_NO_PROXY } from '../../src/env.ts';
import { runAzure, startWorld, TENANT_ID } from '../azure/fixtures.ts';
import {
  CLOUD_PLATFORM,
  jwtSource,
  PROJECT_ID,
  SERVICE_ACCOUNT,
  startGoogleWorld,
  startSidecar,
} from '../gcp/support.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const BIN = join(ROOT, '.tools', 'peers', 'bin');
const README = await readFile(join(ROOT, 'README.md'), 'utf8');

type Answer = { ok: boolean; error?: string } & Record<string, unknown>;

const skip = (name: string): string | false =>
  existsSync(join(BIN, `go-${name}.stamp`))
    ? false
    : `.tools/peers/bin/go-${name} is not built (run scripts/install-peers.sh)`;

/** The README's table names the module at the version this client's go.mod pins. */
async function inReadme(name: string, module: string): Promise<void> {
  const mod = await readFile(join(ROOT, 'test', 'peers', 'go', name, 'go.mod'), 'utf8');
  const version = new RegExp(`${module.replace(/[.]/g, '\\.')} (v[\\d.]+)`).exec(mod)?.[1] ?? '?';
  assert.ok(
    README.includes(`| ${module} ${version} |`),
    `README.md's compatibility table has no row "| ${module} ${version} |"`,
  );
}

async function run(t: TestContext, name: string, args: string[], env: Record<string, string>): Promise<Answer> {
  const home = await mkdtemp(join(tmpdir(), 'sc-peer-'));
  t.after(() => rm(home, { recursive: true, force: true }));
  return new Promise((resolve, reject) => {
    execFile(
      join(BIN, `go-${name}`),
      args,
      {
        env: {
          PATH: process.env['PATH'] ?? '',
          HOME: home,
          ...env,
          NO_PROXY: LOOPBACK_NO_PROXY,
          no_proxy: LOOPBACK_NO_PROXY,
        },
        timeout: 60_000,
      },
      (error, stdout, stderr) => {
        try {
          resolve(JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as Answer);
        } catch {
          reject(new Error(`go-${name} printed no answer (${error?.message ?? 'exit 0'}): ${stderr.slice(-2000)}`));
        }
      },
    );
  });
}

test('golang.org/x/oauth2/google and cloud.google.com/go/compute/metadata: ADC through the metadata server', {
  skip: skip('gcp'),
}, async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const sidecar = await startSidecar({ world, jwt: jwtSource(world), serviceAccount: true });
  t.after(() => sidecar.close());
  const answer = await run(t, 'gcp', [], sidecar.env);
  assert.equal(answer.ok, true, answer.error);
  assert.equal(answer['project'], PROJECT_ID);
  assert.equal(answer['adcProject'], PROJECT_ID);
  assert.equal(answer['email'], SERVICE_ACCOUNT);
  const info = world.fake.tokenInfo(String(answer['token']));
  assert.equal(info?.email, SERVICE_ACCOUNT);
  assert.ok(info?.scopes.includes(CLOUD_PLATFORM));
  await inReadme('gcp', 'golang.org/x/oauth2');
  await inReadme('gcp', 'cloud.google.com/go/compute/metadata');
});

const STORAGE = 'https://storage.azure.com';

test('azidentity: ManagedIdentityCredential through App Service', { skip: skip('azure') }, async (t) => {
  const world = await startWorld(t);
  const azure = await runAzure(t, world);
  const answer = await run(t, 'azure', [`${STORAGE}/.default`], azure.env);
  assert.equal(answer.ok, true, answer.error);
  assert.equal((await world.entra.verifyAccessToken(String(answer['token']), STORAGE)).tid, TENANT_ID);
  await inReadme('azure', 'github.com/Azure/azure-sdk-for-go/sdk/azidentity');
});
