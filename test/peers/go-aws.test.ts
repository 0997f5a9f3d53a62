// Black box: aws-sdk-go-v2 at two exact versions (test/peers/go/*, built by scripts/install-peers.sh), each a
// child process given only the lines `spiffe-connector env` prints (and PATH, and an empty HOME), signs
// GetCallerIdentity with what its default chain found; the STS stand-in verifies the signature.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { LOOPBACK_NO_PROXY } from '../../src/env.ts';
import { awsEnv } from '../../src/providers/aws/env.ts';
import { ACCOUNT, awsJwtSource, startSidecar, startStsWorld, until } from '../aws/support.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const BIN = join(ROOT, '.tools', 'peers', 'bin');
const README = await readFile(join(ROOT, 'README.md'), 'utf8');
const ARN = `arn:aws:sts::${ACCOUNT}:assumed-role/app/ns.default.sa.app`;
const TOKEN = 'legacy-literal-token-0123456789-abcdefghijklmnop';

type Answer = { ok: boolean; error?: string; arn?: string; source?: string };

const skip = (name: string): string | false =>
  existsSync(join(BIN, `go-${name}.stamp`))
    ? false
    : `.tools/peers/bin/go-${name} is not built (run scripts/install-peers.sh)`;

/** The aws-sdk-go-v2/config version a module pins (its go.mod), as the README's table must name it. */
async function pinned(name: string): Promise<string> {
  const mod = await readFile(join(ROOT, 'test', 'peers', 'go', name, 'go.mod'), 'utf8');
  return /github\.com\/aws\/aws-sdk-go-v2\/config (v[\d.]+)/.exec(mod)?.[1] ?? '?';
}

async function run(t: TestContext, name: string, stsUrl: string, env: Record<string, string>): Promise<Answer> {
  const home = await mkdtemp(join(tmpdir(), 'sc-peer-'));
  t.after(() => rm(home, { recursive: true, force: true }));
  return new Promise((resolve, reject) => {
    execFile(
      join(BIN, `go-${name}`),
      [stsUrl],
      { env: { PATH: process.env['PATH'] ?? '', HOME: home, ...env }, timeout: 60_000 },
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

async function world(t: TestContext, containerAuthorizationToken?: string) {
  const sts = await startStsWorld();
  t.after(() => sts.close());
  const sidecar = await startSidecar({
    stsEndpoint: sts.fake.url,
    jwt: awsJwtSource(sts.signer),
    ...(containerAuthorizationToken ? { containerAuthorizationToken } : {}),
  });
  t.after(() => sidecar.close());
  await until(() => sidecar.provider.readiness().ready, 'first credentials');
  const env = {
    ...Object.fromEntries(awsEnv(sidecar.config, sidecar.origin)),
    NO_PROXY: LOOPBACK_NO_PROXY,
    no_proxy: LOOPBACK_NO_PROXY,
  };
  return {
    fake: sts.fake,
    env,
    imdsOnly: Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('AWS_CONTAINER_'))),
  };
}

test('aws-sdk-go-v2 current: container credentials with the token file, and IMDSv2', {
  skip: skip('aws-new'),
}, async (t) => {
  const { fake, env, imdsOnly } = await world(t);
  const viaContainer = await run(t, 'aws-new', fake.url, env);
  assert.equal(viaContainer.ok, true, viaContainer.error);
  assert.equal(viaContainer.arn, ARN);
  assert.equal(viaContainer.source, 'CredentialsEndpointProvider');
  const viaImds = await run(t, 'aws-new', fake.url, imdsOnly);
  assert.equal(viaImds.ok, true, viaImds.error);
  assert.equal(viaImds.source, 'EC2RoleProvider');
  assert.equal(fake.stats.signaturesVerified, 2);
  const version = await pinned('aws-new');
  assert.ok(
    README.includes(`| aws-sdk-go-v2 config ${version} |`),
    `README.md's compatibility table names aws-sdk-go-v2 config ${version}`,
  );
});

test('aws-sdk-go-v2 before the token file: refused without the literal token, served with it, and IMDSv2', {
  skip: skip('aws-old'),
}, async (t) => {
  const plain = await world(t);
  const refused = await run(t, 'aws-old', plain.fake.url, plain.env);
  assert.equal(refused.ok, false, 'an SDK without token-file support cannot use the default lines');
  assert.match(refused.error ?? '', /401|Unauthorized/);
  const viaImds = await run(t, 'aws-old', plain.fake.url, plain.imdsOnly);
  assert.equal(viaImds.ok, true, viaImds.error);
  assert.equal(viaImds.arn, ARN);
  const legacy = await world(t, TOKEN);
  const served = await run(t, 'aws-old', legacy.fake.url, legacy.env);
  assert.equal(served.ok, true, served.error);
  assert.equal(served.arn, ARN);
  assert.equal(served.source, 'CredentialsEndpointProvider');
  assert.equal(legacy.fake.stats.signaturesVerified, 1);
  const version = await pinned('aws-old');
  assert.ok(
    README.includes(`| aws-sdk-go-v2 config ${version} |`),
    `README.md's compatibility table names aws-sdk-go-v2 config ${version}`,
  );
});
