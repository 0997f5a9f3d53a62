// Our Workload API server, checked by a client written here from the spec (raw @grpc/grpc-js and the
// vendored proto, not our client): the header refusal, streams that see rotations, the DER and PKCS#8
// encodings, JWT-SVIDs per audience, the JWT bundle, ValidateJWTSVID, the socket's mode and lifecycle.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { lstat, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { decodeJwt } from 'jose';
import { ManualClock } from '../../src/base/clock.ts';
import { ConnectorError } from '../../src/base/errors.ts';
import { parseSidecarConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/ops/logger.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { JwtBundle, X509Bundle } from '../../src/spiffe/bundle.ts';
import type { JwtSource, X509Source } from '../../src/spiffe/source.ts';
import { workloadApiEnv } from '../../src/surfaces/workload-api/env.ts';
import { type JwtBundleSource, startJwksBundleSource } from '../../src/surfaces/workload-api/jwt-bundle-source.ts';
import { startWorkloadApiServer } from '../../src/surfaces/workload-api/server.ts';
import { loadSpecProto } from '../helpers/fake-workload-api.ts';
import { devX509Source, signerJwtSource, type TestJwtSource, type TestX509Source } from '../helpers/identity.ts';
import { DevCa } from '../helpers/pki.ts';
import { until } from '../helpers/until.ts';

const TD = 'example.org';
const ID = `spiffe://${TD}/ns/default/sa/app`;

type Client = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

interface Harness {
  path: string;
  client: Client;
  x509: TestX509Source;
  jwt: TestJwtSource;
  signer: DevOidcSigner;
  metrics: Metrics;
  close: () => Promise<void>;
}

interface HarnessOptions {
  /** false: none; a source: that one instead of the signer's JWKS. */
  readonly jwtBundle?: boolean | JwtBundleSource;
  /** The JWT-SVIDs' SPIFFE ID (default: the X.509-SVID's), or a JwtSource of the test's own. */
  readonly jwtId?: string;
  readonly jwt?: JwtSource;
  readonly jwtTimeoutMs?: number;
  /** Wraps the X.509 source the server is given (to watch its subscriptions). */
  readonly wrapX509?: (source: TestX509Source) => X509Source;
}

async function harness(t: TestContext, opts: HarnessOptions = {}): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'wl-server-'));
  const path = join(dir, 'spiffe.sock');
  const signer = await DevOidcSigner.start();
  const x509 = await devX509Source({ trustDomain: TD, spiffeId: ID });
  const jwt = signerJwtSource({ signer, spiffeId: opts.jwtId ?? ID, ttlSeconds: 600 });
  const clock = new ManualClock(Date.now());
  let jwtBundle: JwtBundleSource | undefined;
  if (typeof opts.jwtBundle === 'object') jwtBundle = opts.jwtBundle;
  else if (opts.jwtBundle !== false)
    jwtBundle = await startJwksBundleSource({ url: signer.issuer, trustDomain: TD, clock, logger: silentLogger() });
  const metrics = new Metrics();
  const server = await startWorkloadApiServer({
    path,
    x509: opts.wrapX509 ? opts.wrapX509(x509) : x509,
    jwt: opts.jwt ?? jwt,
    trustDomain: TD,
    logger: silentLogger(),
    jwtBundle,
    metrics,
    ...(opts.jwtTimeoutMs ? { jwtTimeoutMs: opts.jwtTimeoutMs } : {}),
  });
  const Client = loadSpecProto();
  const client = new Client(`unix://${path}`, grpc.credentials.createInsecure()) as unknown as Client;
  const close = async (): Promise<void> => {
    client.close();
    await server.close();
  };
  t.after(async () => {
    await close();
    await jwtBundle?.close();
    await signer.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { path, client, x509, jwt, signer, metrics, close };
}

function header(value = 'true'): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set('workload.spiffe.io', value);
  return m;
}

function unary(client: Client, rpc: string, request: object, metadata = header()): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    // Bounded by a deadline: a call the server never answers ends DEADLINE_EXCEEDED instead of hanging the test.
    client[rpc]?.(
      request,
      metadata,
      { deadline: Date.now() + 20_000 },
      (error: grpc.ServiceError | null, response: Record<string, unknown>) =>
        error ? reject(error) : resolve(response),
    );
  });
}

