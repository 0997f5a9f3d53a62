// Roles Anywhere configuration and `check`: every problem with its path, the X.509 cross-rule, and the
// empty-subject fact said plainly for csi-driver-spiffe's SVIDs.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkConfig } from '../../src/commands/check.ts';
import { ConfigError } from '../../src/config/common.ts';
import { parseSidecarConfig } from '../../src/config/load.ts';
import { describeClouds } from '../../src/env.ts';
import { DevCa } from '../helpers/pki.ts';
import { issueSvid, PROFILE_ARN, TD, TRUST_ANCHOR_ARN } from './roles-anywhere-support.ts';

function problemsOf(text: string): string[] {
  try {
    parseSidecarConfig(text, 'test.yaml');
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return [...error.problems];
  }
  assert.fail('expected the config to be refused');
}

const config = (spiffe: string, ra: string) => `
spiffe:
  trustDomain: example.org
${spiffe}
aws:
  roleArn: arn:aws:iam::111122223333:role/app
  region: eu-west-1
  rolesAnywhere:
${ra}
`;

test('rolesAnywhere: ARNs checked with their paths, regions must match, an X.509 source is required', () => {
  const bad = problemsOf(
    config(
      '  x509: { dir: /svid }',
      '    trustAnchorArn: arn:aws:iam::111122223333:role/x\n    profileArn: nope\n    endpoint: ftp://x\n    extra: 1',
    ),
  );
  for (const p of [
    /^aws\.rolesAnywhere\.trustAnchorArn: must be a Roles Anywhere trust anchor ARN/,
    /^aws\.rolesAnywhere\.profileArn: must be a Roles Anywhere profile ARN/,
    /^aws\.rolesAnywhere\.endpoint: must be an https:\/\/ URL/,
    /^aws\.rolesAnywhere: Unrecognized key: "extra"/,
  ]) {
    assert.ok(
      bad.some((x) => p.test(x)),
      `missing ${p}: ${bad.join('\n')}`,
    );
  }
  assert.ok(
    problemsOf(config('  x509: { dir: /svid }', '    profileArn: x')).some(
      (p) => p === 'aws.rolesAnywhere.trustAnchorArn: is required',
    ),
  );
  const regions = problemsOf(
    config(
      '  x509: { dir: /svid }',
      `    trustAnchorArn: ${TRUST_ANCHOR_ARN}\n    profileArn: ${PROFILE_ARN.replace('eu-west-1', 'us-east-1')}`,
    ),
  );
  assert.deepEqual(regions, [
    "aws.rolesAnywhere.profileArn: must be in the trust anchor's region (eu-west-1): Roles Anywhere answers for one region",
  ]);
  const jwtOnly = problemsOf(
    config('  jwt: { file: /t }', `    trustAnchorArn: ${TRUST_ANCHOR_ARN}\n    profileArn: ${PROFILE_ARN}`),
  );
  assert.deepEqual(jwtOnly, [
    'aws.rolesAnywhere: IAM Roles Anywhere signs with the X.509-SVID, not a JWT-SVID: configure spiffe.x509 or spiffe.workloadApi',
  ]);
  const ok = parseSidecarConfig(
    config('  x509: { dir: /svid }', `    trustAnchorArn: ${TRUST_ANCHOR_ARN}\n    profileArn: ${PROFILE_ARN}`),
  );
  assert.match(
    describeClouds(ok)[0]?.[1] ?? '',
    /IAM Roles Anywhere \(CreateSession at https:\/\/rolesanywhere\.eu-west-1\.amazonaws\.com, region eu-west-1/,
  );
});

test('check says plainly that a csi-driver-spiffe SVID (empty subject) will not work with Roles Anywhere, and passes one with a subject', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ra-check-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ca = await DevCa.create({ trustDomain: TD });
  const cfg = parseSidecarConfig(
    config(`  x509: { dir: ${dir} }`, `    trustAnchorArn: ${TRUST_ANCHOR_ARN}\n    profileArn: ${PROFILE_ARN}`),
  );
  const write = async (certPem: string, keyPem: string) => {
    await writeFile(join(dir, 'tls.crt'), certPem);
    await writeFile(join(dir, 'tls.key'), keyPem);
    await writeFile(join(dir, 'ca.crt'), ca.certPem);
  };
  const csi = await ca.issueX509Svid({ spiffeId: `spiffe://${TD}/ns/default/sa/app` });
  await write(csi.certPem, csi.keyPem);
  const empty = await checkConfig(cfg, new Date());
  assert.equal(empty.ok, false);
  assert.equal(empty.problems.length, 1, empty.problems.join('\n'));
  assert.match(
    empty.problems[0] ?? '',
    /^aws\.rolesAnywhere: the X\.509-SVID has an empty subject \(csi-driver-spiffe issues SVIDs so.*AWS documents that IAM Roles Anywhere does not support certificates with an empty subject/,
  );
  assert.ok(!empty.lines.some((l) => l.includes('sts.amazonaws.com')), 'no JWT audience is asked for');
  const withSubject = await issueSvid(ca);
  await write(withSubject.chainPem, withSubject.keyPem);
  const good = await checkConfig(cfg, new Date());
  assert.deepEqual(good.problems, []);
  assert.ok(
    good.lines.some((l) =>
      /^aws\.rolesAnywhere: the trust anchor must hold the CA that issued this SVID \(CN=example\.org root CA/.test(l),
    ),
    good.lines.join('\n'),
  );
});
