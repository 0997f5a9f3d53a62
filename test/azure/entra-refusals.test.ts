// The sidecar's handling of each assertion Entra refuses (bad signature, expired, not yet valid, wrong
// audience, wrong subject, unknown key): the app gets a 503 in Azure's shape naming Entra's AADSTS code and
// what to check, readiness says the same, and no token is served.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { DevCa } from '@spiffe-connector/dev/dev-ca.ts';
import {
  ENTRA_FEDERATION_AUDIENCE,
  FakeEntra,
  type FederatedIdentityCredential,
} from '@spiffe-connector/dev/fake-entra.ts';
import { DevOidcSigner, type SignOptions } from '@spiffe-connector/dev/oidc-signer.ts';
import { ManualClock } from '../../src/base/clock.ts';
import { signerJwtSource } from '../helpers/identity.ts';
import { withBadSignature } from '../helpers/tamper.ts';
import { type AzureWorld, CLIENT_ID, OBJECT_ID, runAzure, SPIFFE_ID, TENANT_ID } from './fixtures.ts';

const HOUR = 3600_000;

interface Refusal {
  /** How the JWT-SVIDs the sidecar gets are made, from the issuer's signer and a second one. */
  readonly sign?: (signer: DevOidcSigner, other: DevOidcSigner) => (o: SignOptions) => Promise<string>;
  /** Entra's clock, as an offset from the real one. */
  readonly entraOffsetMs?: number;
  readonly federatedCredential?: Partial<FederatedIdentityCredential>;
  readonly code: string;
  readonly advice: RegExp;
}

const REFUSALS: Record<string, Refusal> = {
  'a bad signature': {
    sign: (signer) => async (o) => withBadSignature(await signer.sign(o)),
    code: 'AADSTS700027',
    advice: /could not verify the JWT-SVID signature/,
  },
  'an expired assertion (Entra’s clock two hours ahead)': {
    entraOffsetMs: 2 * HOUR,
    code: 'AADSTS700024',
    advice: /outside its valid time window/,
  },
  'an assertion not yet valid (Entra’s clock two hours behind)': {
    entraOffsetMs: -2 * HOUR,
    code: 'AADSTS700024',
    advice: /outside its valid time window/,
  },
  'a wrong audience': {
    federatedCredential: { audiences: ['api://SomethingElse'] },
    code: 'AADSTS700212',
    advice: new RegExp(
      `add a federated identity credential with issuer "[^"]+" .*subject "${SPIFFE_ID}" and audience "${ENTRA_FEDERATION_AUDIENCE}"`,
    ),
  },
  'a wrong subject': {
    federatedCredential: { subject: 'spiffe://example.org/ns/default/sa/other' },
    code: 'AADSTS700213',
    advice: new RegExp(`subject "${SPIFFE_ID}"`),
  },
  'an unknown key': {
    sign: (signer, other) => (o) => other.sign({ ...o, iss: signer.issuer }),
    code: 'AADSTS7000272',
    advice: /could not verify the JWT-SVID signature/,
  },
};

async function refusingWorld(t: TestContext, r: Refusal): Promise<AzureWorld> {
  const signer = await DevOidcSigner.start();
  t.after(() => signer.close());
  const other = await DevOidcSigner.start();
  t.after(() => other.close());
  const ca = await DevCa.create({ trustDomain: 'entra.test' });
  const offset = r.entraOffsetMs ?? 0;
  const entra = await FakeEntra.start({
    allowLoopbackHttpIssuers: true,
    tenantId: TENANT_ID,
    ca,
    now: () => Date.now() + offset,
    applications: [
      {
        clientId: CLIENT_ID,
        objectId: OBJECT_ID,
        federatedCredentials: [{ issuer: signer.issuer, subject: SPIFFE_ID, ...r.federatedCredential }],
      },
    ],
  });
  t.after(() => entra.close());
  const dir = await mkdtemp(join(tmpdir(), 'sc-entra-refusals-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const caFile = join(dir, 'entra-ca.pem');
  await writeFile(caFile, entra.caPem);
  // The source calls only sign() on its signer: a stand-in signer that makes the broken JWT-SVIDs.
  const signing = r.sign ? ({ sign: r.sign(signer, other) } as unknown as DevOidcSigner) : signer;
  return { signer, jwt: signerJwtSource({ signer: signing, spiffeId: SPIFFE_ID }), entra, ca, dir, caFile };
}

for (const [what, refusal] of Object.entries(REFUSALS)) {
  test(`Entra refuses ${what}: the app gets a 503 naming ${refusal.code} and what to check, and readiness says so`, async (t) => {
    const world = await refusingWorld(t, refusal);
    const run = await runAzure(t, world, {
      clock: new ManualClock(Date.now()),
      azure: { warmResources: ['https://storage.azure.com'] },
    });
    const res = await fetch(
      `${run.origin}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent('https://storage.azure.com')}`,
      { headers: { Metadata: 'true' } },
    );
    const body = (await res.json()) as Record<string, unknown>;
    assert.equal(res.status, 503);
    assert.ok(res.headers.get('retry-after'), 'Retry-After');
    assert.equal(typeof body['error'], 'string');
    assert.equal(body['access_token'], undefined);
    const description = String(body['error_description']);
    assert.ok(description.includes(refusal.code), description);
    assert.match(description, refusal.advice);
    assert.ok(
      world.entra.seen.length >= 1 && world.entra.seen.every((s) => s.outcome === refusal.code),
      JSON.stringify(world.entra.seen.map((s) => s.outcome)),
    );
    assert.equal(world.entra.counters.issued, 0);
    const readiness = run.provider.readiness();
    assert.equal(readiness.ready, false);
    assert.ok(readiness.reason?.includes(refusal.code), readiness.reason);
  });
}
