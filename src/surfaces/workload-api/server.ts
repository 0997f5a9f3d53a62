// The SPIFFE Workload API served to the pod on a Unix socket (docs/spiffe.md#workload-api), backed by our X509Source
// (files) and JwtSource (issuer).
import * as grpc from '@grpc/grpc-js';
import { type Clock, systemClock } from '../../base/clock.ts';
import { toConnectorError } from '../../base/errors.ts';
import type { Logger } from '../../ops/logger.ts';
import type { Metrics } from '../../ops/metrics.ts';
import type { JwtBundle } from '../../spiffe/bundle.ts';
import { validateJwtSvid } from '../../spiffe/jwt-svid.ts';
import type { JwtSource, Unsubscribe, X509Source } from '../../spiffe/source.ts';
import { TrustDomain } from '../../spiffe/spiffe-id.ts';
import {
  hasSecurityHeader,
  isJwtSvidRequest,
  isValidateJwtSvidRequest,
  SECURITY_HEADER_MISSING,
  workloadApiDefinition,
} from '../../workload-api/proto.ts';
import { statusName } from '../../workload-api/status.ts';
import { jsonToStruct } from '../../workload-api/struct.ts';
import { buildX509BundlesResponse, buildX509SvidResponse } from '../../workload-api/x509-wire.ts';
import type { JwtBundleSource } from './jwt-bundle-source.ts';
import { listenUnixSocket, unlinkOwnSocket, WORKLOAD_API_SOCKET_MODE } from './socket.ts';

export interface WorkloadApiServerOptions {
  /** Filesystem path of the socket, in a volume shared with the app container. */
  readonly path: string;
  readonly x509: X509Source;
  /** Where JWT-SVIDs come from (the issuer exchange); without it FetchJWTSVID is Unimplemented. */
  readonly jwt?: JwtSource | undefined;
  readonly trustDomain: string;
  readonly logger: Logger;
  /** Our trust domain's JWT bundle; without it FetchJWTBundles and ValidateJWTSVID are Unimplemented. */
  readonly jwtBundle?: JwtBundleSource | undefined;
  readonly clock?: Clock;
  readonly metrics?: Metrics | undefined;
  /** Socket file mode; default 0660 (see socket.ts). */
  readonly socketMode?: number;
  /** Longest wait for a JWT-SVID from the JwtSource. Default 15 s. */
  readonly jwtTimeoutMs?: number;
}

export interface WorkloadApiServer {
  readonly path: string;
  close(): Promise<void>;
}

type Status = { code: grpc.status; details: string };
type Stream = grpc.ServerWritableStream<unknown, unknown>;

