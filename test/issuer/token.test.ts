// The token endpoint over real mTLS: a valid X.509-SVID gets a JWT-SVID that verifies against the JWKS
// found through discovery; every other client and request is refused with an OAuth error body.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRemoteJWKSet, decodeProtectedHeader, type JWTPayload, jwtVerify } from 'jose';
import { ManualClock } from '../../src/base/clock.ts';
import { DevCa, mintBad } from '../helpers/pki.ts';
import { AUDIENCES, type Fixture, FORM, postToken, startFixture, TRUST_DOMAIN } from './fixture.ts';

const ID = `spiffe://${TRUST_DOMAIN}/ns/default/sa/app`;

/** Verifies a token the way a cloud does: discovery → jwks_uri → signature, iss, aud, exp. */
async function verifyThroughDiscovery(
  fx: Fixture,
  token: string,
  audience: string,
): Promise<{ payload: JWTPayload; kid: string | undefined }> {
  const doc = (await (await fetch(fx.issuer.discoveryUrl)).json()) as { issuer: string; jwks_uri: string };
  assert.equal(doc.issuer, fx.config.url);
  // The published jwks_uri is the public URL; the test reaches the same path on the loopback listener.
  const published = new URL(doc.jwks_uri);
  assert.equal(published.origin, new URL(fx.config.url).origin);
  const local = new URL(published.pathname, fx.issuer.discoveryUrl);
  const jwks = createRemoteJWKSet(local);
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer: fx.config.url,
    audience,
    algorithms: [fx.config.algorithm],
  });
  return { payload, kid: protectedHeader.kid };
}

for (const alg of ['RS256', 'ES256'] as const) {
  test(`a valid X.509-SVID gets a ${alg} JWT-SVID that verifies through discovery`, async (t) => {
    const fx = await startFixture(t, { alg });
    const svid = await fx.ca.issueX509Svid({ spiffeId: ID, ttlSeconds: 7200 });
    const answer = await postToken(fx, svid);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.headers['cache-control'], 'no-store');
    assert.equal(answer.body['issued_token_type'], 'urn:ietf:params:oauth:token-type:jwt');
    assert.equal(answer.body['token_type'], 'N_A');
    assert.equal(answer.body['spiffe_id'], ID);
    assert.equal(answer.body['expires_in'], 3600);
    const token = answer.body['access_token'];
    assert.equal(typeof token, 'string');
    const { payload, kid } = await verifyThroughDiscovery(fx, token as string, AUDIENCES[0] ?? '');
    assert.equal(payload.sub, ID);
    assert.equal(payload.aud, AUDIENCES[0]);
    assert.equal(payload.iss, fx.config.url);
    for (const claim of ['iat', 'nbf', 'exp'] as const)
      assert.ok(Number.isInteger(payload[claim]), `${claim} is an integer`);
    assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 3600);
    assert.equal(payload.nbf, payload.iat);
    assert.equal(typeof payload.jti, 'string');
    const header = decodeProtectedHeader(token as string);
    assert.equal(header.alg, alg);
    assert.equal(header.typ, 'JWT');
    const jwks = (await (await fetch(new URL('/spiffe/.well-known/jwks.json', fx.issuer.discoveryUrl))).json()) as {
      keys: Array<Record<string, unknown>>;
    };
    assert.equal(jwks.keys.length, 1);
    assert.equal(jwks.keys[0]?.['kid'], kid);
    assert.equal(jwks.keys[0]?.['use'], 'sig');
    assert.equal(jwks.keys[0]?.['alg'], alg);
    assert.equal(jwks.keys[0]?.['d'], undefined, 'no private members published');
  });
}

test('the chain may include intermediates and the root (as the Venafi client sends tls.crt + ca.crt)', async (t) => {
  const fx = await startFixture(t);
  const intermediate = await fx.ca.issueIntermediate();
  const svid = await intermediate.issueX509Svid({ spiffeId: ID });
  const withRoot = { certPem: svid.certPem + fx.ca.certPem, keyPem: svid.keyPem };
  for (const client of [svid, withRoot]) {
    const answer = await postToken(fx, client);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.body['spiffe_id'], ID);
  }
});

test('the token never outlives the client SVID', async (t) => {
  const fx = await startFixture(t);
  const svid = await fx.ca.issueX509Svid({ spiffeId: ID, ttlSeconds: 600 });
  const answer = await postToken(fx, svid);
  assert.equal(answer.status, 200);
  const { payload } = await verifyThroughDiscovery(fx, answer.body['access_token'] as string, AUDIENCES[0] ?? '');
  assert.equal(payload.exp, Math.floor(svid.notAfter.getTime() / 1000));
  assert.equal(answer.body['expires_in'], (payload.exp ?? 0) - (payload.iat ?? 0));
  assert.ok((answer.body['expires_in'] as number) <= 600);
});

