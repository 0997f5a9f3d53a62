// A fake SPIFFE Workload API server for tests, written from the spec (docs/spiffe.md#workload-api,
// docs/spiffe.md#workload-api-errors), not from our code: a real gRPC server on a Unix socket in a temp dir that checks
// the security header, holds streams open, rotates SVIDs, drops streams and fails on demand.
//
//   const fake = await FakeWorkloadApi.start();          // fake.address = unix:///tmp/.../agent.sock
//   fake.setX509({ svids: [x509Entry(svid, ca)] });      // pushed to every open FetchX509SVID stream
//   fake.dropStreams(grpc.status.UNAVAILABLE);           // every open stream ends with that status
//   fake.failWith(grpc.status.UNAVAILABLE, 'starting');  // every new call fails so, until failWith(undefined)

import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { DevCa, DevX509Svid } from './pki.ts';

const PROTO = fileURLToPath(new URL('../../proto/workload.proto', import.meta.url));

export function loadSpecProto(): grpc.ServiceClientConstructor {
  const def = loadSync(PROTO, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  return grpc.loadPackageDefinition(def)['SpiffeWorkloadAPI'] as grpc.ServiceClientConstructor;
}

/** PEM chain → concatenated DER, as the Workload API carries `x509_svid` and `bundle`. */
export function pemChainToDer(pem: string): Buffer {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return Buffer.concat(blocks.map((b) => new X509Certificate(b).raw));
}

/** PEM private key → PKCS#8 DER (`x509_svid_key`). */
export function pemKeyToPkcs8Der(pem: string): Buffer {
  return createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });
}

export interface X509SvidEntry {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}

export interface X509SvidMessage {
  svids: X509SvidEntry[];
  crl?: Buffer[];
  federated_bundles?: Record<string, Buffer>;
}

/** An X509SVID entry from a DevCa-minted SVID and the CA's root as bundle. */
export function x509Entry(svid: DevX509Svid, ca: DevCa, hint = ''): X509SvidEntry {
  return {
    spiffe_id: svid.spiffeId,
    x509_svid: pemChainToDer(svid.certPem),
    x509_svid_key: pemKeyToPkcs8Der(svid.keyPem),
    bundle: pemChainToDer(ca.certPem),
    hint,
  };
}

export interface SeenCall {
  rpc: string;
  /** Values of the workload.spiffe.io header, as received. */
  header: string[];
  request: unknown;
}

type Stream = grpc.ServerWritableStream<unknown, unknown>;

export class FakeWorkloadApi {
  readonly address: string;
  readonly path: string;
  readonly calls: SeenCall[] = [];
  readonly #server: grpc.Server;
  readonly #dir: string;
  readonly #streams = new Map<Stream, string>();
  #x509: X509SvidMessage | undefined;
  #x509Bundles: Record<string, Buffer> | undefined;
  #jwtBundles: Record<string, Buffer> | undefined;
  #failure: { code: grpc.status; details: string } | undefined;
  #mintJwt: ((audience: string[]) => Promise<{ spiffe_id: string; svid: string; hint?: string }[]>) | undefined;
  #jwtFailure: { code: grpc.status; details: string } | undefined;

  private constructor(server: grpc.Server, dir: string, path: string) {
    this.#server = server;
    this.#dir = dir;
    this.path = path;
    this.address = `unix://${path}`;
  }

