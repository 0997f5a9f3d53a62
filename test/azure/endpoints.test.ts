// The emulated surfaces over raw HTTP: every refusal real endpoints give (and only those), the exact bodies,
// the probe, 404 for the rest of IMDS, and the identity header that `env` and the sidecar share.

import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import { type Clock, ManualClock, systemClock } from '../../src/base/clock.ts';
import { cloudEnvironment } from '../../src/env.ts';
import { createLogger } from '../../src/ops/logger.ts';
import { raw } from '../helpers/http.ts';
import { until } from '../helpers/until.ts';
import {
  azureConfig,
  CLIENT_ID,
  exchangesSettled,
  OBJECT_ID,
  type RunningAzure,
  runAzure,
  SPIFFE_ID,
  startWorld,
} from './fixtures.ts';

const STORAGE = 'https://storage.azure.com';
const IMDS = '/metadata/identity/oauth2/token';
const RESOURCE_ID =
  '/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

/** A raw request, so Host and other headers are exactly what the test says. */
function send(
  run: RunningAzure,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port: run.port, method, path, headers: { host: `127.0.0.1:${run.port}`, ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const imds = (
  run: RunningAzure,
  query: string,
  headers: Record<string, string> = { Metadata: 'true' },
): Promise<Reply> => send(run, 'GET', `${IMDS}?${query}`, headers);
const appService = (
  run: RunningAzure,
  query: string,
  headers: Record<string, string> = { 'X-IDENTITY-HEADER': run.env['IDENTITY_HEADER'] ?? '' },
): Promise<Reply> => send(run, 'GET', `/msi/token?${query}`, headers);

test('the IMDS probe (no Metadata header, with or without a query) gets the 400 JSON at once, and Entra is not called', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  const expected = { error: 'invalid_request', error_description: 'Required metadata header not specified' };
  for (const query of ['', 'api-version=2018-02-01&resource=https://storage.azure.com']) {
    const reply = await send(run, 'GET', query ? `${IMDS}?${query}` : IMDS, { Accept: 'application/json' });
    assert.equal(reply.status, 400);
    assert.deepEqual(reply.body, expected);
  }
  assert.equal((await imds(run, `api-version=2018-02-01&resource=${STORAGE}`, { Metadata: 'false' })).status, 400);
  assert.equal(world.entra.counters.token, 0);
});

test('IMDS: the full body with every number a string; /metadata is case-insensitive; resource echoed with its trailing slash', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  const reply = await send(run, 'GET', `/Metadata/identity/oauth2/token?api-version=2018-02-01&resource=${STORAGE}`, {
    Metadata: 'true',
  });
  assert.equal(reply.status, 200);
  assert.deepEqual(Object.keys(reply.body).sort(), [
    'access_token',
    'client_id',
    'expires_in',
    'expires_on',
    'ext_expires_in',
    'not_before',
    'refresh_token',
    'resource',
    'token_type',
  ]);
  for (const [k, v] of Object.entries(reply.body)) assert.equal(typeof v, 'string', k);
  assert.equal(reply.body['resource'], STORAGE);
  assert.equal(reply.body['client_id'], CLIENT_ID);
  assert.equal(reply.body['token_type'], 'Bearer');
  assert.equal(reply.body['refresh_token'], '');
  assert.match(String(reply.body['expires_on']), /^\d{10}$/);
  assert.ok(Number(reply.body['expires_in']) > 3500);
  assert.equal(reply.headers['cache-control'], 'no-store');
  await world.entra.verifyAccessToken(String(reply.body['access_token']), STORAGE);

  // A resource with a trailing slash becomes the scope "<resource>//.default" and keeps its slash in aud.
  const arm = 'https://management.core.windows.net/';
  const slashed = await imds(run, `api-version=2018-02-01&resource=${encodeURIComponent(arm)}`);
  assert.equal(slashed.status, 200);
  assert.equal(slashed.body['resource'], arm);
  await world.entra.verifyAccessToken(String(slashed.body['access_token']), arm);
  assert.ok(world.entra.seen.some((s) => s.scope === 'https://management.core.windows.net//.default'));
});