/** Opens a server stream, collecting messages; `ended` resolves with the final status. */
function stream(client: Client, rpc: string, metadata = header()) {
  const messages: Record<string, unknown>[] = [];
  const call = client[rpc]?.({}, metadata) as grpc.ClientReadableStream<Record<string, unknown>>;
  call.on('data', (m) => messages.push(m));
  call.on('error', () => undefined);
  // Bounded: a stream the server never ends fails the test saying so instead of hanging it.
  const ended = new Promise<grpc.StatusObject>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${rpc}: the server never ended the stream`)), 20_000);
    timer.unref();
    call.on('status', (status) => {
      clearTimeout(timer);
      resolve(status);
    });
  });
  ended.catch(() => undefined);
  return { call, messages, ended };
}

function isStatus(code: grpc.status, details?: string | RegExp) {
  return (error: unknown): boolean => {
    const e = error as grpc.ServiceError;
    assert.equal(e.code, code, `status ${grpc.status[e.code]}: ${e.details}`);
    if (typeof details === 'string') assert.equal(e.details, details);
    else if (details) assert.match(e.details, details);
    return true;
  };
}

test('every RPC without the security header is refused with InvalidArgument, as SPIRE words it', async (t) => {
  const h = await harness(t);
  for (const bad of [new grpc.Metadata(), header('false'), header('TRUE')]) {
    for (const rpc of ['FetchX509SVID', 'FetchX509Bundles', 'FetchJWTBundles']) {
      const s = stream(h.client, rpc, bad);
      const status = await s.ended;
      assert.equal(status.code, grpc.status.INVALID_ARGUMENT, rpc);
      assert.equal(status.details, 'security header missing from request');
      assert.equal(s.messages.length, 0, `${rpc} sent nothing`);
    }
    await assert.rejects(
      unary(h.client, 'FetchJWTSVID', { audience: ['a'] }, bad),
      isStatus(grpc.status.INVALID_ARGUMENT, 'security header missing from request'),
    );
    await assert.rejects(
      unary(h.client, 'ValidateJWTSVID', { audience: 'a', svid: 'x' }, bad),
      isStatus(grpc.status.INVALID_ARGUMENT, 'security header missing from request'),
    );
  }
  assert.deepEqual(h.jwt.requested, [], 'no JWT-SVID was minted for a refused call');
});

test('each Workload API call is counted under surface workload-api with its gRPC status name', async (t) => {
  const h = await harness(t);
  await unary(h.client, 'FetchJWTSVID', { audience: ['a'] });
  await assert.rejects(unary(h.client, 'FetchJWTSVID', { audience: ['a'] }, new grpc.Metadata()));
  await assert.rejects(unary(h.client, 'FetchJWTSVID', { audience: [] }));
  const opened = stream(h.client, 'FetchX509SVID');
  await until(() => opened.messages.length === 1, 'the first X509-SVID message');
  opened.call.cancel();
  await stream(h.client, 'FetchX509Bundles', new grpc.Metadata()).ended;
  const text = await h.metrics.registry.metrics();
  assert.match(text, /spiffe_connector_requests_total\{surface="workload-api",status="OK"\} 2\n/);
  assert.match(text, /spiffe_connector_requests_total\{surface="workload-api",status="INVALID_ARGUMENT"\} 3\n/);
  assert.match(text, /# HELP spiffe_connector_requests_total .*gRPC status name of the Workload API/);
});

test('FetchX509SVID stays open and sends the full state on each of two rotations', async (t) => {
  const h = await harness(t);
  const s = stream(h.client, 'FetchX509SVID');
  await until(() => s.messages.length === 1, 's.messages.length === 1');
  const serials = [h.x509.current()?.certificates[0]?.serialNumber];
  await h.x509.rotate();
  await until(() => s.messages.length === 2, 's.messages.length === 2');
  serials.push(h.x509.current()?.certificates[0]?.serialNumber);
  await h.x509.rotate();
  await until(() => s.messages.length === 3, 's.messages.length === 3');
  serials.push(h.x509.current()?.certificates[0]?.serialNumber);
  assert.equal(new Set(serials).size, 3);

  const root = new X509Certificate(h.x509.ca.certPem);
  s.messages.forEach((message, i) => {
    const svids = message['svids'] as Record<string, unknown>[];
    assert.equal(svids.length, 1);
    const entry = svids[0] as {
      spiffe_id: string;
      x509_svid: Buffer;
      x509_svid_key: Buffer;
      bundle: Buffer;
      hint: string;
    };
    assert.equal(entry.spiffe_id, ID);
    const leaf = new X509Certificate(entry.x509_svid); // one certificate: the chain has no intermediates here
    assert.equal(leaf.serialNumber, serials[i], `message ${i + 1} carries rotation ${i + 1}`);
    assert.equal(leaf.subjectAltName, `URI:${ID}`);
    const key = createPrivateKey({ key: entry.x509_svid_key, format: 'der', type: 'pkcs8' });
    assert.ok(leaf.checkPrivateKey(key), 'the PKCS#8 DER key matches the leaf');
    assert.ok(new X509Certificate(entry.bundle).raw.equals(root.raw), 'bundle: the root as DER');
    assert.ok(leaf.verify(root.publicKey));
  });
  s.call.cancel();
  assert.equal((await s.ended).code, grpc.status.CANCELLED);
});

test('FetchX509Bundles is keyed by the trust domain ID; FetchJWTBundles serves the issuer JWKS as a SPIFFE bundle', async (t) => {
  const h = await harness(t);
  const x = stream(h.client, 'FetchX509Bundles');
  await until(() => x.messages.length === 1, 'x.messages.length === 1');
  const bundles = x.messages[0]?.['bundles'] as Record<string, Buffer>;
  assert.deepEqual(Object.keys(bundles), [`spiffe://${TD}`]);
  assert.ok(
    new X509Certificate(bundles[`spiffe://${TD}`] as Buffer).raw.equals(new X509Certificate(h.x509.ca.certPem).raw),
  );

  const j = stream(h.client, 'FetchJWTBundles');
  await until(() => j.messages.length === 1, 'j.messages.length === 1');
  const jwt = j.messages[0]?.['bundles'] as Record<string, Buffer>;
  assert.deepEqual(Object.keys(jwt), [`spiffe://${TD}`]);
  const doc = JSON.parse((jwt[`spiffe://${TD}`] as Buffer).toString('utf8')) as {
    keys: { kid: string; use: string; kty: string; d?: string }[];
  };
  const published = (await (await fetch(h.signer.jwksUri)).json()) as { keys: { kid: string }[] };
  assert.deepEqual(
    doc.keys.map((k) => k.kid),
    published.keys.map((k) => k.kid),
  );
  assert.ok(doc.keys.every((k) => k.use === 'jwt-svid' && k.d === undefined));
  x.call.cancel();
  j.call.cancel();
});

