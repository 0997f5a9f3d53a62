// The AWS exchange against the fake STS: credentials as a domain value with secrets wrapped, the
// RoleSessionName rule, and every STS failure typed with the retryability of docs/aws.md#sts-errors.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inspect } from 'node:util';
import * as stsSdk from '@aws-sdk/client-sts';
import { systemClock } from '../../src/base/clock.ts';
import { ConnectorError } from '../../src/base/errors.ts';
import { silentLogger } from '../../src/ops/logger.ts';
import { roleSessionName, StsWebIdentityExchange } from '../../src/providers/aws/exchange.ts';
import { mapStsError } from '../../src/providers/aws/upstream-errors.ts';
import type { TestJwtSource } from '../helpers/identity.ts';
import { ACCOUNT, AUDIENCE, awsConfig, awsJwtSource, ROLE_ARN, SPIFFE_ID, startStsWorld } from './support.ts';

const SESSION = /^[\w+=,.@-]{2,64}$/;

test('RoleSessionName: the SPIFFE path, readable, stable, within [\\w+=,.@-]{2,64}, hashed when too long', () => {
  assert.equal(roleSessionName('spiffe://example.org/ns/default/sa/app'), 'ns.default.sa.app');
  assert.equal(roleSessionName('spiffe://example.org'), 'example.org');
  assert.equal(roleSessionName('spiffe://example.org/a'), 'a@example.org');
  assert.equal(roleSessionName('spiffe://td/x_y-z.w'), 'x_y-z.w');
  const long = `spiffe://example.org/ns/${'n'.repeat(40)}/sa/${'s'.repeat(40)}`;
  const name = roleSessionName(long);
  assert.equal(name.length, 64);
  assert.match(name, SESSION);
  assert.ok(name.startsWith(`ns.${'n'.repeat(40)}.sa.`), name);
  assert.match(name, /-[0-9a-f]{12}$/);
  assert.equal(roleSessionName(long), name, 'stable');
  assert.notEqual(roleSessionName(`${long}x`), name, 'distinct IDs stay distinct');
  assert.notEqual(roleSessionName(long.replace('example.org', 'other.org')), name, 'the hash covers the trust domain');
  for (const id of ['spiffe://a.b/c', `spiffe://${'t'.repeat(200)}`, `spiffe://td/${'p/'.repeat(100)}q`])
    assert.match(roleSessionName(id), SESSION, id);
});

function exchangeFor(
  stsEndpoint: string,
  jwt: TestJwtSource,
  options: { requestTimeoutMs?: number; sessionDurationSeconds?: number } = {},
) {
  const config = awsConfig({
    stsEndpoint,
    stateDir: '/unused',
    ...(options.sessionDurationSeconds ? { sessionDurationSeconds: options.sessionDurationSeconds } : {}),
  });
  if (!config.aws) throw new Error('no aws section');
  return new StsWebIdentityExchange({
    sdk: stsSdk,
    config: config.aws,
    jwt,
    clock: systemClock,
    logger: silentLogger(),
    ...(options.requestTimeoutMs ? { requestTimeoutMs: options.requestTimeoutMs } : {}),
  });
}

async function failure(promise: Promise<unknown>): Promise<ConnectorError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ConnectorError, `not a ConnectorError: ${String(error)}`);
    return error;
  }
  assert.fail('the exchange succeeded');
}

test('a JWT-SVID becomes session credentials; secrets are wrapped and never printed', async (t) => {
  const world = await startStsWorld();
  t.after(() => world.close());
  const jwt = awsJwtSource(world.signer);
  const exchange = exchangeFor(world.fake.url, jwt, { sessionDurationSeconds: 7200 });
  t.after(() => exchange.close());
  const creds = await exchange.exchange('', AbortSignal.timeout(10_000));
  const [issued] = world.fake.issued();
  assert.ok(issued);
  assert.equal(creds.accessKeyId, issued.accessKeyId);
  assert.equal(creds.secretAccessKey.reveal(), issued.secretAccessKey);
  assert.equal(creds.sessionToken.reveal(), issued.sessionToken);
  assert.equal(creds.expiration.getTime(), issued.expiration);
  assert.equal(creds.accountId, ACCOUNT);
  assert.equal(creds.roleArn, ROLE_ARN);
  assert.equal(creds.assumedRoleArn, `arn:aws:sts::${ACCOUNT}:assumed-role/app/ns.default.sa.app`);
  assert.equal(creds.sessionName, 'ns.default.sa.app');
  assert.equal(world.fake.stats.lastSubject, SPIFFE_ID);
  assert.equal(world.fake.stats.lastAudience, AUDIENCE);
  assert.equal(world.fake.stats.lastDurationSeconds, 7200);
  const printed = `${JSON.stringify(creds)} ${inspect(creds, { depth: 5 })}`;
  assert.ok(!printed.includes(issued.secretAccessKey) && !printed.includes(issued.sessionToken), printed);
});

