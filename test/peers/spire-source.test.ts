// SPIRE as the identity source: the sidecar process (`spiffe-connector run`) on a real spire-agent's
// Workload API socket. X.509- and JWT-SVIDs come from SPIRE; the AWS, Google and Entra stand-ins verify the
// JWT-SVIDs against SPIRE's own keys (its bundle, served as its OIDC Discovery Provider would); the agent
// restarts, the entry is deleted (the sidecar keeps the last good SVID and logs why), a new entry with a short
// X.509-SVID TTL rotates on SPIRE's schedule. Skips, saying why, without the SPIRE binaries.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DevCa } from '@spiffe-connector/dev/dev-ca.ts';
import { ENTRA_FEDERATION_AUDIENCE, FakeEntra } from '@spiffe-connector/dev/fake-entra.ts';
import { FakeGcp } from '@spiffe-connector/dev/fake-gcp.ts';
import { FakeSts } from '@spiffe-connector/dev/fake-sts.ts';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { freePort, type SidecarProcess, startSidecar } from '../helpers/sidecar.ts';
import { poll, run, SPIRE_AGENT, spireSkip, startSpire, TRUST_DOMAIN } from './spire.ts';

const ID = `spiffe://${TRUST_DOMAIN}/ns/payments/sa/api`;
const ROLE = 'arn:aws:iam::111122223333:role/payments';
const PROJECT_NUMBER = '123456789012';
const POOL = `projects/${PROJECT_NUMBER}/locations/global/workloadIdentityPools/spiffe-pool`;
const PROVIDER = `${POOL}/providers/spire`;
const SERVICE_ACCOUNT = 'api@my-project.iam.gserviceaccount.com';
const TENANT_ID = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const CLIENT_ID = '11111111-2222-3333-4444-555555555555';
const OBJECT_ID = '99999999-8888-7777-6666-555555555555';

const skip = await spireSkip();
const uid = process.getuid?.() ?? 0;

type Line = Record<string, unknown>;
const after = (
  sidecar: SidecarProcess,
  index: number,
  predicate: (l: Line) => boolean,
  what: string,
  timeoutMs = 90_000,
): Promise<Line> => poll(what, async () => sidecar.logLines().slice(index).find(predicate), timeoutMs);