test('FetchJWTSVID: audience required, one JWT-SVID per audience from the JwtSource, another SPIFFE ID refused', async (t) => {
  const h = await harness(t);
  await assert.rejects(
    unary(h.client, 'FetchJWTSVID', { audience: [] }),
    isStatus(grpc.status.INVALID_ARGUMENT, 'audience must be specified'),
  );
  await assert.rejects(
    unary(h.client, 'FetchJWTSVID', {}),
    isStatus(grpc.status.INVALID_ARGUMENT, 'audience must be specified'),
  );
  const response = await unary(h.client, 'FetchJWTSVID', { audience: ['sts.amazonaws.com'] });
  const svids = response['svids'] as { spiffe_id: string; svid: string }[];
  assert.equal(svids.length, 1);
  assert.equal(svids[0]?.spiffe_id, ID);
  const claims = decodeJwt(svids[0]?.svid ?? '');
  assert.equal(claims.sub, ID);
  assert.equal(claims.aud, 'sts.amazonaws.com');
  assert.deepEqual(h.jwt.requested, ['sts.amazonaws.com']);
  await assert.rejects(
    unary(h.client, 'FetchJWTSVID', { audience: ['a'], spiffe_id: `spiffe://${TD}/someone/else` }),
    isStatus(grpc.status.PERMISSION_DENIED),
  );
  const same = await unary(h.client, 'FetchJWTSVID', { audience: ['a'], spiffe_id: ID });
  assert.equal((same['svids'] as unknown[]).length, 1);
  h.jwt.failWith(new ConnectorError('upstream_unavailable', 'issuer down', { retryable: true }));
  await assert.rejects(unary(h.client, 'FetchJWTSVID', { audience: ['b'] }), isStatus(grpc.status.UNAVAILABLE));
});

