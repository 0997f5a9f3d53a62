// The Google stand-ins check what Google checks: a stand-in that accepts any token is a defect.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { test } from 'node:test';
import { type CertificateSpec, DevCa, type IssuedCertificate } from '@spiffe-connector/dev/dev-ca.ts';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { createLocalJWKSet, jwtVerify } from 'jose';
import {
  AUDIENCE,
  CLOUD_PLATFORM,
  type GoogleWorld,
  POOL,
  PROVIDER,
  SERVICE_ACCOUNT,
  SPIFFE_ID,
  startGoogleWorld,
} from './support.ts';

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const EXCHANGE = {
  grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
  audience: AUDIENCE,
  scope: CLOUD_PLATFORM,
  requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
  subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
};

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

async function post(url: string, body: string, headers: Record<string, string>): Promise<Answer> {
  const r = await fetch(url, { method: 'POST', body, headers });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

function sts(world: GoogleWorld, fields: Record<string, string>): Promise<Answer> {
  return post(`${world.fake.url}/v1/token`, new URLSearchParams({ ...EXCHANGE, ...fields }).toString(), FORM);
}

function mtlsSts(
  world: GoogleWorld,
  fields: Record<string, string>,
  client?: { certPem: string; keyPem: string },
): Promise<Answer> {
  const body = new URLSearchParams({
    ...EXCHANGE,
    subject_token_type: 'urn:ietf:params:oauth:token-type:mtls',
    ...fields,
  }).toString();
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      `${world.fake.httpsUrl}/v1/token`,
      {
        method: 'POST',
        headers: FORM,
        ca: world.ca.certPem,
        ...(client ? { cert: client.certPem, key: client.keyPem } : {}),
        agent: false,
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

function chainToken(certPem: string): string {
  const pems = certPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return JSON.stringify(pems.map((p) => new X509Certificate(p).raw.toString('base64')));
}

async function federated(world: GoogleWorld): Promise<string> {
  const r = await sts(world, { subject_token: await world.signer.sign({ sub: SPIFFE_ID, aud: AUDIENCE }) });
  assert.equal(r.status, 200);
  return r.body.access_token as string;
}

function iam(
  world: GoogleWorld,
  method: string,
  body: unknown,
  token?: string,
  email = SERVICE_ACCOUNT,
  project = '-',
): Promise<Answer> {
  return post(
    `${world.fake.url}/v1/projects/${project}/serviceAccounts/${encodeURIComponent(email)}:${method}`,
    JSON.stringify(body),
    {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
  );
}

test('STS with a JWT: accepts a good one (form or JSON), refuses each thing Google refuses', async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const other = await DevOidcSigner.start();
  t.after(() => other.close());
  const sign = (o: Partial<Parameters<DevOidcSigner['sign']>[0]> = {}) =>
    world.signer.sign({ sub: SPIFFE_ID, aud: AUDIENCE, ...o });

  const ok = await sts(world, { subject_token: await sign() });
  assert.equal(ok.status, 200);
  assert.equal(ok.body.token_type, 'Bearer');
  assert.equal(ok.body.issued_token_type, 'urn:ietf:params:oauth:token-type:access_token');
  assert.equal(ok.body.expires_in, 3599);
  assert.equal(
    world.fake.tokenInfo(ok.body.access_token as string)?.principal,
    `principal://iam.googleapis.com/${POOL}/subject/${SPIFFE_ID}`,
  );
  const json = await post(
    `${world.fake.url}/v1/token`,
    JSON.stringify({
      grantType: EXCHANGE.grant_type,
      audience: AUDIENCE,
      scope: CLOUD_PLATFORM,
      requestedTokenType: EXCHANGE.requested_token_type,
      subjectTokenType: EXCHANGE.subject_token_type,
      subjectToken: await sign({ aud: `https://iam.googleapis.com/${PROVIDER}` }),
    }),
    { 'content-type': 'application/json' },
  );
  assert.equal(json.status, 200);

  const refusals: Array<[string, Record<string, string>, string, RegExp]> = [
    [
      'audience not the provider',
      { subject_token: await sign({ aud: 'sts.amazonaws.com' }) },
      'invalid_grant',
      /audience/,
    ],
    [
      'expired',
      { subject_token: await sign({ iat: Math.floor(Date.now() / 1000) - 7200, ttlSeconds: 600 }) },
      'invalid_grant',
      /expired/,
    ],
    [
      'issued in the future',
      { subject_token: await sign({ iat: Math.floor(Date.now() / 1000) + 3600 }) },
      'invalid_grant',
      /not yet valid|future/,
    ],
    ['lifetime over 24 h', { subject_token: await sign({ ttlSeconds: 25 * 3600 }) }, 'invalid_grant', /24 hours/],
    [
      'unregistered issuer',
      { subject_token: await other.sign({ sub: SPIFFE_ID, aud: AUDIENCE }) },
      'invalid_grant',
      /issuer/,
    ],
    [
      'signed by another key',
      { subject_token: await other.sign({ sub: SPIFFE_ID, aud: AUDIENCE, iss: world.signer.issuer }) },
      'invalid_grant',
      /signature/,
    ],
    ['no kid', { subject_token: await sign({ omitKid: true }) }, 'invalid_grant', /kid/],
    [
      'google.subject over 127 bytes',
      { subject_token: await sign({ sub: `spiffe://example.org/${'a'.repeat(120)}` }) },
      'invalid_grant',
      /127 bytes/,
    ],
    [
      'unknown provider',
      { subject_token: await sign(), audience: `//iam.googleapis.com/${POOL}/providers/nope` },
      'invalid_target',
      /audience/,
    ],
    ['not a JWT', { subject_token: 'not-a-jwt' }, 'invalid_grant', /parse/],
    [
      'wrong grant type',
      { subject_token: await sign(), grant_type: 'client_credentials' },
      'unsupported_grant_type',
      /grant/,
    ],
    [
      'mtls token type over plain HTTP',
      { subject_token: '[]', subject_token_type: 'urn:ietf:params:oauth:token-type:mtls' },
      'invalid_request',
      /client certificate/,
    ],
  ];
  for (const [what, fields, code, description] of refusals) {
    const r = await sts(world, fields);
    assert.equal(r.status, 400, what);
    assert.equal(r.body.error, code, what);
    assert.match(String(r.body.error_description), description, what);
  }
});

test('STS over mTLS: the leaf must be the client certificate and chain to the trust store', async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const svid = await world.ca.issueX509Svid({ spiffeId: SPIFFE_ID });
  const ok = await mtlsSts(world, { subject_token: chainToken(svid.certPem) }, svid);
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(world.fake.stats.lastSts?.subject, SPIFFE_ID);

  const intermediate = await world.ca.issueIntermediate();
  const viaIntermediate = await intermediate.issueX509Svid({ spiffeId: SPIFFE_ID });
  assert.equal(
    (await mtlsSts(world, { subject_token: chainToken(viaIntermediate.certPem) }, viaIntermediate)).status,
    200,
  );

  const another = await world.ca.issueX509Svid({ spiffeId: 'spiffe://example.org/other' });
  const foreignCa = await DevCa.create({ trustDomain: 'example.org' });
  const foreign = await foreignCa.issueX509Svid({ spiffeId: SPIFFE_ID });
  const cases: Array<[string, Answer, string]> = [
    ['no client certificate', await mtlsSts(world, { subject_token: chainToken(svid.certPem) }), 'invalid_request'],
    [
      'leaf is not the client certificate',
      await mtlsSts(world, { subject_token: chainToken(another.certPem) }, svid),
      'invalid_grant',
    ],
    [
      'chain to another CA',
      await mtlsSts(world, { subject_token: chainToken(foreign.certPem) }, foreign),
      'invalid_grant',
    ],
    ['not a JSON array', await mtlsSts(world, { subject_token: 'abc' }, svid), 'invalid_request'],
  ];
  for (const [what, r, code] of cases) {
    assert.equal(r.status, 400, what);
    assert.equal(r.body.error, code, what);
  }
});

test('STS over mTLS: the stand-in verifies the handshake and the subject token chain itself (path, validity, leaf, URI SAN)', async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const hour = 3600_000;
  const spec = (o: Partial<CertificateSpec> = {}): CertificateSpec => ({
    uris: [SPIFFE_ID],
    basicConstraints: { ca: false },
    keyUsage: ['digitalSignature', 'keyEncipherment'],
    extKeyUsage: ['serverAuth', 'clientAuth'],
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + hour),
    ...o,
  });
  /** The client shows `cert` (with its intermediates) in the handshake and as the subject token. */
  const presenting = (cert: IssuedCertificate) =>
    mtlsSts(world, { subject_token: chainToken(cert.chainPem) }, { certPem: cert.chainPem, keyPem: cert.keyPem });
  const intermediate = await world.ca.issueIntermediate();
  const viaIntermediate = await intermediate.issueCertificate(spec());
  assert.equal((await presenting(viaIntermediate)).status, 200, 'the good profile passes');

  const refusals: Array<[string, Answer, RegExp]> = [
    // The handshake got the leaf alone: the TLS layer cannot verify it, though the token's chain would.
    [
      'the TLS layer cannot verify the client',
      await mtlsSts(
        world,
        { subject_token: chainToken(viaIntermediate.chainPem) },
        { certPem: viaIntermediate.certPem, keyPem: viaIntermediate.keyPem },
      ),
      /mTLS client certificate could not be verified/,
    ],
    // The handshake got leaf and intermediate, the token the leaf alone: no path to the anchor.
    [
      'no path from the token chain to a trust anchor',
      await mtlsSts(
        world,
        { subject_token: chainToken(viaIntermediate.certPem) },
        { certPem: viaIntermediate.chainPem, keyPem: viaIntermediate.keyPem },
      ),
      /does not lead to a trust anchor/,
    ],
    // The token puts another intermediate of the same root above the leaf: it did not sign the leaf.
    [
      'a token chain whose intermediate did not sign the leaf',
      await mtlsSts(
        world,
        { subject_token: chainToken(viaIntermediate.certPem + (await world.ca.issueIntermediate()).signingCertPem) },
        { certPem: viaIntermediate.chainPem, keyPem: viaIntermediate.keyPem },
      ),
      /certificate 0 is not signed by certificate 1/,
    ],
    [
      'an expired leaf',
      await presenting(
        await world.ca.issueCertificate(
          spec({ notBefore: new Date(Date.now() - 2 * hour), notAfter: new Date(Date.now() - hour) }),
        ),
      ),
      /the leaf expired/,
    ],
    [
      'a leaf not yet valid',
      await presenting(
        await world.ca.issueCertificate(
          spec({ notBefore: new Date(Date.now() + hour), notAfter: new Date(Date.now() + 2 * hour) }),
        ),
      ),
      /the leaf is not valid before/,
    ],
    [
      'a CA as the leaf',
      await presenting(
        await world.ca.issueCertificate(
          spec({ basicConstraints: { ca: true }, keyUsage: ['digitalSignature', 'keyCertSign'] }),
        ),
      ),
      /the leaf is a CA/,
    ],
    [
      'no digitalSignature (the handshake refuses it for client authentication)',
      await presenting(await world.ca.issueCertificate(spec({ keyUsage: ['keyEncipherment'] }))),
      /INVALID_PURPOSE/,
    ],
    [
      'no URI SAN',
      await presenting(await world.ca.issueCertificate(spec({ uris: [], dnsNames: ['app.example.org'] }))),
      /0 URI SANs/,
    ],
    [
      'two URI SANs',
      await presenting(
        await world.ca.issueCertificate(spec({ uris: [SPIFFE_ID, 'spiffe://example.org/ns/default/sa/other'] })),
      ),
      /2 URI SANs/,
    ],
    [
      'a URI SAN that is not a SPIFFE ID',
      await presenting(await world.ca.issueCertificate(spec({ uris: ['https://example.org/app'] }))),
      /not a SPIFFE ID/,
    ],
  ];
  for (const [what, r, reason] of refusals) {
    assert.equal(r.status, 400, what);
    assert.equal(r.body.error, 'invalid_grant', what);
    assert.match(String(r.body.error_description), reason, what);
  }
  assert.equal(world.fake.stats.stsSuccesses, 1, 'nothing but the good profile was federated');
});

