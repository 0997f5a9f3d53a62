// The emulated GCE metadata server as the client libraries probe and parse it (docs/gcp.md#metadata-paths,
// docs/gcp.md#response-format, docs/gcp.md#request-checks): every path, every format, the headers on every answer, and
// each refusal.

import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { type TestContext, test } from 'node:test';
import { ManualClock } from '../../src/base/clock.ts';
import { MAX_WAITING } from '../../src/providers/gcp/endpoints.ts';
import { raw } from '../helpers/http.ts';
import {
  CLOUD_PLATFORM,
  FLAVOR,
  get,
  jwtSource,
  PROJECT_ID,
  PROJECT_NUMBER,
  type RawResponse,
  SERVICE_ACCOUNT,
  type Sidecar,
  startGoogleWorld,
  startSidecar,
  until,
} from './support.ts';

const V1 = '/computeMetadata/v1';
const EMAIL_SCOPE = 'https://www.googleapis.com/auth/userinfo.email';

function assertMetadataHeaders(r: RawResponse, json: boolean): void {
  assert.equal(r.headers['metadata-flavor'], 'Google');
  assert.equal(r.headers.server, 'Metadata Server for VM');
  assert.equal(r.headers['content-type'], json ? 'application/json' : 'application/text');
}

async function ok(sidecar: Sidecar, path: string, body: string, json = false): Promise<void> {
  const r = await get(sidecar.port, path);
  assert.equal(r.status, 200, `${path}: ${r.body}`);
  assertMetadataHeaders(r, json);
  assert.equal(r.body, body, path);
}

test('root, listings, static facts, alt=json and recursive JSON', async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const s = await startSidecar({ world, jwt: jwtSource(world), serviceAccount: true });
  t.after(() => s.close());

  // Root answers without Metadata-Flavor (Go and Python probe it so).
  const root = await get(s.port, '/', {});
  assert.equal(root.status, 200);
  assertMetadataHeaders(root, false);
  assert.equal(root.body, '0.1/\ncomputeMetadata/\n');

  await ok(s, `${V1}/`, 'instance/\nproject/\nuniverse/\n');
  const instanceListing = 'attributes/\nhostname\nid\nname\nservice-accounts/\nzone\n';
  await ok(s, `${V1}/instance`, instanceListing);
  await ok(s, `${V1}/instance/`, instanceListing);
  await ok(s, `${V1}/project/`, 'attributes/\nnumeric-project-id\nproject-id\n');
  await ok(s, `${V1}/project/project-id`, PROJECT_ID);
  await ok(s, `${V1}/project/numeric-project-id`, PROJECT_NUMBER);
  await ok(s, `${V1}/project/numeric-project-id?alt=json`, PROJECT_NUMBER, true);
  await ok(s, `${V1}/project/project-id?alt=json`, JSON.stringify(PROJECT_ID), true);
  await ok(s, `${V1}/instance/zone`, `projects/${PROJECT_NUMBER}/zones/europe-west1-b`);
  await ok(s, `${V1}/instance/name`, 'app-7d4b9c-xyz');
  await ok(s, `${V1}/instance/hostname`, 'app-7d4b9c-xyz');
  await ok(s, `${V1}/universe/universe-domain`, 'googleapis.com');
  const id = await get(s.port, `${V1}/instance/id`);
  assert.match(id.body, /^\d{1,19}$/);

  const accounts = `default/\n${SERVICE_ACCOUNT}/\n`;
  await ok(s, `${V1}/instance/service-accounts`, accounts);
  await ok(s, `${V1}/instance/service-accounts/`, accounts);
  await ok(s, `${V1}/instance/service-accounts/?alt=json`, JSON.stringify(['default/', `${SERVICE_ACCOUNT}/`]), true);
  for (const account of ['default', SERVICE_ACCOUNT]) {
    const base = `${V1}/instance/service-accounts/${account}`;
    await ok(s, `${base}/`, 'aliases\nemail\nidentity\nscopes\ntoken\n');
    await ok(s, `${base}/email`, SERVICE_ACCOUNT);
    await ok(s, `${base}/aliases`, 'default\n');
    await ok(s, `${base}/scopes`, `${CLOUD_PLATFORM}\n${EMAIL_SCOPE}\n`);
    await ok(
      s,
      `${base}/?recursive=true`,
      JSON.stringify({ aliases: ['default'], email: SERVICE_ACCOUNT, scopes: [CLOUD_PLATFORM, EMAIL_SCOPE] }),
      true,
    );
  }
  const all = await get(s.port, `${V1}/instance/service-accounts/?recursive=true`);
  assertMetadataHeaders(all, true);
  assert.deepEqual(Object.keys(JSON.parse(all.body) as object), ['default', SERVICE_ACCOUNT]);
  const project = await get(s.port, `${V1}/project/?recursive=true`);
  assert.deepEqual(JSON.parse(project.body), {
    attributes: {},
    numericProjectId: Number(PROJECT_NUMBER),
    projectId: PROJECT_ID,
  });
  const instance = JSON.parse((await get(s.port, `${V1}/instance/?recursive=true`)).body) as {
    serviceAccounts: Record<string, unknown>;
    zone: string;
  };
  assert.deepEqual(Object.keys(instance.serviceAccounts), ['default', SERVICE_ACCOUNT]);
});