  /** Listens in a new temp dir, or at `path` (to restart an agent on the same socket). */
  static async start(options: { path?: string } = {}): Promise<FakeWorkloadApi> {
    const dir = await mkdtemp(join(tmpdir(), 'fake-wl-'));
    const path = options.path ?? join(dir, 'agent.sock');
    const server = new grpc.Server();
    const fake = new FakeWorkloadApi(server, dir, path);
    server.addService(loadSpecProto().service, fake.#implementation());
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())),
    );
    return fake;
  }

  /** Sets the X509SVIDResponse; every open FetchX509SVID stream gets it at once. */
  setX509(message: X509SvidMessage): void {
    this.#x509 = message;
    this.#push('FetchX509SVID', message);
  }

  setX509Bundles(bundles: Record<string, Buffer>): void {
    this.#x509Bundles = bundles;
    this.#push('FetchX509Bundles', { crl: [], bundles });
  }

  setJwtBundles(bundles: Record<string, Buffer>): void {
    this.#jwtBundles = bundles;
    this.#push('FetchJWTBundles', { bundles });
  }

  /** How FetchJWTSVID answers: a minting function (from the request's audiences). */
  onFetchJwt(mint: (audience: string[]) => Promise<{ spiffe_id: string; svid: string; hint?: string }[]>): void {
    this.#mintJwt = mint;
  }

  /** FetchJWTSVID alone fails with this status (undefined: stop failing). */
  failJwtWith(code: grpc.status | undefined, details = ''): void {
    this.#jwtFailure = code === undefined ? undefined : { code, details };
  }

  /** Every new call fails with this status until called with undefined. */
  failWith(code: grpc.status | undefined, details = ''): void {
    this.#failure = code === undefined ? undefined : { code, details };
  }

  /** Ends every open stream: with OK (a clean end) or an error status. */
  dropStreams(code: grpc.status = grpc.status.OK, details = 'dropped by the fake'): void {
    for (const call of [...this.#streams.keys()]) {
      this.#streams.delete(call);
      if (code === grpc.status.OK) call.end();
      else call.emit('error', { code, details });
    }
  }

  openStreams(rpc: string): number {
    return [...this.#streams.values()].filter((r) => r === rpc).length;
  }

  callCount(rpc: string): number {
    return this.calls.filter((c) => c.rpc === rpc).length;
  }

  async close(): Promise<void> {
    this.dropStreams(grpc.status.UNAVAILABLE, 'fake closing');
    this.#server.forceShutdown();
    await rm(this.#dir, { recursive: true, force: true });
  }

  #push(rpc: string, message: object): void {
    for (const [call, r] of this.#streams) if (r === rpc && !call.cancelled) call.write(message);
  }

  /** Records the call; returns the status to fail with, if any (header first, as the spec requires). */
  #admit(rpc: string, metadata: grpc.Metadata, request: unknown): { code: grpc.status; details: string } | undefined {
    const header = metadata.get('workload.spiffe.io').map(String);
    this.calls.push({ rpc, header, request });
    if (header.length !== 1 || header[0] !== 'true')
      return { code: grpc.status.INVALID_ARGUMENT, details: 'security header missing from request' };
    return this.#failure;
  }

  #stream(rpc: string, current: () => object | undefined): (call: Stream) => void {
    return (call) => {
      const failure = this.#admit(rpc, call.metadata, call.request);
      if (failure) return void call.emit('error', failure);
      this.#streams.set(call, rpc);
      call.on('cancelled', () => this.#streams.delete(call));
      const now = current();
      if (now) call.write(now);
    };
  }

  #implementation(): grpc.UntypedServiceImplementation {
    return {
      FetchX509SVID: this.#stream('FetchX509SVID', () => this.#x509),
      FetchX509Bundles: this.#stream('FetchX509Bundles', () =>
        this.#x509Bundles ? { crl: [], bundles: this.#x509Bundles } : undefined,
      ),
      FetchJWTBundles: this.#stream('FetchJWTBundles', () =>
        this.#jwtBundles ? { bundles: this.#jwtBundles } : undefined,
      ),
      FetchJWTSVID: (
        call: grpc.ServerUnaryCall<{ audience: string[] }, unknown>,
        callback: grpc.sendUnaryData<unknown>,
      ) => {
        const failure = this.#admit('FetchJWTSVID', call.metadata, call.request) ?? this.#jwtFailure;
        if (failure) return callback(failure as grpc.ServiceError);
        if (call.request.audience.length === 0)
          return callback({
            code: grpc.status.INVALID_ARGUMENT,
            details: 'audience must be specified',
          } as grpc.ServiceError);
        if (!this.#mintJwt)
          return callback({ code: grpc.status.PERMISSION_DENIED, details: 'no identity issued' } as grpc.ServiceError);
        this.#mintJwt(call.request.audience).then(
          (svids) => callback(null, { svids: svids.map((s) => ({ hint: '', ...s })) }),
          (e: Error) => callback({ code: grpc.status.INTERNAL, details: e.message } as grpc.ServiceError),
        );
      },
      ValidateJWTSVID: (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const failure = this.#admit('ValidateJWTSVID', call.metadata, call.request);
        callback((failure ?? { code: grpc.status.UNIMPLEMENTED, details: 'not in the fake' }) as grpc.ServiceError);
      },
    };
  }
}