test('ValidateJWTSVID: a good token gives its SPIFFE ID and claims; bad, foreign or mis-addressed tokens are InvalidArgument', async (t) => {
  const h = await harness(t);
  const token = await h.signer.sign({
    sub: ID,
    aud: 'my-service',
    ttlSeconds: 300,
    extraClaims: { team: 'a', n: 3, tags: ['x', 'y'] },
  });
  const ok = await unary(h.client, 'ValidateJWTSVID', { audience: 'my-service', svid: token });
  assert.equal(ok['spiffe_id'], ID);
  const fields = (ok['claims'] as { fields: Record<string, Record<string, unknown>> }).fields;
  assert.equal(fields['sub']?.['stringValue'], ID);
  assert.equal(fields['team']?.['stringValue'], 'a');
  assert.equal(fields['n']?.['numberValue'], 3);
  assert.deepEqual(
    (fields['tags']?.['listValue'] as { values: { stringValue: string }[] } | undefined)?.values.map(
      (v) => v.stringValue,
    ),
    ['x', 'y'],
  );

  await assert.rejects(
    unary(h.client, 'ValidateJWTSVID', { audience: 'other', svid: token }),
    isStatus(grpc.status.INVALID_ARGUMENT, /audience/),
  );
  await assert.rejects(
    unary(h.client, 'ValidateJWTSVID', { audience: 'my-service', svid: 'not.a.jwt' }),
    isStatus(grpc.status.INVALID_ARGUMENT),
  );
  await assert.rejects(
    unary(h.client, 'ValidateJWTSVID', { audience: '', svid: token }),
    isStatus(grpc.status.INVALID_ARGUMENT, 'audience must be specified'),
  );
  await assert.rejects(
    unary(h.client, 'ValidateJWTSVID', { audience: 'my-service', svid: '' }),
    isStatus(grpc.status.INVALID_ARGUMENT, 'svid must be specified'),
  );
  const stranger = await DevOidcSigner.start();
  t.after(() => stranger.close());
  const forged = await stranger.sign({ sub: ID, aud: 'my-service' });
  await assert.rejects(
    unary(h.client, 'ValidateJWTSVID', { audience: 'my-service', svid: forged }),
    isStatus(grpc.status.INVALID_ARGUMENT, /no key with kid/),
  );
  const foreign = await h.signer.sign({ sub: 'spiffe://other.org/app', aud: 'my-service' });
  await assert.rejects(
    unary(h.client, 'ValidateJWTSVID', { audience: 'my-service', svid: foreign }),
    isStatus(grpc.status.INVALID_ARGUMENT, /trust domain/),
  );
});

test('without a JWT bundle, FetchJWTBundles and ValidateJWTSVID say so with Unimplemented', async (t) => {
  const h = await harness(t, { jwtBundle: false });
  const s = stream(h.client, 'FetchJWTBundles');
  assert.equal((await s.ended).code, grpc.status.UNIMPLEMENTED);
  await assert.rejects(
    unary(h.client, 'ValidateJWTSVID', { audience: 'a', svid: 'x.y.z' }),
    isStatus(grpc.status.UNIMPLEMENTED, /workloadApiJwksUrl/),
  );
});

