// The one request pipeline in front of every surface: whatever no surface may answer (a foreign Host or
// request target, a forwarded request, a repeated Host or Authorization header, a request while draining)
// is refused in that surface's own cloud's shape, before the surface sees it, and counted.

import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { type TestContext, test } from 'node:test';
import { ManualClock } from '../../src/base/clock.ts';
import { Secret } from '../../src/base/secret.ts';
import { silentLogger } from '../../src/ops/logger.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { containerSurface, imdsSurface } from '../../src/providers/aws/endpoints.ts';
import type { AzureAccessToken } from '../../src/providers/azure/credential.ts';
import { azureSurfaces } from '../../src/providers/azure/endpoints.ts';
import type { Surface, SurfaceName } from '../../src/providers/contract.ts';
import type { GcpToken } from '../../src/providers/gcp/credential.ts';
import { metadataSurface } from '../../src/providers/gcp/endpoints.ts';
import { awsCredentials, fixedLookup, ROLE_ARN } from '../helpers/credentials.ts';
import { type RawResponse, raw, rawSocket, testListener } from '../helpers/http.ts';

const AWS_TOKEN = 'container-token-0123456789abcdefghijklmnopqrstuv';
const IDENTITY_HEADER = 'identity-header-0123456789abcdefghijklmnop';

/** An Azure token for storage, valid for an hour from `now`. */
function azureTokens(now: number) {
  const expires = new Date(now + 3_600_000);
  return fixedLookup<AzureAccessToken>(
    {
      accessToken: new Secret('eyJ.azure'),
      resource: 'https://storage.azure.com',
      obtainedAt: new Date(now),
      expiresAt: expires,
    },
    expires,
  );
}

/** Every surface of the three clouds on one listener, answering from fixed credentials. */
async function everySurface(t: TestContext) {
  const clock = new ManualClock(Date.now());
  const metrics = new Metrics();
  const expires = new Date(clock.now() + 3_600_000);
  const aws = awsCredentials(clock.now());
  const awsLookup = fixedLookup(aws, aws.expiration);
  const gcp = fixedLookup<GcpToken>({ token: new Secret('ya29.token'), expiresAt: expires }, expires);
  const azure = azureTokens(clock.now());
  const listener = await testListener(t, { metrics });
  listener.mount([
    containerSurface({ credentials: awsLookup, authToken: new Secret(AWS_TOKEN) }),
    imdsSurface({ credentials: awsLookup, roleArn: ROLE_ARN, region: 'eu-west-1', clock }),
    metadataSurface({
      facts: {
        projectId: 'p',
        numericProjectId: '1',
        zone: 'projects/1/zones/z',
        instanceId: '1',
        name: 'h',
        hostname: 'h',
        universeDomain: 'googleapis.com',
        email: 'sa@p.iam.gserviceaccount.com',
        scopes: ['s'],
      },
      accessTokens: gcp,
      defaultScopes: ['s'],
      idTokens: undefined,
      clock,
      noIdentityText: 'none\n',
    }),
    ...azureSurfaces({
      tokens: azure,
      served: { clientId: 'client' },
      identityHeader: new Secret(IDENTITY_HEADER),
      clock,
      logger: silentLogger(),
    }),
  ]);
  return { listener, metrics, port: listener.port };
}

interface Case {
  readonly surface: SurfaceName;
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  /** How the surface's own answers look. */
  readonly shape: (r: RawResponse) => void;
}

const json = (r: RawResponse): Record<string, unknown> => JSON.parse(r.body) as Record<string, unknown>;

const CASES: readonly Case[] = [
  {
    surface: 'aws-container',
    method: 'GET',
    path: '/v1/credentials',
    headers: { authorization: AWS_TOKEN },
    shape: (r) => {
      assert.equal(r.headers['content-type'], 'application/json');
      assert.equal(typeof json(r)['code'], 'string');
      assert.equal(typeof json(r)['message'], 'string');
    },
  },
  {
    surface: 'aws-imds',
    method: 'GET',
    path: '/latest/meta-data/iam/security-credentials/app',
    headers: {},
    shape: (r) => assert.equal(r.headers['content-type'], 'text/plain'),
  },
  {
    surface: 'gcp-metadata',
    method: 'GET',
    path: '/computeMetadata/v1/instance/service-accounts/default/token',
    headers: { 'Metadata-Flavor': 'Google' },
    shape: (r) => {
      assert.equal(r.headers['metadata-flavor'], 'Google');
      assert.equal(r.headers['server'], 'Metadata Server for VM');
    },
  },
  {
    surface: 'azure-appservice',
    method: 'GET',
    path: '/msi/token?api-version=2019-08-01&resource=https://storage.azure.com',
    headers: { 'X-IDENTITY-HEADER': IDENTITY_HEADER },
    shape: (r) => {
      assert.match(String(r.headers['content-type']), /^application\/json/);
      assert.equal(json(r)['statusCode'], r.status);
      assert.equal(typeof json(r)['correlationId'], 'string');
    },
  },
  {
    surface: 'azure-imds',
    method: 'GET',
    path: '/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://storage.azure.com',
    headers: { Metadata: 'true' },
    shape: (r) => {
      assert.match(String(r.headers['content-type']), /^application\/json/);
      assert.equal(typeof json(r)['error'], 'string');
      assert.equal(typeof json(r)['error_description'], 'string');
    },
  },
];