export async function startWorkloadApiServer(options: WorkloadApiServerOptions): Promise<WorkloadApiServer> {
  const { logger, x509, jwt, jwtBundle, metrics } = options;
  const clock = options.clock ?? systemClock;
  const td = TrustDomain.parse(options.trustDomain);
  const streams = new Map<Stream, Unsubscribe>();
  let closing = false;

  const count = (rpc: string, code: grpc.status): void => {
    metrics?.requests.inc({ surface: 'workload-api', status: statusName(code) });
    logger.debug({ rpc, status: statusName(code) }, 'Workload API call');
  };
  const refused = (rpc: string, metadata: grpc.Metadata): Status | undefined => {
    if (hasSecurityHeader(metadata)) return undefined;
    logger.warn({ rpc }, 'refused a Workload API call without the workload.spiffe.io security header');
    return { code: grpc.status.INVALID_ARGUMENT, details: SECURITY_HEADER_MISSING };
  };
  const fail = (rpc: string, call: Stream, s: Status): void => {
    count(rpc, s.code);
    call.emit('error', s);
  };
  const answer = (rpc: string, callback: grpc.sendUnaryData<unknown>, result: Status | object): void => {
    if ('code' in result && 'details' in result) {
      count(rpc, result.code);
      callback(result as grpc.ServiceError);
    } else {
      count(rpc, grpc.status.OK);
      callback(null, result);
    }
  };

  /**
   * Keeps a stream open, sending `build()` now and whenever it changes (full state each time,
   * docs/spiffe.md#workload-api-streams).
   */
  const watch = (
    rpc: string,
    call: Stream,
    build: () => { key: string; message: object } | Status,
    subscribe: (listener: () => void) => Unsubscribe,
  ): void => {
    const first = build();
    if ('code' in first) {
      fail(rpc, call, first);
      return;
    }
    count(rpc, grpc.status.OK);
    let lastKey = first.key;
    call.write(first.message);
    const unsubscribe = subscribe(() => {
      const next = build();
      if ('code' in next || next.key === lastKey || call.cancelled) return;
      lastKey = next.key;
      call.write(next.message);
    });
    const end = (): void => {
      unsubscribe();
      streams.delete(call);
    };
    streams.set(call, unsubscribe);
    call.on('cancelled', end);
    call.on('error', end);
    call.on('close', end);
  };

  const x509Svid = (): { key: string; message: object } | Status => {
    const svid = x509.current();
    const bundle = x509.bundle();
    if (!svid || !bundle)
      return { code: grpc.status.UNAVAILABLE, details: 'no X.509-SVID yet: the sidecar is starting' };
    return {
      key: fingerprint([svid.certificates[0]?.raw, ...bundle.authorities.map((a) => a.raw)]),
      message: buildX509SvidResponse(svid, bundle),
    };
  };
  const x509Bundles = (): { key: string; message: object } | Status => {
    const bundle = x509.bundle();
    if (!bundle) return { code: grpc.status.UNAVAILABLE, details: 'no X.509 bundle yet: the sidecar is starting' };
    return { key: fingerprint(bundle.authorities.map((a) => a.raw)), message: buildX509BundlesResponse(bundle) };
  };
  const jwtBundles = (): { key: string; message: object } | Status => {
    if (!jwtBundle) return NO_JWT_BUNDLE;
    const bundle = jwtBundle.current();
    if (!bundle) return { code: grpc.status.UNAVAILABLE, details: 'the JWT bundle has not been fetched yet' };
    const json = spiffeJwks(bundle);
    return { key: json, message: { bundles: { [td.idString()]: Buffer.from(json) } } };
  };

  const implementation: grpc.UntypedServiceImplementation = {
    FetchX509SVID: (call: Stream) => {
      const no = refused('FetchX509SVID', call.metadata);
      if (no) return fail('FetchX509SVID', call, no);
      watch('FetchX509SVID', call, x509Svid, (l) => x509.subscribe(l));
    },
    FetchX509Bundles: (call: Stream) => {
      const no = refused('FetchX509Bundles', call.metadata);
      if (no) return fail('FetchX509Bundles', call, no);
      watch('FetchX509Bundles', call, x509Bundles, (l) => x509.subscribe(l));
    },
    FetchJWTBundles: (call: Stream) => {
      const no = refused('FetchJWTBundles', call.metadata);
      if (no) return fail('FetchJWTBundles', call, no);
      watch('FetchJWTBundles', call, jwtBundles, (l) => jwtBundle?.subscribe(l) ?? (() => undefined));
    },
    FetchJWTSVID: (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const rpc = 'FetchJWTSVID';
      const no = refused(rpc, call.metadata);
      if (no) return answer(rpc, callback, no);
      const request = call.request;
      if (!isJwtSvidRequest(request) || request.audience.length === 0 || request.audience.some((a) => a === '')) {
        return answer(rpc, callback, { code: grpc.status.INVALID_ARGUMENT, details: 'audience must be specified' });
      }
      if (request.audience.length > 1) {
        return answer(rpc, callback, {
          code: grpc.status.INVALID_ARGUMENT,
          details: 'this Workload API issues JWT-SVIDs for one audience per request',
        });
      }
      if (!jwt)
        return answer(rpc, callback, {
          code: grpc.status.UNIMPLEMENTED,
          details: 'this Workload API has no JWT-SVID source (configure spiffe.jwt)',
        });
      const audience = request.audience[0] as string;
      const wanted = request.spiffe_id;
      const current = x509.current();
      if (wanted !== '' && current && wanted !== current.id.toString()) {
        return answer(rpc, callback, { code: grpc.status.PERMISSION_DENIED, details: 'no identity issued' });
      }
      const abort = new AbortController();
      call.on('cancelled', () => abort.abort());
      const signal = AbortSignal.any([abort.signal, AbortSignal.timeout(options.jwtTimeoutMs ?? 15_000)]);
      jwt.fetchJwtSvid(audience, signal).then(
        (svid) => {
          if (wanted !== '' && wanted !== svid.id.toString())
            return answer(rpc, callback, { code: grpc.status.PERMISSION_DENIED, details: 'no identity issued' });
          answer(rpc, callback, { svids: [{ spiffe_id: svid.id.toString(), svid: svid.token.reveal(), hint: '' }] });
        },
        (thrown: unknown) => {
          const error = toConnectorError(thrown);
          logger.warn(
            {
              rpc,
              audience: audience.slice(0, 200),
              code: error.code,
              retryable: error.retryable,
              err: error.message.slice(0, 500),
            },
            'could not hand out a JWT-SVID on the Workload API',
          );
          // Too many new audiences: ResourceExhausted (clients back off). An audience we will not serve: InvalidArgument.
          // Retryable (issuer unreachable, starting): Unavailable. Refused by the issuer: PermissionDenied, which clients retry with backoff.
          const code =
            error.code === 'throttled'
              ? grpc.status.RESOURCE_EXHAUSTED
              : error.code === 'request_invalid'
                ? grpc.status.INVALID_ARGUMENT
                : error.retryable
                  ? grpc.status.UNAVAILABLE
                  : grpc.status.PERMISSION_DENIED;
          answer(rpc, callback, { code, details: error.message });
        },
      );
    },
    ValidateJWTSVID: (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const rpc = 'ValidateJWTSVID';
      const no = refused(rpc, call.metadata);
      if (no) return answer(rpc, callback, no);
      const request = call.request;
      if (!isValidateJwtSvidRequest(request) || request.audience === '')
        return answer(rpc, callback, { code: grpc.status.INVALID_ARGUMENT, details: 'audience must be specified' });
      if (request.svid === '')
        return answer(rpc, callback, { code: grpc.status.INVALID_ARGUMENT, details: 'svid must be specified' });
      if (!jwtBundle) return answer(rpc, callback, NO_JWT_BUNDLE);
      const bundle = jwtBundle.current();
      if (!bundle)
        return answer(rpc, callback, {
          code: grpc.status.UNAVAILABLE,
          details: 'the JWT bundle has not been fetched yet',
        });
      validateJwtSvid(request.svid, bundle, request.audience, new Date(clock.now())).then(
        (svid) => answer(rpc, callback, { spiffe_id: svid.id.toString(), claims: jsonToStruct(svid.claims) }),
        (thrown: unknown) =>
          answer(rpc, callback, { code: grpc.status.INVALID_ARGUMENT, details: toConnectorError(thrown).message }),
      );
    },
    FetchWITSVID: (call: Stream) =>
      fail('FetchWITSVID', call, refused('FetchWITSVID', call.metadata) ?? WIT_UNSUPPORTED),
    FetchWITBundles: (call: Stream) =>
      fail('FetchWITBundles', call, refused('FetchWITBundles', call.metadata) ?? WIT_UNSUPPORTED),
  };

  const server = new grpc.Server();
  server.addService(workloadApiDefinition().service, implementation);
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const mode = options.socketMode ?? WORKLOAD_API_SOCKET_MODE;
  const { server: listener, inode } = await listenUnixSocket(options.path, mode, logger, (socket) => {
    if (closing) socket.destroy();
    else injector.injectConnection(socket);
  });
  logger.info(
    {
      path: options.path,
      mode: `0${mode.toString(8)}`,
      trustDomain: td.name,
      jwt: jwt !== undefined,
      jwtBundle: jwtBundle !== undefined,
    },
    'serving the SPIFFE Workload API',
  );

  return {
    path: options.path,
    async close(): Promise<void> {
      if (closing) return;
      closing = true;
      // Stop accepting now; the callback waits for open connections, which forceShutdown ends.
      const closed = new Promise<void>((resolve) => listener.close(() => resolve()));
      for (const [call, unsubscribe] of streams) {
        unsubscribe();
        call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'the sidecar is shutting down' });
      }
      streams.clear();
      // GOAWAY to every session (their streams have just ended); sessions still open after 1 s are cut.
      injector.drain(1_000);
      await closed;
      server.forceShutdown();
      await unlinkOwnSocket(options.path, inode);
    },
  };
}

const NO_JWT_BUNDLE: Status = {
  code: grpc.status.UNIMPLEMENTED,
  details: 'this Workload API has no JWT bundle to serve (configure server.workloadApiJwksUrl)',
};
const WIT_UNSUPPORTED: Status = { code: grpc.status.UNIMPLEMENTED, details: 'the WIT-SVID profile is not supported' };

/** The bundle as SPIFFE bundle JSON (docs/spiffe.md#bundles): each key `use: jwt-svid`. */
function spiffeJwks(bundle: JwtBundle): string {
  const doc: Record<string, unknown> = { keys: bundle.keys.map((k) => ({ ...k, use: 'jwt-svid' })) };
  if (bundle.sequence !== undefined) doc['spiffe_sequence'] = bundle.sequence;
  if (bundle.refreshHintSeconds !== undefined) doc['spiffe_refresh_hint'] = bundle.refreshHintSeconds;
  return JSON.stringify(doc);
}

function fingerprint(parts: ReadonlyArray<Buffer | undefined>): string {
  return parts.map((p) => (p ? p.toString('base64') : '')).join('.');
}
