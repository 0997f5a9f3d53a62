// The fake STS checks what AWS checks: a fake that accepts any token or any signature would prove nothing.

import assert from 'node:assert/strict';
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { test } from 'node:test';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { SignatureV4 } from '@smithy/signature-v4';
import type { RequestSigningArguments, SourceData } from '@smithy/types';
import { FakeSts, globMatch } from '@spiffe-connector/dev/fake-sts.ts';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { ManualClock } from '../../src/base/clock.ts';
import { ACCOUNT, AUDIENCE, ROLE_ARN, SPIFFE_ID, startStsWorld } from './support.ts';

interface StsAnswer {
  status: number;
  body: string;
  code: string | undefined;
}

async function assumeRole(url: string, params: Record<string, string>): Promise<StsAnswer> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      Action: 'AssumeRoleWithWebIdentity',
      Version: '2011-06-15',
      RoleArn: ROLE_ARN,
      RoleSessionName: 'app',
      ...params,
    }),
  });
  const body = await res.text();
  return { status: res.status, body, code: /<Code>([^<]+)<\/Code>/.exec(body)?.[1] };
}

/** SHA-256 in the shape @smithy/signature-v4 takes (a hash, or an HMAC when given a secret). */
class NodeSha256 {
  readonly #h: Hash | Hmac;

  constructor(secret?: SourceData) {
    this.#h =
      secret === undefined
        ? createHash('sha256')
        : createHmac('sha256', typeof secret === 'string' ? secret : Buffer.from(secret as Uint8Array));
  }

  update(data: SourceData): void {
    this.#h.update(typeof data === 'string' ? data : Buffer.from(data as Uint8Array));
  }

  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.#h.digest());
  }

  reset(): void {}
}

/** GetCallerIdentity signed by the SDK's own SigV4 signer with `options` (what leaves the signature, for one). */
async function signedCall(
  url: string,
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken: string },
  options: RequestSigningArguments,
): Promise<{ status: number; body: string }> {
  const { host } = new URL(url);
  const body = 'Action=GetCallerIdentity&Version=2011-06-15';
  const signer = new SignatureV4({ credentials, region: 'eu-west-1', service: 'sts', sha256: NodeSha256 });
  const signed = await signer.sign(
    {
      method: 'POST',
      protocol: 'http:',
      hostname: '127.0.0.1',
      path: '/',
      headers: { host, 'content-type': 'application/x-www-form-urlencoded' },
      body,
    },
    options,
  );
  const res = await fetch(url, {
    method: 'POST',
    headers: Object.fromEntries(Object.entries(signed.headers).filter(([k]) => k !== 'host')),
    body,
  });
  return { status: res.status, body: await res.text() };
}

function tag(xml: string, name: string): string | undefined {
  return new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml)?.[1];
}