test('the socket is 0660, a stale socket file is replaced, anything else at the path is refused; close ends streams and removes it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wl-sock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const x509 = await devX509Source({ trustDomain: TD, spiffeId: ID });

  // A socket file left by a process that died without cleaning up (SIGKILL: libuv never unlinks it).
  const path = join(dir, 'spiffe.sock');
  const child = spawn(
    process.execPath,
    ['-e', `require('node:net').createServer().listen(${JSON.stringify(path)}, () => console.log('listening'))`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  child.kill('SIGKILL');
  await new Promise<void>((resolve) => child.once('exit', () => resolve()));
  assert.ok((await lstat(path)).isSocket());

  const server = await startWorkloadApiServer({ path, x509, trustDomain: TD, logger: silentLogger() });
  const stats = await lstat(path);
  assert.ok(stats.isSocket());
  assert.equal(stats.mode & 0o777, 0o660);

  // A second server on the same live socket is refused.
  await assert.rejects(
    startWorkloadApiServer({ path, x509, trustDomain: TD, logger: silentLogger() }),
    /already serves/,
  );

  const client = new (loadSpecProto())(`unix://${path}`, grpc.credentials.createInsecure()) as unknown as Client;
  t.after(() => client.close());
  const s = stream(client, 'FetchX509SVID');
  await until(() => s.messages.length === 1, 's.messages.length === 1');
  await server.close();
  const status = await s.ended;
  assert.equal(status.code, grpc.status.UNAVAILABLE);
  await assert.rejects(lstat(path), { code: 'ENOENT' });

  const file = join(dir, 'not-a-socket');
  await writeFile(file, 'data');
  await assert.rejects(
    startWorkloadApiServer({ path: file, x509, trustDomain: TD, logger: silentLogger() }),
    /is not a socket/,
  );
});

test('before the first X.509-SVID the streams answer Unavailable', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wl-empty-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const x509 = await devX509Source({ trustDomain: TD, spiffeId: ID });
  const empty = { ...x509, current: () => undefined, bundle: () => undefined };
  const path = join(dir, 's.sock');
  const server = await startWorkloadApiServer({ path, x509: empty, trustDomain: TD, logger: silentLogger() });
  t.after(() => server.close());
  const client = new (loadSpecProto())(`unix://${path}`, grpc.credentials.createInsecure()) as unknown as Client;
  t.after(() => client.close());
  assert.equal((await stream(client, 'FetchX509SVID').ended).code, grpc.status.UNAVAILABLE);
  const bundles = await stream(client, 'FetchX509Bundles').ended;
  assert.equal(bundles.code, grpc.status.UNAVAILABLE);
  assert.equal(bundles.details, 'no X.509 bundle yet: the sidecar is starting');
  await assert.rejects(
    unary(client, 'FetchJWTSVID', { audience: ['a'] }),
    isStatus(grpc.status.UNIMPLEMENTED, /JWT-SVID source/),
  );
});

test('env: SPIFFE_ENDPOINT_SOCKET=unix://<path> only when the sidecar serves the Workload API', () => {
  const yaml = (extra: string) =>
    `spiffe:\n  trustDomain: ${TD}\n  x509: {}\n  jwt:\n    file: /tokens/jwt\nserver:\n  stateDir: /state\n${extra}aws:\n  roleArn: arn:aws:iam::111122223333:role/app\n  region: eu-west-1\n`;
  assert.deepEqual(workloadApiEnv(parseSidecarConfig(yaml(''))), []);
  assert.deepEqual(workloadApiEnv(parseSidecarConfig(yaml('  workloadApiSocket: /run/spiffe/agent.sock\n'))), [
    ['SPIFFE_ENDPOINT_SOCKET', 'unix:///run/spiffe/agent.sock'],
  ]);
});

test('FetchJWTSVID refuses before anything is minted: an empty audience, two audiences, another SPIFFE ID than the pod’s', async (t) => {
  const h = await harness(t);
  await assert.rejects(
    unary(h.client, 'FetchJWTSVID', { audience: ['a', ''] }),
    isStatus(grpc.status.INVALID_ARGUMENT, 'audience must be specified'),
  );
  await assert.rejects(
    unary(h.client, 'FetchJWTSVID', { audience: ['a', 'b'] }),
    isStatus(grpc.status.INVALID_ARGUMENT, 'this Workload API issues JWT-SVIDs for one audience per request'),
  );
  await assert.rejects(
    unary(h.client, 'FetchJWTSVID', { audience: ['a'], spiffe_id: `spiffe://${TD}/someone/else` }),
    isStatus(grpc.status.PERMISSION_DENIED, 'no identity issued'),
  );
  assert.deepEqual(h.jwt.requested, [], 'no JWT-SVID was asked of the issuer for a refused call');
});

test('FetchJWTSVID does not pass on a JWT-SVID its source made for another SPIFFE ID than the one asked for', async (t) => {
  const h = await harness(t, { jwtId: `spiffe://${TD}/ns/default/sa/other` });
  await assert.rejects(
    unary(h.client, 'FetchJWTSVID', { audience: ['a'], spiffe_id: ID }),
    isStatus(grpc.status.PERMISSION_DENIED, 'no identity issued'),
  );
  assert.deepEqual(h.jwt.requested, ['a']);
});

