// The OIDC verifier the stand-ins share refuses what AWS IAM, Google and Entra refuse: issuers that are not
// https:// without a port (the dev mode's and the tests' loopback issuers only through an explicit option),
// and signing algorithms outside RS256/384/512 and ES256/384/512.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DevCa } from '@spiffe-connector/dev/dev-ca.ts';
import { FakeEntra } from '@spiffe-connector/dev/fake-entra.ts';
import { FakeGcp } from '@spiffe-connector/dev/fake-gcp.ts';
import { FakeSts } from '@spiffe-connector/dev/fake-sts.ts';
import { DevOidcSigner, type SigningAlg } from '@spiffe-connector/dev/oidc-signer.ts';
import { issuerUrlProblem, OidcVerificationError, OidcVerifier } from '@spiffe-connector/dev/oidc-verifier.ts';

const SUB = 'spiffe://example.org/ns/default/sa/app';
const AUD = 'sts.amazonaws.com';

/** Asserts that starting a stand-in fails with `message`; one that starts anyway is closed, so the test fails rather than hangs. */
async function refused(starting: Promise<{ close(): Promise<void> }>, message: RegExp, what: string): Promise<void> {
  const outcome = await starting.then(
    async (standIn) => {
      await standIn.close();
      return undefined;
    },
    (error: unknown) => error,
  );
  assert.ok(outcome instanceof Error, `${what}: the stand-in started`);
  assert.match(outcome.message, message, what);
}

test('issuer URLs: https:// without a port only; loopback http:// only with allowLoopbackHttpIssuers', () => {
  const cases: Array<[string, boolean, RegExp | undefined]> = [
    ['https://oidc.example.org/spiffe', false, undefined],
    ['https://oidc.example.org:443/spiffe', false, undefined], // the default port is no port
    ['http://oidc.example.org/spiffe', false, /must be an https:\/\/ URL/],
    ['https://oidc.example.org:8443/spiffe', false, /must not name a port/],
    ['http://127.0.0.1:8080', false, /must be an https:\/\/ URL/],
    ['https://127.0.0.1:8443', false, /must not name a port/],
    ['not a url', false, /is not a URL/],
    ['http://127.0.0.1:8080', true, undefined],
    ['http://localhost:8080/x', true, undefined],
    ['http://[::1]:8080', true, undefined],
    ['http://oidc.example.org:8080', true, /must be an https:\/\/ URL/], // the option covers loopback only
    ['https://oidc.example.org:8443', true, /must not name a port/],
  ];
  for (const [issuer, allow, expected] of cases) {
    const problem = issuerUrlProblem(issuer, allow);
    if (expected) assert.match(problem ?? '', expected, issuer);
    else assert.equal(problem, undefined, issuer);
  }
  assert.throws(() => new OidcVerifier({ issuers: ['http://127.0.0.1:8080'] }), /must be an https:\/\/ URL/);
  assert.doesNotThrow(() => new OidcVerifier({ issuers: ['http://127.0.0.1:8080'], allowLoopbackHttpIssuers: true }));
});

