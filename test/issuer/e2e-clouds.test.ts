// End to end: the sidecar's exchange source → the issuer (mTLS, X.509-SVID) → the cloud stand-ins (AWS STS,
// Google STS, Entra), which find the issuer's JWKS through discovery and accept the JWT-SVID; the real
// AWS SDK gets credentials, and the STS stand-in verifies a SigV4 call made with them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { fromWebToken } from '@aws-sdk/credential-providers';
import { startDevIssuer } from '@spiffe-connector/dev/dev-issuer.ts';
import { FakeSts } from '@spiffe-connector/dev/fake-sts.ts';
import { systemClock } from '../../src/base/clock.ts';
import { silentLogger } from '../../src/ops/logger.ts';
import { createJwtExchangeSource } from '../../src/sources/jwt-exchange.ts';
import { DevCa } from '../helpers/pki.ts';
import { TestX509Source } from './x509-source.ts';

const TD = 'example.org';
const ID = `spiffe://${TD}/ns/default/sa/app`;
const ROLE = 'arn:aws:iam::111122223333:role/app';

for (const alg of ['RS256', 'ES256'] as const) {
  test(`exchange source → issuer (${alg}) → fake STS: the AWS SDK gets credentials for the SPIFFE ID`, async (t) => {
    const ca = await DevCa.create({ trustDomain: TD });
    const dev = await startDevIssuer({ ca, trustDomain: TD, audiences: ['sts.amazonaws.com'], alg });
    t.after(() => dev.close());
    const sts = await FakeSts.start({
      allowLoopbackHttpIssuers: true,
      region: 'eu-west-1',
      providers: [{ issuer: dev.issuerUrl, audiences: ['sts.amazonaws.com'] }],
      roles: [
        { arn: ROLE, issuer: dev.issuerUrl, audience: 'sts.amazonaws.com', subject: `spiffe://${TD}/ns/default/*` },
      ],
    });
    t.after(() => sts.close());

    const x509 = new TestX509Source(ca, await ca.issueX509Svid({ spiffeId: ID }));
    const source = createJwtExchangeSource({
      url: dev.tokenUrl,
      caPem: dev.caPem,
      x509,
      clock: systemClock,
      logger: silentLogger(),
    });
    t.after(() => source.close());
    const jwt = await source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(20_000));
    assert.equal(jwt.issuer, dev.issuerUrl);

    const provider = fromWebToken({
      roleArn: ROLE,
      roleSessionName: 'ns-default-sa-app',
      webIdentityToken: jwt.token.reveal(),
      clientConfig: { endpoint: sts.url, region: 'eu-west-1' },
    });
    const creds = await provider();
    assert.match(creds.accessKeyId, /^ASIA/);
    assert.ok(creds.sessionToken);
    assert.equal(sts.stats.assumeRoleSuccesses, 1);
    assert.equal(sts.stats.lastSubject, ID);
    assert.equal(sts.stats.lastAudience, 'sts.amazonaws.com');

    const client = new STSClient({ endpoint: sts.url, region: 'eu-west-1', credentials: creds });
    const who = await client.send(new GetCallerIdentityCommand({}));
    assert.match(who.Arn ?? '', /^arn:aws:sts::111122223333:assumed-role\/app\//);
    assert.equal(sts.stats.signaturesVerified, 1);
    client.destroy();
  });
}