test('refusals: each bad client gets invalid_client with 401', async (t) => {
  const fx = await startFixture(t);
  const cases: Array<{
    name: string;
    client: { certPem: string; keyPem: string } | undefined;
    reason: string;
    says?: RegExp;
  }> = [];
  const foreign = await DevCa.create({ trustDomain: 'other.org' });
  cases.push({
    name: 'foreign trust domain',
    client: await foreign.issueX509Svid({ spiffeId: 'spiffe://other.org/ns/default/sa/app' }),
    reason: 'foreign_trust_domain',
  });
  const other = await mintBad(fx.ca, 'other-trust-domain');
  cases.push({ name: 'other trust domain (its own CA)', client: other, reason: 'foreign_trust_domain' });
  cases.push({ name: 'expired SVID', client: await mintBad(fx.ca, 'expired'), reason: 'expired_certificate' });
  cases.push({
    name: 'SVID not yet valid',
    client: await mintBad(fx.ca, 'not-yet-valid'),
    reason: 'expired_certificate',
    says: /not valid now/,
  });
  cases.push({ name: 'CA certificate', client: await mintBad(fx.ca, 'leaf-is-ca'), reason: 'invalid_svid' });
  cases.push({ name: 'no URI SAN', client: await mintBad(fx.ca, 'no-uri-san'), reason: 'invalid_svid' });
  cases.push({ name: 'two URI SANs', client: await mintBad(fx.ca, 'two-uri-sans'), reason: 'invalid_svid' });
  cases.push({
    name: 'a CA the bundle does not hold',
    client: await mintBad(fx.ca, 'foreign-ca'),
    reason: 'invalid_svid',
  });
  cases.push({
    name: 'an unknown critical extension',
    client: await mintBad(fx.ca, 'unknown-critical-extension'),
    reason: 'invalid_svid',
    says: /critical extension/,
  });
  cases.push({ name: 'no client certificate', client: undefined, reason: 'no_client_certificate' });
  for (const c of cases) {
    const answer = await postToken(fx, c.client);
    assert.equal(answer.status, 401, `${c.name}: ${JSON.stringify(answer.body)}`);
    assert.equal(answer.body['error'], 'invalid_client', c.name);
    assert.equal(typeof answer.body['error_description'], 'string', c.name);
    if (c.says) assert.match(answer.body['error_description'] as string, c.says, c.name);
    assert.equal(answer.body['access_token'], undefined, c.name);
  }
  const metrics = await (await fetch(`${fx.issuer.opsUrl}/metrics`)).text();
  for (const reason of new Set(cases.map((c) => c.reason))) {
    assert.match(
      metrics,
      new RegExp(`spiffe_connector_issuer_refusals_total\\{error="invalid_client",reason="${reason}"\\} [1-9]`),
      reason,
    );
  }
  assert.doesNotMatch(metrics, /spiffe_connector_issuer_tokens_issued_total\{/);
});

test('refusals: bad requests from a good client', async (t) => {
  const fx = await startFixture(t);
  const svid = await fx.ca.issueX509Svid({ spiffeId: ID });
  const cases: Array<{
    name: string;
    form: Record<string, string | string[]>;
    status: number;
    error: string;
    contentType?: string;
  }> = [
    {
      name: 'disallowed audience',
      form: { ...FORM, audience: 'https://evil.example' },
      status: 400,
      error: 'invalid_target',
    },
    { name: 'two audiences', form: { ...FORM, audience: AUDIENCES }, status: 400, error: 'invalid_target' },
    { name: 'no audience', form: { ...FORM }, status: 400, error: 'invalid_request' },
    {
      name: 'wrong grant_type',
      form: { ...FORM, grant_type: 'client_credentials', audience: AUDIENCES[0] ?? '' },
      status: 400,
      error: 'unsupported_grant_type',
    },
    {
      name: 'no grant_type',
      form: { subject_token_type: FORM.subject_token_type, audience: AUDIENCES[0] ?? '' },
      status: 400,
      error: 'invalid_request',
    },
    {
      name: 'wrong subject_token_type',
      form: { ...FORM, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt', audience: AUDIENCES[0] ?? '' },
      status: 400,
      error: 'invalid_request',
    },
    {
      name: 'a subject_token',
      form: { ...FORM, subject_token: 'x', audience: AUDIENCES[0] ?? '' },
      status: 400,
      error: 'invalid_request',
    },
    {
      name: 'requested_token_type not jwt',
      form: {
        ...FORM,
        requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        audience: AUDIENCES[0] ?? '',
      },
      status: 400,
      error: 'invalid_request',
    },
    {
      name: 'JSON body',
      form: { ...FORM, audience: AUDIENCES[0] ?? '' },
      contentType: 'application/json',
      status: 400,
      error: 'invalid_request',
    },
  ];
  for (const c of cases) {
    const answer = await postToken(fx, svid, c.form, c.contentType ? { contentType: c.contentType } : {});
    assert.equal(answer.status, c.status, `${c.name}: ${JSON.stringify(answer.body)}`);
    assert.equal(answer.body['error'], c.error, c.name);
  }
  const get = await postToken(fx, svid, {}, { method: 'GET' });
  assert.equal(get.status, 405);
  assert.equal(get.headers['allow'], 'POST');
  // The allowed audiences still work, one per request.
  const ok = await postToken(fx, svid, { ...FORM, audience: AUDIENCES[1] ?? '' });
  assert.equal(ok.status, 200);
});

test('a client with intermediates that reconnects (and may try session resumption) is verified on every connection', async (t) => {
  const fx = await startFixture(t);
  const intermediate = await fx.ca.issueIntermediate();
  const svid = await intermediate.issueX509Svid({ spiffeId: ID });
  const { Agent, request } = await import('undici');
  const agent = new Agent({ connect: { ca: fx.ca.certPem, cert: svid.certPem, key: svid.keyPem } });
  t.after(() => agent.close());
  for (let i = 0; i < 4; i++) {
    const res = await request(fx.issuer.tokenUrl, {
      method: 'POST',
      dispatcher: agent,
      reset: true, // a new connection each time
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ ...FORM, audience: AUDIENCES[0] ?? '' }).toString(),
    });
    const body = (await res.body.json()) as Record<string, unknown>;
    assert.equal(res.statusCode, 200, `request ${i + 1}: ${JSON.stringify(body)}`);
  }
});

