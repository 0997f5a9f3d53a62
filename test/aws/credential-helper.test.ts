// AWS's own Roles Anywhere client (aws/rolesanywhere-credential-helper, built by scripts/install-tools.sh)
// against the stand-in: what the real client signs, the stand-in accepts, and what it must refuse, it
// refuses; so the stand-in the sidecar's tests rely on agrees with AWS's client, not only with our signer.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DevCa } from '../helpers/pki.ts';
import {
  issueSvid,
  PROFILE_ARN,
  REGION,
  ROLE_ARN,
  type SvidOptions,
  startFakeRolesAnywhere,
  TD,
  TRUST_ANCHOR_ARN,
} from './roles-anywhere-support.ts';

const PINNED = new URL('../../.tools/bin/rolesanywhere-credential-helper', import.meta.url).pathname;
const helper = await access(PINNED).then(
  () => PINNED,
  () => undefined,
);

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      helper ?? 'false',
      args,
      { timeout: 30_000, env: { PATH: process.env['PATH'] ?? '', HOME: tmpdir() } },
      (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

const skip = helper
  ? false
  : 'no rolesanywhere-credential-helper (bash scripts/install-tools.sh builds it into .tools/bin from the Go module proxy; it needs Go and a C compiler)';

test("the real credential helper's credential-process gets credentials from the stand-in, and is refused what AWS refuses", {
  skip,
}, async (t) => {
  const ca = await DevCa.create({ trustDomain: TD });
  const fake = await startFakeRolesAnywhere(ca);
  t.after(() => fake.close());
  const dir = await mkdtemp(join(tmpdir(), 'ra-helper-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  let n = 0;
  const credentialProcess = async (o: SvidOptions, issuer: DevCa = ca) => {
    const issued = await issueSvid(issuer, o);
    n += 1;
    const cert = join(dir, `cert-${n}.pem`);
    const key = join(dir, `key-${n}.pem`);
    const chain = join(dir, `chain-${n}.pem`);
    await writeFile(cert, issued.certPem);
    await writeFile(key, issued.keyPem);
    const intermediates = issued.chainPem.slice(issued.certPem.length);
    if (intermediates !== '') await writeFile(chain, intermediates);
    return run([
      'credential-process',
      '--certificate',
      cert,
      '--private-key',
      key,
      ...(intermediates === '' ? [] : ['--intermediates', chain]),
      '--trust-anchor-arn',
      TRUST_ANCHOR_ARN,
      '--profile-arn',
      PROFILE_ARN,
      '--role-arn',
      ROLE_ARN,
      '--region',
      REGION,
      '--endpoint',
      fake.url,
    ]);
  };
  for (const keyType of ['ec-p256', 'rsa-2048'] as const) {
    const ok = await credentialProcess({ keyType });
    assert.equal(ok.code, 0, ok.stderr);
    const out = JSON.parse(ok.stdout) as {
      Version: number;
      AccessKeyId: string;
      SecretAccessKey: string;
      SessionToken: string;
      Expiration: string;
    };
    const session = fake.sessions().at(-1);
    assert.equal(out.Version, 1);
    assert.equal(out.AccessKeyId, session?.accessKeyId);
    assert.equal(out.SecretAccessKey, session?.secretAccessKey);
    assert.equal(new Date(out.Expiration).getTime(), session?.expiration);
    assert.equal(session?.algorithm, keyType === 'ec-p256' ? 'AWS4-X509-ECDSA-SHA256' : 'AWS4-X509-RSA-SHA256');
  }
  const viaIntermediate = await credentialProcess({}, await ca.issueIntermediate());
  assert.equal(viaIntermediate.code, 0, viaIntermediate.stderr);
  assert.equal(fake.stats.sessions, 3);
  const foreign = await credentialProcess({}, await DevCa.create({ trustDomain: TD }));
  assert.notEqual(foreign.code, 0);
  assert.match(foreign.stderr, /AccessDeniedException.*does not chain to the trust anchor/);
  const empty = await credentialProcess({ subject: '' });
  assert.notEqual(empty.code, 0);
  assert.match(empty.stderr, /AccessDeniedException.*empty subject/);
  assert.equal(fake.stats.sessions, 3);
});
