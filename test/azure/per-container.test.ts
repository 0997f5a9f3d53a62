// A client id per container: azure.containers gives container `api` an application of its own and its own
// App Service identity header. The real @azure/identity ManagedIdentityCredential, in a child process told only
// what `env --container` prints for its container, gets tokens for its own application; the Entra stand-in,
// which knows both applications federated to the same SPIFFE ID, shows whose assertion it checked. A request with
// one container's header naming another client id is refused in App Service's shape.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { DevCa } from '@spiffe-connector/dev/dev-ca.ts';
import { FakeEntra } from '@spiffe-connector/dev/fake-entra.ts';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { appEnvironment } from '../../src/env.ts';
import { raw } from '../helpers/http.ts';
import { signerJwtSource } from '../helpers/identity.ts';
import { type AzureWorld, CLIENT_ID, OBJECT_ID, runAzure, SPIFFE_ID, TENANT_ID } from './fixtures.ts';
import { runSdk } from './sdk.ts';

const API_CLIENT = '22222222-3333-4444-5555-666666666666';
const API_OBJECT = '88888888-7777-6666-5555-444444444444';
const STORAGE = 'https://storage.azure.com';

/** The Entra stand-in with two applications, the pod's and api's, both federated to the pod's SPIFFE ID. */
async function twoApps(t: TestContext): Promise<AzureWorld> {
  const signer = await DevOidcSigner.start();
  t.after(() => signer.close());
  const ca = await DevCa.create({ trustDomain: 'entra.test' });
  const federated = [{ issuer: signer.issuer, subject: SPIFFE_ID }];
  const entra = await FakeEntra.start({
    allowLoopbackHttpIssuers: true,
    tenantId: TENANT_ID,
    ca,
    applications: [
      { clientId: CLIENT_ID, objectId: OBJECT_ID, federatedCredentials: federated },
      { clientId: API_CLIENT, objectId: API_OBJECT, federatedCredentials: federated },
    ],
  });
  t.after(() => entra.close());
  const dir = await mkdtemp(join(tmpdir(), 'sc-azure-per-container-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const caFile = join(dir, 'entra-ca.pem');
  await writeFile(caFile, entra.caPem);
  return { signer, jwt: signerJwtSource({ signer, spiffeId: SPIFFE_ID }), entra, ca, dir, caFile };
}

async function started(t: TestContext) {
  const world = await twoApps(t);
  const run = await runAzure(t, world, {
    azure: { imds: false, msi: false, warmResources: [STORAGE], containers: { api: { clientId: API_CLIENT } } },
  });
  const envOf = (container?: string) => Object.fromEntries(appEnvironment(run.config, run.origin, container));
  return { world, run, envOf };
}

test('ManagedIdentityCredential with each container’s env gets tokens for that container’s application only', async (t) => {
  const { world, run, envOf } = await started(t);
  const api = envOf('api');
  const pod = envOf('web');
  assert.equal(api['AZURE_CLIENT_ID'], API_CLIENT);
  assert.equal(pod['AZURE_CLIENT_ID'], CLIENT_ID);
  assert.ok(api['IDENTITY_HEADER'] && pod['IDENTITY_HEADER'] && api['IDENTITY_HEADER'] !== pod['IDENTITY_HEADER']);
  assert.equal(api['IDENTITY_ENDPOINT'], pod['IDENTITY_ENDPOINT'], 'one endpoint; the header says who asks');

  for (const [env, appid, objectId] of [
    [api, API_CLIENT, API_OBJECT],
    [pod, CLIENT_ID, OBJECT_ID],
  ] as const) {
    // System-assigned form (no client id sent) and DefaultAzureCredential (sends AZURE_CLIENT_ID) alike.
    for (const credential of ['managed-identity', 'default'] as const) {
      const answer = await runSdk({ credential, scopes: [`${STORAGE}/.default`] }, env);
      assert.equal(answer.ok, true, JSON.stringify(answer));
      if (!answer.ok) continue;
      const claims = await world.entra.verifyAccessToken(answer.tokens[0]?.token ?? '', STORAGE);
      assert.equal(claims.appid, appid, `${credential}: the token is for the header's application`);
      assert.equal(claims.oid, objectId);
    }
  }
  // Entra saw an assertion for each application, each the pod's own SPIFFE ID.
  const issued = world.entra.seen.filter((s) => s.outcome === 'issued');
  assert.deepEqual([...new Set(issued.map((s) => s.clientId))].sort(), [CLIENT_ID, API_CLIENT].sort());
  for (const s of issued) assert.equal(s.assertion?.sub, SPIFFE_ID);
  assert.equal(run.provider.readiness().ready, true);
});

test('a container’s header naming another client id is refused, in App Service’s shape and through the SDK', async (t) => {
  const { run, envOf } = await started(t);
  const api = envOf('api');
  const pod = envOf('web');
  const ask = (header: string, clientId?: string) =>
    raw(
      run.port,
      'GET',
      `/msi/token?api-version=2019-08-01&resource=${encodeURIComponent(STORAGE)}${clientId ? `&client_id=${clientId}` : ''}`,
      { 'x-identity-header': header },
    );

  for (const [header, other] of [
    [api['IDENTITY_HEADER'] ?? '', CLIENT_ID],
    [pod['IDENTITY_HEADER'] ?? '', API_CLIENT],
  ] as const) {
    const answer = await ask(header, other);
    assert.equal(answer.status, 400);
    const body = JSON.parse(answer.body) as { statusCode: number; message: string; correlationId: string };
    assert.equal(body.statusCode, 400);
    assert.match(body.message, /^invalid_request: Identity not found: client_id '[0-9a-f-]+' is not /);
    assert.match(body.correlationId, /^[0-9a-f-]{36}$/);
    assert.doesNotMatch(answer.body, /access_token/);
    assert.ok(!answer.body.includes(header), 'the header is never echoed');
  }
  // Each header with its own client id, or none, is served that application.
  assert.equal(JSON.parse((await ask(api['IDENTITY_HEADER'] ?? '', API_CLIENT)).body).client_id, API_CLIENT);
  assert.equal(JSON.parse((await ask(api['IDENTITY_HEADER'] ?? '')).body).client_id, API_CLIENT);
  assert.equal(JSON.parse((await ask(pod['IDENTITY_HEADER'] ?? '')).body).client_id, CLIENT_ID);
  // No header, or one that is nobody's: 401.
  assert.equal((await ask('not-anyones-header-0123456789')).status, 401);

  // The SDK with api's header asking for the pod's application gets an error, not a token.
  const refused = await runSdk(
    { credential: 'managed-identity', scopes: [`${STORAGE}/.default`], clientId: CLIENT_ID, maxRetries: 0 },
    api,
  );
  assert.equal(refused.ok, false);
  if (!refused.ok) assert.match(refused.message, /Identity not found/);
});

test('config: container names are Kubernetes names; client ids per container need App Service', async () => {
  const { validate } = await import('../../src/config/common.ts');
  const { sidecarSchema } = await import('../../src/config/schema.ts');
  const problems = (azure: Record<string, unknown>): string => {
    try {
      validate(
        sidecarSchema,
        {
          spiffe: { trustDomain: 'example.org', jwt: { file: '/x' } },
          azure: { tenantId: TENANT_ID, clientId: CLIENT_ID, ...azure },
        },
        'c',
      );
      return '';
    } catch (error) {
      return (error as Error).message;
    }
  };
  assert.match(
    problems({ containers: { Api: { clientId: API_CLIENT } } }),
    /azure\.containers\.Api: must be a container name/,
  );
  assert.match(
    problems({ containers: { api: { clientId: 'x' } } }),
    /azure\.containers\.api\.clientId: must be the application/,
  );
  const header = 'set-by-the-webhook-0123456789';
  assert.match(
    problems({ identityHeader: header, containers: { api: { clientId: API_CLIENT, identityHeader: header } } }),
    /azure\.containers\.api\.identityHeader: must differ from the pod’s/,
  );
  assert.match(
    problems({
      containers: {
        api: { clientId: API_CLIENT, identityHeader: header },
        web: { clientId: CLIENT_ID, identityHeader: header },
      },
    }),
    /azure\.containers\.web\.identityHeader: must differ/,
  );
  assert.equal(problems({ identityHeader: header, containers: { api: { clientId: API_CLIENT } } }), '');
  assert.match(
    problems({ containers: { api: { clientId: API_CLIENT, identityHeader: 'short' } } }),
    /azure\.containers\.api\.identityHeader: must be at least 16 characters/,
  );
  assert.match(
    problems({ appService: false, containers: { api: { clientId: API_CLIENT } } }),
    /azure\.containers: client ids per container are served on the App Service endpoint/,
  );
  assert.equal(problems({ containers: { api: { clientId: API_CLIENT } } }), '');
});