test('GET /status answers as Venafi/token-exchange does', async (t) => {
  const fx = await startFixture(t);
  const svid = await fx.ca.issueX509Svid({ spiffeId: ID });
  const { Agent, request } = await import('undici');
  const agent = new Agent({ connect: { ca: fx.ca.certPem, cert: svid.certPem, key: svid.keyPem } });
  t.after(() => agent.close());
  const res = await request(fx.issuer.tokenUrl.replace(/\/token$/, '/status'), { dispatcher: agent });
  assert.equal(res.statusCode, 200);
  assert.deepEqual(await res.body.json(), { status: 'OK' });
});

test('JSON logs record issuance and refusals without the token', async (t) => {
  const { Writable } = await import('node:stream');
  const { createLogger } = await import('../../src/ops/logger.ts');
  const lines: string[] = [];
  const destination = new Writable({
    write: (chunk: Buffer, _enc, cb) => {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  const fx = await startFixture(t, { logger: createLogger({ level: 'info', destination }) });
  const svid = await fx.ca.issueX509Svid({ spiffeId: ID });
  const answer = await postToken(fx, svid);
  const token = answer.body['access_token'] as string;
  await postToken(fx, svid, { ...FORM, audience: 'nope' });
  const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const issued = records.find((r) => r['msg'] === 'JWT-SVID issued');
  assert.equal(issued?.['spiffeId'], ID);
  assert.equal(issued?.['audience'], AUDIENCES[0]);
  assert.equal(typeof issued?.['jti'], 'string');
  assert.ok(records.some((r) => r['msg'] === 'token request refused' && r['reason'] === 'disallowed_audience'));
  const all = lines.join('\n');
  for (const part of token.split('.')) assert.ok(!all.includes(part), 'no part of the token is logged');
});

test('a leaf whose extended key usage lacks clientAuth is refused; without the extension it is accepted', async (t) => {
  const fx = await startFixture(t);
  const now = Date.now();
  const leaf = (extKeyUsage: Array<'serverAuth' | 'clientAuth'> | undefined) =>
    fx.ca.issueCertificate({
      uris: [ID],
      basicConstraints: { ca: false },
      keyUsage: ['digitalSignature'],
      ...(extKeyUsage ? { extKeyUsage } : {}),
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3_600_000),
    });
  const serverOnly = await leaf(['serverAuth']);
  const refused = await postToken(fx, { certPem: serverOnly.chainPem, keyPem: serverOnly.keyPem });
  assert.equal(refused.status, 401, JSON.stringify(refused.body));
  assert.equal(refused.body['error'], 'invalid_client');
  assert.match(
    String(refused.body['error_description']),
    /extended key usage extension without clientAuth \(serverAuth\)/,
  );
  const none = await leaf(undefined);
  assert.equal((await postToken(fx, { certPem: none.chainPem, keyPem: none.keyPem })).status, 200);
  const client = await leaf(['clientAuth']);
  assert.equal((await postToken(fx, { certPem: client.chainPem, keyPem: client.keyPem })).status, 200);
});

test('token requests are rate-limited per client SPIFFE ID and overall: 429, Retry-After, an OAuth error body', async (t) => {
  const clock = new ManualClock(Date.now());
  const fx = await startFixture(t, {
    clock,
    rateLimit: { perClient: { burst: 3, perSecond: 0.5 }, overall: { burst: 5, perSecond: 1 } },
  });
  const a = await fx.ca.issueX509Svid({ spiffeId: ID, now: new Date(clock.now() - 1000) });
  const b = await fx.ca.issueX509Svid({
    spiffeId: `spiffe://${TRUST_DOMAIN}/ns/default/sa/other`,
    now: new Date(clock.now() - 1000),
  });
  const c = await fx.ca.issueX509Svid({
    spiffeId: `spiffe://${TRUST_DOMAIN}/ns/default/sa/third`,
    now: new Date(clock.now() - 1000),
  });
  for (let i = 0; i < 3; i++) assert.equal((await postToken(fx, a)).status, 200, `a #${i}`);
  const limited = await postToken(fx, a);
  assert.equal(limited.status, 429);
  assert.equal(limited.headers['retry-after'], '2');
  assert.equal(limited.body['error'], 'temporarily_unavailable');
  assert.match(
    String(limited.body['error_description']),
    /too many token requests from spiffe:\/\/example\.org\/ns\/default\/sa\/app/,
  );
  assert.equal(limited.headers['cache-control'], 'no-store');
  // Another client has its own bucket, but all of them share the overall one (5).
  assert.equal((await postToken(fx, b)).status, 200);
  assert.equal((await postToken(fx, b)).status, 200);
  const overall = await postToken(fx, c);
  assert.equal(overall.status, 429);
  assert.match(String(overall.body['error_description']), /too many token requests; retry later/);
  assert.equal(overall.headers['retry-after'], '1');
  // Fifty more from the limited client mint nothing.
  const flood = await Promise.all(Array.from({ length: 50 }, () => postToken(fx, a)));
  assert.ok(flood.every((r) => r.status === 429));
  await clock.advance(2_000);
  assert.equal((await postToken(fx, c)).status, 200, 'the overall bucket refilled');
  assert.equal((await postToken(fx, a)).status, 200, "and the client's own");
  const metrics = await (await fetch(`${fx.issuer.opsUrl}/metrics`)).text();
  assert.match(
    metrics,
    /spiffe_connector_issuer_refusals_total\{error="temporarily_unavailable",reason="rate_limited"\} 52/,
  );
});

test('a client verified once is refused when its SVID expires: on a new connection and on its kept-alive one', async (t) => {
  const clock = new ManualClock(Date.now());
  const fx = await startFixture(t, { clock });
  const svid = await fx.ca.issueX509Svid({ spiffeId: ID, ttlSeconds: 600, now: new Date(clock.now() - 1000) });
  const { Agent, request } = await import('undici');
  const kept = new Agent({ connect: { ca: fx.ca.certPem, cert: svid.certPem, key: svid.keyPem } });
  t.after(() => kept.close());
  const viaKept = async (): Promise<{ status: number; body: Record<string, unknown> }> => {
    const res = await request(fx.issuer.tokenUrl, {
      method: 'POST',
      dispatcher: kept,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ ...FORM, audience: AUDIENCES[0] ?? '' }).toString(),
    });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
  };
  assert.equal((await viaKept()).status, 200);
  assert.equal((await postToken(fx, svid)).status, 200);
  await clock.advance(svid.notAfter.getTime() - clock.now() + 1000);
  for (const [name, answer] of [
    ['kept-alive connection', await viaKept()],
    ['new connection', await postToken(fx, svid)],
  ] as const) {
    assert.equal(answer.status, 401, `${name}: ${JSON.stringify(answer.body)}`);
    assert.equal(answer.body['error'], 'invalid_client', name);
    assert.match(String(answer.body['error_description']), /not valid now/, name);
    assert.equal(answer.body['access_token'], undefined, name);
  }
});