test('token (per scope set) and identity (with format=full and licenses) by default and by email', async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const s = await startSidecar({ world, jwt: jwtSource(world), serviceAccount: true });
  t.after(() => s.close());
  await until(() => s.provider.readiness().ready, 'default token');

  for (const account of ['default', SERVICE_ACCOUNT]) {
    const r = await get(s.port, `${V1}/instance/service-accounts/${account}/token`);
    assert.equal(r.status, 200);
    assertMetadataHeaders(r, true);
    const body = JSON.parse(r.body) as { access_token: string; expires_in: number; token_type: string };
    assert.deepEqual(Object.keys(body), ['access_token', 'expires_in', 'token_type']);
    assert.equal(body.token_type, 'Bearer');
    assert.ok(Number.isInteger(body.expires_in) && body.expires_in > 3000 && body.expires_in <= 3600);
    assert.deepEqual(world.fake.tokenInfo(body.access_token)?.scopes, [CLOUD_PLATFORM, EMAIL_SCOPE]);
  }
  // Two spellings of one scope set share one cached token; another set gets its own.
  const a = JSON.parse(
    (await get(s.port, `${V1}/instance/service-accounts/default/token?scopes=${encodeURIComponent('b.scope,a.scope')}`))
      .body,
  ) as { access_token: string };
  const b = JSON.parse(
    (await get(s.port, `${V1}/instance/service-accounts/default/token?scopes=a.scope,b.scope,a.scope`)).body,
  ) as { access_token: string };
  assert.equal(a.access_token, b.access_token);
  assert.deepEqual(world.fake.tokenInfo(a.access_token)?.scopes, ['a.scope', 'b.scope']);

  // Empty names between separators are dropped: `scopes=,` is the default set, a trailing comma changes nothing.
  const scoped = async (scopes: string) => {
    const r = await get(s.port, `${V1}/instance/service-accounts/default/token?scopes=${encodeURIComponent(scopes)}`);
    assert.equal(r.status, 200, `scopes=${scopes}: ${r.body}`);
    return world.fake.tokenInfo((JSON.parse(r.body) as { access_token: string }).access_token)?.scopes;
  };
  assert.deepEqual(await scoped(','), [CLOUD_PLATFORM, EMAIL_SCOPE]);
  assert.deepEqual(await scoped(' a.scope,'), ['a.scope']);
  // At most 32 scopes, each of them well formed.
  const many = Array.from({ length: 33 }, (_, i) => `s${i}.scope`);
  assert.equal((await scoped(many.slice(0, 32).join(',')))?.length, 32);
  for (const scopes of [many.join(','), 'a.scope,b\u0001']) {
    const r = await get(s.port, `${V1}/instance/service-accounts/default/token?scopes=${encodeURIComponent(scopes)}`);
    assert.equal(r.status, 400, scopes);
    assert.match(r.body, /scopes must be at most 32/);
  }

  const id1 = await get(
    s.port,
    `${V1}/instance/service-accounts/default/identity?audience=https://x.example/a?b&format=full&licenses=TRUE`,
  );
  assert.equal(id1.status, 200);
  assertMetadataHeaders(id1, false);
  assert.equal(id1.body.split('.').length, 3);
  const id2 = await get(
    s.port,
    `${V1}/instance/service-accounts/${SERVICE_ACCOUNT}/identity?audience=https://x.example/a?b&format=standard`,
  );
  assert.equal(id2.body, id1.body, 'cached per audience');
  assert.equal(world.fake.stats.generateIdToken, 1);
});

