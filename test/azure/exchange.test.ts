// The Entra exchange behind the cache, on a ManualClock: faults keep valid tokens flowing until expiry and
// never after; AADSTS codes retried (or not) as docs/azure.md#aadsts-codes says; single flight; bounded per-resource
// cache; identity changes; readiness; file mode rewrites.

import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { test } from 'node:test';
import { decodeJwt } from 'jose';
import { ManualClock } from '../../src/base/clock.ts';
import { ConnectorError } from '../../src/base/errors.ts';
import { createLogger } from '../../src/ops/logger.ts';
import { MAX_RESOURCES } from '../../src/providers/azure/module.ts';
import { until } from '../helpers/until.ts';
import { exchangesSettled, type RunningAzure, runAzure, SPIFFE_ID, startWorld } from './fixtures.ts';

const STORAGE = 'https://storage.azure.com';
const MINUTE = 60_000;

interface Reply {
  status: number;
  retryAfter: string | null;
  body: Record<string, string>;
}

async function token(run: RunningAzure, resource = STORAGE): Promise<Reply> {
  const res = await fetch(
    `${run.origin}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(resource)}`,
    { headers: { Metadata: 'true' } },
  );
  return {
    status: res.status,
    retryAfter: res.headers.get('retry-after'),
    body: (await res.json()) as Record<string, string>,
  };
}

function metric(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

test('Entra faults: the valid token keeps being served until it expires, never after; then a refresh recovers', async (t) => {
  const clock = new ManualClock();
  const world = await startWorld(t);
  const run = await runAzure(t, world, { clock });
  const first = await token(run);
  assert.equal(first.status, 200);
  const expiresAtMs = Number(first.body['expires_on']) * 1000;
  assert.equal(world.entra.counters.issued, 1);

  world.entra.injectFault({ status: 503, times: 1_000_000 });
  await clock.advance(31 * MINUTE); // past the half-life refresh
  await until(() => world.entra.counters.faulted >= 1, 'world.entra.counters.faulted >= 1');
  const during = await token(run);
  assert.equal(during.status, 200);
  assert.equal(during.body['access_token'], first.body['access_token']);

  await clock.advance(expiresAtMs - clock.now() - 1000);
  await until(() => world.entra.counters.faulted >= 2, 'world.entra.counters.faulted >= 2');
  const lastSecond = await token(run);
  assert.equal(lastSecond.status, 200);
  assert.equal(lastSecond.body['access_token'], first.body['access_token']);
  assert.equal(lastSecond.body['expires_in'], '1');

  await clock.advance(2000);
  const after = await token(run);
  assert.equal(after.status, 503);
  assert.ok(Number(after.retryAfter) >= 1);
  assert.equal(after.body['error'], 'temporarily_unavailable');
  assert.equal(after.body['access_token'], undefined);
  assert.match(after.body['error_description'] ?? '', /expired/);
  assert.equal(world.entra.counters.issued, 1);

  world.entra.clearFaults();
  const tries = world.entra.counters.token;
  await clock.advance(61_000);
  await until(() => world.entra.counters.issued === 2, 'world.entra.counters.issued === 2');
  assert.ok(world.entra.counters.token > tries);
  await until(async () => (await token(run)).status === 200, '(await token(run)).status === 200');
  const recovered = await token(run);
  assert.notEqual(recovered.body['access_token'], first.body['access_token']);
  const text = await run.metrics.text();
  assert.ok(
    metric(text, 'spiffe_connector_upstream_errors_total', 'cloud="azure",code="temporarily_unavailable"') +
      metric(text, 'spiffe_connector_upstream_errors_total', 'cloud="azure",code="AADSTS90033"') >=
      2,
  );
});

test('after a 429 with Retry-After, the next attempt still reaches Entra (no msal throttling cache in the way)', async (t) => {
  const clock = new ManualClock();
  const world = await startWorld(t);
  const run = await runAzure(t, world, { clock });
  world.entra.injectFault({ status: 429, retryAfterSeconds: 60 });
  const throttled = await token(run);
  assert.equal(throttled.status, 503);
  assert.ok(Number(throttled.retryAfter) >= 1 && Number(throttled.retryAfter) <= 60);
  await clock.advance(2000);
  await until(() => world.entra.counters.issued === 1, 'world.entra.counters.issued === 1');
  assert.equal(world.entra.counters.token, 2);
  assert.equal((await token(run)).status, 200);
});

test('AADSTS700024 (assertion outside its time window) is retried at once with a fresh JWT-SVID', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  world.entra.injectFault({
    status: 400,
    code: 700024,
    error: 'invalid_client',
    description: 'Client assertion is not within its valid time range.',
  });
  const reply = await token(run);
  assert.equal(reply.status, 200);
  assert.equal(world.entra.counters.token, 2);
  assert.equal(world.jwt.fetches, 2);
  assert.equal(
    metric(
      await run.metrics.text(),
      'spiffe_connector_immediate_retries_total',
      'cloud="azure",retry="fresh-assertion"',
    ),
    1,
  );
});