test('the sidecar on a real SPIRE agent: SVIDs from SPIRE, checked by the cloud stand-ins, through an agent restart, a deleted entry and rotations', {
  skip,
  timeout: 300_000,
}, async (t) => {
  const spire = await startSpire(t);
  const fail = (message: string): string => `${message}\n${spire.logs()}`;
  const entry = await spire.createEntry(ID, [`unix:uid:${uid}`]);

  // The clouds trust SPIRE's issuer, whose keys are SPIRE's JWT keys.
  const sts = await FakeSts.start({
    allowLoopbackHttpIssuers: true,
    region: 'eu-west-1',
    providers: [{ issuer: spire.issuer, audiences: ['sts.amazonaws.com'] }],
    roles: [
      {
        arn: ROLE,
        issuer: spire.issuer,
        audience: 'sts.amazonaws.com',
        subject: `spiffe://${TRUST_DOMAIN}/ns/payments/*`,
      },
    ],
  });
  t.after(() => sts.close());
  const gcp = await FakeGcp.start({
    allowLoopbackHttpIssuers: true,
    providers: [{ name: PROVIDER, issuer: spire.issuer }],
    serviceAccounts: [{ email: SERVICE_ACCOUNT, impersonators: [`principalSet://iam.googleapis.com/${POOL}/*`] }],
  });
  t.after(() => gcp.close());
  const entraCa = await DevCa.create({ trustDomain: 'entra.test' });
  const entra = await FakeEntra.start({
    allowLoopbackHttpIssuers: true,
    tenantId: TENANT_ID,
    ca: entraCa,
    applications: [
      { clientId: CLIENT_ID, objectId: OBJECT_ID, federatedCredentials: [{ issuer: spire.issuer, subject: ID }] },
    ],
  });
  t.after(() => entra.close());

  const dir = await mkdtemp(join(tmpdir(), 'spire-sidecar-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const entraCaFile = join(dir, 'entra-ca.pem');
  await writeFile(entraCaFile, entra.caPem);
  const ops = await freePort();
  const configFile = join(dir, 'config.yaml');
  await writeFile(
    configFile,
    `spiffe:
  trustDomain: ${TRUST_DOMAIN}
  workloadApi: { socket: "${spire.agentAddress}" }
server: { metadataAddress: "127.0.0.1:${await freePort()}", opsAddress: "127.0.0.1:${ops}", stateDir: ${join(dir, 'state')}, drainSeconds: 0 }
aws: { roleArn: "${ROLE}", region: eu-west-1, stsEndpoint: ${sts.url} }
gcp: { projectId: my-project, projectNumber: "${PROJECT_NUMBER}", workloadIdentityProvider: ${PROVIDER}, serviceAccount: ${SERVICE_ACCOUNT}, stsEndpoint: ${gcp.url}, iamCredentialsEndpoint: ${gcp.url}, zone: europe-west1-b }
azure: { tenantId: ${TENANT_ID}, clientId: ${CLIENT_ID}, authorityHost: ${entra.authorityHost}, caFile: ${entraCaFile} }
`,
  );
  const sidecar = await startSidecar(configFile);
  t.after(() => sidecar.stop('SIGKILL'));
  const ready = (): Promise<true> =>
    poll(
      '/readyz to answer 200',
      async () =>
        (await fetch(`http://127.0.0.1:${ops}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined,
      90_000,
    ).catch((e: Error) => {
      throw new Error(fail(`${e.message}\n--- sidecar ---\n${sidecar.logs().slice(-20_000)}`));
    });
  await ready();

  // X.509-SVID from SPIRE: the agent's, for our uid's entry.
  const received = sidecar.logLines().find((l) => l['msg'] === 'X.509-SVID received');
  assert.equal(received?.['spiffeId'], ID, fail('the sidecar logged the SVID it got from the agent'));
  const firstSerial = received?.['serial'];

  // JWT-SVIDs from SPIRE, verified by each stand-in through SPIRE's issuer and keys.
  await poll(
    'each cloud to have exchanged a JWT-SVID',
    async () =>
      sts.issued().length > 0 && gcp.stats.stsSuccesses > 0 && entra.seen.some((s) => s.outcome === 'issued')
        ? true
        : undefined,
    60_000,
  );
  assert.equal(sts.issued()[0]?.subject, ID);
  assert.equal(gcp.stats.lastSts?.subject, ID);
  assert.equal(gcp.stats.lastSts?.subjectTokenType, 'urn:ietf:params:oauth:token-type:jwt');
  const entraSeen = entra.seen.find((s) => s.outcome === 'issued');
  // SPIRE writes aud as an array, which Entra takes.
  assert.deepEqual(entraSeen?.assertion, { iss: spire.issuer, sub: ID, aud: [ENTRA_FEDERATION_AUDIENCE] });
  // And the keys they used are SPIRE's: the token's kid is one of the bundle's jwt-svid keys.
  const bundle = await spire.spiffeBundle();
  const jwtKids = bundle.keys.filter((k) => k['use'] === 'jwt-svid').map((k) => k['kid']);
  assert.ok(jwtKids.length > 0, 'spire-server bundle show -format spiffe lists JWT keys');
  const fetched = await poll('a JWT-SVID from the agent', async () => {
    const r = await run(SPIRE_AGENT, [
      'api',
      'fetch',
      'jwt',
      '-audience',
      'sts.amazonaws.com',
      '-socketPath',
      spire.agentSocket,
      '-output',
      'json',
    ]);
    return r.code === 0 ? r.stdout : undefined;
  });
  const token = /eyJ[\w-]+\.[\w-]+\.[\w-]+/.exec(fetched)?.[0] ?? '';
  assert.ok(jwtKids.includes(decodeProtectedHeader(token).kid), 'SPIRE signs with a key of its bundle');
  assert.equal(decodeJwt(token).iss, spire.issuer);

  // The agent restarts: the sidecar reconnects and gets its SVID again, ready throughout.
  let mark = sidecar.logLines().length;
  await spire.restartAgent();
  await after(
    sidecar,
    mark,
    (l) => l['msg'] === 'X.509-SVID rotated' || l['msg'] === 'X.509-SVID received',
    'the SVID from the restarted agent',
  ).catch((e: Error) => {
    throw new Error(fail(`${e.message}\n--- sidecar ---\n${sidecar.logs().slice(-20_000)}`));
  });
  await ready();

  // The entry is deleted: the agent refuses; the sidecar keeps the last good SVID and says why.
  mark = sidecar.logLines().length;
  await spire.deleteEntry(entry);
  const refused = await after(
    sidecar,
    mark,
    (l) => l['rpc'] === 'FetchX509SVID' && l['status'] === 'PERMISSION_DENIED',
    'the sidecar to log the agent refusing',
  ).catch((e: Error) => {
    throw new Error(fail(`${e.message}\n--- sidecar ---\n${sidecar.logs().slice(-20_000)}`));
  });
  assert.match(String(refused['details']), /no identity issued/);
  assert.match(String(refused['msg']), /reconnecting after a backoff/);
  assert.equal((await fetch(`http://127.0.0.1:${ops}/readyz`)).status, 200, 'the last good SVID is still served');

  // A new entry with a 20 s X.509-SVID TTL: the sidecar gets it, then SPIRE rotates it twice on its own.
  mark = sidecar.logLines().length;
  await spire.createEntry(ID, [`unix:uid:${uid}`], { x509SvidTtl: 20 });
  const serials = new Set<unknown>([firstSerial]);
  const rotated: Line[] = [];
  await poll(
    'two rotations of the short-lived SVID',
    async () => {
      for (const l of sidecar.logLines().slice(mark)) {
        if ((l['msg'] === 'X.509-SVID rotated' || l['msg'] === 'X.509-SVID received') && !rotated.includes(l))
          rotated.push(l);
      }
      return rotated.length >= 3 ? true : undefined;
    },
    120_000,
  ).catch((e: Error) => {
    throw new Error(fail(`${e.message}\n--- sidecar ---\n${sidecar.logs().slice(-20_000)}`));
  });
  for (const l of rotated) {
    assert.equal(l['spiffeId'], ID);
    assert.ok(Date.parse(String(l['notAfter'])) <= Date.now() + 21_000, 'the short TTL');
    serials.add(l['serial']);
  }
  assert.equal(serials.size, rotated.length + 1, 'each rotation is a new certificate');
  await ready();
});