test('refusals: Metadata-Flavor, X-Forwarded-For, foreign Host, identity without audience, unknown account and path', async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const s = await startSidecar({ world, jwt: jwtSource(world), serviceAccount: true });
  t.after(() => s.close());
  const token = `${V1}/instance/service-accounts/default/token`;

  const cases: Array<[string, string, Record<string, string>, number, RegExp]> = [
    ['no Metadata-Flavor', token, {}, 403, /Missing required header "Metadata-Flavor"/],
    ['wrong Metadata-Flavor', token, { 'Metadata-Flavor': 'google' }, 403, /Metadata-Flavor/],
    ['X-Forwarded-For', token, { ...FLAVOR, 'X-Forwarded-For': '10.0.0.1' }, 403, /X-Forwarded-For/],
    ['X-Forwarded-For on the root', '/', { 'X-Forwarded-For': '10.0.0.1' }, 403, /X-Forwarded-For/],
    ['foreign Host', token, { ...FLAVOR, host: 'evil.example:80' }, 403, /Host/],
    ['foreign Host on the root', '/', { host: `rebind.example:${s.port}` }, 403, /Host/],
    ['identity without audience', `${V1}/instance/service-accounts/default/identity`, FLAVOR, 400, /audience/],
    [
      'identity with an empty audience',
      `${V1}/instance/service-accounts/default/identity?audience=`,
      FLAVOR,
      400,
      /audience/,
    ],
    [
      'unknown service account token',
      `${V1}/instance/service-accounts/other@my-project.iam.gserviceaccount.com/token`,
      FLAVOR,
      404,
      /Not Found/,
    ],
    [
      'unknown service account email',
      `${V1}/instance/service-accounts/other@my-project.iam.gserviceaccount.com/email`,
      FLAVOR,
      404,
      /Not Found/,
    ],
    ['unknown path', `${V1}/instance/machine-type`, FLAVOR, 404, /Not Found/],
    ['token below a leaf', `${V1}/instance/service-accounts/default/email/token`, FLAVOR, 404, /Not Found/],
    [
      'identity below token',
      `${V1}/instance/service-accounts/default/token/identity?audience=https://x.example`,
      FLAVOR,
      404,
      /Not Found/,
    ],
    ['unknown attribute', `${V1}/instance/attributes/cluster-name`, FLAVOR, 404, /Not Found/],
    ['bad scopes', `${token}?scopes=${encodeURIComponent('a\u0001b')}`, FLAVOR, 400, /scopes/],
  ];
  for (const [what, path, headers, status, body] of cases) {
    const r = await get(s.port, path, headers);
    assert.equal(r.status, status, what);
    assert.match(r.body, body, what);
    assertMetadataHeaders(r, false);
  }
  const post = await get(s.port, token, FLAVOR, 'POST');
  assert.equal(post.status, 405);
  assertMetadataHeaders(post, false);
  // Paths outside the metadata tree are left to the rest of the listener.
  assert.equal((await get(s.port, '/latest/meta-data/')).body, 'not found\n');
  assert.ok(world.fake.stats.stsRequests <= 1, 'refusals never reach Google');
});

test('without a service account: the pool account, and identity answers 404 the GKE way', async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const s = await startSidecar({ world, jwt: jwtSource(world), serviceAccount: false });
  t.after(() => s.close());
  const email = `${PROJECT_ID}.svc.id.goog`;
  await ok(s, `${V1}/instance/service-accounts/`, `default/\n${email}/\n`);
  await ok(s, `${V1}/instance/service-accounts/default/email`, email);
  const r = await get(s.port, `${V1}/instance/service-accounts/default/identity?audience=https://x.example`);
  assert.equal(r.status, 404);
  assertMetadataHeaders(r, false);
  assert.match(r.body, /gcp\.serviceAccount/);
  assert.equal(world.fake.stats.generateIdToken, 0);
});

