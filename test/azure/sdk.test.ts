// Black box: the real @azure/identity, in a child process given only the `env` lines, gets tokens through each
// emulated surface; the Entra stand-in shows what it verified and issued.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { decodeJwt } from 'jose';
import { until } from '../helpers/until.ts';
import { CLIENT_ID, OBJECT_ID, runAzure, SPIFFE_ID, startWorld, TENANT_ID } from './fixtures.ts';
import { runSdk } from './sdk.ts';

const STORAGE = 'https://storage.azure.com';
const VAULT = 'https://vault.azure.net';

function without(env: Record<string, string>, ...names: string[]): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !names.includes(k)));
}

async function requestsBySurface(metricsText: Promise<string>): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const m of (await metricsText).matchAll(
    /spiffe_connector_requests_total\{surface="([^"]+)",status="(\d+)"\} (\d+)/g,
  )) {
    out[`${m[1]} ${m[2]}`] = Number(m[3]);
  }
  return out;
}

test('ManagedIdentityCredential through App Service gets tokens for two resources at once', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  assert.ok(run.env['IDENTITY_ENDPOINT'] && run.env['IDENTITY_HEADER'] && run.env['MSI_ENDPOINT']);

  const answer = await runSdk(
    { credential: 'managed-identity', scopes: [`${STORAGE}/.default`, `${VAULT}/.default`] },
    run.env,
  );
  assert.equal(answer.ok, true, JSON.stringify(answer));
  if (!answer.ok) return;
  for (const [i, resource] of [STORAGE, VAULT].entries()) {
    const got = answer.tokens[i];
    assert.ok(got);
    const claims = await world.entra.verifyAccessToken(got.token, resource);
    assert.equal(claims.tid, TENANT_ID);
    assert.equal(claims.oid, OBJECT_ID);
    assert.equal(claims.appid, CLIENT_ID);
    assert.ok(got.expiresOnTimestamp > Date.now() + 50 * 60_000);
  }
  // What Entra saw: one federated assertion per resource, for our SPIFFE ID.
  const issued = world.entra.seen.filter((s) => s.outcome === 'issued');
  assert.deepEqual(issued.map((s) => s.resource).sort(), [STORAGE, VAULT]);
  for (const s of issued)
    assert.deepEqual(s.assertion, { iss: world.signer.issuer, sub: SPIFFE_ID, aud: 'api://AzureADTokenExchange' });
  assert.deepEqual(await requestsBySurface(run.metrics.text()), { 'azure-appservice 200': 2 });
});

test('ManagedIdentityCredential through IMDS (AZURE_POD_IDENTITY_AUTHORITY_HOST) when no App Service env is set', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  const env = without(run.env, 'IDENTITY_ENDPOINT', 'IDENTITY_HEADER', 'MSI_ENDPOINT');
  const answer = await runSdk(
    { credential: 'managed-identity', scopes: [`${STORAGE}/.default`], clientId: CLIENT_ID },
    env,
  );
  assert.equal(answer.ok, true, JSON.stringify(answer));
  if (!answer.ok) return;
  const claims = await world.entra.verifyAccessToken(answer.tokens[0]?.token ?? '', STORAGE);
  assert.equal(claims.tid, TENANT_ID);
  assert.deepEqual(await requestsBySurface(run.metrics.text()), { 'azure-imds 200': 1 });
});

test('ManagedIdentityCredential through MSI_ENDPOINT (the Cloud Shell form POST az 2.45 uses)', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  const env = without(run.env, 'IDENTITY_ENDPOINT', 'IDENTITY_HEADER');
  const answer = await runSdk({ credential: 'managed-identity', scopes: [`${VAULT}/.default`] }, env);
  assert.equal(answer.ok, true, JSON.stringify(answer));
  if (!answer.ok) return;
  await world.entra.verifyAccessToken(answer.tokens[0]?.token ?? '', VAULT);
  assert.deepEqual(await requestsBySurface(run.metrics.text()), { 'azure-msi 200': 1 });
});