test('FetchJWTSVID answers the JWT source’s failures as SPIRE’s clients expect them', async (t) => {
  const h = await harness(t);
  const cases: Array<[ConnectorError, grpc.status]> = [
    [new ConnectorError('throttled', 'too many new audiences'), grpc.status.RESOURCE_EXHAUSTED],
    [new ConnectorError('request_invalid', 'this audience is not served'), grpc.status.INVALID_ARGUMENT],
    [new ConnectorError('upstream_unavailable', 'issuer down', { retryable: true }), grpc.status.UNAVAILABLE],
    [new ConnectorError('upstream_rejected', 'the issuer refused this identity'), grpc.status.PERMISSION_DENIED],
  ];
  for (const [error, code] of cases) {
    h.jwt.failWith(error);
    await assert.rejects(unary(h.client, 'FetchJWTSVID', { audience: ['a'] }), isStatus(code, error.message));
  }
});

test('FetchJWTSVID gives up on a source that does not answer after jwtTimeoutMs, and a caller that leaves ends the wait', async (t) => {
  const signals: AbortSignal[] = [];
  const hanging: JwtSource = {
    fetchJwtSvid: (_audience: string, signal?: AbortSignal) => {
      if (signal) signals.push(signal);
      return new Promise((_resolve, reject) =>
        signal?.addEventListener('abort', () =>
          reject(new ConnectorError('upstream_unavailable', 'gave up waiting', { retryable: true })),
        ),
      );
    },
    subscribe: () => () => undefined,
  } as unknown as JwtSource;
  const h = await harness(t, { jwt: hanging, jwtTimeoutMs: 200 });
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error('no answer 20 s after a jwtTimeoutMs of 200 ms')), 20_000);
  });
  await assert.rejects(
    Promise.race([unary(h.client, 'FetchJWTSVID', { audience: ['a'] }), bound]),
    isStatus(grpc.status.UNAVAILABLE),
  );
  clearTimeout(timer);
  const call = h.client['FetchJWTSVID']?.({ audience: ['b'] }, header(), () => undefined) as grpc.ClientUnaryCall;
  await until(() => signals.length === 2, 'the second fetch to reach the source');
  call.cancel();
  await until(() => signals[1]?.aborted, 'the source to be told the caller left');
  assert.equal(
    (signals[1]?.reason as Error | undefined)?.name,
    'AbortError',
    'ended because the caller left, not by the timeout',
  );
});