test('AADSTS90061 (issuer discovery unreachable from Entra) is retryable; AADSTS50027 is permanent and waits', async (t) => {
  const clock = new ManualClock();
  const world = await startWorld(t);
  const run = await runAzure(t, world, { clock });
  world.entra.injectFault({
    status: 400,
    code: 90061,
    error: 'invalid_request',
    description: 'Request to External OIDC endpoint failed.',
  });
  const unreachable = await token(run);
  assert.equal(unreachable.status, 503);
  assert.equal(unreachable.body['error'], 'temporarily_unavailable');
  assert.match(unreachable.body['error_description'] ?? '', /openid-configuration/);
  await clock.advance(2000);
  await until(() => world.entra.counters.issued === 1, 'world.entra.counters.issued === 1');

  const vault = 'https://vault.azure.net';
  world.entra.injectFault({
    status: 400,
    code: 50027,
    error: 'invalid_request',
    description: 'JWT token is invalid or malformed.',
  });
  const malformed = await token(run, vault);
  assert.equal(malformed.status, 503);
  assert.equal(malformed.body['error'], 'invalid_client');
  assert.match(malformed.body['error_description'] ?? '', /AADSTS50027/);
  const tries = world.entra.counters.token;
  await clock.advance(2 * MINUTE);
  assert.equal(world.entra.counters.token, tries); // not hammered
  await clock.advance(4 * MINUTE);
  await until(() => world.entra.counters.issued === 2, 'world.entra.counters.issued === 2');
  // Entra counts the token when it answers; the cache has it a moment later.
  await until(
    async () => (await exchangesSettled(run, 'success')) === 2,
    "(await exchangesSettled(run, 'success')) === 2",
  );
  assert.equal((await token(run, vault)).status, 200);
});

test('a federated credential created later (propagation) is picked up by the retries; readiness says what to fix until then', async (t) => {
  const clock = new ManualClock();
  const world = await startWorld(t, { federate: false });
  const run = await runAzure(t, world, { clock, azure: { warmResources: [STORAGE] } });
  await until(() => world.entra.counters.refused >= 1, 'world.entra.counters.refused >= 1');
  // Entra counts the refusal when it answers; the cache holds it (and schedules the retry) a moment later.
  await until(
    async () => (await exchangesSettled(run, 'retryable_error')) >= 1,
    "(await exchangesSettled(run, 'retryable_error')) >= 1",
  );
  const readiness = run.provider.readiness();
  assert.equal(readiness.ready, false);
  assert.match(readiness.reason ?? '', /AADSTS700211/);
  assert.ok(readiness.reason?.includes(`subject "${SPIFFE_ID}"`));
  assert.equal((await token(run)).status, 503);

  world.entra.setFederatedCredentials(world.entra.seen[0]?.clientId ?? '', [
    { issuer: world.signer.issuer, subject: SPIFFE_ID },
  ]);
  await clock.advance(61_000);
  await until(() => world.entra.counters.issued === 1, 'world.entra.counters.issued === 1');
  await until(
    async () => (await exchangesSettled(run, 'success')) === 1,
    "(await exchangesSettled(run, 'success')) === 1",
  );
  assert.equal(run.provider.readiness().ready, true);
  assert.equal((await token(run)).status, 200);
});

