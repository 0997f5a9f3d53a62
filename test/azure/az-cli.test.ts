// Optional by-hand check with the Azure CLI (skipped when `az` is absent): `az login --identity` with only the
// env lines reaches our MSI_ENDPOINT (az 2.45) or App Service/IMDS (newer az) and receives a token with `tid`.
// Listing subscriptions afterwards needs ARM, which is not here: az's exit is checked to be that failure alone.

import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runAzure, startWorld } from './fixtures.ts';

function azPresent(): boolean {
  try {
    execFileSync('az', ['version'], { stdio: 'ignore', timeout: 60_000 });
    return true;
  } catch {
    return false;
  }
}

test('az login --identity gets its managed-identity token from the sidecar', {
  skip: azPresent() ? false : 'the Azure CLI (az) is not installed',
}, async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  const config = await mkdtemp(join(tmpdir(), 'sc-az-'));
  t.after(() => rm(config, { recursive: true, force: true }));
  const env = {
    PATH: process.env['PATH'] ?? '',
    AZURE_CONFIG_DIR: config,
    // Anything not on loopback (ARM, telemetry) goes to a dead loopback proxy and fails here.
    HTTPS_PROXY: 'http://127.0.0.1:9',
    HTTP_PROXY: 'http://127.0.0.1:9',
    NO_PROXY: '127.0.0.1,localhost',
    AZURE_CORE_COLLECT_TELEMETRY: 'false',
    ...run.env,
  };
  const az = await new Promise<{ code: number | string | null | undefined; stdout: string; stderr: string }>(
    (resolve) => {
      execFile(
        'az',
        ['login', '--identity', '--allow-no-subscriptions'],
        { env, timeout: 120_000 },
        (error, stdout, stderr) => resolve({ code: error ? error.code : 0, stdout, stderr }),
      );
    },
  );
  // az exits 1 here, and only because of ARM: its first call after the token (listing subscriptions)
  // meets the dead proxy. Any other failure (no token, a token it refused) fails the test.
  assert.equal(az.code, 1, `az exited ${az.code}:\n${az.stderr}`);
  assert.match(az.stderr, /^ERROR: \('Cannot connect to proxy\.'/, az.stderr);
  assert.doesNotMatch(az.stderr, /identity|token|MSI/i, az.stderr);
  const text = await run.metrics.text();
  const served = [...text.matchAll(/spiffe_connector_requests_total\{surface="(azure-[a-z]+)",status="200"\} (\d+)/g)];
  assert.ok(served.length > 0, `az did not get a token from us:\n${text}`);
  assert.ok(world.entra.counters.issued >= 1);
});
