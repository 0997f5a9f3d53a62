// Black box: the AWS SDK for JavaScript gets credentials from the sidecar in Roles Anywhere mode, which
// signed CreateSession at the stand-in with the X.509-SVID; refusals reach readiness in words an
// operator reads; throttling is retried; a `..data` swap signs a new session with no failed request.

import assert from 'node:assert/strict';
import { createHash, type X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { fromHttp, fromInstanceMetadata } from '@aws-sdk/credential-providers';
import { writeAtomicDir } from '@spiffe-connector/dev/atomic-dir.ts';
import { systemClock } from '../../src/base/clock.ts';
import { ConnectorError } from '../../src/base/errors.ts';
import { silentLogger } from '../../src/ops/logger.ts';
import { awsEnv } from '../../src/providers/aws/env.ts';
import { mapRolesAnywhereError } from '../../src/providers/aws/roles-anywhere.ts';
import { X509FilesSource } from '../../src/sources/x509-files.ts';
import { DevCa } from '../helpers/pki.ts';
import {
  ACCOUNT,
  issueSvid,
  raw,
  startFakeRolesAnywhere,
  startRaSidecar,
  TD,
  TestX509Source,
  until,
} from './roles-anywhere-support.ts';

async function world(t: TestContext, o: { keyType?: 'ec-p256' | 'rsa-2048' } = {}) {
  const ca = await DevCa.create({ trustDomain: TD });
  const fake = await startFakeRolesAnywhere(ca);
  t.after(() => fake.close());
  const x509 = await TestX509Source.create(ca, o.keyType ? { keyType: o.keyType } : {});
  const sidecar = await startRaSidecar({ endpoint: fake.url, x509 });
  t.after(() => sidecar.close());
  return { ca, fake, x509, sidecar };
}

for (const keyType of ['ec-p256', 'rsa-2048'] as const) {
  test(`fromHttp and fromInstanceMetadata get the credentials Roles Anywhere issued for a ${keyType} X.509-SVID`, async (t) => {
    const { fake, x509, sidecar } = await world(t, { keyType });
    await until(() => sidecar.provider.readiness().ready, 'first credentials');
    const session = fake.sessions()[0];
    assert.ok(session);
    assert.equal(session.algorithm, keyType === 'ec-p256' ? 'AWS4-X509-ECDSA-SHA256' : 'AWS4-X509-RSA-SHA256');
    const leaf = x509.current()?.certificates[0];
    assert.equal(
      session.leafFingerprint,
      createHash('sha256')
        .update(leaf?.raw ?? Buffer.alloc(0))
        .digest('hex'),
    );
    assert.equal(session.durationSeconds, 3600);
    const env = Object.fromEntries(awsEnv(sidecar.config, sidecar.origin));
    const creds = await fromHttp({
      awsContainerCredentialsFullUri: env['AWS_CONTAINER_CREDENTIALS_FULL_URI'] ?? '',
      awsContainerAuthorizationTokenFile: env['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'] ?? '',
    })();
    assert.equal(creds.accessKeyId, session.accessKeyId);
    assert.equal(creds.secretAccessKey, session.secretAccessKey);
    assert.equal(creds.sessionToken, session.sessionToken);
    assert.equal(creds.expiration?.getTime(), session.expiration);
    process.env['AWS_EC2_METADATA_SERVICE_ENDPOINT'] = sidecar.origin;
    process.env['AWS_EC2_METADATA_V1_DISABLED'] = 'true';
    try {
      const imds = await fromInstanceMetadata({ maxRetries: 0 })();
      assert.equal(imds.accessKeyId, session.accessKeyId);
      assert.equal(imds.accountId, ACCOUNT);
    } finally {
      delete process.env['AWS_EC2_METADATA_SERVICE_ENDPOINT'];
      delete process.env['AWS_EC2_METADATA_V1_DISABLED'];
    }
    assert.equal(fake.stats.sessions, 1, 'served from the cache, one CreateSession');
  });
}

test('AccessDeniedException and ResourceNotFoundException are not retried, and readiness says why in words an operator can act on', async (t) => {
  const ca = await DevCa.create({ trustDomain: TD });
  const fake = await startFakeRolesAnywhere(ca, { profiles: [] });
  t.after(() => fake.close());
  const x509 = await TestX509Source.create(ca, { subject: '' });
  const sidecar = await startRaSidecar({ endpoint: fake.url, x509 });
  t.after(() => sidecar.close());
  await until(() => /refused/.test(sidecar.provider.readiness().reason ?? ''), 'the refusal');
  assert.equal(fake.stats.requests, 1);
  const reason = sidecar.provider.readiness().reason ?? '';
  assert.match(
    reason,
    /IAM Roles Anywhere refused CreateSession \(AccessDeniedException\): Untrusted certificate\. Certificates with an empty subject are not supported \(request id [0-9a-f-]+\)\. The X\.509-SVID has an empty subject/,
  );
  const refusedSoFar = fake.stats.requests;
  // A rotation (a new identity) tries again at once; with a subject, the next refusal is the missing profile.
  await x509.rotate();
  await until(
    () =>
      fake.stats.requests === refusedSoFar + 1 &&
      /ResourceNotFoundException/.test(sidecar.provider.readiness().reason ?? ''),
    'the second refusal',
  );
  assert.match(
    sidecar.provider.readiness().reason ?? '',
    /Profile not found .*Check aws\.rolesAnywhere\.trustAnchorArn and profileArn/,
  );
  const res = await raw(sidecar.port, 'GET', '/v1/credentials', {
    authorization: await readFile(sidecar.tokenFile, 'utf8'),
  });
  assert.notEqual(res.status, 200);
  assert.ok(!res.body.includes('BEGIN'), 'no certificate material in the answer');
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(fake.stats.requests, refusedSoFar + 1, 'a refusal is not retried on the backoff schedule');
});

test('ThrottlingException and 5xx are retried with backoff until CreateSession succeeds', async (t) => {
  const ca = await DevCa.create({ trustDomain: TD });
  const fake = await startFakeRolesAnywhere(ca);
  t.after(() => fake.close());
  fake.injectFaults([
    { status: 429, code: 'ThrottlingException', message: 'Rate exceeded' },
    { status: 500, code: 'InternalServerException' },
  ]);
  const sidecar = await startRaSidecar({ endpoint: fake.url, x509: await TestX509Source.create(ca) });
  t.after(() => sidecar.close());
  await until(() => sidecar.provider.readiness().ready, 'credentials after two retried failures');
  assert.equal(fake.stats.faultsServed, 2);
  assert.equal(fake.stats.sessions, 1);
});

test('the one error mapper: what is retried, what is not, and no secrets in the words', () => {
  const http = (status: number, errorType: string | undefined, message?: string) =>
    mapRolesAnywhereError({ kind: 'http', status, errorType, message, requestId: 'rid-1' });
  const denied = http(
    403,
    'AccessDeniedException:http://internal.amazon.com/coral/com.amazon.rolesanywhere/',
    'Untrusted certificate. Insufficient certificate',
  );
  assert.equal(denied.retryable, false);
  assert.equal(denied.upstreamCode, 'AccessDeniedException');
  assert.match(
    denied.message,
    /refused CreateSession \(AccessDeniedException\): Untrusted certificate\. Insufficient certificate \(request id rid-1\)\. Check that the trust anchor holds the CA/,
  );
  assert.equal(http(404, 'ResourceNotFoundException').retryable, false);
  assert.equal(http(400, 'ValidationException').retryable, false);
  assert.equal(http(429, undefined).retryable, true);
  assert.equal(http(400, 'ThrottlingException').retryable, true);
  assert.equal(http(503, 'ServiceUnavailableException').retryable, true);
  assert.equal(http(500, undefined).code, 'upstream_unavailable');
  const timeout = mapRolesAnywhereError({
    kind: 'transport',
    error: new DOMException('timed out', 'TimeoutError'),
    timedOut: true,
  });
  assert.equal(timeout.code, 'timeout');
  assert.equal(timeout.retryable, true);
  const refused = mapRolesAnywhereError({
    kind: 'transport',
    error: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }),
    timedOut: false,
  });
  assert.ok(
    refused instanceof ConnectorError &&
      refused.retryable &&
      /could not be reached: ECONNREFUSED/.test(refused.message),
  );
});