test('a valid JWT-SVID gets credentials in the exact AWS XML, after the fake fetched discovery and JWKS', async (t) => {
  const world = await startStsWorld();
  t.after(() => world.close());
  const token = await world.signer.sign({ sub: SPIFFE_ID, aud: AUDIENCE });
  const answer = await assumeRole(world.fake.url, {
    WebIdentityToken: token,
    RoleSessionName: 'ns.default.sa.app',
    DurationSeconds: '7200',
  });
  assert.equal(answer.status, 200, answer.body);
  assert.match(
    answer.body,
    /^<AssumeRoleWithWebIdentityResponse xmlns="https:\/\/sts\.amazonaws\.com\/doc\/2011-06-15\/">/,
  );
  assert.match(tag(answer.body, 'AccessKeyId') ?? '', /^ASIA[A-Z2-7]{16}$/);
  assert.match(tag(answer.body, 'Expiration') ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.equal(tag(answer.body, 'Arn'), `arn:aws:sts::${ACCOUNT}:assumed-role/app/ns.default.sa.app`);
  assert.match(tag(answer.body, 'AssumedRoleId') ?? '', /^AROA[A-Z2-7]{17}:ns\.default\.sa\.app$/);
  assert.equal(tag(answer.body, 'SubjectFromWebIdentityToken'), SPIFFE_ID);
  assert.equal(tag(answer.body, 'Provider'), world.signer.issuer);
  assert.equal(tag(answer.body, 'Audience'), AUDIENCE);
  assert.ok(tag(answer.body, 'RequestId'));
  assert.ok(world.signer.requests >= 2, 'discovery and JWKS were fetched');
  assert.equal(world.fake.stats.lastSessionName, 'ns.default.sa.app');
  assert.equal(world.fake.stats.lastSubject, SPIFFE_ID);
  assert.equal(world.fake.stats.lastDurationSeconds, 7200);
  const [issued] = world.fake.issued();
  assert.equal(issued?.accessKeyId, tag(answer.body, 'AccessKeyId'));
});

test('tokens AWS would refuse get the AWS error code and status', async (t) => {
  const world = await startStsWorld({
    role: { subject: 'spiffe://example.org/ns/default/*' },
    providerAudiences: [AUDIENCE, 'other-client'],
  });
  t.after(() => world.close());
  const stranger = await DevOidcSigner.start();
  t.after(() => stranger.close());
  const { signer, fake } = world;
  const now = Math.floor(Date.now() / 1000);
  const cases: Array<[string, string, number, string]> = [
    ['not a JWT', 'abcdefgh', 400, 'InvalidIdentityToken'],
    [
      'aud not a registered client ID',
      await signer.sign({ sub: SPIFFE_ID, aud: 'unregistered' }),
      400,
      'InvalidIdentityToken',
    ],
    [
      'iss not a registered provider',
      await signer.sign({ sub: SPIFFE_ID, aud: AUDIENCE, iss: 'https://other.example' }),
      400,
      'InvalidIdentityToken',
    ],
    [
      'signed by a key not in the JWKS',
      await stranger.sign({ sub: SPIFFE_ID, aud: AUDIENCE, iss: signer.issuer }),
      400,
      'InvalidIdentityToken',
    ],
    [
      'expired',
      await signer.sign({ sub: SPIFFE_ID, aud: AUDIENCE, iat: now - 7200, ttlSeconds: 3600 }),
      400,
      'ExpiredTokenException',
    ],
    [
      'aud registered but not the one the trust policy names',
      await signer.sign({ sub: SPIFFE_ID, aud: 'other-client' }),
      403,
      'AccessDenied',
    ],
    [
      'sub outside the trust policy pattern',
      await signer.sign({ sub: 'spiffe://example.org/ns/prod/sa/app', aud: AUDIENCE }),
      403,
      'AccessDenied',
    ],
  ];
  for (const [name, token, status, code] of cases) {
    const answer = await assumeRole(fake.url, { WebIdentityToken: token });
    assert.equal(answer.status, status, `${name}: ${answer.body}`);
    assert.equal(answer.code, code, name);
    assert.match(
      answer.body,
      /^<ErrorResponse xmlns="https:\/\/sts\.amazonaws\.com\/doc\/2011-06-15\/">\s*<Error>\s*<Type>Sender<\/Type>/,
      name,
    );
  }
  const good = await signer.sign({ sub: SPIFFE_ID, aud: AUDIENCE });
  const unknownRole = await assumeRole(fake.url, {
    WebIdentityToken: good,
    RoleArn: 'arn:aws:iam::111122223333:role/nobody',
  });
  assert.deepEqual([unknownRole.status, unknownRole.code], [403, 'AccessDenied']);
  assert.equal(fake.stats.assumeRoleSuccesses, 0);
  assert.equal(fake.issued().length, 0);
});

test('parameters outside the STS limits are a ValidationError; an unreachable issuer is IDPCommunicationError', async (t) => {
  const world = await startStsWorld({ role: { maxSessionDurationSeconds: 3600 } });
  t.after(() => world.close());
  const token = await world.signer.sign({ sub: SPIFFE_ID, aud: AUDIENCE });
  for (const params of [
    { RoleSessionName: 'a' },
    { RoleSessionName: 'has space' },
    { RoleSessionName: 'x'.repeat(65) },
    { DurationSeconds: '899' },
    { DurationSeconds: '43201' },
    { DurationSeconds: '7200' },
    { RoleArn: 'arn:aws:iam::1111:role/short-account' },
  ]) {
    const answer = await assumeRole(world.fake.url, { WebIdentityToken: token, ...params });
    assert.deepEqual([answer.status, answer.code], [400, 'ValidationError'], JSON.stringify(params));
  }
  const gone = await DevOidcSigner.start();
  const goneIssuer = gone.issuer;
  const goneToken = await gone.sign({ sub: SPIFFE_ID, aud: AUDIENCE });
  await gone.close();
  world.fake.addProvider({ issuer: goneIssuer, audiences: [AUDIENCE] });
  const unreachable = await assumeRole(world.fake.url, { WebIdentityToken: goneToken });
  assert.deepEqual([unreachable.status, unreachable.code], [400, 'IDPCommunicationError']);
});

test('injected faults are served one per exchange request, then STS answers normally again', async (t) => {
  const world = await startStsWorld();
  t.after(() => world.close());
  const token = await world.signer.sign({ sub: SPIFFE_ID, aud: AUDIENCE });
  world.fake.injectFaults([{ status: 500 }, { status: 503 }, { status: 400, code: 'Throttling' }, { garbage: true }]);
  const answers = [];
  for (let i = 0; i < 5; i++) answers.push(await assumeRole(world.fake.url, { WebIdentityToken: token }));
  assert.deepEqual(
    answers.map((a) => [a.status, a.code]),
    [
      [500, 'InternalFailure'],
      [503, 'ServiceUnavailable'],
      [400, 'Throttling'],
      [200, undefined],
      [200, undefined],
    ],
  );
  assert.match(answers[0]?.body ?? '', /<Type>Receiver<\/Type>/);
  assert.doesNotMatch(answers[3]?.body ?? '', /AssumeRoleWithWebIdentityResponse/);
  assert.equal(world.fake.stats.faultsServed, 4);
  assert.equal(world.fake.stats.assumeRoleRequests, 5);
  assert.equal(world.fake.stats.assumeRoleSuccesses, 1);
});

test('GetCallerIdentity verifies SigV4 with the issued secret and session token', async (t) => {
  const clock = new ManualClock(Math.floor(Date.now() / 1000) * 1000);
  const world = await startStsWorld({ clock });
  t.after(() => world.close());
  const token = await world.signer.sign({ sub: SPIFFE_ID, aud: AUDIENCE, iat: Math.floor(clock.now() / 1000) });
  const answer = await assumeRole(world.fake.url, { WebIdentityToken: token, RoleSessionName: 'ns.default.sa.app' });
  assert.equal(answer.status, 200);
  const [issued] = world.fake.issued();
  assert.ok(issued);
  const call = async (
    credentials: { accessKeyId: string; secretAccessKey: string; sessionToken: string },
    region = 'eu-west-1',
  ) => {
    const client = new STSClient({
      region,
      endpoint: world.fake.url,
      credentials,
      maxAttempts: 1,
      systemClockOffset: clock.now() - Date.now(),
    });
    try {
      return await client.send(new GetCallerIdentityCommand({}));
    } catch (error) {
      return error as Error & { Code?: string; $metadata?: { httpStatusCode?: number } };
    } finally {
      client.destroy();
    }
  };
  const good = {
    accessKeyId: issued.accessKeyId,
    secretAccessKey: issued.secretAccessKey,
    sessionToken: issued.sessionToken,
  };
  const ok = await call(good);
  assert.ok(!(ok instanceof Error), String(ok));
  assert.equal(ok.Arn, `arn:aws:sts::${ACCOUNT}:assumed-role/app/ns.default.sa.app`);
  assert.equal(ok.Account, ACCOUNT);
  assert.equal(ok.UserId, issued.assumedRoleId);
  assert.equal(world.fake.stats.signaturesVerified, 1);

  const refusals: Array<[string, object, string]> = [
    ['a wrong secret', { ...good, secretAccessKey: `${good.secretAccessKey.slice(0, -2)}xx` }, 'SignatureDoesNotMatch'],
    ['another session token', { ...good, sessionToken: 'IQoJb3JpZ2luX2VjEOTHER' }, 'InvalidClientTokenId'],
    ['an access key the fake never issued', { ...good, accessKeyId: 'ASIAAAAAAAAAAAAAAAAA' }, 'InvalidClientTokenId'],
  ];
  for (const [name, creds, code] of refusals) {
    const error = await call(creds as typeof good);
    assert.ok(error instanceof Error, name);
    assert.equal(error.Code, code, name);
    assert.equal(error.$metadata?.httpStatusCode, 403, name);
  }
  // The credential scope names the stand-in's region (eu-west-1 here); another region's scope is refused.
  const elsewhere = await call(good, 'us-west-2');
  assert.ok(elsewhere instanceof Error);
  assert.equal(elsewhere.Code, 'SignatureDoesNotMatch');
  assert.match(elsewhere.message, /valid region, not 'us-west-2'/);
  // The session token must be among the signed headers: signed correctly, but with the token left out, it is refused.
  const tokenOutside = await signedCall(world.fake.url, good, {
    unsignableHeaders: new Set(['x-amz-security-token']),
    signingDate: new Date(clock.now()),
  });
  assert.equal(tokenOutside.status, 403);
  assert.match(tokenOutside.body, /<Code>SignatureDoesNotMatch<\/Code>/);
  assert.match(tokenOutside.body, /X-Amz-Security-Token&apos; must be a SignedHeader/);
  const tokenSigned = await signedCall(world.fake.url, good, { signingDate: new Date(clock.now()) });
  assert.equal(tokenSigned.status, 200, tokenSigned.body);
  assert.equal(world.fake.stats.signaturesVerified, 2);

  const unsigned = await fetch(world.fake.url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'Action=GetCallerIdentity&Version=2011-06-15',
  });
  assert.equal(unsigned.status, 403);
  assert.match(await unsigned.text(), /<Code>MissingAuthenticationToken<\/Code>/);

  await clock.advance(3600_000);
  const expired = await call(good);
  assert.ok(expired instanceof Error);
  assert.equal(expired.Code, 'ExpiredToken');
  assert.equal(world.fake.stats.signaturesVerified, 2);
});

test('IAM StringLike matching for the sub condition', () => {
  assert.ok(globMatch('spiffe://example.org/ns/*/sa/app', 'spiffe://example.org/ns/default/sa/app'));
  assert.ok(globMatch('spiffe://example.org/ns/?/sa', 'spiffe://example.org/ns/a/sa'));
  assert.ok(!globMatch('spiffe://example.org/ns/default', 'spiffe://example.org/ns/default/sa/app'));
  assert.ok(!globMatch('spiffe://example.org/a.b', 'spiffe://example.org/aXb'));
});

test('the fake refuses to register something that is not a role ARN', async (t) => {
  const fake = await FakeSts.start();
  t.after(() => fake.close());
  assert.throws(() =>
    fake.addRole({ arn: 'arn:aws:iam::111122223333:user/bob', issuer: 'https://x', audience: AUDIENCE }),
  );
});