test('each stand-in refuses to register an issuer the real service refuses, and takes a loopback one only when told', async (t) => {
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const loopback = 'http://127.0.0.1:8080';
  for (const issuer of ['http://oidc.example.org', 'https://oidc.example.org:8443', loopback]) {
    await refused(
      FakeSts.start({ providers: [{ issuer, audiences: [AUD] }] }),
      /IAM refuses this OIDC provider/,
      issuer,
    );
    await refused(
      FakeGcp.start({
        providers: [{ name: 'projects/1/locations/global/workloadIdentityPools/p/providers/q', issuer }],
      }),
      /Google refuses this workload identity pool provider/,
      issuer,
    );
    await refused(
      FakeEntra.start({
        tenantId: 't',
        ca,
        applications: [{ clientId: 'c', federatedCredentials: [{ issuer, subject: SUB }] }],
      }),
      /Entra refuses this federated identity credential/,
      issuer,
    );
  }
  const sts = await FakeSts.start();
  t.after(() => sts.close());
  assert.throws(() => sts.addProvider({ issuer: loopback, audiences: [AUD] }), /IAM refuses/);
  const gcp = await FakeGcp.start();
  t.after(() => gcp.close());
  assert.throws(
    () =>
      gcp.addProvider({ name: 'projects/1/locations/global/workloadIdentityPools/p/providers/q', issuer: loopback }),
    /Google refuses/,
  );
  const entra = await FakeEntra.start({
    tenantId: 't',
    ca,
    applications: [{ clientId: 'c', federatedCredentials: [] }],
  });
  t.after(() => entra.close());
  assert.throws(() => entra.setFederatedCredentials('c', [{ issuer: loopback, subject: SUB }]), /Entra refuses/);

  const allowed = await FakeSts.start({
    allowLoopbackHttpIssuers: true,
    providers: [{ issuer: loopback, audiences: [AUD] }],
  });
  t.after(() => allowed.close());
  const entraAllowed = await FakeEntra.start({
    allowLoopbackHttpIssuers: true,
    tenantId: 't',
    ca,
    applications: [{ clientId: 'c', federatedCredentials: [{ issuer: loopback, subject: SUB }] }],
  });
  t.after(() => entraAllowed.close());
  const gcpAllowed = await FakeGcp.start({
    allowLoopbackHttpIssuers: true,
    providers: [{ name: 'projects/1/locations/global/workloadIdentityPools/p/providers/q', issuer: loopback }],
  });
  t.after(() => gcpAllowed.close());
});

test('signing algorithms: RS256/384/512 and ES256/384/512 verify; PS256 and EdDSA are refused before any key is fetched', async (t) => {
  const reasons = new Map<SigningAlg, string>();
  for (const alg of ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'EdDSA'] as const) {
    const signer = await DevOidcSigner.start({ alg });
    t.after(() => signer.close());
    const verifier = new OidcVerifier({ issuers: [signer.issuer], allowLoopbackHttpIssuers: true });
    const token = await signer.sign({ sub: SUB, aud: AUD });
    const outcome = await verifier.verify(token, AUD).then(
      (claims) => (claims.sub === SUB ? 'verified' : 'wrong claims'),
      (error: unknown) => (error instanceof OidcVerificationError ? error.reason : String(error)),
    );
    reasons.set(alg, outcome);
    if (outcome === 'unsupported_algorithm')
      assert.equal(signer.requests, 0, `${alg}: nothing fetched for a refused algorithm`);
  }
  assert.deepEqual(Object.fromEntries(reasons), {
    RS256: 'verified',
    RS384: 'verified',
    RS512: 'verified',
    ES256: 'verified',
    ES384: 'verified',
    ES512: 'verified',
    PS256: 'unsupported_algorithm',
    EdDSA: 'unsupported_algorithm',
  });
});

test('the STS stand-in answers an algorithm IAM does not allow with InvalidIdentityToken', async (t) => {
  const signer = await DevOidcSigner.start({ alg: 'PS256' });
  t.after(() => signer.close());
  const role = 'arn:aws:iam::111122223333:role/app';
  const sts = await FakeSts.start({
    allowLoopbackHttpIssuers: true,
    providers: [{ issuer: signer.issuer, audiences: [AUD] }],
    roles: [{ arn: role, issuer: signer.issuer, audience: AUD }],
  });
  t.after(() => sts.close());
  const res = await fetch(sts.url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      Action: 'AssumeRoleWithWebIdentity',
      Version: '2011-06-15',
      RoleArn: role,
      RoleSessionName: 'app',
      WebIdentityToken: await signer.sign({ sub: SUB, aud: AUD }),
    }),
  });
  const body = await res.text();
  assert.equal(res.status, 400);
  assert.match(body, /<Code>InvalidIdentityToken<\/Code>/);
  assert.match(body, /unsupported algorithm/);
  assert.equal(sts.stats.assumeRoleSuccesses, 0);
});