function requestText(port: number, c: Case, extra: string[] = [], target = c.path, host = `127.0.0.1:${port}`): string {
  const lines = [
    `${c.method} ${target} HTTP/1.1`,
    `Host: ${host}`,
    ...Object.entries(c.headers).map(([k, v]) => `${k}: ${v}`),
    ...extra,
    'Connection: close',
    '',
    '',
  ];
  return lines.join('\r\n');
}

test('each surface serves its credential through the pipeline (the cases below are otherwise valid requests)', async (t) => {
  const { port } = await everySurface(t);
  for (const c of CASES) {
    if (c.surface === 'aws-imds') continue; // needs a session token first, covered by the AWS tests
    const r = await rawSocket(port, requestText(port, c));
    assert.equal(r.status, 200, c.surface);
  }
});

test('a foreign Host, a rebinding name and an absolute-form target are refused by every surface, in its own shape', async (t) => {
  const { port } = await everySurface(t);
  for (const c of CASES) {
    for (const host of [
      'evil.example',
      `127.0.0.1.attacker.example:${port}`,
      `localhost.evil:${port}`,
      `127.0.0.1:${port + 1}`,
    ]) {
      const r = await rawSocket(port, requestText(port, c, [], c.path, host));
      assert.ok(r.status === 403 || r.status === 400, `${c.surface} ${host}: ${r.status}`);
      c.shape(r);
    }
    const absolute = await rawSocket(port, requestText(port, c, [], `http://evil.example${c.path}`));
    assert.ok(absolute.status === 403 || absolute.status === 400, `${c.surface} absolute target: ${absolute.status}`);
    c.shape(absolute);
  }
});

test('a forwarded request and a repeated Host or Authorization header are refused by every surface, in its own shape', async (t) => {
  const { port } = await everySurface(t);
  for (const c of CASES) {
    for (const extra of [
      ['X-Forwarded-For: 10.0.0.1'],
      ['Forwarded: for=10.0.0.1'],
      [`Host: evil.example`],
      ['Authorization: a', 'Authorization: b'],
    ]) {
      const r = await rawSocket(port, requestText(port, c, extra));
      assert.ok(r.status === 403 || r.status === 400, `${c.surface} ${extra.join(', ')}: ${r.status}`);
      c.shape(r);
    }
  }
});

test('while draining every surface answers 503 with Retry-After and Connection: close, in its own shape', async (t) => {
  const { port, listener, metrics } = await everySurface(t);
  listener.drain();
  for (const c of CASES) {
    const r = await raw(port, c.method, c.path, c.headers);
    assert.equal(r.status, 503, c.surface);
    assert.ok(Number(r.headers['retry-after']) >= 1, `${c.surface} Retry-After`);
    assert.equal(r.headers['connection'], 'close', c.surface);
    c.shape(r);
  }
  const text = await metrics.text();
  for (const c of CASES)
    assert.match(
      text,
      new RegExp(`spiffe_connector_requests_total\\{surface="${c.surface}",status="503"\\} 1`),
      c.surface,
    );
});

test('paths no surface claims get a plain 404, the same from every cloud', async (t) => {
  const { port } = await everySurface(t);
  const r = await raw(port, 'GET', '/nothing/here');
  assert.deepEqual([r.status, r.body], [404, 'not found\n']);
});

test('draining says Connection: close itself, even to a client that keeps connections alive', async (t) => {
  const { port, listener } = await everySurface(t);
  listener.drain();
  const agent = new Agent({ keepAlive: true });
  t.after(() => agent.destroy());
  const r = await new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: '/computeMetadata/v1/', headers: { 'Metadata-Flavor': 'Google' }, agent },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }));
      },
    );
    req.on('error', reject);
    req.end();
  });
  assert.deepEqual(r, { status: 503, connection: 'close' });
});

