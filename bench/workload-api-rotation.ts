// Rotation latency through the Workload API we serve: an X.509-SVID rotated on disk the way
// csi-driver-spiffe does it (`..data` symlink swap) → the new SVID on an open FetchX509SVID stream,
// and → new AWS credentials (issuer exchange, then the AWS STS stand-in). Target: stream < 1 s.
// Also the server alone: an in-memory X509Source update → the stream. Run by hand:
//   node bench/workload-api-rotation.ts [rounds=20]
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import { writeAtomicDir } from '@spiffe-connector/dev/atomic-dir.ts';
import { DevCa } from '@spiffe-connector/dev/dev-ca.ts';
import { startDevIssuer } from '@spiffe-connector/dev/dev-issuer.ts';
import { FakeSts } from '@spiffe-connector/dev/fake-sts.ts';
import { startApp } from '../src/app.ts';
import { systemClock } from '../src/base/clock.ts';
import { validate } from '../src/config/common.ts';
import { sidecarSchema } from '../src/config/schema.ts';
import { silentLogger } from '../src/ops/logger.ts';
import { Metrics } from '../src/ops/metrics.ts';
import { startJwksBundleSource } from '../src/surfaces/workload-api/jwt-bundle-source.ts';
import { startWorkloadApiServer } from '../src/surfaces/workload-api/server.ts';
import { loadSpecProto } from '../test/helpers/fake-workload-api.ts';
import { devX509Source } from '../test/helpers/identity.ts';

const TD = 'example.org';
const ID = `spiffe://${TD}/ns/bench/sa/app`;
const ROLE = 'arn:aws:iam::111122223333:role/bench';
const rounds = Number(process.argv[2] ?? 20);
const logger = silentLogger();

/** A FetchX509SVID stream opened by a client written from the spec; remembers when each serial arrived. */
function openStream(path: string): { arrivals: Map<string, number>; close(): void } {
  const Client = loadSpecProto();
  const client = new Client(`unix://${path}`, grpc.credentials.createInsecure()) as unknown as grpc.Client &
    Record<string, (...a: unknown[]) => grpc.ClientReadableStream<{ svids: { x509_svid: Buffer }[] }>>;
  const metadata = new grpc.Metadata();
  metadata.set('workload.spiffe.io', 'true');
  const call = client['FetchX509SVID']?.({}, metadata);
  if (!call) throw new Error('no FetchX509SVID');
  const arrivals = new Map<string, number>();
  call.on('data', (m) => {
    const der = m.svids[0]?.x509_svid;
    if (der) arrivals.set(new X509Certificate(der).serialNumber, performance.now());
  });
  call.on('error', () => undefined);
  return { arrivals, close: () => (call.cancel(), client.close()) };
}

