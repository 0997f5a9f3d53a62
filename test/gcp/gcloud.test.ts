// gcloud, unmodified, with a fresh config directory and only the `env` lines, prints a token the
// Google stand-in issued. Skipped cleanly where gcloud is not installed.

import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { jwtSource, SERVICE_ACCOUNT, startGoogleWorld, startSidecar } from './support.ts';

function hasGcloud(): boolean {
  try {
    execFileSync('gcloud', ['--version'], { stdio: 'ignore', timeout: 60_000 });
    return true;
  } catch {
    return false;
  }
}

test('gcloud auth print-access-token', { skip: hasGcloud() ? false : 'gcloud is not installed' }, async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const s = await startSidecar({ world, jwt: jwtSource(world), serviceAccount: true });
  t.after(() => s.close());
  const config = await mkdtemp(join(tmpdir(), 'spiffe-connector-gcloud-'));
  t.after(() => rm(config, { recursive: true, force: true }));

  const run = (args: string[]): Promise<string> =>
    new Promise((resolve, reject) => {
      execFile(
        'gcloud',
        args,
        {
          timeout: 120_000,
          env: {
            PATH: process.env.PATH ?? '',
            HOME: config,
            CLOUDSDK_CONFIG: config,
            CLOUDSDK_CORE_DISABLE_USAGE_REPORTING: 'true',
            CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK: 'true',
            ...s.env,
          },
        },
        (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout.trim())),
      );
    });

  const token = await run(['auth', 'print-access-token']);
  const info = world.fake.tokenInfo(token);
  assert.equal(info?.kind, 'service-account');
  assert.equal(info?.email, SERVICE_ACCOUNT);
  const account = await run(['config', 'list', 'account', '--format=value(core.account)']);
  assert.equal(account, SERVICE_ACCOUNT);
});
