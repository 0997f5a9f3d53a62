// Our Workload API server (server.workloadApiSocket) checked by clients no one here wrote: spire-agent's own
// client commands (api fetch x509 / fetch jwt / validate jwt) and go-spiffe v2 (X509Source, JWTSource, a JWT
// bundle watcher: test/peers/go-spiffe-client), through a rotation. The sidecar's identity here is the
// csi-driver-spiffe files and a JWT-SVID file; its JWT bundle, the issuer's JWKS (server.workloadApiJwksUrl).
// The last test does the same with a real SPIRE agent as the source and SPIRE's keys as the JWT bundle.
// Skips, saying why, without the binaries scripts/install-tools.sh builds.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeAtomicDir } from '@spiffe-connector/dev/atomic-dir.ts';
import { DevCa } from '@spiffe-connector/dev/dev-ca.ts';
import { FakeSts } from '@spiffe-connector/dev/fake-sts.ts';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { cli, freePort, parseEnvLines, startSidecar } from '../helpers/sidecar.ts';
import {
  agentSkip,
  daemon,
  GO_SPIFFE_CLIENT,
  goSpiffeSkip,
  poll,
  run,
  SPIRE_AGENT,
  spireSkip,
  startSpire,
} from './spire.ts';

const TD = 'example.org';
const ID = `spiffe://${TD}/ns/default/sa/app`;
const ROLE = 'arn:aws:iam::111122223333:role/app';
const AUDIENCE = 'spiffe://example.org/ns/default/sa/backend';
const skipAgent = await agentSkip();
const skipGo = await goSpiffeSkip();
const skipSpire = (await spireSkip()) || skipGo;
const uid = process.getuid?.() ?? 0;

/** The SPIFFE ID in a certificate's URI SAN. */
function uriSan(cert: X509Certificate): string | undefined {
  return /URI:([^,\s]+)/.exec(cert.subjectAltName ?? '')?.[1];
}

interface Pod {
  readonly socket: string;
  readonly env: Record<string, string>;
  readonly ca: DevCa;
  readonly signer: DevOidcSigner;
  readonly dir: string;
  rotate(): Promise<void>;
  logs(): string;
}

