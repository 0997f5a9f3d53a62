// Extra Google service accounts (gcp.extraServiceAccounts): each impersonated by the same federated
// principal and served under its own email on the metadata server, as GCE serves each account, so
// google-auth-library's Compute client with `serviceAccountEmail` gets that account's token unmodified.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { validate } from '../../src/config/common.ts';
import { sidecarSchema } from '../../src/config/schema.ts';
import { gcpEnv } from '../../src/providers/gcp/env.ts';
import { createGcpProvider } from '../../src/providers/gcp/module.ts';
import { mountProvider } from '../helpers/provider-harness.ts';
import { runNode } from '../helpers/sidecar.ts';
import {
  get,
  jwtSource,
  POOL,
  PROJECT_ID,
  PROJECT_NUMBER,
  PROVIDER,
  SERVICE_ACCOUNT,
  startGoogleWorld,
  until,
} from './support.ts';

const REPORTS = 'reports@my-project.iam.gserviceaccount.com';
const LOCKED = 'locked@my-project.iam.gserviceaccount.com';
const BASE = '/computeMetadata/v1/instance/service-accounts';

test('each extra service account has its own token under its email; default stays the main one', async (t) => {
  const world = await startGoogleWorld();
  t.after(() => world.close());
  world.fake.addServiceAccount({ email: REPORTS, impersonators: [`principalSet://iam.googleapis.com/${POOL}/*`] });
  const sidecar = await mountProvider({
    config: (stateDir) =>
      validate(
        sidecarSchema,
        {
          spiffe: { trustDomain: 'example.org', jwt: { file: '/unused/jwt-svid' } },
          server: { metadataAddress: '127.0.0.1:0', stateDir },
          gcp: {
            projectId: PROJECT_ID,
            projectNumber: PROJECT_NUMBER,
            workloadIdentityProvider: PROVIDER,
            serviceAccount: SERVICE_ACCOUNT,
            extraServiceAccounts: [REPORTS],
            stsEndpoint: world.fake.url,
            iamCredentialsEndpoint: world.fake.url,
          },
        },
        'test config',
      ),
    identity: { x509: undefined, jwt: jwtSource(world) },
    create: (ctx) => createGcpProvider(ctx, { hostname: 'vm-1' }),
  });
  t.after(() => sidecar.close());
  await until(() => sidecar.provider.readiness().ready, 'both accounts hold tokens');

  const listing = await get(sidecar.port, `${BASE}/`);
  assert.deepEqual(
    listing.body.split('\n').filter((l) => l !== ''),
    ['default/', `${SERVICE_ACCOUNT}/`, `${REPORTS}/`],
  );
  assert.equal((await get(sidecar.port, `${BASE}/${REPORTS}/email`)).body, REPORTS);

  const token = async (account: string): Promise<string> => {
    const r = await get(sidecar.port, `${BASE}/${account}/token`);
    assert.equal(r.status, 200, r.body);
    return (JSON.parse(r.body) as { access_token: string }).access_token;
  };
  assert.equal(world.fake.tokenInfo(await token(REPORTS))?.email, REPORTS);
  assert.equal(world.fake.tokenInfo(await token('default'))?.email, SERVICE_ACCOUNT);
  assert.equal(world.fake.tokenInfo(await token(SERVICE_ACCOUNT))?.email, SERVICE_ACCOUNT);
  // Not listed: not served, and nothing is asked of Google for it.
  const before = world.fake.stats.generateAccessToken;
  assert.equal((await get(sidecar.port, `${BASE}/${LOCKED}/token`)).status, 404);
  assert.equal(world.fake.stats.generateAccessToken, before);
  const identity = await get(sidecar.port, `${BASE}/${REPORTS}/identity?audience=x`);
  assert.deepEqual(
    [identity.status, identity.headers['content-type'], identity.headers['metadata-flavor']],
    [404, 'application/text', 'Google'],
  );
  assert.match(identity.body, /ID tokens for the default service account/);

  // An unmodified app: google-auth-library's Compute client naming the account, through the env lines alone.
  const script = `import { Compute } from 'google-auth-library';
const c = new Compute({ serviceAccountEmail: process.argv[1] });
process.stdout.write(JSON.stringify({ token: (await c.getAccessToken()).token }));`;
  const env = { ...Object.fromEntries(gcpEnv(sidecar.config, sidecar.origin)), PATH: process.env['PATH'] ?? '' };
  const out = await runNode(['--input-type=module', '-e', script, REPORTS], env);
  assert.equal(out.code, 0, out.stderr);
  assert.equal(world.fake.tokenInfo((JSON.parse(out.stdout) as { token: string }).token)?.email, REPORTS);
});

test('config: extra service accounts are emails, unique, and not the default one', () => {
  const problems = (extra: unknown[]): string => {
    try {
      validate(
        sidecarSchema,
        {
          spiffe: { trustDomain: 'example.org', jwt: { file: '/x' } },
          gcp: {
            projectId: PROJECT_ID,
            projectNumber: PROJECT_NUMBER,
            workloadIdentityProvider: PROVIDER,
            serviceAccount: SERVICE_ACCOUNT,
            extraServiceAccounts: extra,
          },
        },
        'c',
      );
      return '';
    } catch (error) {
      return (error as Error).message;
    }
  };
  assert.match(problems([REPORTS, REPORTS]), /gcp\.extraServiceAccounts\[1\]: repeats/);
  assert.match(problems([SERVICE_ACCOUNT]), /gcp\.extraServiceAccounts\[0\]: is already gcp\.serviceAccount/);
  assert.match(problems(['not an email']), /gcp\.extraServiceAccounts\[0\]: must be a service account email/);
  assert.match(problems(['a/b@c']), /must be a service account email/);
  assert.equal(problems([REPORTS]), '');
});