test('an identity change refreshes every held token at once, with the new subject', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  const before = await token(run);
  const other = 'spiffe://example.org/ns/default/sa/other';
  world.entra.setFederatedCredentials(world.entra.seen[0]?.clientId ?? '', [
    { issuer: world.signer.issuer, subject: other },
  ]);
  world.jwt.rotate(other);
  await until(() => world.entra.counters.issued === 2, 'world.entra.counters.issued === 2');
  // Until the cache has stored the new token, it rightly serves the old one (still valid).
  await until(
    async () => (await exchangesSettled(run, 'success')) === 2,
    "(await exchangesSettled(run, 'success')) === 2",
  );
  const after = await token(run);
  assert.notEqual(after.body['access_token'], before.body['access_token']);
  assert.equal(world.entra.seen.at(-1)?.assertion?.sub, other);
});

test('with azure.caFile, every exchange (resources, rotations) goes through one HTTP client, so one HTTPS agent', async (t) => {
  const world = await startWorld(t);
  const clients = new Set<unknown>();
  let credentials = 0;
  const real = await import('@azure/identity');
  const sdk = {
    ClientAssertionCredential: class extends real.ClientAssertionCredential {
      constructor(
        tenantId: string,
        clientId: string,
        getAssertion: () => Promise<string>,
        options?: ConstructorParameters<typeof real.ClientAssertionCredential>[3],
      ) {
        super(tenantId, clientId, getAssertion, options);
        credentials += 1;
        clients.add(options?.httpClient);
      }
    },
  };
  const run = await runAzure(t, world, { azure: { caFile: world.caFile }, provider: { sdk } });
  for (let i = 0; i < 12; i++) assert.equal((await token(run, `api://resource-${i}`)).status, 200);
  world.jwt.rotate('spiffe://example.org/ns/default/sa/app');
  await until(
    async () => (await exchangesSettled(run, 'success')) >= 24,
    'the 12 tokens fetched again after the rotation',
  );
  assert.ok(credentials >= 24, `a credential per exchange (${credentials})`);
  assert.equal(clients.size, 1, 'one HTTP client for all of them');
  assert.ok([...clients][0] !== undefined, 'and it is ours, not one each credential makes for itself');
});

test('concurrent first requests for one resource make one exchange', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  const replies = await Promise.all(Array.from({ length: 6 }, () => token(run)));
  assert.deepEqual(
    replies.map((r) => r.status),
    [200, 200, 200, 200, 200, 200],
  );
  assert.equal(new Set(replies.map((r) => r.body['access_token'])).size, 1);
  assert.equal(world.entra.counters.token, 1);
});

test(`the per-resource cache holds at most ${MAX_RESOURCES} resources; new ones beyond the burst get 429 + Retry-After; metrics name no resource`, async (t) => {
  const clock = new ManualClock();
  const world = await startWorld(t);
  const run = await runAzure(t, world, { clock });
  const resources = Array.from({ length: MAX_RESOURCES + 1 }, (_, i) => `api://resource-${i}`);
  let throttled = 0;
  const served = async (resource: string): Promise<void> => {
    let reply = await token(run, resource);
    if (reply.status === 429) {
      throttled += 1;
      const wait = Number(reply.retryAfter);
      assert.ok(wait >= 1 && wait <= 60, `Retry-After ${reply.retryAfter}`);
      assert.equal(reply.body['error'], 'too_many_requests');
      await clock.advance(wait * 1000);
      reply = await token(run, resource);
    }
    assert.equal(reply.status, 200, resource);
  };
  for (const r of resources) await served(r);
  assert.ok(throttled > 0, 'new resources are rate-limited');
  assert.equal(
    world.entra.counters.issued,
    MAX_RESOURCES + 1,
    'one exchange per resource, none for a throttled request',
  );
  const text = await run.metrics.text();
  assert.doesNotMatch(text, /api:\/\/resource-/, 'no metric label carries a resource');
  // The dropped resource is fetched again; a held one is not.
  await served(resources[MAX_RESOURCES] ?? '');
  assert.equal(world.entra.counters.issued, MAX_RESOURCES + 1);
  await served(resources[0] ?? '');
  assert.equal(world.entra.counters.issued, MAX_RESOURCES + 2);
});