test('a header that only looks like Host (same length, another name) is no repeated Host', async (t) => {
  const { port } = await everySurface(t);
  const c = CASES.find((x) => x.surface === 'gcp-metadata') as Case;
  const r = await rawSocket(port, requestText(port, c, ['Hxst: evil.example', 'Authorizatiom: x']));
  assert.equal(r.status, 200);
});

test('a surface whose handler fails answers 503 in its own shape; one that fails after its headers is cut off', async (t) => {
  const metrics = new Metrics();
  const listener = await testListener(t, { metrics });
  const failing = (path: string, afterHeaders: boolean): Surface => ({
    name: 'gcp-metadata',
    claims: (p) => p === path,
    problem: (problem) => ({
      status: problem.kind === 'unavailable' ? 503 : 400,
      headers: { 'x-shape': 'mine', 'retry-after': '1' },
      body: 'mine\n',
    }),
    handle: async (_req, res) => {
      if (afterHeaders) res.writeHead(200, { 'content-length': '100' }).write('partial');
      throw new Error('the handler broke');
    },
  });
  listener.mount([failing('/before', false), failing('/after', true)]);
  const before = await raw(listener.port, 'GET', '/before');
  assert.deepEqual([before.status, before.headers['x-shape'], before.body], [503, 'mine', 'mine\n']);
  const cut = await new Promise<string>((resolve) => {
    const req = request({ host: '127.0.0.1', port: listener.port, path: '/after', agent: false }, (res) => {
      res.on('data', () => {});
      res.on('aborted', () => resolve('aborted'));
      res.on('error', () => resolve('aborted'));
      res.on('end', () => resolve('ended'));
    });
    req.on('error', () => resolve('aborted'));
    req.setTimeout(10_000, () => resolve('hung'));
    req.end();
  });
  assert.equal(cut, 'aborted', 'a half-written answer is cut off, not left hanging');
});

test('every request the listener receives is reported to onRequest, the ones no surface claims included', async (t) => {
  let seen = 0;
  const listener = await testListener(t, { onRequest: () => seen++ });
  listener.mount([]);
  for (const path of ['/latest/meta-data/', '/none', '/v1/credentials']) {
    const r = await raw(listener.port, 'GET', path);
    assert.equal(r.status, 404);
  }
  assert.equal(seen, 3);
});

test('a refusal other than draining keeps the connection open: a client that sent a wrong Host can go on', async (t) => {
  const { port } = await everySurface(t);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const send = (host: string) =>
    new Promise<{ status: number; connection: string | undefined; socket: unknown }>((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port, path: '/v1/credentials', headers: { host, authorization: AWS_TOKEN }, agent },
        (res) => {
          res.resume();
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, socket: req.socket }),
          );
        },
      );
      req.on('error', reject);
      req.end();
    });
  const refused = await send('metadata.attacker.example');
  assert.equal(refused.status, 403);
  assert.notEqual(refused.connection, 'close', 'only a draining sidecar closes the connection');
  const next = await send(`127.0.0.1:${port}`);
  assert.equal(next.status, 200);
  assert.equal(next.socket, refused.socket, 'the same connection answered the next request');
  // An answer a surface writes at once (no token: 401) leaves the connection as open as one it awaits.
  const unauthorized = await new Promise<{ status: number; socket: unknown }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/v1/credentials', agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, socket: req.socket }));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(unauthorized.status, 401);
  const after = await send(`127.0.0.1:${port}`);
  assert.equal(after.status, 200);
  assert.equal(after.socket, unauthorized.socket, 'the connection outlived an answer written at once');
});

test('a handler that fails on an Azure surface answers that the service is temporarily unavailable, as Azure does', async (t) => {
  const tokens = azureTokens(Date.now());
  const listener = await testListener(t);
  const surfaces = azureSurfaces({
    tokens,
    served: { clientId: 'client' },
    identityHeader: new Secret(IDENTITY_HEADER),
    clock: new ManualClock(Date.now()),
    logger: silentLogger(),
  });
  listener.mount(
    surfaces.map((s) => ({
      ...s,
      claims: (p: string) => s.claims(p),
      problem: (problem: Parameters<typeof s.problem>[0], req: Parameters<typeof s.problem>[1]) =>
        s.problem(problem, req),
      handle: async () => {
        throw new Error('a bug in the handler');
      },
    })),
  );
  const imds = CASES.find((c) => c.surface === 'azure-imds') as Case;
  const r = await raw(listener.port, 'GET', imds.path, imds.headers);
  assert.equal(r.status, 503);
  imds.shape(r);
  assert.equal(json(r)['error'], 'temporarily_unavailable', 'a client retries this one; invalid_client it would not');
});