test('detection and static paths answer before credentials exist; a token request then gets 503 + Retry-After', async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  world.fake.setOutage('sts', { status: 503 });
  const s = await startSidecar({ world, jwt: jwtSource(world), options: { firstFetchWaitMs: 50 } });
  t.after(() => s.close());
  await ok(s, `${V1}/instance`, 'attributes/\nhostname\nid\nname\nservice-accounts/\nzone\n');
  await ok(s, `${V1}/project/numeric-project-id`, PROJECT_NUMBER);
  await until(() => world.fake.stats.faultsServed >= 1, 'a refused exchange');
  const r = await get(s.port, `${V1}/instance/service-accounts/default/token`);
  assert.equal(r.status, 503);
  assertMetadataHeaders(r, false);
  assert.match(String(r.headers['retry-after']), /^\d+$/);
  assert.equal(s.provider.readiness().ready, false);
  const counted = await s.metrics.registry.getSingleMetric('spiffe_connector_requests_total')?.get();
  const statuses = (counted?.values ?? [])
    .filter((v) => v.labels.surface === 'gcp-metadata')
    .map((v) => String(v.labels.status));
  assert.ok(statuses.includes('200') && statuses.includes('503'));
});

test("a permanent refusal by Google becomes its 4xx with Google's text and no token", async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  // The stand-in knows the provider but no service account the pool may impersonate.
  const s = await startSidecar({ world, jwt: jwtSource(world), serviceAccount: true });
  t.after(() => s.close());
  world.fake.iam.addServiceAccount({ email: SERVICE_ACCOUNT, impersonators: [] });
  const r = await get(s.port, `${V1}/instance/service-accounts/default/token?scopes=only.this`);
  assert.equal(r.status, 403);
  assertMetadataHeaders(r, false);
  assert.match(r.body, /PERMISSION_DENIED/);
  assert.match(r.body, /iam\.serviceAccounts\.getAccessToken/);
  assert.doesNotMatch(r.body, /ya29\.|eyJ/);
});

test('a SPIFFE ID over 127 bytes is refused before Google is asked, with the reason', async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const long = `spiffe://example.org/${'a'.repeat(110)}`;
  const s = await startSidecar({ world, jwt: jwtSource(world, { spiffeId: long }), options: { firstFetchWaitMs: 50 } });
  t.after(() => s.close());
  await until(() => /127 bytes/.test(s.provider.readiness().reason ?? ''), 'the refusal');
  const r = await get(s.port, `${V1}/instance/service-accounts/default/token`);
  assert.equal(r.status, 503);
  assert.match(r.body, /google\.subject to 127 bytes/);
  assert.equal(world.fake.stats.stsRequests, 0);
});

/** A sidecar on a manual clock with a service account, and a value whose ETag a wait_for_change can name. */
async function waitForChangeSidecar(t: TestContext) {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const clock = new ManualClock(Date.now());
  const s = await startSidecar({ world, jwt: jwtSource(world, { clock }), serviceAccount: true, clock });
  t.after(() => s.close());
  return { s, clock, path: `${V1}/project/project-id` };
}

test('wait_for_change holds until timeout_sec (the tree never changes), answers at once for a stale last_etag, and is bounded', async (t) => {
  const { s, clock, path } = await waitForChangeSidecar(t);
  const now = await get(s.port, path);
  assert.equal(now.status, 200);
  const etag = String(now.headers['etag']);
  assert.match(etag, /^[0-9a-f]{16}$/, 'every value carries an ETag');

  const seen: { answered?: RawResponse } = {};
  const held = get(s.port, `${path}?wait_for_change=true&timeout_sec=5&last_etag=${etag}`).then(
    (r) => (seen.answered = r),
  );
  await clock.advance(4_999);
  await get(s.port, path); // the server has taken the held request by the time this one is answered
  assert.equal(seen.answered, undefined, 'held while the value is unchanged and timeout_sec has not passed');
  await clock.advance(1);
  const result = await held;
  assert.deepEqual([result.status, result.body, result.headers['etag']], [200, now.body, etag]);

  const stale = await get(s.port, `${path}?wait_for_change=true&last_etag=0000000000000000`);
  assert.deepEqual(
    [stale.status, stale.body],
    [200, now.body],
    'a last_etag that is not the current one is answered at once',
  );
  const badTimeout = await get(s.port, `${path}?wait_for_change=true&timeout_sec=abc`);
  assert.equal(badTimeout.status, 400);
  assertMetadataHeaders(badTimeout, false);

  const many = Array.from({ length: MAX_WAITING }, () => get(s.port, `${path}?wait_for_change=true&timeout_sec=60`));
  await get(s.port, path);
  const over = await get(s.port, `${path}?wait_for_change=true&timeout_sec=60`);
  assert.equal(over.status, 429, `at most ${MAX_WAITING} are held`);
  assert.equal(over.headers['retry-after'], '1');
  await clock.advance(60_000);
  assert.ok((await Promise.all(many)).every((r) => r.status === 200));
});

