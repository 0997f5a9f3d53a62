// The emulated AWS surfaces refuse what the real ones refuse and answer the bytes SDKs parse
// (docs/aws.md#container-credentials, docs/aws.md#imdsv2). The credentials come from a stub lookup: no STS here.

import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { ManualClock } from '../../src/base/clock.ts';
import { ConnectorError } from '../../src/base/errors.ts';
import { Secret } from '../../src/base/secret.ts';
import { SINGLE } from '../../src/cache/credential-cache.ts';
import type { Lookup } from '../../src/cache/refreshing-credential.ts';
import { startMetadataListener } from '../../src/metadata/listener.ts';
import { silentLogger } from '../../src/ops/logger.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import type { AwsCredentials } from '../../src/providers/aws/credential.ts';
import { containerSurface, imdsSurface, relativeUriSurface } from '../../src/providers/aws/endpoints.ts';
import { parseTtl } from '../../src/providers/aws/imds-tokens.ts';
import { ACCOUNT, ROLE_ARN, raw } from './support.ts';

const TOKEN = 'container-token-0123456789abcdefghijklmnopqrstuv';
const WORKER_TOKEN = 'worker-token-0123456789abcdefghijklmnopqrstuvw';
const WORKER_ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/worker`;
const RELATIVE_URI = '/v2/credentials/Zq3-x9_Lm.2~Tv8RkP4wYc7NbH1sJdGfA';

function credentials(clock: ManualClock): AwsCredentials {
  return {
    accessKeyId: 'ASIAEXAMPLEEXAMPLE12',
    secretAccessKey: new Secret('secret/with+chars=='),
    sessionToken: new Secret('IQoJb3JpZ2luX2VjSESSION'),
    expiration: new Date(clock.now() + 3600_000 + 123),
    accountId: ACCOUNT,
    roleArn: ROLE_ARN,
    assumedRoleArn: `arn:aws:sts::${ACCOUNT}:assumed-role/app/ns.default.sa.app`,
    sessionName: 'ns.default.sa.app',
    obtainedAt: new Date(clock.now()),
  };
}

async function serve(
  t: TestContext,
  options: {
    imds?: boolean;
    lookup?: () => Lookup<AwsCredentials>;
    imdsTokenLimit?: number;
    imdsTokenBurst?: number;
    /** Containers with a role of their own, served on their own path and token. */
    containers?: Array<{ name: string; authToken: Secret }>;
    /** The link-local relative URI (aws.containerRelativeUri). */
    relativeUri?: string;
    /** A lookup by cache key (SINGLE, or a container's name), given the pod's; default: the pod's for every key. */
    lookupKey?: (key: string, pod: Lookup<AwsCredentials>) => Lookup<AwsCredentials>;
  } = {},
) {
  const clock = new ManualClock();
  const metrics = new Metrics();
  const creds = credentials(clock);
  const listener = await startMetadataListener({ host: '127.0.0.1', port: 0, metrics, logger: silentLogger() });
  t.after(() => listener.close(0));
  const port = listener.port;
  const lookup = options.lookup ?? (() => ({ ok: true as const, value: creds, expiresAt: creds.expiration }));
  const byKey = (key: string) => (options.lookupKey ? options.lookupKey(key, lookup()) : lookup());
  const credentialLookup = { peek: byKey, get: async (key: string) => byKey(key) };
  const surfaces = [
    containerSurface({
      credentials: credentialLookup,
      authToken: new Secret(TOKEN),
      ...(options.containers ? { containers: options.containers } : {}),
    }),
  ];
  if (options.relativeUri !== undefined)
    surfaces.push(relativeUriSurface({ credentials: credentialLookup, relativeUri: options.relativeUri }));
  if (options.imds ?? true) {
    surfaces.push(
      imdsSurface({
        credentials: credentialLookup,
        roleArn: ROLE_ARN,
        region: 'eu-west-1',
        clock,
        ...(options.imdsTokenLimit ? { tokenLimit: options.imdsTokenLimit } : {}),
        ...(options.imdsTokenBurst ? { tokenBurst: options.imdsTokenBurst } : {}),
      }),
    );
  }
  listener.mount(surfaces);
  const imdsToken = async (ttl = '21600') =>
    (await raw(port, 'PUT', '/latest/api/token', { 'x-aws-ec2-metadata-token-ttl-seconds': ttl })).body;
  return { port, clock, metrics, creds, imdsToken };
}

function json(body: string): Record<string, unknown> {
  const value: unknown = JSON.parse(body);
  assert.ok(value !== null && typeof value === 'object');
  return value as Record<string, unknown>;
}

test('container credentials: exact fields, Expiration without fraction, AccountId and RoleArn', async (t) => {
  const { port } = await serve(t);
  const res = await raw(port, 'GET', '/v1/credentials', { authorization: TOKEN });
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-type'], 'application/json');
  assert.deepEqual(json(res.body), {
    AccessKeyId: 'ASIAEXAMPLEEXAMPLE12',
    SecretAccessKey: 'secret/with+chars==',
    Token: 'IQoJb3JpZ2luX2VjSESSION',
    Expiration: '2026-01-01T01:00:00Z',
    AccountId: ACCOUNT,
    RoleArn: ROLE_ARN,
  });
  const local = await raw(port, 'GET', '/v1/credentials', { authorization: TOKEN, host: `localhost:${port}` });
  assert.equal(local.status, 200);
});

test('container credentials refuse a missing or wrong token, X-Forwarded-For and a non-loopback Host', async (t) => {
  const { port, metrics } = await serve(t);
  const cases: Array<[string, Record<string, string>, number]> = [
    ['no Authorization', {}, 401],
    ['empty Authorization', { authorization: '' }, 401],
    ['wrong token', { authorization: `${TOKEN}x` }, 403],
    ['token with a scheme', { authorization: `Bearer ${TOKEN}` }, 403],
    ['X-Forwarded-For', { authorization: TOKEN, 'x-forwarded-for': '10.0.0.1' }, 403],
    ['Forwarded', { authorization: TOKEN, forwarded: 'for=10.0.0.1' }, 403],
    ['DNS-rebinding Host', { authorization: TOKEN, host: `evil.example:${port}` }, 403],
    ['loopback Host on another port', { authorization: TOKEN, host: `127.0.0.1:${port + 1}` }, 403],
    ['link-local Host', { authorization: TOKEN, host: `169.254.170.2:${port}` }, 403],
  ];
  for (const [name, headers, status] of cases) {
    const res = await raw(port, 'GET', '/v1/credentials', headers);
    assert.equal(res.status, status, name);
    assert.equal(res.headers['content-type'], 'application/json', name);
    const body = json(res.body);
    assert.deepEqual(Object.keys(body).sort(), ['code', 'message'], name);
    assert.ok(!res.body.includes('ASIA'), name);
  }
  const post = await raw(port, 'POST', '/v1/credentials', { authorization: TOKEN });
  assert.equal(post.status, 405);
  const counted = await metrics.registry.getSingleMetric('spiffe_connector_requests_total')?.get();
  const byStatus = Object.fromEntries(
    (counted?.values ?? [])
      .filter((v) => v.labels['surface'] === 'aws-container')
      .map((v) => [v.labels['status'], v.value]),
  );
  assert.deepEqual(byStatus, { '401': 2, '403': 7, '405': 1 });
});

test('no valid credentials: 503 with Retry-After and an AWS-shaped body on both surfaces', async (t) => {
  const lookup = (): Lookup<AwsCredentials> => ({
    ok: false,
    error: new ConnectorError(
      'credentials_unavailable',
      'aws web-identity credentials expired and could not be refreshed',
    ),
    retryAfterSeconds: 7,
  });
  const { port, imdsToken } = await serve(t, { lookup });
  const container = await raw(port, 'GET', '/v1/credentials', { authorization: TOKEN });
  assert.equal(container.status, 503);
  assert.equal(container.headers['retry-after'], '7');
  assert.equal(container.headers['content-type'], 'application/json');
  assert.equal(json(container.body)['code'], 'CredentialsUnavailable');
  const token = await imdsToken();
  const imds = await raw(port, 'GET', '/latest/meta-data/iam/security-credentials/app', {
    'x-aws-ec2-metadata-token': token,
  });
  assert.equal(imds.status, 503);
  assert.equal(imds.headers['retry-after'], '7');
  assert.equal(json(imds.body)['Code'], 'CredentialsUnavailable');
  const listing = await raw(port, 'GET', '/latest/meta-data/iam/security-credentials/', {
    'x-aws-ec2-metadata-token': token,
  });
  assert.deepEqual([listing.status, listing.body], [200, 'app'], 'the role is still listed');
});

test('IMDSv2 token: TTL header required, 1-21600; the answer carries the TTL header', async (t) => {
  const { port } = await serve(t);
  for (const ttl of [undefined, '0', '21601', 'abc', '-5', '1.5', '']) {
    const res = await raw(
      port,
      'PUT',
      '/latest/api/token',
      ttl === undefined ? {} : { 'x-aws-ec2-metadata-token-ttl-seconds': ttl },
    );
    assert.equal(res.status, 400, `ttl ${ttl}`);
  }
  for (const ttl of ['1', '300', '21600']) {
    const res = await raw(port, 'PUT', '/latest/api/token', { 'x-aws-ec2-metadata-token-ttl-seconds': ttl });
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-aws-ec2-metadata-token-ttl-seconds'], ttl);
    assert.match(res.body, /^[\w-]{40,}$/);
  }
  const slash = await raw(port, 'PUT', '/latest/api/token/', { 'x-aws-ec2-metadata-token-ttl-seconds': '60' });
  assert.equal(slash.status, 200);
  const forwarded = await raw(port, 'PUT', '/latest/api/token', {
    'x-aws-ec2-metadata-token-ttl-seconds': '60',
    'x-forwarded-for': '10.0.0.1',
  });
  assert.equal(forwarded.status, 400);
  const get = await raw(port, 'GET', '/latest/api/token');
  assert.equal(get.status, 405);
  assert.equal(parseTtl(' 60 '), 60);
});

test('IMDSv2 GETs: tokenless, unknown or expired token is 401; X-Forwarded-For and a foreign Host are 403', async (t) => {
  const { port, clock, imdsToken } = await serve(t);
  const path = '/latest/meta-data/iam/security-credentials/app';
  assert.equal((await raw(port, 'GET', path)).status, 401);
  assert.equal((await raw(port, 'GET', path, { 'x-aws-ec2-metadata-token': 'made-up' })).status, 401);
  const token = await imdsToken('60');
  assert.equal(
    (await raw(port, 'GET', path, { 'x-aws-ec2-metadata-token': token, 'x-forwarded-for': '10.0.0.1' })).status,
    403,
  );
  assert.equal(
    (await raw(port, 'GET', path, { 'x-aws-ec2-metadata-token': token, host: `attacker.example:${port}` })).status,
    403,
  );
  assert.equal(
    (
      await raw(port, 'PUT', '/latest/api/token', {
        'x-aws-ec2-metadata-token-ttl-seconds': '60',
        host: `attacker.example:${port}`,
      })
    ).status,
    403,
  );
  const ok = await raw(port, 'GET', path, { 'x-aws-ec2-metadata-token': token });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers['x-aws-ec2-metadata-token-ttl-seconds'], '60');
  await clock.advance(59_000);
  assert.equal(
    (await raw(port, 'GET', path, { 'x-aws-ec2-metadata-token': token })).headers[
      'x-aws-ec2-metadata-token-ttl-seconds'
    ],
    '1',
  );
  await clock.advance(1_000);
  assert.equal((await raw(port, 'GET', path, { 'x-aws-ec2-metadata-token': token })).status, 401);
});

test('IMDSv2 keeps a bounded number of session tokens, dropping the one expiring first', async (t) => {
  const { port, imdsToken } = await serve(t, { imdsTokenLimit: 2 });
  const first = await imdsToken('100');
  const second = await imdsToken('200');
  const third = await imdsToken('300');
  const status = async (token: string) =>
    (await raw(port, 'GET', '/latest/meta-data/placement/region', { 'x-aws-ec2-metadata-token': token })).status;
  assert.deepEqual([await status(first), await status(second), await status(third)], [401, 200, 200]);
});

test('IMDS paths: role listing, role document, extended, info, placement, identity document, 404 otherwise', async (t) => {
  const { port, imdsToken } = await serve(t);
  const token = await imdsToken();
  const get = (path: string) => raw(port, 'GET', path, { 'x-aws-ec2-metadata-token': token });
  for (const path of [
    '/latest/meta-data/iam/security-credentials',
    '/latest/meta-data/iam/security-credentials/',
    '/latest/meta-data/iam/security-credentials-extended/',
  ]) {
    const res = await get(path);
    assert.deepEqual([res.status, res.body], [200, 'app'], path);
  }
  for (const path of [
    '/latest/meta-data/iam/security-credentials/app',
    '/latest/meta-data/iam/security-credentials/app/',
    '/latest/meta-data/iam/security-credentials-extended/app',
  ]) {
    const res = await get(path);
    assert.equal(res.status, 200, path);
    assert.deepEqual(json(res.body), {
      Code: 'Success',
      LastUpdated: '2026-01-01T00:00:00Z',
      Type: 'AWS-HMAC',
      AccessKeyId: 'ASIAEXAMPLEEXAMPLE12',
      SecretAccessKey: 'secret/with+chars==',
      Token: 'IQoJb3JpZ2luX2VjSESSION',
      Expiration: '2026-01-01T01:00:00Z',
      AccountId: ACCOUNT,
    });
  }
  const info = json((await get('/latest/meta-data/iam/info')).body);
  assert.equal(info['Code'], 'Success');
  assert.equal(info['InstanceProfileArn'], `arn:aws:iam::${ACCOUNT}:instance-profile/app`);
  assert.equal((await get('/latest/meta-data/placement/region')).body, 'eu-west-1');
  assert.equal((await get('/latest/meta-data/placement/availability-zone')).body, 'eu-west-1a');
  const doc = json((await get('/latest/dynamic/instance-identity/document')).body);
  assert.deepEqual([doc['region'], doc['accountId']], ['eu-west-1', ACCOUNT]);
  for (const path of [
    '/latest/meta-data/iam/security-credentials/other-role',
    '/latest/user-data',
    '/latest/meta-data/ami-id',
  ]) {
    const res = await get(path);
    assert.deepEqual([res.status, res.headers['content-type'], res.body], [404, 'text/plain', 'Not Found'], path);
  }
  assert.equal((await raw(port, 'GET', '/computeMetadata/v1/')).body, 'not found\n', 'other surfaces pass through');
});

test('with aws.imds false the IMDS paths are not mounted', async (t) => {
  const { port } = await serve(t, { imds: false });
  const put = await raw(port, 'PUT', '/latest/api/token', { 'x-aws-ec2-metadata-token-ttl-seconds': '60' });
  assert.deepEqual([put.status, put.body], [404, 'not found\n']);
  assert.equal((await raw(port, 'GET', '/v1/credentials', { authorization: TOKEN })).status, 200);
});

test('methods: each surface answers 405 naming the methods it takes in Allow; HEAD is a GET without a body', async (t) => {
  const { port, imdsToken } = await serve(t);
  const container = await raw(port, 'POST', '/v1/credentials', { authorization: TOKEN });
  assert.deepEqual([container.status, container.headers['allow']], [405, 'GET']);
  const head = await raw(port, 'HEAD', '/v1/credentials', { authorization: TOKEN });
  assert.deepEqual([head.status, head.body], [200, '']);
  const getToken = await raw(port, 'GET', '/latest/api/token');
  assert.deepEqual([getToken.status, getToken.headers['allow']], [405, 'PUT']);
  const token = await imdsToken();
  for (const method of ['POST', 'PUT', 'DELETE']) {
    const res = await raw(port, method, '/latest/meta-data/iam/security-credentials/app', {
      'x-aws-ec2-metadata-token': token,
    });
    assert.deepEqual([res.status, res.headers['allow']], [405, 'GET, HEAD'], method);
    assert.ok(!res.body.includes('ASIA'), method);
  }
  const imdsHead = await raw(port, 'HEAD', '/latest/meta-data/iam/security-credentials/app', {
    'x-aws-ec2-metadata-token': token,
  });
  assert.deepEqual([imdsHead.status, imdsHead.body], [200, '']);
});

test('session-token PUTs beyond the burst are 429 with Retry-After, and the GETs of issued tokens still work', async (t) => {
  const { port, clock, imdsToken } = await serve(t, { imdsTokenBurst: 3 });
  const tokens = [await imdsToken(), await imdsToken(), await imdsToken()];
  const over = await raw(port, 'PUT', '/latest/api/token', { 'x-aws-ec2-metadata-token-ttl-seconds': '60' });
  assert.equal(over.status, 429);
  assert.match(String(over.headers['retry-after']), /^[1-9]\d*$/);
  assert.doesNotMatch(over.body, /^[\w-]{40,}$/, 'no token in the refusal');
  for (const token of tokens) {
    const res = await raw(port, 'GET', '/latest/meta-data/placement/region', { 'x-aws-ec2-metadata-token': token });
    assert.equal(res.status, 200);
  }
  await clock.advance(Number(over.headers['retry-after']) * 1000);
  assert.equal(
    (await raw(port, 'PUT', '/latest/api/token', { 'x-aws-ec2-metadata-token-ttl-seconds': '60' })).status,
    200,
    'issued again once the bucket refilled',
  );
});

test('IMDS tree: /latest itself, trailing slashes on info and the identity document, the instance profile id', async (t) => {
  const { port, imdsToken } = await serve(t);
  const token = await imdsToken();
  const get = (path: string) => raw(port, 'GET', path, { 'x-aws-ec2-metadata-token': token });
  assert.deepEqual([(await get('/latest')).status, (await get('/latest')).body], [200, 'dynamic\nmeta-data']);
  const info = json((await get('/latest/meta-data/iam/info/')).body);
  assert.equal(info['InstanceProfileArn'], `arn:aws:iam::${ACCOUNT}:instance-profile/app`);
  // Real ids are AIPA and 17 upper-case characters; the same role gives the same id.
  assert.match(String(info['InstanceProfileId']), /^AIPA[0-9A-F]{17}$/);
  assert.equal(json((await get('/latest/meta-data/iam/info')).body)['InstanceProfileId'], info['InstanceProfileId']);
  const doc = json((await get('/latest/dynamic/instance-identity/document/')).body);
  assert.deepEqual([doc['region'], doc['accountId'], doc['availabilityZone']], ['eu-west-1', ACCOUNT, 'eu-west-1a']);
});

test('a forwarded session-token PUT is 400 with a query string too', async (t) => {
  const { port } = await serve(t);
  const res = await raw(port, 'PUT', '/latest/api/token?x=1', {
    'x-aws-ec2-metadata-token-ttl-seconds': '60',
    'x-forwarded-for': '10.0.0.1',
  });
  assert.deepEqual([res.status, res.body], [400, 'Bad Request']);
});

test('a container with a role of its own: its path answers its role on its token only; the pod path keeps the pod role', async (t) => {
  const worker = { ...credentials(new ManualClock()), accessKeyId: 'ASIAWORKERWORKER1234', roleArn: WORKER_ROLE_ARN };
  let workerLookup: Lookup<AwsCredentials> = { ok: true, value: worker, expiresAt: worker.expiration };
  const { port, creds } = await serve(t, {
    containers: [{ name: 'worker', authToken: new Secret(WORKER_TOKEN) }],
    // The real cache holds only these two keys.
    lookupKey: (key, pod) => {
      if (key === SINGLE) return pod;
      assert.equal(key, 'worker', 'only the pod and the worker have a role');
      return workerLookup;
    },
  });
  const get = (path: string, authorization: string) => raw(port, 'GET', path, { authorization });
  const own = await get('/v1/credentials/worker', WORKER_TOKEN);
  assert.equal(own.status, 200);
  assert.deepEqual([json(own.body)['AccessKeyId'], json(own.body)['RoleArn']], [worker.accessKeyId, WORKER_ROLE_ARN]);
  const pod = await get('/v1/credentials', TOKEN);
  assert.deepEqual([json(pod.body)['AccessKeyId'], json(pod.body)['RoleArn']], [creds.accessKeyId, ROLE_ARN]);
  for (const [path, token] of [
    ['/v1/credentials/worker', TOKEN],
    ['/v1/credentials', WORKER_TOKEN],
  ] as const) {
    const refused = await get(path, token);
    assert.equal(refused.status, 403, `${path} with the other token`);
    assert.equal(json(refused.body)['code'], 'AccessDenied');
    assert.ok(!refused.body.includes('ASIA'));
  }
  const post = await raw(port, 'POST', '/v1/credentials/worker', { authorization: WORKER_TOKEN });
  assert.deepEqual([post.status, post.headers['allow']], [405, 'GET']);
  // A container that is not configured has no path of its own: the listener's 404, no credentials.
  const other = await get('/v1/credentials/other', WORKER_TOKEN);
  assert.equal(other.status, 404);
  assert.ok(!other.body.includes('ASIA'));

  workerLookup = {
    ok: false,
    error: new ConnectorError('credentials_unavailable', 'aws: container worker has no credentials yet'),
    retryAfterSeconds: 3,
  };
  const unavailable = await get('/v1/credentials/worker', WORKER_TOKEN);
  assert.deepEqual([unavailable.status, unavailable.headers['retry-after']], [503, '3']);
  assert.equal((await get('/v1/credentials', TOKEN)).status, 200, 'the pod role is still served');
});

test('the link-local relative URI: its per-pod path is the secret, no token is needed, any other path under it is 404', async (t) => {
  let lookup: Lookup<AwsCredentials> | undefined;
  const { port } = await serve(t, {
    relativeUri: RELATIVE_URI,
    lookupKey: (key, pod) => {
      assert.equal(key, SINGLE, "the pod's role");
      return lookup ?? pod;
    },
  });
  const fullUri = await raw(port, 'GET', '/v1/credentials', { authorization: TOKEN });
  const served = await raw(port, 'GET', RELATIVE_URI);
  assert.equal(served.status, 200);
  assert.equal(served.headers['content-type'], 'application/json');
  assert.equal(served.body, fullUri.body, 'the same body as the full-URI endpoint');
  const withToken = await raw(port, 'GET', RELATIVE_URI, { authorization: 'anything at all' });
  assert.equal(withToken.status, 200, 'a token some SDKs send is not checked');
  for (const path of [
    `${RELATIVE_URI}x`,
    RELATIVE_URI.slice(0, -1),
    `${RELATIVE_URI}/`,
    '/v2/credentials/',
    '/v2/credentials/x',
  ]) {
    const res = await raw(port, 'GET', path);
    assert.equal(res.status, 404, path);
    assert.equal(json(res.body)['code'], 'NotFound', path);
    assert.ok(!res.body.includes('ASIA'), path);
  }
  const post = await raw(port, 'POST', RELATIVE_URI);
  assert.deepEqual([post.status, post.headers['allow']], [405, 'GET']);
  assert.ok(!post.body.includes('ASIA'));
  // The listener's refusals come in this surface's shape too.
  const forwarded = await raw(port, 'GET', RELATIVE_URI, { 'x-forwarded-for': '10.0.0.1' });
  assert.equal(forwarded.status, 403);
  assert.deepEqual(Object.keys(json(forwarded.body)).sort(), ['code', 'message']);
  assert.ok(!forwarded.body.includes('ASIA'));
  const head = await raw(port, 'HEAD', RELATIVE_URI);
  assert.deepEqual([head.status, head.body], [200, '']);
  lookup = {
    ok: false,
    error: new ConnectorError('credentials_unavailable', 'aws web-identity credentials expired'),
    retryAfterSeconds: 5,
  };
  const unavailable = await raw(port, 'GET', RELATIVE_URI);
  assert.deepEqual([unavailable.status, unavailable.headers['retry-after']], [503, '5']);
  assert.equal(json(unavailable.body)['code'], 'CredentialsUnavailable');
});