test('IMDS refusals: missing resource or api-version, repeated or conflicting parameters, unknown identity', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world, { azure: { objectId: OBJECT_ID, resourceId: RESOURCE_ID } });
  const cases: Array<[string, string]> = [
    ['api-version=2018-02-01', 'invalid_resource'],
    ['api-version=2018-02-01&resource=', 'invalid_resource'],
    [`resource=${STORAGE}`, 'invalid_request'],
    [`api-version=2018-02-01&resource=${STORAGE}&resource=${STORAGE}`, 'invalid_request'],
    [`api-version=2018-02-01&resource=${STORAGE}/.default`, 'invalid_resource'],
    [`api-version=2018-02-01&resource=${STORAGE}&client_id=${CLIENT_ID}&object_id=${OBJECT_ID}`, 'invalid_request'],
    [`api-version=2018-02-01&resource=${STORAGE}&client_id=00000000-0000-0000-0000-000000000001`, 'invalid_request'],
    [
      `api-version=2018-02-01&resource=${STORAGE}&msi_res_id=/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/other`,
      'invalid_request',
    ],
  ];
  for (const [query, error] of cases) {
    const reply = await imds(run, query);
    assert.equal(reply.status, 400, query);
    assert.equal(reply.body['error'], error, query);
    assert.equal(typeof reply.body['error_description'], 'string');
  }
  assert.match(
    String(
      (await imds(run, `api-version=2018-02-01&resource=${STORAGE}&client_id=00000000-0000-0000-0000-000000000001`))
        .body['error_description'],
    ),
    /Identity not found/,
  );
  // Our identity by any of its names is the default identity; msi_res_id (IMDS) and mi_res_id (others) both work.
  for (const selector of [
    `client_id=${CLIENT_ID.toUpperCase()}`,
    `object_id=${OBJECT_ID}`,
    `principal_id=${OBJECT_ID}`,
    `msi_res_id=${RESOURCE_ID}`,
    `mi_res_id=${RESOURCE_ID}`,
  ]) {
    assert.equal((await imds(run, `api-version=2018-02-01&resource=${STORAGE}&${selector}`)).status, 200, selector);
  }
  assert.equal(world.entra.counters.token, 1);
});

test('App Service: header required and compared, api-version 2019-08-01, resource required, the App Service body', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  const q = `api-version=2019-08-01&resource=${STORAGE}`;
  const missing = await appService(run, q, {});
  assert.equal(missing.status, 401);
  assert.deepEqual(Object.keys(missing.body).sort(), ['correlationId', 'message', 'statusCode']);
  assert.equal((await appService(run, q, { 'X-IDENTITY-HEADER': 'not-the-secret-at-all' })).status, 401);
  assert.equal((await appService(run, q, { 'X-IDENTITY-HEADER': `${run.env['IDENTITY_HEADER']}x` })).status, 401);
  assert.equal((await appService(run, 'api-version=2019-08-01')).status, 400);
  assert.equal((await appService(run, `resource=${STORAGE}`)).status, 400);
  assert.equal((await appService(run, `api-version=2017-09-01&resource=${STORAGE}`)).status, 400);
  const unknown = await appService(run, `${q}&client_id=00000000-0000-0000-0000-000000000001`);
  assert.equal(unknown.status, 400);
  assert.match(String(unknown.body['message']), /Identity not found/);
  assert.equal(world.entra.counters.token, 0);

  const ok = await appService(run, `${q}&client_id=${CLIENT_ID}`);
  assert.equal(ok.status, 200);
  assert.deepEqual(Object.keys(ok.body).sort(), ['access_token', 'client_id', 'expires_on', 'resource', 'token_type']);
  assert.match(String(ok.body['expires_on']), /^\d{10}$/);
  assert.equal(ok.body['resource'], STORAGE);
  assert.equal(
    (await send(run, 'POST', `/msi/token?${q}`, { 'X-IDENTITY-HEADER': run.env['IDENTITY_HEADER'] ?? '' })).status,
    405,
  );
});

test('MSI_ENDPOINT: form POST with Metadata: true; refusals as IMDS', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  const form = { 'Content-Type': 'application/x-www-form-urlencoded' };
  const ok = await send(
    run,
    'POST',
    '/msi/legacy',
    { ...form, Metadata: 'true' },
    `resource=${encodeURIComponent(STORAGE)}`,
  );
  assert.equal(ok.status, 200);
  assert.equal(ok.body['resource'], STORAGE);
  assert.equal(typeof ok.body['expires_on'], 'string');
  assert.equal(
    (await send(run, 'POST', '/msi/legacy', form, `resource=${STORAGE}`)).body['error_description'],
    'Required metadata header not specified',
  );
  assert.equal((await send(run, 'POST', '/msi/legacy', { ...form, Metadata: 'true' }, '')).status, 400);
  assert.equal(
    (
      await send(
        run,
        'POST',
        '/msi/legacy',
        { ...form, Metadata: 'true' },
        `resource=${STORAGE}&client_id=00000000-0000-0000-0000-000000000001`,
      )
    ).status,
    400,
  );
  assert.equal((await send(run, 'GET', `/msi/legacy?resource=${STORAGE}`, { Metadata: 'true' })).status, 405);
});