test('only /computeMetadata/v1 is served: /computeMetadata itself lists v1/, other versions are 404; 405 says GET, HEAD', async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const s = await startSidecar({ world, jwt: jwtSource(world), serviceAccount: true });
  t.after(() => s.close());
  await ok(s, '/computeMetadata', 'v1/\n');
  await ok(s, '/computeMetadata/', 'v1/\n');
  await ok(s, V1, 'instance/\nproject/\nuniverse/\n');
  for (const path of ['/computeMetadata/v2/instance/hostname', '/computeMetadata/v1beta1/instance/hostname']) {
    const r = await get(s.port, path);
    assert.equal(r.status, 404, path);
    assertMetadataHeaders(r, false);
  }
  const post = await get(s.port, `${V1}/project/project-id`, FLAVOR, 'POST');
  assert.deepEqual([post.status, post.headers['allow']], [405, 'GET, HEAD']);
  const head = await get(s.port, `${V1}/project/project-id`, FLAVOR, 'HEAD');
  assert.deepEqual([head.status, head.body], [200, '']);
  assertMetadataHeaders(head, false);
});

test('an identity audience over 2048 characters is a 400 at once, and Google is not asked', async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const s = await startSidecar({ world, jwt: jwtSource(world), serviceAccount: true });
  t.after(() => s.close());
  const identity = (audience: string) =>
    get(s.port, `${V1}/instance/service-accounts/default/identity?audience=${encodeURIComponent(audience)}`);
  const long = await identity(`https://${'a'.repeat(2033)}.example`);
  assert.equal(long.status, 400);
  assert.match(long.body, /audience must be at most 2048 characters/);
  assertMetadataHeaders(long, false);
  assert.equal(world.fake.stats.generateIdToken, 0);
  const longest = await identity(`https://${'a'.repeat(2032)}.example`);
  assert.notEqual(longest.status, 400, `2048 characters are accepted: ${longest.body.slice(0, 200)}`);
});

test('wait_for_change: timeout_sec absent or empty holds up to 3600 s, 1 to 3600 hold that long, anything else is a 400 at once', async (t) => {
  const { s, clock, path } = await waitForChangeSidecar(t);
  const etag = String((await get(s.port, path)).headers['etag']);
  const hold = (timeout: string) => {
    const seen: { answered?: RawResponse; done: Promise<RawResponse> } = {
      done: get(s.port, `${path}?wait_for_change=true&last_etag=${etag}${timeout}`).then((r) => (seen.answered = r)),
    };
    return seen;
  };
  const held = {
    absent: hold(''),
    empty: hold('&timeout_sec='),
    one: hold('&timeout_sec=1'),
    max: hold('&timeout_sec=3600'),
  };
  await get(s.port, path); // the server has taken the held requests by the time this one is answered
  // Refused at once: the bound makes a refusal that is held fail the test rather than hang it.
  for (const bad of ['0', '3601', '1e3', '5.0']) {
    const r = await raw(
      s.port,
      'GET',
      `${path}?wait_for_change=true&last_etag=${etag}&timeout_sec=${bad}`,
      FLAVOR,
      15_000,
    );
    assert.equal(r.status, 400, `timeout_sec=${bad}`);
    assert.match(r.body, /timeout_sec must be a whole number of seconds up to 3600/);
  }
  const answered = () =>
    Object.entries(held)
      .filter(([, h]) => h.answered !== undefined)
      .map(([name]) => name);
  await clock.advance(999);
  await get(s.port, path);
  assert.deepEqual(answered(), []);
  await clock.advance(1);
  assert.equal((await held.one.done).status, 200);
  await clock.advance(3_598_999);
  await get(s.port, path);
  assert.deepEqual(answered(), ['one']);
  await clock.advance(1);
  for (const h of Object.values(held)) assert.equal((await h.done).status, 200);
});

