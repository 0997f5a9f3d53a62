// Black box: an unmodified app (real google-auth-library and gcp-metadata, child process, only the
// `env` lines) gets Application Default Credentials from the emulated metadata server, through the
// JWT-SVID and the X.509-SVID paths, with and without impersonation; the Google stand-in accepts them.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeJwt } from 'jose';
import {
  CLOUD_PLATFORM,
  jwtSource,
  POOL,
  PROJECT_ID,
  PROJECT_NUMBER,
  runAdcClient,
  SERVICE_ACCOUNT,
  SPIFFE_ID,
  startGoogleWorld,
  startSidecar,
  x509Source,
} from './support.ts';

const AUD = 'https://app.example.com/api';
const STORAGE = 'https://www.googleapis.com/auth/devstorage.read_only';

for (const path of ['jwt', 'x509'] as const) {
  test(`ADC through the ${path} path with impersonation: access token, project, email, ID token`, async (t) => {
    const world = await startGoogleWorld();
    t.after(() => world.close());
    const identity = path === 'jwt' ? { jwt: jwtSource(world) } : { x509: await x509Source(world) };
    const sidecar = await startSidecar({ world, ...identity, serviceAccount: true });
    t.after(() => sidecar.close());

    assert.deepEqual(Object.keys(sidecar.env), [
      'GCE_METADATA_HOST',
      'GCE_METADATA_IP',
      'GCE_METADATA_ROOT',
      'GOOGLE_CLOUD_PROJECT',
    ]);
    const r = await runAdcClient(sidecar.env, { audience: AUD, scopes: [STORAGE] });
    assert.deepEqual(r.errors, {});
    assert.equal(r.available, true);
    assert.equal(r.projectId, PROJECT_ID);
    assert.equal(r.metadataProjectId, PROJECT_ID);
    assert.equal(String(r.numericProjectId), PROJECT_NUMBER);
    assert.equal(r.email, SERVICE_ACCOUNT);

    // What the app got is what Google (the stand-in) issued: a token of the service account.
    const info = world.fake.tokenInfo(r.accessToken as string);
    assert.equal(info?.kind, 'service-account');
    assert.equal(info?.email, SERVICE_ACCOUNT);
    assert.ok(info?.scopes.includes(CLOUD_PLATFORM));
    const scoped = world.fake.tokenInfo(r.scopedToken as string);
    assert.deepEqual(scoped?.scopes, [STORAGE]);

    // The ID token: the same through the request headers and the provider, signed by the stand-in.
    const id = r.idToken as { authorization: string; viaProvider: string };
    assert.equal(id.authorization, `Bearer ${id.viaProvider}`);
    const claims = decodeJwt(id.viaProvider);
    assert.equal(claims.aud, AUD);
    assert.equal(claims.email, SERVICE_ACCOUNT);
    const checked = await (await fetch(`${world.fake.url}/oauth2/v3/tokeninfo?id_token=${id.viaProvider}`)).json();
    assert.equal((checked as { email?: string }).email, SERVICE_ACCOUNT);

    // What the stand-in saw: the SPIFFE ID federated through the expected subject token type.
    assert.equal(world.fake.stats.lastSts?.subject, SPIFFE_ID);
    assert.equal(world.fake.stats.lastSts?.principal, `principal://iam.googleapis.com/${POOL}/subject/${SPIFFE_ID}`);
    const [used, unused] = path === 'jwt' ? ['jwt', 'mtls'] : ['mtls', 'jwt'];
    assert.ok((world.fake.stats.stsByType[used] ?? 0) >= 1);
    assert.equal(world.fake.stats.stsByType[unused], undefined);
    assert.ok(world.fake.stats.generateAccessToken >= 2);
    assert.equal(world.fake.stats.generateIdToken, 1);
  });

  test(`ADC through the ${path} path without impersonation: the federated token itself, no ID tokens`, async (t) => {
    const world = await startGoogleWorld();
    t.after(() => world.close());
    const identity = path === 'jwt' ? { jwt: jwtSource(world) } : { x509: await x509Source(world) };
    const sidecar = await startSidecar({ world, ...identity, serviceAccount: false });
    t.after(() => sidecar.close());

    const r = await runAdcClient(sidecar.env, { audience: AUD });
    assert.equal(r.available, true);
    assert.equal(r.projectId, PROJECT_ID);
    assert.equal(r.email, `${PROJECT_ID}.svc.id.goog`);
    const info = world.fake.tokenInfo(r.accessToken as string);
    assert.equal(info?.kind, 'federated');
    assert.equal(info?.principal, `principal://iam.googleapis.com/${POOL}/subject/${SPIFFE_ID}`);
    assert.match(r.errors.idToken ?? '', /404|gcp\.serviceAccount/);
    assert.equal(world.fake.stats.generateAccessToken, 0);
    assert.equal(world.fake.stats.generateIdToken, 0);
  });
}
