// One audit event per credential a cloud issues, on every cloud: a structured log line and a counter, with
// what an operator needs to join it with CloudTrail, Cloud Audit Logs or Entra's sign-in logs (the
// principal, the session name, the SPIFFE ID, the expiry, the upstream's request id), and no secret.

import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger, type Logger } from '../src/ops/logger.ts';
import {
  SPIFFE_ID as AWS_ID,
  awsJwtSource,
  ROLE_ARN,
  raw as rawAws,
  startSidecar as startAws,
  startStsWorld,
} from './aws/support.ts';
import { SPIFFE_ID as AZURE_ID, runAzure, startWorld } from './azure/fixtures.ts';
import { get, jwtSource, SERVICE_ACCOUNT, startSidecar as startGcp, startGoogleWorld } from './gcp/support.ts';
import { until } from './helpers/until.ts';

function capture(): { logger: Logger; lines: () => Array<Record<string, unknown>>; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write: (c: Buffer, _e, done) => {
      chunks.push(c.toString('utf8'));
      done();
    },
  });
  const logger = createLogger({ level: 'info', destination: stream });
  const text = () => chunks.join('');
  return {
    logger,
    text,
    lines: () =>
      text()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const audits = (lines: Array<Record<string, unknown>>) => lines.filter((l) => l['audit'] === 'credential_issued');

test('AWS: each credential issued is one audit line with the assumed role, session name, SPIFFE ID and STS request id', async (t) => {
  const sts = await startStsWorld();
  t.after(() => sts.close());
  const log = capture();
  const s = await startAws({ stsEndpoint: sts.fake.url, jwt: awsJwtSource(sts.signer), logger: log.logger });
  t.after(() => s.close());
  await until(() => audits(log.lines()).length === 1, 'the audit line');
  const [line] = audits(log.lines());
  const issued = sts.fake.issued()[0];
  assert.ok(line && issued);
  assert.equal(line['cloud'], 'aws');
  assert.equal(line['principal'], issued.assumedRoleArn);
  assert.match(
    String(line['principal']),
    new RegExp(`^arn:aws:sts::111122223333:assumed-role/${ROLE_ARN.split('/').pop()}/`),
  );
  assert.equal(line['sessionName'], issued.sessionName);
  assert.equal(line['spiffeId'], AWS_ID);
  assert.equal(line['upstreamRequestId'], sts.fake.requestIds[0]);
  assert.equal(line['expiresAt'], new Date(issued.expiration).toISOString());
  for (const secret of [issued.secretAccessKey, issued.sessionToken])
    assert.ok(!log.text().includes(secret), 'no secret in any log line');
  assert.match(
    await s.metrics.text(),
    /spiffe_connector_credentials_issued_total\{cloud="aws",credential="web-identity"\} 1/,
  );
});

test('Google: each token issued is one audit line with the service account and the SPIFFE ID', async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const log = capture();
  const s = await startGcp({ world, jwt: jwtSource(world), serviceAccount: true, logger: log.logger });
  t.after(() => s.close());
  const r = await get(s.port, '/computeMetadata/v1/instance/service-accounts/default/token');
  assert.equal(r.status, 200);
  await until(() => audits(log.lines()).length >= 1, 'the audit line');
  const line = audits(log.lines()).find((l) => l['credential'] === 'access-token');
  assert.ok(line);
  assert.equal(line['principal'], SERVICE_ACCOUNT);
  assert.equal(line['spiffeId'], 'spiffe://example.org/ns/default/sa/app');
  assert.ok(
    !log.text().includes((JSON.parse(r.body) as { access_token: string }).access_token),
    'no token in any log line',
  );
});

test('Azure: each token issued is one audit line with the client id, the SPIFFE ID and Entra x-ms-request-id', async (t) => {
  const world = await startWorld(t);
  const log = capture();
  const run = await runAzure(t, world, { logger: log.logger });
  const r = await rawAws(
    run.port,
    'GET',
    `/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent('https://storage.azure.com')}`,
    { Metadata: 'true' },
  );
  assert.equal(r.status, 200);
  await until(() => audits(log.lines()).length >= 1, 'the audit line');
  const [line] = audits(log.lines());
  assert.ok(line);
  assert.equal(line['cloud'], 'azure');
  assert.match(String(line['principal']), new RegExp(String(run.config.azure?.clientId)));
  assert.equal(line['spiffeId'], AZURE_ID);
  assert.equal(line['upstreamRequestId'], world.entra.requestIds[0]);
  assert.ok(!/eyJ[\w-]+\.[\w-]+\.[\w-]+/.test(log.text()), 'no token or assertion in any log line');
});