test('IAM Credentials: only a federated token it issued, only for service accounts the principal may impersonate', async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  world.fake.addServiceAccount({
    email: 'locked@my-project.iam.gserviceaccount.com',
    impersonators: [`principal://iam.googleapis.com/${POOL}/subject/spiffe://example.org/someone-else`],
  });
  const token = await federated(world);

  const at = await iam(world, 'generateAccessToken', { scope: [CLOUD_PLATFORM], lifetime: '3600s' }, token);
  assert.equal(at.status, 200);
  assert.match(String(at.body.expireTime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  const checked = await (
    await fetch(`${world.fake.url}/oauth2/v3/tokeninfo?access_token=${String(at.body.accessToken)}`)
  ).json();
  assert.equal((checked as { email?: string }).email, SERVICE_ACCOUNT);
  assert.equal((checked as { scope?: string }).scope, CLOUD_PLATFORM);

  const id = await iam(world, 'generateIdToken', { audience: 'https://svc.example', includeEmail: true }, token);
  assert.equal(id.status, 200);
  const jwks = (await (await fetch(`${world.fake.url}/oauth2/v3/certs`)).json()) as { keys: [] };
  const { payload } = await jwtVerify(String(id.body.token), createLocalJWKSet(jwks), {
    issuer: 'https://accounts.google.com',
    audience: 'https://svc.example',
  });
  assert.equal(payload.email, SERVICE_ACCOUNT);

  const refusals: Array<[string, Answer, number, string]> = [
    ['no bearer token', await iam(world, 'generateAccessToken', { scope: [CLOUD_PLATFORM] }), 401, 'UNAUTHENTICATED'],
    [
      'a token it never issued',
      await iam(world, 'generateAccessToken', { scope: [CLOUD_PLATFORM] }, 'ya29.made-up'),
      401,
      'UNAUTHENTICATED',
    ],
    [
      'a service account token instead of a federated one',
      await iam(world, 'generateAccessToken', { scope: [CLOUD_PLATFORM] }, String(at.body.accessToken)),
      401,
      'UNAUTHENTICATED',
    ],
    [
      'an unknown service account',
      await iam(
        world,
        'generateAccessToken',
        { scope: [CLOUD_PLATFORM] },
        token,
        'nobody@my-project.iam.gserviceaccount.com',
      ),
      403,
      'PERMISSION_DENIED',
    ],
    [
      'a principal not allowed to impersonate',
      await iam(world, 'generateIdToken', { audience: 'x' }, token, 'locked@my-project.iam.gserviceaccount.com'),
      403,
      'PERMISSION_DENIED',
    ],
    [
      'a project instead of the - wildcard',
      await iam(world, 'generateAccessToken', { scope: [CLOUD_PLATFORM] }, token, SERVICE_ACCOUNT, 'my-project'),
      400,
      'INVALID_ARGUMENT',
    ],
    ['no scope', await iam(world, 'generateAccessToken', {}, token), 400, 'INVALID_ARGUMENT'],
    [
      'lifetime over an hour',
      await iam(world, 'generateAccessToken', { scope: [CLOUD_PLATFORM], lifetime: '7200s' }, token),
      400,
      'INVALID_ARGUMENT',
    ],
    ['no audience', await iam(world, 'generateIdToken', {}, token), 400, 'INVALID_ARGUMENT'],
  ];
  for (const [what, r, status, code] of refusals) {
    assert.equal(r.status, status, what);
    assert.equal((r.body.error as { status?: string }).status, code, what);
  }
  const unknown = await fetch(`${world.fake.url}/oauth2/v3/tokeninfo?access_token=ya29.nope`);
  assert.equal(unknown.status, 400);
  assert.deepEqual(await unknown.json(), { error: 'invalid_token', error_description: 'Invalid Value' });
});

test('faults and counters', async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  world.fake.injectFaults('sts', [{ status: 503 }, { status: 429 }]);
  const subject_token = await world.signer.sign({ sub: SPIFFE_ID, aud: AUDIENCE });
  assert.equal((await sts(world, { subject_token })).status, 503);
  assert.equal((await sts(world, { subject_token })).status, 429);
  assert.equal((await sts(world, { subject_token })).status, 200);
  assert.equal(world.fake.stats.faultsServed, 2);
  assert.equal(world.fake.stats.stsSuccesses, 1);
  world.fake.setOutage('iam', { status: 500 });
  const r = await iam(world, 'generateAccessToken', { scope: [CLOUD_PLATFORM] }, await federated(world));
  assert.equal(r.status, 500);
  assert.equal((r.body.error as { status: string }).status, 'INTERNAL');
});