test('DefaultAzureCredential with only the env lines uses App Service, passing AZURE_CLIENT_ID as client_id', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  const answer = await runSdk({ credential: 'default', scopes: [`${STORAGE}/.default`] }, run.env);
  assert.equal(answer.ok, true, JSON.stringify(answer));
  if (!answer.ok) return;
  const claims = await world.entra.verifyAccessToken(answer.tokens[0]?.token ?? '', STORAGE);
  assert.equal(claims.appid, CLIENT_ID);
  assert.deepEqual(await requestsBySurface(run.metrics.text()), { 'azure-appservice 200': 1 });
});

test('file mode: WorkloadIdentityCredential exchanges the JWT-SVID kept at AZURE_FEDERATED_TOKEN_FILE itself', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world, { azure: { tokenFile: 'azure-federated-token' } });
  const file = run.env['AZURE_FEDERATED_TOKEN_FILE'];
  assert.equal(file, `${world.dir}/azure-federated-token`);
  assert.equal(run.env['AZURE_AUTHORITY_HOST'], world.entra.authorityHost);
  await until(() => run.provider.readiness().ready, 'run.provider.readiness().ready');
  const written = decodeJwt(await readFile(file, 'utf8'));
  assert.equal(written.sub, SPIFFE_ID);
  assert.equal(written.aud, 'api://AzureADTokenExchange');

  // The SDK talks to Entra directly, so it must trust the stand-in's CA: NODE_EXTRA_CA_CERTS in the child.
  const env = { ...run.env, NODE_EXTRA_CA_CERTS: world.caFile };
  for (const credential of ['workload-identity', 'default'] as const) {
    const answer = await runSdk({ credential, scopes: [`${STORAGE}/.default`] }, env);
    assert.equal(answer.ok, true, JSON.stringify(answer));
    if (!answer.ok) return;
    await world.entra.verifyAccessToken(answer.tokens[0]?.token ?? '', STORAGE);
  }
  // In one process, tls.setDefaultCACertificates (Node >= 24.5) works as well.
  const inProcess = await runSdk(
    { credential: 'workload-identity', scopes: [`${VAULT}/.default`], trustCaFile: world.caFile },
    run.env,
  );
  assert.equal(inProcess.ok, true, JSON.stringify(inProcess));
  // Without either, the SDK refuses the stand-in's certificate.
  const untrusted = await runSdk(
    { credential: 'workload-identity', scopes: [`${VAULT}/.default`], maxRetries: 0 },
    run.env,
  );
  assert.equal(untrusted.ok, false);
  // Our endpoints were not used; Entra saw the file's assertion.
  assert.deepEqual(await requestsBySurface(run.metrics.text()), {});
  assert.equal(world.entra.counters.issued, 3);
  assert.ok(world.entra.seen.every((s) => s.assertion?.sub === SPIFFE_ID));
});

test('an unknown client id is refused with 400 "Identity not found", which the SDK reports', async (t) => {
  const world = await startWorld(t);
  const run = await runAzure(t, world);
  const answer = await runSdk(
    {
      credential: 'managed-identity',
      scopes: [`${STORAGE}/.default`],
      clientId: '00000000-0000-0000-0000-000000000001',
      maxRetries: 0,
    },
    run.env,
  );
  assert.equal(answer.ok, false);
  if (answer.ok) return;
  assert.match(answer.message, /Identity not found/);
  assert.deepEqual(await requestsBySurface(run.metrics.text()), { 'azure-appservice 400': 1 });
  assert.equal(world.entra.counters.token, 0);
});

test('a federated-credential mismatch reaches the SDK as an error that names the issuer and subject to register', async (t) => {
  const world = await startWorld(t, { federate: false });
  const run = await runAzure(t, world);
  const answer = await runSdk(
    { credential: 'managed-identity', scopes: [`${STORAGE}/.default`], maxRetries: 0 },
    run.env,
  );
  assert.equal(answer.ok, false);
  if (answer.ok) return;
  assert.match(answer.message, /AADSTS700211/);
  assert.ok(answer.message.includes(`issuer "${world.signer.issuer}"`), answer.message);
  assert.ok(answer.message.includes(`subject "${SPIFFE_ID}"`), answer.message);
  assert.ok(answer.message.includes(CLIENT_ID), answer.message);
  assert.deepEqual(await requestsBySurface(run.metrics.text()), { 'azure-appservice 503': 1 });
});
