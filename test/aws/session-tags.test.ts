// Session tags and source identity for web identity, end to end: the issuer puts them in the JWT-SVID
// for AWS, the sidecar's STS exchange sends it, and the STS stand-in checks them as AWS does (its role
// trust policy must allow sts:TagSession and sts:SetSourceIdentity, aws:RequestTag conditions hold) and
// returns them (PackedPolicySize, SourceIdentity) to the AWS SDK.

import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { AssumeRoleWithWebIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { startDevIssuer } from '@spiffe-connector/dev/dev-issuer.ts';
import { type FakeRole, FakeSts } from '@spiffe-connector/dev/fake-sts.ts';
import { systemClock } from '../../src/base/clock.ts';
import type { IssuerConfig } from '../../src/config/issuer.ts';
import { silentLogger } from '../../src/ops/logger.ts';
import { createJwtExchangeSource } from '../../src/sources/jwt-exchange.ts';
import { DevCa } from '../helpers/pki.ts';
import { TestX509Source } from '../issuer/x509-source.ts';
import { startSidecar, until } from './support.ts';

const TD = 'example.org';
const ID = `spiffe://${TD}/ns/shop/sa/orders`;
const ROLE = 'arn:aws:iam::111122223333:role/app';

const TAGS: NonNullable<IssuerConfig['aws']> = {
  audience: 'sts.amazonaws.com',
  sourceIdentity: true,
  sessionTags: {
    pathTemplate: '/ns/{namespace}/sa/{serviceAccount}',
    principalTags: { 'kubernetes-namespace': '{namespace}', 'kubernetes-service-account': '{serviceAccount}' },
    transitiveTagKeys: ['kubernetes-namespace'],
  },
};

async function world(t: TestContext, o: { aws?: IssuerConfig['aws']; role?: Partial<FakeRole> } = {}) {
  const ca = await DevCa.create({ trustDomain: TD });
  const dev = await startDevIssuer({ ca, trustDomain: TD, audiences: ['sts.amazonaws.com'], aws: o.aws ?? TAGS });
  t.after(() => dev.close());
  const sts = await FakeSts.start({
    allowLoopbackHttpIssuers: true,
    region: 'eu-west-1',
    providers: [{ issuer: dev.issuerUrl, audiences: ['sts.amazonaws.com'] }],
    roles: [
      {
        arn: ROLE,
        issuer: dev.issuerUrl,
        audience: 'sts.amazonaws.com',
        subject: `spiffe://${TD}/ns/shop/*`,
        allowTagSession: true,
        allowSetSourceIdentity: true,
        requestTags: { 'kubernetes-namespace': 'shop' },
        ...o.role,
      },
    ],
  });
  t.after(() => sts.close());
  const x509 = new TestX509Source(ca, await ca.issueX509Svid({ spiffeId: ID }));
  const jwt = createJwtExchangeSource({
    url: dev.tokenUrl,
    caPem: dev.caPem,
    x509,
    clock: systemClock,
    logger: silentLogger(),
  });
  t.after(() => jwt.close());
  const assume = async () => {
    const token = (await jwt.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(20_000))).token.reveal();
    const client = new STSClient({
      endpoint: sts.url,
      region: 'eu-west-1',
      maxAttempts: 1,
      credentials: { accessKeyId: 'unused', secretAccessKey: 'unused' },
    });
    try {
      return await client.send(
        new AssumeRoleWithWebIdentityCommand({
          RoleArn: ROLE,
          RoleSessionName: 'ns.shop.sa.orders',
          WebIdentityToken: token,
        }),
      );
    } finally {
      client.destroy();
    }
  };
  return { sts, jwt, assume };
}

test('the issuer’s tags and source identity reach STS, which checks them and answers them to the AWS SDK', async (t) => {
  const { sts, assume } = await world(t);
  const out = await assume();
  assert.equal(out.SourceIdentity, 'ns.shop.sa.orders');
  assert.ok(
    typeof out.PackedPolicySize === 'number' && out.PackedPolicySize > 0 && out.PackedPolicySize <= 100,
    String(out.PackedPolicySize),
  );
  const issued = sts.issued().at(-1);
  assert.deepEqual(issued?.sessionTags, { 'kubernetes-namespace': 'shop', 'kubernetes-service-account': 'orders' });
  assert.deepEqual(issued?.transitiveTagKeys, ['kubernetes-namespace']);
  assert.equal(issued?.sourceIdentity, 'ns.shop.sa.orders');
});

test('the sidecar’s web identity exchange carries them: the session STS issued has the tags', async (t) => {
  const { sts, jwt } = await world(t);
  const sidecar = await startSidecar({ stsEndpoint: sts.url, jwt });
  t.after(() => sidecar.close());
  await until(() => sidecar.provider.readiness().ready, 'credentials');
  assert.deepEqual(sts.issued().at(-1)?.sessionTags, {
    'kubernetes-namespace': 'shop',
    'kubernetes-service-account': 'orders',
  });
  assert.equal(sts.issued().at(-1)?.sourceIdentity, 'ns.shop.sa.orders');
});

test('a trust policy without sts:TagSession or sts:SetSourceIdentity, or an unmet aws:RequestTag, is AccessDenied', async (t) => {
  const denied = async (role: Partial<FakeRole>, message: RegExp) => {
    const { sts, assume } = await world(t, { role });
    await assert.rejects(assume(), (e: Error) => e.name === 'AccessDenied' && message.test(e.message));
    assert.equal(sts.stats.assumeRoleSuccesses, 0);
  };
  await denied({ allowTagSession: false }, /sts:TagSession/);
  await denied({ allowSetSourceIdentity: false }, /sts:SetSourceIdentity/);
  await denied({ requestTags: { 'kubernetes-namespace': 'prod' } }, /sts:AssumeRoleWithWebIdentity/);
});

test('tags the issuer allows but STS cannot pack are refused with PackedPolicyTooLarge', async (t) => {
  const principalTags = Object.fromEntries(
    Array.from({ length: 20 }, (_, i) => [`tag-${i}-${'k'.repeat(100)}`, `{namespace}-${'v'.repeat(200)}`]),
  );
  const { sts, assume } = await world(t, {
    aws: {
      ...TAGS,
      sessionTags: { pathTemplate: '/ns/{namespace}/sa/{serviceAccount}', principalTags, transitiveTagKeys: [] },
    },
  });
  await assert.rejects(
    assume(),
    (e: Error) => e.name === 'PackedPolicyTooLargeException' && /exceeds the limit/.test(e.message),
  );
  assert.equal(sts.stats.errors['PackedPolicyTooLarge'], 1);
});