test('the rest of /metadata and /msi is 404 JSON (so IMDSv2 probes fall back), never a proxy', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  for (const [method, path] of [
    ['GET', '/metadata/instance?api-version=2021-02-01'],
    ['POST', '/metadata/identity/credential?cred-api-version=1.0'],
    ['GET', '/METADATA/scheduledevents'],
    ['GET', '/msi/other'],
  ] as const) {
    const reply = await send(run, method, path, { Metadata: 'true' });
    assert.equal(reply.status, 404, path);
    assert.equal(reply.body['error'], 'not_found');
    assert.equal(reply.headers['server'], undefined);
  }
});

test('loopback Host only, forwarded requests refused, 503 + Retry-After while draining', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  const q = `api-version=2018-02-01&resource=${STORAGE}`;
  assert.equal((await imds(run, q, { Metadata: 'true', host: `evil.example:${run.port}` })).status, 400);
  assert.equal((await imds(run, q, { Metadata: 'true', host: '127.0.0.1:1' })).status, 400);
  assert.equal((await imds(run, q, { Metadata: 'true', 'X-Forwarded-For': '10.0.0.1' })).status, 400);
  assert.equal(
    (
      await appService(run, `api-version=2019-08-01&resource=${STORAGE}`, {
        'X-IDENTITY-HEADER': run.env['IDENTITY_HEADER'] ?? '',
        Forwarded: 'for=10.0.0.1',
      })
    ).status,
    400,
  );
  assert.equal((await imds(run, q, { Metadata: 'true', host: `localhost:${run.port}` })).status, 200);
  run.listener.drain();
  const draining = await imds(run, q);
  assert.equal(draining.status, 503);
  assert.equal(draining.headers['retry-after'], '5');
});

test('the identity header: created once (0600) in the state dir, the same for `env` and the sidecar; azure.identityHeader wins', async (t) => {
  const world = await startWorld(t);
  const config = azureConfig(world);
  const first = Object.fromEntries(cloudEnvironment('azure', config, 'http://127.0.0.1:8181'));
  const second = Object.fromEntries(cloudEnvironment('azure', config, 'http://127.0.0.1:8181'));
  const file = join(world.dir, 'azure-identity-header');
  assert.equal(first['IDENTITY_HEADER'], second['IDENTITY_HEADER']);
  assert.equal(first['IDENTITY_HEADER'], await readFile(file, 'utf8'));
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.ok((first['IDENTITY_HEADER'] ?? '').length >= 32);

  const run = await runAzure(t, world);
  assert.equal(run.env['IDENTITY_HEADER'], first['IDENTITY_HEADER']);
  assert.equal(
    (
      await appService(run, `api-version=2019-08-01&resource=${STORAGE}`, {
        'X-IDENTITY-HEADER': first['IDENTITY_HEADER'] ?? '',
      })
    ).status,
    200,
  );

  const configured = Object.fromEntries(
    cloudEnvironment(
      'azure',
      azureConfig(world, { identityHeader: 'set-by-the-webhook-0123456789' }),
      'http://127.0.0.1:8181',
    ),
  );
  assert.equal(configured['IDENTITY_HEADER'], 'set-by-the-webhook-0123456789');
});

test('azure.imds and azure.msi off: those paths are not served (and not in env), App Service still is', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world, { azure: { imds: false, msi: false } });
  assert.equal(run.env['AZURE_POD_IDENTITY_AUTHORITY_HOST'], undefined);
  assert.equal(run.env['MSI_ENDPOINT'], undefined);
  const q = `api-version=2019-08-01&resource=${encodeURIComponent(STORAGE)}`;
  assert.equal((await appService(run, q)).status, 200);
  const imdsReply = await raw(
    run.port,
    'GET',
    `${IMDS}?api-version=2018-02-01&resource=${encodeURIComponent(STORAGE)}`,
    { Metadata: 'true' },
  );
  assert.deepEqual([imdsReply.status, imdsReply.body], [404, 'not found\n']);
  const msi = await raw(run.port, 'POST', '/msi/legacy', { 'content-type': 'application/x-www-form-urlencoded' });
  assert.deepEqual([msi.status, msi.body], [404, 'not found\n']);
});

