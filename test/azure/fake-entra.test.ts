// The Entra stand-in refuses the client assertions Entra refuses, each with Entra's AADSTS code: a stand-in
// that skipped the signature or time checks would let the sidecar's handling of them go untested.

import assert from 'node:assert/strict';
import { request } from 'node:https';
import { type TestContext, test } from 'node:test';
import { DevCa } from '@spiffe-connector/dev/dev-ca.ts';
import { ENTRA_FEDERATION_AUDIENCE, FakeEntra } from '@spiffe-connector/dev/fake-entra.ts';
import { DevOidcSigner, type SignOptions } from '@spiffe-connector/dev/oidc-signer.ts';
import { withBadSignature } from '../helpers/tamper.ts';

const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const CLIENT = '11111111-2222-3333-4444-555555555555';
const SUB = 'spiffe://example.org/ns/default/sa/app';
const HOUR = 3600;

interface EntraAnswer {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

async function world(t: TestContext): Promise<{ signer: DevOidcSigner; entra: FakeEntra }> {
  const signer = await DevOidcSigner.start();
  t.after(() => signer.close());
  const ca = await DevCa.create({ trustDomain: 'entra.test' });
  const entra = await FakeEntra.start({
    allowLoopbackHttpIssuers: true,
    tenantId: TENANT,
    ca,
    applications: [{ clientId: CLIENT, federatedCredentials: [{ issuer: signer.issuer, subject: SUB }] }],
  });
  t.after(() => entra.close());
  return { signer, entra };
}

/** The client_credentials request @azure/identity's ClientAssertionCredential makes. */
function tokenRequest(entra: FakeEntra, assertion: string): Promise<EntraAnswer> {
  const body = new URLSearchParams({
    client_id: CLIENT,
    scope: 'https://storage.azure.com/.default',
    grant_type: 'client_credentials',
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion,
  }).toString();
  return new Promise((resolve, reject) => {
    const req = request(
      `${entra.authorityHost}/${TENANT}/oauth2/v2.0/token`,
      {
        method: 'POST',
        ca: entra.caPem,
        agent: false,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

test('a good federated assertion gets an access token', async (t) => {
  const { signer, entra } = await world(t);
  const ok = await tokenRequest(entra, await signer.sign({ sub: SUB, aud: ENTRA_FEDERATION_AUDIENCE }));
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  const claims = await entra.verifyAccessToken(String(ok.body['access_token']), 'https://storage.azure.com');
  assert.equal(claims['appid'], CLIENT);
});

test('Entra refuses a bad signature, an expired or not yet valid assertion, a wrong audience or subject and an unknown key, with its AADSTS codes', async (t) => {
  const { signer, entra } = await world(t);
  const other = await DevOidcSigner.start();
  t.after(() => other.close());
  const now = Math.floor(Date.now() / 1000);
  const sign = (o: Partial<SignOptions> = {}) => signer.sign({ sub: SUB, aud: ENTRA_FEDERATION_AUDIENCE, ...o });
  const cases: Array<[string, string, number, string, RegExp]> = [
    [
      'bad signature',
      withBadSignature(await sign()),
      401,
      'invalid_client',
      /^AADSTS700027: Client assertion failed signature validation\./,
    ],
    [
      'expired',
      await sign({ iat: now - 2 * HOUR, ttlSeconds: HOUR }),
      400,
      'invalid_client',
      /^AADSTS700024: Client assertion is not within its valid time range\./,
    ],
    [
      'not yet valid',
      await sign({ iat: now + HOUR }),
      400,
      'invalid_client',
      /^AADSTS700024: Client assertion is not within its valid time range\./,
    ],
    [
      'wrong audience',
      await sign({ aud: 'api://SomethingElse' }),
      400,
      'invalid_request',
      /^AADSTS700212: No matching federated identity record found for presented assertion audience 'api:\/\/SomethingElse'/,
    ],
    [
      'wrong subject',
      await sign({ sub: 'spiffe://example.org/ns/default/sa/other' }),
      400,
      'invalid_request',
      /^AADSTS700213: No matching federated identity record found for presented assertion subject 'spiffe:\/\/example.org\/ns\/default\/sa\/other'/,
    ],
    // Signed by a key the issuer's JWKS does not hold (same iss, another key).
    [
      'unknown key',
      await other.sign({ sub: SUB, aud: ENTRA_FEDERATION_AUDIENCE, iss: signer.issuer }),
      401,
      'invalid_client',
      /^AADSTS7000272: The certificate with identifier \S+ used to sign the federated credential could not be found in the metadata of identity provider/,
    ],
  ];
  for (const [what, assertion, status, error, description] of cases) {
    const answer = await tokenRequest(entra, assertion);
    assert.equal(answer.status, status, what);
    assert.equal(answer.body['error'], error, what);
    assert.match(String(answer.body['error_description']), description, what);
    assert.deepEqual(
      answer.body['error_codes'],
      [Number(/^AADSTS(\d+)/.exec(String(answer.body['error_description']))?.[1])],
      what,
    );
    assert.equal(answer.body['access_token'], undefined, what);
  }
  assert.equal(entra.counters.issued, 0);
  assert.deepEqual(
    entra.seen.map((s) => s.outcome),
    ['AADSTS700027', 'AADSTS700024', 'AADSTS700024', 'AADSTS700212', 'AADSTS700213', 'AADSTS7000272'],
  );
});