test('rotation: a ..data swap signs a new CreateSession with the new certificate, with no failed request in between', async (t) => {
  const ca = await DevCa.create({ trustDomain: TD });
  const fake = await startFakeRolesAnywhere(ca);
  t.after(() => fake.close());
  const dir = await mkdtemp(join(tmpdir(), 'ra-svid-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const write = async () => {
    const issued = await issueSvid(ca);
    await writeAtomicDir(dir, [
      { name: 'tls.crt', content: issued.chainPem },
      { name: 'tls.key', content: issued.keyPem, mode: 0o600 },
      { name: 'ca.crt', content: ca.certPem },
    ]);
    return issued.certificate;
  };
  const first = await write();
  const x509 = new X509FilesSource({
    dir,
    certFile: 'tls.crt',
    keyFile: 'tls.key',
    bundleFile: 'ca.crt',
    trustDomain: TD,
    pollIntervalSeconds: 1,
    clock: systemClock,
    logger: silentLogger(),
    debounceMs: 20,
    watch: true,
  });
  t.after(() => x509.close());
  await x509.start();
  const sidecar = await startRaSidecar({ endpoint: fake.url, x509, spiffe: { trustDomain: TD, x509: { dir } } });
  t.after(() => sidecar.close());
  await until(() => sidecar.provider.readiness().ready, 'first credentials');
  const fingerprint = (c: X509Certificate) => createHash('sha256').update(c.raw).digest('hex');
  assert.equal(fake.sessions()[0]?.leafFingerprint, fingerprint(first));

  const token = await readFile(sidecar.tokenFile, 'utf8');
  const statuses: number[] = [];
  const keys = new Set<string>();
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const res = await raw(sidecar.port, 'GET', '/v1/credentials', { authorization: token });
      statuses.push(res.status);
      if (res.status === 200) keys.add((JSON.parse(res.body) as { AccessKeyId: string }).AccessKeyId);
    }
  })();
  const second = await write();
  await until(
    () => fake.sessions().some((s) => s.leafFingerprint === fingerprint(second)),
    'a CreateSession signed with the new certificate',
  );
  const newSession = fake.sessions().find((s) => s.leafFingerprint === fingerprint(second));
  await until(() => keys.has(newSession?.accessKeyId ?? ''), 'the endpoint serving the new session');
  polling = false;
  await poller;
  assert.ok(statuses.length > 1);
  assert.deepEqual([...new Set(statuses)], [200], 'every request during the rotation was answered 200');
  assert.equal(fake.stats.sessions, 2, 'one session per certificate');
  assert.equal(fake.sessions()[1]?.serial, BigInt(`0x${second.serialNumber}`).toString(10));
});