/** A request the test can walk away from: `leave()` closes its connection before any answer. */
function leavable(port: number, path: string): { leave(): void; settled: Promise<void> } {
  const req = httpRequest({
    host: '127.0.0.1',
    port,
    path,
    headers: { host: `127.0.0.1:${port}`, ...FLAVOR },
    agent: false,
  });
  const settled = new Promise<void>((resolve) => {
    req.on('response', (res) => {
      res.resume();
      res.on('end', resolve);
      res.on('error', () => resolve());
    });
    req.on('error', () => resolve());
  });
  req.end();
  return { leave: () => req.destroy(), settled };
}

test('a held wait_for_change whose client goes away gives its place back', async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  const s = await startSidecar({ world, jwt: jwtSource(world), serviceAccount: true });
  t.after(() => s.close());
  const path = `${V1}/project/project-id`;
  const waiters = Array.from({ length: MAX_WAITING }, () =>
    leavable(s.port, `${path}?wait_for_change=true&timeout_sec=3600`),
  );
  await get(s.port, path); // the server has taken the held requests by the time this one is answered
  assert.equal((await get(s.port, `${path}?wait_for_change=true&timeout_sec=3600`)).status, 429);
  for (const w of waiters) w.leave();
  await Promise.all(waiters.map((w) => w.settled));
  // A place is free again long before the abandoned requests' hour is up (the first tries may beat the closes).
  await until(
    async () => (await get(s.port, `${path}?wait_for_change=true&timeout_sec=1`)).status === 200,
    'a wait_for_change held again once the others left',
  );
});

test('in the last second of a token whose refresh fails, a token request is 503 with Retry-After 1, never expires_in 0', async (t) => {
  // On a whole second, so that the token's expiry is one too and its last second is a whole one.
  const clock = new ManualClock(Math.floor(Date.now() / 1000) * 1000);
  const world = await startGoogleWorld({ clock });
  t.after(() => world.close());
  const s = await startSidecar({ world, jwt: jwtSource(world, { clock }), clock, serviceAccount: false });
  t.after(() => s.close());
  await until(() => s.provider.readiness().ready, 'first token');
  const token = `${V1}/instance/service-accounts/default/token`;
  const first = await get(s.port, token);
  assert.equal(first.status, 200);
  const good = JSON.parse(first.body) as { access_token: string; expires_in: number };
  world.fake.setOutage('sts', { status: 503 });
  // From two seconds before expiry, in steps a quarter of a second long, to past it.
  await clock.advance((good.expires_in - 2) * 1000);
  const seen: string[] = [];
  let lastSecond: string | undefined;
  for (let step = 0; step < 14; step++) {
    const r = await get(s.port, token);
    if (r.status === 200) {
      const body = JSON.parse(r.body) as { access_token: string; expires_in: number };
      assert.equal(body.access_token, good.access_token);
      assert.ok(body.expires_in >= 1, `expires_in ${body.expires_in}`);
      seen.push(`200 ${body.expires_in}`);
    } else {
      assert.equal(r.status, 503, r.body);
      assert.match(String(r.headers['retry-after']), /^[1-9]\d*$/);
      assert.ok(!r.body.includes(good.access_token));
      assertMetadataHeaders(r, false);
      seen.push(`503 ${r.headers['retry-after']}`);
      lastSecond ??= r.body;
    }
    await clock.advance(250);
  }
  // Its last second is 503 asking to retry in 1 s (a refresh may land by then), not a token about to lapse.
  assert.ok(seen.join(', ').startsWith('200 2, 200 1, 200 1, 200 1, 200 1, 503 1, 503 1, 503 1, 503'), seen.join(', '));
  assert.match(lastSecond ?? '', /the cached token is about to expire and is being refreshed/);
});