test('STS failures are typed with retryability and the upstream code', async (t) => {
  const world = await startStsWorld();
  t.after(() => world.close());
  const jwt = awsJwtSource(world.signer);
  // Real time: far above a good answer on a loaded machine, far below the 5 s hang of the timeout case.
  const exchange = exchangeFor(world.fake.url, jwt, { requestTimeoutMs: 2_000 });
  t.after(() => exchange.close());
  const cases: Array<
    [string, Parameters<typeof world.fake.injectFaults>[0][number], ConnectorError['code'], boolean, string | undefined]
  > = [
    ['5xx', { status: 500 }, 'upstream_unavailable', true, 'InternalFailure'],
    ['503', { status: 503 }, 'upstream_unavailable', true, 'ServiceUnavailable'],
    ['throttling', { status: 400, code: 'Throttling' }, 'upstream_unavailable', true, 'Throttling'],
    [
      'IdP unreachable',
      { status: 400, code: 'IDPCommunicationError' },
      'upstream_unavailable',
      true,
      'IDPCommunicationError',
    ],
    ['claim rejected', { status: 403, code: 'IDPRejectedClaim' }, 'upstream_rejected', false, 'IDPRejectedClaim'],
    [
      'region disabled',
      { status: 403, code: 'RegionDisabledException' },
      'upstream_rejected',
      false,
      'RegionDisabledException',
    ],
    [
      'malformed policy',
      { status: 400, code: 'MalformedPolicyDocument' },
      'upstream_rejected',
      false,
      'MalformedPolicyDocument',
    ],
    ['access denied', { status: 403, code: 'AccessDenied' }, 'upstream_rejected', false, 'AccessDenied'],
    ['garbage', { garbage: true }, 'upstream_malformed', true, undefined],
    ['timeout', { delayMs: 5_000 }, 'timeout', true, undefined],
    ['connection reset', { reset: true }, 'upstream_unavailable', true, 'ECONNRESET'],
  ];
  for (const [name, fault, code, retryable, upstreamCode] of cases) {
    world.fake.injectFaults([fault]);
    const error = await failure(exchange.exchange('', AbortSignal.timeout(10_000)));
    assert.equal(error.code, code, `${name}: ${error.message}`);
    assert.equal(error.retryable, retryable, name);
    assert.equal(error.upstreamCode, upstreamCode, name);
  }
  assert.equal(world.fake.pendingFaults(), 0);
  // A real trust mismatch, not an injected one.
  world.fake.addRole({
    arn: ROLE_ARN,
    issuer: world.signer.issuer,
    audience: AUDIENCE,
    subject: 'spiffe://example.org/ns/prod/*',
  });
  const denied = await failure(exchange.exchange('', AbortSignal.timeout(10_000)));
  assert.deepEqual(
    [denied.code, denied.retryable, denied.upstreamCode, denied.upstreamStatus],
    ['upstream_rejected', false, 'AccessDenied', 403],
  );
});

test('STS unreachable and an aborted call are retryable', async (t) => {
  const world = await startStsWorld();
  const url = world.fake.url;
  await world.close();
  const signer = await startStsWorld();
  t.after(() => signer.close());
  const exchange = exchangeFor(url, awsJwtSource(signer.signer));
  t.after(() => exchange.close());
  const refused = await failure(exchange.exchange('', AbortSignal.timeout(10_000)));
  assert.deepEqual(
    [refused.code, refused.retryable, refused.upstreamCode],
    ['upstream_unavailable', true, 'ECONNREFUSED'],
  );
  const aborted = mapStsError(Object.assign(new Error('Request aborted'), { name: 'AbortError' }));
  assert.deepEqual([aborted.code, aborted.retryable], ['timeout', true]);
});

test('InvalidIdentityToken is retried a bounded number of times, then permanent until the identity changes', async (t) => {
  const world = await startStsWorld();
  t.after(() => world.close());
  const jwt = awsJwtSource(world.signer);
  const exchange = exchangeFor(world.fake.url, jwt);
  t.after(() => exchange.close());
  world.fake.injectFaults(Array.from({ length: 5 }, () => ({ status: 400, code: 'InvalidIdentityToken' })));
  const retryable = [];
  for (let i = 0; i < 4; i++)
    retryable.push((await failure(exchange.exchange('', AbortSignal.timeout(10_000)))).retryable);
  assert.deepEqual(retryable, [true, true, true, false]);
  exchange.identityChanged();
  const fresh = await failure(exchange.exchange('', AbortSignal.timeout(10_000)));
  assert.deepEqual([fresh.upstreamCode, fresh.retryable], ['InvalidIdentityToken', true]);
  await exchange.exchange('', AbortSignal.timeout(10_000));
});

test('ExpiredTokenException is retried only with a fresh JWT-SVID', async (t) => {
  const world = await startStsWorld();
  t.after(() => world.close());
  const jwt = awsJwtSource(world.signer);
  const now = Math.floor(Date.now() / 1000);
  jwt.fixedToken = await world.signer.sign({ sub: SPIFFE_ID, aud: AUDIENCE, iat: now - 7200, ttlSeconds: 3600 });
  const exchange = exchangeFor(world.fake.url, jwt);
  t.after(() => exchange.close());
  const expired = await failure(exchange.exchange('', AbortSignal.timeout(10_000)));
  assert.deepEqual(
    [expired.code, expired.retryable, expired.upstreamCode],
    ['upstream_rejected', true, 'ExpiredTokenException'],
  );
  const requests = world.fake.stats.assumeRoleRequests;
  const same = await failure(exchange.exchange('', AbortSignal.timeout(10_000)));
  assert.deepEqual([same.code, same.retryable], ['identity_unavailable', false]);
  assert.equal(world.fake.stats.assumeRoleRequests, requests, 'the token STS called expired is not sent again');
  jwt.fixedToken = undefined;
  const creds = await exchange.exchange('', AbortSignal.timeout(10_000));
  assert.match(creds.accessKeyId, /^ASIA/);
});