test('a stream sends the state again only when it changed, and a stream that ends leaves no subscription behind', async (t) => {
  let subscribed = 0;
  let source: TestX509Source | undefined;
  const h = await harness(t, {
    wrapX509: (x509) => {
      source = x509;
      const subscribe = (listener: () => void): (() => void) => {
        subscribed++;
        const off = x509.subscribe(listener);
        let on = true;
        return () => {
          if (on) subscribed--;
          on = false;
          off();
        };
      };
      return new Proxy(x509, {
        get: (target, key) => {
          if (key === 'subscribe') return subscribe;
          const value = Reflect.get(target, key) as unknown;
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
    },
  });
  const s = stream(h.client, 'FetchX509SVID');
  await until(() => s.messages.length === 1, 'the first message');
  const der = (m: Record<string, unknown> | undefined): string =>
    ((m?.['svids'] as Array<{ x509_svid: Buffer }> | undefined)?.[0]?.x509_svid ?? Buffer.alloc(0)).toString('base64');
  (source as unknown as { set(svid: unknown): unknown }).set(source?.current());
  await h.x509.rotate();
  await until(() => der(s.messages.at(-1)) !== der(s.messages[0]), 'the message of the rotation');
  assert.equal(s.messages.length, 2, 'the same SVID told again sent nothing');
  for (let i = 0; i < 5; i++) {
    const other = stream(h.client, 'FetchX509Bundles');
    await until(() => other.messages.length === 1, 'a bundles message');
    other.call.cancel();
    await other.ended;
  }
  s.call.cancel();
  await s.ended;
  await until(() => subscribed === 0, `every subscription ended (${subscribed} left)`);
});

test('the WIT-SVID profile is answered Unimplemented, and refused without the security header first', async (t) => {
  const h = await harness(t);
  for (const rpc of ['FetchWITSVID', 'FetchWITBundles']) {
    const s = stream(h.client, rpc);
    const status = await s.ended;
    assert.equal(status.code, grpc.status.UNIMPLEMENTED, rpc);
    assert.equal(status.details, 'the WIT-SVID profile is not supported');
    const bare = await stream(h.client, rpc, new grpc.Metadata()).ended;
    assert.equal(bare.code, grpc.status.INVALID_ARGUMENT, rpc);
  }
});

test('before the JWT bundle is fetched the JWT-bundle calls answer Unavailable; a SPIFFE bundle’s sequence and refresh hint are passed on', async (t) => {
  let current: JwtBundle | undefined;
  const listeners = new Set<(b: JwtBundle) => void>();
  const source: JwtBundleSource = {
    current: () => current,
    subscribe: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    close: async () => undefined,
  };
  const h = await harness(t, { jwtBundle: source });
  const early = await stream(h.client, 'FetchJWTBundles').ended;
  assert.equal(early.code, grpc.status.UNAVAILABLE);
  assert.equal(early.details, 'the JWT bundle has not been fetched yet');
  await assert.rejects(
    unary(h.client, 'ValidateJWTSVID', { audience: 'a', svid: 'x.y.z' }),
    isStatus(grpc.status.UNAVAILABLE, 'the JWT bundle has not been fetched yet'),
  );

  const key = {
    kty: 'EC',
    crv: 'P-256',
    kid: 'k1',
    x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU',
    y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0',
  };
  const read = async (): Promise<Record<string, unknown>> => {
    const s = stream(h.client, 'FetchJWTBundles');
    await until(() => s.messages.length === 1, 'a JWT bundles message');
    s.call.cancel();
    const bundles = s.messages[0]?.['bundles'] as Record<string, Buffer>;
    return JSON.parse((bundles[`spiffe://${TD}`] as Buffer).toString('utf8')) as Record<string, unknown>;
  };
  current = JwtBundle.parseJwks(TD, JSON.stringify({ keys: [key], spiffe_sequence: 7, spiffe_refresh_hint: 300 }));
  const withBoth = await read();
  assert.equal(withBoth['spiffe_sequence'], 7);
  assert.equal(withBoth['spiffe_refresh_hint'], 300);
  current = JwtBundle.parseJwks(TD, JSON.stringify({ keys: [key] }));
  const plain = await read();
  assert.deepEqual(Object.keys(plain), ['keys'], 'no sequence or refresh hint where the bundle has none');
});

test('a bundle that changes under the same SVID (a root added ahead of a rotation, then replaced) is sent on both X.509 streams', async (t) => {
  const h = await harness(t);
  const svid = stream(h.client, 'FetchX509SVID');
  const bundles = stream(h.client, 'FetchX509Bundles');
  await until(() => svid.messages.length === 1 && bundles.messages.length === 1, 'the first messages');
  const next = await DevCa.create({ trustDomain: TD });
  const current = h.x509.bundle() as X509Bundle;
  const both = X509Bundle.parsePem(TD, `${h.x509.ca.certPem}\n${next.certPem}`);
  assert.equal(both.authorities.length, current.authorities.length + 1);
  (h.x509 as unknown as { setBundle(b: X509Bundle): void }).setBundle(both);
  await until(() => svid.messages.length === 2 && bundles.messages.length === 2, 'the new bundle on both streams');
  const sent = (m: Record<string, unknown> | undefined): Buffer =>
    (m?.['bundles'] as Record<string, Buffer> | undefined)?.[`spiffe://${TD}`] ?? Buffer.alloc(0);
  assert.ok(sent(bundles.messages[1]).includes(new X509Certificate(next.certPem).raw), 'the added root is sent');
  // The added root replaced by another: as many roots as before, other bytes.
  const other = await DevCa.create({ trustDomain: TD });
  (h.x509 as unknown as { setBundle(b: X509Bundle): void }).setBundle(
    X509Bundle.parsePem(TD, `${h.x509.ca.certPem}\n${other.certPem}`),
  );
  await until(() => svid.messages.length === 3 && bundles.messages.length === 3, 'the replaced root on both streams');
  assert.ok(sent(bundles.messages[2]).includes(new X509Certificate(other.certPem).raw), 'the replacing root is sent');
  svid.call.cancel();
  bundles.call.cancel();
});