test('azure.allowedResources: another resource is a 400 invalid_resource at once, and Entra is not called', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world, { azure: { allowedResources: [STORAGE] } });
  const before = world.entra.counters.token;
  const other = await imds(run, `api-version=2018-02-01&resource=${encodeURIComponent('https://vault.azure.net')}`);
  assert.equal(other.status, 400);
  assert.equal(other.body['error'], 'invalid_resource');
  const allowed = await imds(run, `api-version=2018-02-01&resource=${encodeURIComponent(STORAGE)}`);
  assert.equal(allowed.status, 200);
  assert.equal(world.entra.counters.token, before + 1, 'only the allowed resource reached Entra');
});

test('methods: 405 with Allow (GET for App Service and IMDS, POST for MSI_ENDPOINT) in each surface’s shape; HEAD as GET', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  const identity = { 'X-IDENTITY-HEADER': run.env['IDENTITY_HEADER'] ?? '' };
  const imdsPost = await send(run, 'POST', `${IMDS}?api-version=2018-02-01&resource=${STORAGE}`, { Metadata: 'true' });
  assert.deepEqual(
    [imdsPost.status, imdsPost.headers['allow'], imdsPost.body['error']],
    [405, 'GET', 'method_not_allowed'],
  );
  const appPost = await send(run, 'POST', `/msi/token?api-version=2019-08-01&resource=${STORAGE}`, identity);
  assert.deepEqual([appPost.status, appPost.headers['allow'], appPost.body['statusCode']], [405, 'GET', 405]);
  assert.match(String(appPost.body['message']), /^method_not_allowed: /);
  const msiGet = await send(run, 'GET', `/msi/legacy?resource=${STORAGE}`, { Metadata: 'true' });
  assert.deepEqual([msiGet.status, msiGet.headers['allow'], msiGet.body['error']], [405, 'POST', 'method_not_allowed']);

  const imdsHead = await send(run, 'HEAD', `${IMDS}?api-version=2018-02-01&resource=${STORAGE}`, { Metadata: 'true' });
  assert.equal(imdsHead.status, 200);
  assert.equal(imdsHead.headers['cache-control'], 'no-store');
  const appHead = await send(run, 'HEAD', `/msi/token?api-version=2019-08-01&resource=${STORAGE}`, identity);
  assert.equal(appHead.status, 200);
  assert.equal(appHead.headers['cache-control'], 'no-store');
});

test('paths: /metadata and /msi themselves are 404 JSON, other paths are not ours; a trailing slash is the same path', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  for (const path of ['/metadata', '/msi']) {
    const reply = await send(run, 'GET', path, { Metadata: 'true' });
    assert.deepEqual([reply.status, reply.body['error']], [404, 'not_found'], path);
  }
  for (const path of ['/', '/msi-other', '/metadataX', '/latest/meta-data/']) {
    const reply = await raw(run.port, 'GET', path, { Metadata: 'true' });
    assert.deepEqual([reply.status, reply.body], [404, 'not found\n'], path);
  }
  const q = `api-version=2018-02-01&resource=${STORAGE}`;
  assert.equal((await send(run, 'GET', `${IMDS}/?${q}`, { Metadata: 'true' })).status, 200);
  const app = await send(run, 'GET', `/msi/token/?api-version=2019-08-01&resource=${STORAGE}`, {
    'X-IDENTITY-HEADER': run.env['IDENTITY_HEADER'] ?? '',
  });
  assert.deepEqual(Object.keys(app.body).sort(), ['access_token', 'client_id', 'expires_on', 'resource', 'token_type']);
  const form = { 'Content-Type': 'application/x-www-form-urlencoded', Metadata: 'true' };
  const msi = await send(run, 'POST', '/msi/legacy/', form, `resource=${encodeURIComponent(STORAGE)}`);
  assert.deepEqual([msi.status, msi.body['resource']], [200, STORAGE]);
});

test('MSI_ENDPOINT: a form body it cannot read (over 16 kB, too many fields) is a 400 JSON error, and Entra is not called', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  const form = { 'Content-Type': 'application/x-www-form-urlencoded', Metadata: 'true' };
  const large = `resource=${encodeURIComponent(STORAGE)}&pad=${'a'.repeat(17 * 1024)}`;
  const many = `resource=${encodeURIComponent(STORAGE)}${Array.from({ length: 40 }, (_, i) => `&f${i}=1`).join('')}`;
  for (const body of [large, many]) {
    const reply = await send(run, 'POST', '/msi/legacy', form, body);
    assert.equal(reply.status, 400);
    assert.deepEqual(reply.body, {
      error: 'invalid_request',
      error_description: 'The request body could not be read as a form',
    });
  }
  assert.equal(world.entra.counters.token, 0);
});