test('no JWT-SVID, or Entra unreachable: 503 with Retry-After and the reason, never a 400', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  world.jwt.failWith(
    new ConnectorError('identity_unavailable', 'the Workload API is not answering', { retryable: true }),
  );
  const noSvid = await token(run);
  assert.equal(noSvid.status, 503);
  assert.match(noSvid.body['error_description'] ?? '', /Workload API is not answering/);
  assert.equal(world.entra.counters.token, 0);

  world.jwt.failWith(undefined);
  world.entra.injectFault({ drop: true });
  const dropped = await token(run, 'https://vault.azure.net');
  assert.equal(dropped.status, 503);
  assert.equal(dropped.body['error'], 'temporarily_unavailable');
  assert.ok(Number(dropped.retryAfter) >= 1);
});

test('file mode: the JWT-SVID file is rewritten well before expiry, atomically, and readiness waits for it', async (t) => {
  // The SVID's expiry is an absolute time from its issuer, so this clock starts at the real now.
  const clock = new ManualClock(Date.now());
  const world = await startWorld(t);
  const run = await runAzure(t, world, { clock, azure: { tokenFile: 'azure-federated-token' } });
  const file = run.env['AZURE_FEDERATED_TOKEN_FILE'] ?? '';
  await until(() => run.provider.readiness().ready, 'run.provider.readiness().ready');
  const first = await readFile(file, 'utf8');
  assert.equal((await stat(file)).mode & 0o777, 0o640, "readable by the pod's fsGroup, not by everyone");
  const claims = decodeJwt(first);
  assert.equal(claims.sub, SPIFFE_ID);
  assert.equal(typeof claims.exp, 'number');
  // The file was written at the clock's start; the SVID lives an hour from its (real) issue time.
  const writtenAt = clock.now();
  const halfLife = Math.ceil(((claims.exp ?? 0) * 1000 - writtenAt) / 2);
  // Half of the hour-long SVID's life, minus up to 10 % jitter: rewritten between 27 minutes and half
  // its life, leaving the SDK's 5-minute file cache well inside the SVID's remaining life.
  await clock.advance(26 * MINUTE);
  assert.equal(world.jwt.fetches, 1);
  assert.equal(await readFile(file, 'utf8'), first);
  await clock.advance(writtenAt + halfLife - clock.now());
  await until(async () => (await readFile(file, 'utf8')) !== first, "(await readFile(file, 'utf8')) !== first");
  assert.equal(world.jwt.fetches, 2);
  assert.equal((await stat(file)).mode & 0o777, 0o640, 'the rewritten file too');
});

test('no token, assertion or identity header reaches the logs or metrics, whatever happens', async (t) => {
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (line: string) => void lines.push(line) } });
  const world = await startWorld(t, { federate: false });
  const run = await runAzure(t, world, { logger, azure: { tokenFile: 'azure-federated-token' } });
  assert.equal((await token(run)).status, 503); // FIC mismatch: warn lines with the fix
  world.entra.setFederatedCredentials(world.entra.seen[0]?.clientId ?? '', [
    { issuer: world.signer.issuer, subject: SPIFFE_ID },
  ]);
  world.entra.injectFault({ status: 400, code: 700024, error: 'invalid_client' });
  const ok = await token(run, 'https://vault.azure.net');
  assert.equal(ok.status, 200);
  const viaAppService = await fetch(`${run.origin}/msi/token?api-version=2019-08-01&resource=https://vault.azure.net`, {
    headers: { 'X-IDENTITY-HEADER': run.env['IDENTITY_HEADER'] ?? '' },
  });
  assert.equal(viaAppService.status, 200);
  const assertion = await readFile(run.env['AZURE_FEDERATED_TOKEN_FILE'] ?? '', 'utf8');
  const everything = lines.join('') + (await run.metrics.text());
  assert.ok(lines.some((l) => l.includes('AADSTS700211')));
  for (const secret of [ok.body['access_token'] ?? '', run.env['IDENTITY_HEADER'] ?? '', assertion]) {
    assert.ok(secret.length > 20);
    assert.ok(!everything.includes(secret));
    assert.ok(!everything.includes(secret.split('.')[2] ?? secret)); // not even a JWT's signature part
  }
});