test('the STS stand-in refuses a token for a subject outside the trust policy', async (t) => {
  const ca = await DevCa.create({ trustDomain: TD });
  const dev = await startDevIssuer({ ca, trustDomain: TD, audiences: ['sts.amazonaws.com'] });
  t.after(() => dev.close());
  const sts = await FakeSts.start({
    allowLoopbackHttpIssuers: true,
    region: 'eu-west-1',
    providers: [{ issuer: dev.issuerUrl, audiences: ['sts.amazonaws.com'] }],
    roles: [{ arn: ROLE, issuer: dev.issuerUrl, audience: 'sts.amazonaws.com', subject: `spiffe://${TD}/ns/prod/*` }],
  });
  t.after(() => sts.close());
  const x509 = new TestX509Source(ca, await ca.issueX509Svid({ spiffeId: ID }));
  const source = createJwtExchangeSource({
    url: dev.tokenUrl,
    caPem: dev.caPem,
    x509,
    clock: systemClock,
    logger: silentLogger(),
  });
  t.after(() => source.close());
  const jwt = await source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(20_000));
  const provider = fromWebToken({
    roleArn: ROLE,
    roleSessionName: 'x1',
    webIdentityToken: jwt.token.reveal(),
    clientConfig: { endpoint: sts.url, region: 'eu-west-1', maxAttempts: 1 },
  });
  await assert.rejects(provider(), (e: Error) => e.name === 'AccessDenied' || /AccessDenied/.test(e.name + e.message));
  assert.equal(sts.stats.assumeRoleSuccesses, 0);
});

test('exchange source → issuer → Google STS and Entra stand-ins accept the token (Entra refuses ES256, as the real one does)', async (t) => {
  const { FakeGcp } = await import('@spiffe-connector/dev/fake-gcp.ts');
  const { FakeEntra, ENTRA_FEDERATION_AUDIENCE } = await import('@spiffe-connector/dev/fake-entra.ts');
  const { Agent, request } = await import('undici');
  const provider = 'projects/123456789012/locations/global/workloadIdentityPools/pool/providers/spiffe';
  const gcpAudience = `//iam.googleapis.com/${provider}`;
  const ca = await DevCa.create({ trustDomain: TD });
  for (const alg of ['RS256', 'ES256'] as const) {
    const dev = await startDevIssuer({ ca, trustDomain: TD, audiences: [gcpAudience, ENTRA_FEDERATION_AUDIENCE], alg });
    t.after(() => dev.close());
    const x509 = new TestX509Source(ca, await ca.issueX509Svid({ spiffeId: ID }));
    const source = createJwtExchangeSource({
      url: dev.tokenUrl,
      caPem: dev.caPem,
      x509,
      clock: systemClock,
      logger: silentLogger(),
    });
    t.after(() => source.close());

    const gcp = await FakeGcp.start({
      allowLoopbackHttpIssuers: true,
      providers: [{ name: provider, issuer: dev.issuerUrl }],
    });
    t.after(() => gcp.close());
    const gjwt = await source.fetchJwtSvid(gcpAudience, AbortSignal.timeout(20_000));
    const sts = await fetch(`${gcp.url}/v1/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        audience: gcpAudience,
        scope: 'https://www.googleapis.com/auth/cloud-platform',
        requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
        subject_token: gjwt.token.reveal(),
      }),
    });
    assert.equal(sts.status, 200, `${alg}: ${await sts.clone().text()}`);
    assert.equal(gcp.stats.lastSts?.subject, ID);

    const clientId = '11111111-1111-1111-1111-111111111111';
    const entra = await FakeEntra.start({
      allowLoopbackHttpIssuers: true,
      tenantId: '00000000-0000-0000-0000-000000000000',
      ca,
      applications: [{ clientId, federatedCredentials: [{ issuer: dev.issuerUrl, subject: ID }] }],
    });
    t.after(() => entra.close());
    const ejwt = await source.fetchJwtSvid(ENTRA_FEDERATION_AUDIENCE, AbortSignal.timeout(20_000));
    const agent = new Agent({ connect: { ca: entra.caPem } });
    t.after(() => agent.close());
    const res = await request(`${entra.authorityHost}/${entra.tenantId}/oauth2/v2.0/token`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        client_id: clientId,
        scope: 'https://storage.azure.com/.default',
        grant_type: 'client_credentials',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: ejwt.token.reveal(),
      }).toString(),
    });
    const body = (await res.body.json()) as Record<string, unknown>;
    if (alg === 'RS256') {
      assert.equal(res.statusCode, 200, JSON.stringify(body));
      assert.equal(typeof body['access_token'], 'string');
    } else {
      assert.equal(res.statusCode, 400);
      assert.match(String(body['error_description']), /not a supported signature algorithm/);
    }
  }
});