test('a held token: IMDS and MSI_ENDPOINT count expires_in down with the clock; after a refresh every surface serves the new token', async (t) => {
  const world = await startWorld(t);
  let offsetMs = 0;
  const clock: Clock = { ...systemClock, now: () => systemClock.now() + offsetMs };
  const run = await runAzure(t, world, { clock });
  const form = { 'Content-Type': 'application/x-www-form-urlencoded', Metadata: 'true' };
  const surfaces = {
    imds: () => imds(run, `api-version=2018-02-01&resource=${STORAGE}`),
    msi: () => send(run, 'POST', '/msi/legacy', form, `resource=${encodeURIComponent(STORAGE)}`),
    appService: () => appService(run, `api-version=2019-08-01&resource=${STORAGE}`),
  };
  const before: Record<string, Reply> = {};
  for (const [name, ask] of Object.entries(surfaces)) before[name] = await ask();

  offsetMs = 120_000;
  for (const name of ['imds', 'msi'] as const) {
    const later = await surfaces[name]();
    const elapsed = Number(before[name]?.body['expires_in']) - Number(later.body['expires_in']);
    // Two minutes of the clock, plus at most a few seconds of real time between the requests.
    assert.ok(elapsed >= 120 && elapsed <= 125, `${name}: expires_in went down by ${elapsed} s`);
    assert.equal(later.body['access_token'], before[name]?.body['access_token']);
  }
  assert.equal(world.entra.counters.token, 1);

  world.jwt.rotate(SPIFFE_ID);
  await until(
    async () => (await exchangesSettled(run, 'success')) === 2,
    "(await exchangesSettled(run, 'success')) === 2",
  );
  for (const [name, ask] of Object.entries(surfaces)) {
    const after = await ask();
    assert.equal(after.status, 200, name);
    assert.notEqual(after.body['access_token'], before[name]?.body['access_token'], name);
    await world.entra.verifyAccessToken(String(after.body['access_token']), STORAGE);
  }
});

test('no token to serve: logged at warn when upstream failed, at debug when the caller asked for a refused resource', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level: 'debug',
    destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  });
  const world = await startWorld(t, { federate: false });
  const run = await runAzure(t, world, { logger, azure: { allowedResources: [STORAGE] } });
  const noToken = () => lines.filter((l) => l['msg'] === 'no Azure token to serve');

  assert.equal((await imds(run, `api-version=2018-02-01&resource=${encodeURIComponent(STORAGE)}`)).status, 503);
  const upstream = noToken();
  assert.equal(upstream.length, 1);
  assert.equal(upstream[0]?.['level'], 'warn');
  assert.equal(upstream[0]?.['surface'], 'azure-imds');
  assert.equal(upstream[0]?.['cloud'], 'azure');
  assert.equal(typeof upstream[0]?.['err'], 'string');

  const vault = encodeURIComponent('https://vault.azure.net');
  assert.equal((await appService(run, `api-version=2019-08-01&resource=${vault}`)).status, 400);
  const refused = noToken().slice(1);
  assert.equal(refused.length, 1);
  assert.deepEqual(
    [refused[0]?.['level'], refused[0]?.['surface'], refused[0]?.['code']],
    ['debug', 'azure-appservice', 'request_invalid'],
  );
});

test('a lookup throttled for asking too many new resources is logged at debug, so a flood of them cannot flood the log', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level: 'debug',
    destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  });
  const world = await startWorld(t);
  // The manual clock never moves, so the burst of new resources is not refilled while the test asks.
  const run = await runAzure(t, world, { logger, clock: new ManualClock() });
  let throttled: Reply | undefined;
  for (let i = 0; i < 64 && throttled === undefined; i++) {
    const reply = await imds(run, `api-version=2018-02-01&resource=${encodeURIComponent(`api://resource-${i}`)}`);
    if (reply.status === 429) throttled = reply;
    else assert.equal(reply.status, 200, `resource ${i}: ${JSON.stringify(reply.body)}`);
  }
  assert.ok(throttled, 'a new resource beyond the burst is throttled');
  assert.equal(throttled.body['error'], 'too_many_requests');
  const noToken = lines.filter((l) => l['msg'] === 'no Azure token to serve');
  assert.deepEqual(
    noToken.map((l) => [l['level'], l['surface'], l['code']]),
    [['debug', 'azure-imds', 'throttled']],
  );
});