async function until<T>(get: () => T | undefined | Promise<T | undefined>, everyMs = 1): Promise<T> {
  for (;;) {
    const value = await get();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

function stats(label: string, ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  const f = (n: number): string => n.toFixed(1).padStart(7);
  return `${label.padEnd(44)} n=${String(s.length).padStart(3)}  min${f(s[0] ?? NaN)}  p50${f(at(0.5))}  p95${f(at(0.95))}  max${f(s.at(-1) ?? NaN)}  ms`;
}

async function filesToStreamAndCloud(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-wl-'));
  const cleanups: Array<() => Promise<unknown>> = [() => rm(dir, { recursive: true, force: true })];
  try {
    const ca = await DevCa.create({ trustDomain: TD });
    const svidDir = join(dir, 'svid');
    const writeSvid = async (): Promise<string> => {
      const svid = await ca.issueX509Svid({ spiffeId: ID });
      const serial = new X509Certificate(svid.certPem).serialNumber;
      await writeAtomicDir(svidDir, [
        { name: 'tls.crt', content: svid.certPem },
        { name: 'tls.key', content: svid.keyPem, mode: 0o600 },
        { name: 'ca.crt', content: ca.certPem },
      ]);
      return serial;
    };
    await writeSvid();
    const issuer = await startDevIssuer({ ca, trustDomain: TD, audiences: ['sts.amazonaws.com'], logger });
    cleanups.push(() => issuer.close());
    const caFile = join(dir, 'issuer-ca.pem');
    await writeFile(caFile, issuer.caPem);
    const sts = await FakeSts.start({
      allowLoopbackHttpIssuers: true,
      region: 'eu-west-1',
      providers: [{ issuer: issuer.issuerUrl, audiences: ['sts.amazonaws.com'] }],
      roles: [{ arn: ROLE, issuer: issuer.issuerUrl, audience: 'sts.amazonaws.com' }],
    });
    cleanups.push(() => sts.close());
    const config = validate(
      sidecarSchema,
      {
        spiffe: {
          trustDomain: TD,
          x509: { dir: svidDir, pollIntervalSeconds: 3600 },
          jwt: { exchange: { url: issuer.tokenUrl, caFile } },
        },
        server: {
          metadataAddress: '127.0.0.1:0',
          opsAddress: '127.0.0.1:0',
          stateDir: join(dir, 'state'),
          drainSeconds: 0,
        },
        aws: { roleArn: ROLE, region: 'eu-west-1', stsEndpoint: sts.url },
      },
      'bench',
    );
    const app = await startApp(config, { clock: systemClock, logger, metrics: new Metrics() });
    cleanups.push(() => app.shutdown(0));
    await app.whenReady();
    const { x509, jwt } = app.identity;
    if (!x509 || !jwt) throw new Error('the bench config has both sources');
    const jwtBundle = await startJwksBundleSource({
      url: issuer.issuerUrl,
      trustDomain: TD,
      clock: systemClock,
      logger,
    });
    cleanups.push(() => jwtBundle.close());
    const path = join(dir, 'spiffe.sock');
    const server = await startWorkloadApiServer({ path, x509, jwt, jwtBundle, trustDomain: TD, logger });
    cleanups.push(() => server.close());
    const stream = openStream(path);
    cleanups.push(async () => stream.close());

    const token = await readFile(join(dir, 'state', 'aws-container-token'), 'utf8');
    const accessKey = async (): Promise<string | undefined> => {
      const r = await fetch(`${app.metadataOrigin}/v1/credentials`, { headers: { authorization: token } });
      return r.status === 200 ? ((await r.json()) as { AccessKeyId: string }).AccessKeyId : undefined;
    };
    await until(() => (stream.arrivals.size > 0 ? true : undefined));

    const toStream: number[] = [];
    const toCloud: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const before = await accessKey();
      const svid = await ca.issueX509Svid({ spiffeId: ID });
      const serial = new X509Certificate(svid.certPem).serialNumber;
      const files = [
        { name: 'tls.crt', content: svid.certPem },
        { name: 'tls.key', content: svid.keyPem, mode: 0o600 },
        { name: 'ca.crt', content: ca.certPem },
      ];
      await writeAtomicDir(svidDir, files);
      const onDisk = performance.now();
      const cloudAt = await until(async () => ((await accessKey()) !== before ? performance.now() : undefined), 2);
      const streamAt = await until(() => stream.arrivals.get(serial));
      toStream.push(streamAt - onDisk);
      toCloud.push(cloudAt - onDisk);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    console.log(stats('files (..data swap) → Workload API stream', toStream));
    console.log(stats('files (..data swap) → new AWS credentials', toCloud));
    console.log(
      `  (x509-files debounce 250 ms included; AWS path = issuer mTLS exchange + STS stand-in; ${sts.stats.assumeRoleSuccesses} AssumeRoleWithWebIdentity)`,
    );
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  }
}

async function memoryToStream(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-wl-mem-'));
  try {
    const x509 = await devX509Source({ trustDomain: TD, spiffeId: ID });
    const path = join(dir, 'spiffe.sock');
    const server = await startWorkloadApiServer({ path, x509, trustDomain: TD, logger });
    // Subscribed before any stream, so it runs first when the source swaps an SVID in.
    let swappedAt = 0;
    x509.subscribe(() => (swappedAt = performance.now()));
    const streams = Array.from({ length: 8 }, () => openStream(path));
    await until(() => (streams.every((s) => s.arrivals.size > 0) ? true : undefined));
    const one: number[] = [];
    const all: number[] = [];
    for (let i = 0; i < rounds * 5; i++) {
      const serial = (await x509.rotate()).certificates[0]?.serialNumber ?? '';
      const first = await until(() => streams[0]?.arrivals.get(serial));
      const last = await until(() =>
        streams.every((s) => s.arrivals.has(serial))
          ? Math.max(...streams.map((s) => s.arrivals.get(serial) ?? 0))
          : undefined,
      );
      one.push(first - swappedAt);
      all.push(last - swappedAt);
    }
    console.log(stats('in-memory X509Source → 1st of 8 streams', one));
    console.log(stats('in-memory X509Source → all 8 streams', all));
    for (const s of streams) s.close();
    await server.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

console.log(`Workload API rotation latency, ${rounds} rounds, Node ${process.version}`);
await filesToStreamAndCloud();
await memoryToStream();