/** The sidecar serving the Workload API from files, with the issuer's JWKS as its JWT bundle. */
async function startPod(t: import('node:test').TestContext): Promise<Pod> {
  const dir = await mkdtemp(join(tmpdir(), 'wl-peers-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ca = await DevCa.create({ trustDomain: TD });
  const signer = await DevOidcSigner.start();
  t.after(() => signer.close());
  const sts = await FakeSts.start({
    allowLoopbackHttpIssuers: true,
    region: 'eu-west-1',
    providers: [{ issuer: signer.issuer, audiences: ['sts.amazonaws.com'] }],
    roles: [{ arn: ROLE, issuer: signer.issuer, audience: 'sts.amazonaws.com' }],
  });
  t.after(() => sts.close());
  const rotate = async (): Promise<void> => {
    const svid = await ca.issueX509Svid({ spiffeId: ID });
    await writeAtomicDir(join(dir, 'svid'), [
      { name: 'tls.crt', content: svid.certPem },
      { name: 'tls.key', content: svid.keyPem, mode: 0o600 },
      { name: 'ca.crt', content: ca.certPem },
    ]);
  };
  await rotate();
  await writeAtomicDir(join(dir, 'tokens'), [
    { name: 'jwt', content: await signer.sign({ sub: ID, aud: ['sts.amazonaws.com', AUDIENCE], ttlSeconds: 3600 }) },
  ]);
  await mkdir(join(dir, 'pod'));
  const socket = join(dir, 'pod', 'spiffe.sock');
  const ops = await freePort();
  const configFile = join(dir, 'config.yaml');
  await writeFile(
    configFile,
    `spiffe: { trustDomain: ${TD}, x509: { dir: ${join(dir, 'svid')}, pollIntervalSeconds: 1 }, jwt: { file: ${join(dir, 'tokens', 'jwt')} } }
server: { metadataAddress: "127.0.0.1:${await freePort()}", opsAddress: "127.0.0.1:${ops}", stateDir: ${join(dir, 'state')}, workloadApiSocket: ${socket}, workloadApiJwksUrl: "${signer.issuer}", drainSeconds: 0 }
aws: { roleArn: "${ROLE}", region: eu-west-1, stsEndpoint: ${sts.url} }
`,
  );
  const env = parseEnvLines((await cli(['env', '--config', configFile])).stdout);
  assert.equal(env['SPIFFE_ENDPOINT_SOCKET'], `unix://${socket}`);
  const sidecar = await startSidecar(configFile);
  t.after(() => sidecar.stop('SIGKILL'));
  const logs = (): string => `--- sidecar ---\n${sidecar.logs().slice(-20_000)}`;
  await poll(
    '/readyz to answer 200',
    async () =>
      (await fetch(`http://127.0.0.1:${ops}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined,
    60_000,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${logs()}`);
  });
  return { socket, env, ca, signer, dir, rotate, logs };
}

test("spire-agent's client commands (api fetch x509, fetch jwt, validate jwt) against the sidecar's Workload API", {
  skip: skipAgent,
  timeout: 180_000,
}, async (t) => {
  const pod = await startPod(t);
  const { socket } = pod;

  // fetch x509: the SVID and bundle, which spire-agent parses and validates, chaining to our CA.
  const out = join(pod.dir, 'fetched');
  await mkdir(out);
  const fetched = await poll('spire-agent api fetch x509 on our socket', async () => {
    const r = await run(SPIRE_AGENT, ['api', 'fetch', 'x509', '-socketPath', socket, '-write', out]);
    return r.code === 0 ? r : undefined;
  });
  assert.match(fetched.stdout, new RegExp(`SPIFFE ID:\\s+${ID}`));
  const leaf = new X509Certificate(await readFile(join(out, 'svid.0.pem')));
  const root = new X509Certificate(await readFile(join(out, 'bundle.0.pem')));
  assert.equal(uriSan(leaf), ID);
  assert.equal(
    root.fingerprint256,
    new X509Certificate(pod.ca.certPem).fingerprint256,
    'the bundle is the trust domain CA',
  );
  assert.ok(leaf.checkIssued(root) && leaf.verify(root.publicKey), 'the SVID chains to the bundle served with it');

  // After a rotation of the files, fetch x509 gets the new certificate.
  await pod.rotate();
  await poll('the rotated SVID from spire-agent api fetch x509', async () => {
    const r = await run(SPIRE_AGENT, ['api', 'fetch', 'x509', '-socketPath', socket, '-write', out]);
    if (r.code !== 0) return undefined;
    const next = new X509Certificate(await readFile(join(out, 'svid.0.pem')));
    return next.serialNumber !== leaf.serialNumber && uriSan(next) === ID ? true : undefined;
  });

  // fetch jwt: the JWT-SVID for an audience and our trust domain's JWT bundle; validate jwt checks it.
  const jwt = await run(SPIRE_AGENT, ['api', 'fetch', 'jwt', '-audience', AUDIENCE, '-socketPath', socket]);
  assert.equal(jwt.code, 0, `${jwt.stderr}\n${pod.logs()}`);
  const token = /eyJ[\w-]+\.[\w-]+\.[\w-]+/.exec(jwt.stdout)?.[0];
  assert.ok(token, jwt.stdout);
  assert.match(jwt.stdout, new RegExp(`token\\(${ID}\\)`));
  assert.match(jwt.stdout, new RegExp(`bundle\\(spiffe://${TD}\\)`), 'FetchJWTBundles answered with our trust domain');
  const valid = await run(SPIRE_AGENT, [
    'api',
    'validate',
    'jwt',
    '-audience',
    AUDIENCE,
    '-svid',
    token,
    '-socketPath',
    socket,
  ]);
  assert.equal(valid.code, 0, valid.stderr);
  assert.match(valid.stdout, /SVID is valid/);
  assert.match(valid.stdout, new RegExp(`SPIFFE ID\\s*:\\s*${ID}`));
  const wrongAudience = await run(SPIRE_AGENT, [
    'api',
    'validate',
    'jwt',
    '-audience',
    'spiffe://example.org/other',
    '-svid',
    token,
    '-socketPath',
    socket,
  ]);
  assert.notEqual(wrongAudience.code, 0, 'a token for another audience is refused');
  assert.match(wrongAudience.stderr, /SVID is not valid/);
  const other = await DevOidcSigner.start();
  t.after(() => other.close());
  const foreign = await other.sign({ sub: ID, aud: AUDIENCE, ttlSeconds: 600 });
  const forged = await run(SPIRE_AGENT, [
    'api',
    'validate',
    'jwt',
    '-audience',
    AUDIENCE,
    '-svid',
    foreign,
    '-socketPath',
    socket,
  ]);
  assert.notEqual(forged.code, 0, 'a token signed by a key outside the bundle is refused');
  assert.match(forged.stderr, /SVID is not valid/);
});

test("go-spiffe v2 (X509Source, JWTSource, a JWT bundle watcher) against the sidecar's Workload API, through a rotation", {
  skip: skipGo,
  timeout: 180_000,
}, async (t) => {
  const pod = await startPod(t);
  // Given only SPIFFE_ENDPOINT_SOCKET, as `env` prints it.
  const go = daemon(GO_SPIFFE_CLIENT, ['-audience', AUDIENCE, '-rotations', '1', '-timeout', '120s'], {
    SPIFFE_ENDPOINT_SOCKET: pod.env['SPIFFE_ENDPOINT_SOCKET'] ?? '',
  });
  t.after(() => go.stop());
  const events = (): Array<Record<string, unknown>> =>
    go
      .logs()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const failed = (what: string): string => `${what}\n--- go-spiffe-client ---\n${go.logs()}\n${pod.logs()}`;
  await poll(
    'go-spiffe-client to get its first SVID',
    async () =>
      events().some((e) => e['event'] === 'jwt' || e['event'] === 'error') || go.child.exitCode !== null
        ? true
        : undefined,
    60_000,
  ).catch((e: Error) => {
    throw new Error(failed(e.message));
  });
  await pod.rotate();
  await poll(
    'go-spiffe-client to see the rotation',
    async () =>
      events().some((e) => e['event'] === 'done' || e['event'] === 'error') || go.child.exitCode !== null
        ? true
        : undefined,
    60_000,
  ).catch((e: Error) => {
    throw new Error(failed(e.message));
  });
  const seen = events();
  assert.deepEqual(
    seen.filter((e) => e['event'] === 'error'),
    [],
    failed('go-spiffe-client failed'),
  );
  const x509 = seen.filter((e) => e['event'] === 'x509');
  assert.equal(x509.length, 2, failed('one SVID, then the rotated one'));
  assert.ok(x509.every((e) => e['id'] === ID));
  assert.notEqual(x509[0]?.['serial'], x509[1]?.['serial'], 'the X509Source saw the rotated certificate');
  const jwts = seen.filter((e) => e['event'] === 'jwt');
  assert.equal(jwts.length, 2);
  for (const e of jwts) {
    assert.equal(e['id'], ID);
    assert.ok((e['audience'] as string[]).includes(AUDIENCE));
    assert.equal(e['validatedBySocket'], ID);
  }
  const kids = ((await (await fetch(pod.signer.jwksUri)).json()) as { keys: Array<{ kid: string }> }).keys
    .map((k) => k.kid)
    .sort();
  const watched = seen.find((e) => e['event'] === 'jwtbundle') as { bundles?: Record<string, string[]> } | undefined;
  assert.deepEqual(watched?.bundles, { [`spiffe://${TD}`]: kids }, "the bundle watcher saw the issuer's keys");
  assert.equal(go.child.exitCode ?? (await new Promise((r) => go.child.once('exit', r))), 0);
});

test("with SPIRE as the source: go-spiffe v2 and spire-agent validate jwt on the sidecar's socket see SPIRE's SVIDs, keys and rotation", {
  skip: skipSpire,
  timeout: 300_000,
}, async (t) => {
  const spire = await startSpire(t);
  await spire.createEntry(ID, [`unix:uid:${uid}`], { x509SvidTtl: 20 });
  const sts = await FakeSts.start({
    allowLoopbackHttpIssuers: true,
    region: 'eu-west-1',
    providers: [{ issuer: spire.issuer, audiences: ['sts.amazonaws.com'] }],
    roles: [{ arn: ROLE, issuer: spire.issuer, audience: 'sts.amazonaws.com' }],
  });
  t.after(() => sts.close());
  const dir = await mkdtemp(join(tmpdir(), 'wl-spire-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'pod'));
  const socket = join(dir, 'pod', 'spiffe.sock');
  const ops = await freePort();
  const configFile = join(dir, 'config.yaml');
  // The pod's JWT bundle: SPIRE's keys, from its issuer's discovery document.
  await writeFile(
    configFile,
    `spiffe: { trustDomain: ${TD}, workloadApi: { socket: "${spire.agentAddress}" } }
server: { metadataAddress: "127.0.0.1:${await freePort()}", opsAddress: "127.0.0.1:${ops}", stateDir: ${join(dir, 'state')}, workloadApiSocket: ${socket}, workloadApiJwksUrl: "${spire.issuer}", drainSeconds: 0 }
aws: { roleArn: "${ROLE}", region: eu-west-1, stsEndpoint: ${sts.url} }
`,
  );
  const sidecar = await startSidecar(configFile);
  t.after(() => sidecar.stop('SIGKILL'));
  const logs = (): string => `--- sidecar ---\n${sidecar.logs().slice(-20_000)}\n${spire.logs()}`;
  await poll(
    '/readyz to answer 200',
    async () =>
      (await fetch(`http://127.0.0.1:${ops}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined,
    90_000,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${logs()}`);
  });

  const go = daemon(GO_SPIFFE_CLIENT, ['-audience', AUDIENCE, '-rotations', '1', '-timeout', '120s'], {
    SPIFFE_ENDPOINT_SOCKET: `unix://${socket}`,
  });
  t.after(() => go.stop());
  const events = (): Array<Record<string, unknown>> =>
    go
      .logs()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const failed = (what: string): string => `${what}\n--- go-spiffe-client ---\n${go.logs()}\n${logs()}`;
  // SPIRE rotates the 20 s SVID on its own; the client sees it through our socket.
  await poll(
    'go-spiffe-client to see SPIRE rotate',
    async () =>
      events().some((e) => e['event'] === 'done' || e['event'] === 'error') || go.child.exitCode !== null
        ? true
        : undefined,
    130_000,
  ).catch((e: Error) => {
    throw new Error(failed(e.message));
  });
  const seen = events();
  assert.deepEqual(
    seen.filter((e) => e['event'] === 'error'),
    [],
    failed('go-spiffe-client failed'),
  );
  const x509 = seen.filter((e) => e['event'] === 'x509');
  assert.equal(x509.length, 2, failed('one SVID, then the rotated one'));
  assert.ok(x509.every((e) => e['id'] === ID));
  assert.notEqual(x509[0]?.['serial'], x509[1]?.['serial']);
  const jwts = seen.filter((e) => e['event'] === 'jwt');
  assert.equal(jwts.length, 2);
  for (const e of jwts) assert.equal(e['validatedBySocket'], ID);
  const kids = (await spire.spiffeBundle()).keys
    .filter((k) => k['use'] === 'jwt-svid')
    .map((k) => String(k['kid']))
    .sort();
  const watched = seen.find((e) => e['event'] === 'jwtbundle') as { bundles?: Record<string, string[]> } | undefined;
  assert.deepEqual(watched?.bundles, { [`spiffe://${TD}`]: kids }, "the bundle watcher saw SPIRE's JWT keys");

  // A JWT-SVID straight from the agent validates on our socket: the same keys.
  const fromAgent = await run(SPIRE_AGENT, [
    'api',
    'fetch',
    'jwt',
    '-audience',
    AUDIENCE,
    '-socketPath',
    spire.agentSocket,
  ]);
  const token = /eyJ[\w-]+\.[\w-]+\.[\w-]+/.exec(fromAgent.stdout)?.[0] ?? '';
  const valid = await run(SPIRE_AGENT, [
    'api',
    'validate',
    'jwt',
    '-audience',
    AUDIENCE,
    '-svid',
    token,
    '-socketPath',
    socket,
  ]);
  assert.equal(valid.code, 0, failed(valid.stderr));
  assert.match(valid.stdout, new RegExp(`SPIFFE ID\\s*:\\s*${ID}`));
});
