// The SPIFFE Workload API as an identity source (docs/spiffe.md#workload-api): the X.509-SVID stream verified like
// files, bundles, JWT-SVIDs per audience.
import * as grpc from '@grpc/grpc-js';
import type { Clock } from '../../base/clock.ts';
import { ConnectorError, toConnectorError } from '../../base/errors.ts';
import { CredentialCache } from '../../cache/credential-cache.ts';
import type { RefreshPolicy } from '../../cache/refresh-policy.ts';
import type { Logger } from '../../ops/logger.ts';
import type { Metrics } from '../../ops/metrics.ts';
import { JwtBundle, type X509Bundle } from '../../spiffe/bundle.ts';
import { type JwtSvid, MAX_AUDIENCE_LENGTH, parseJwtSvidInsecure } from '../../spiffe/jwt-svid.ts';
import { type JwtSource, Listeners, type Unsubscribe, type X509Source } from '../../spiffe/source.ts';
import { TrustDomain } from '../../spiffe/spiffe-id.ts';
import { verifyX509Svid, type X509Svid } from '../../spiffe/x509-svid.ts';
import { parseWorkloadApiAddress } from '../../workload-api/address.ts';
import {
  isJwtBundlesResponse,
  isJwtSvidResponse,
  isX509BundlesResponse,
  isX509SvidResponse,
  securityMetadata,
  workloadApiDefinition,
} from '../../workload-api/proto.ts';
import { workloadApiError } from '../../workload-api/status.ts';
import { readX509BundlesResponse, readX509SvidResponse, type X509Context } from '../../workload-api/x509-wire.ts';
import { StreamWatcher } from './stream-watcher.ts';

/** JWT-SVIDs from the agent: refreshed at half their life (±10 %), as SPIRE's own cache does. */
export const WORKLOAD_API_JWT_POLICY: RefreshPolicy = {
  marginMs: 30_000,
  backoffBaseMs: 1_000,
  backoffMaxMs: 30_000,
  jitter: 0.1,
};

/** The generated client: methods are looked up by RPC name. */
type WorkloadApiClient = grpc.Client & Record<string, unknown>;

export interface WorkloadApiSourceOptions {
  /** `unix:///path`, `unix:/path` or `tcp://IP:port`. */
  readonly socket: string;
  /** SVIDs of any other trust domain are refused. */
  readonly trustDomain: string;
  /** Use the SVID with this hint; default the first (docs/spiffe.md#workload-api-streams). */
  readonly hint?: string | undefined;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics?: Metrics | undefined;
  /** Deadline of one FetchJWTSVID call. Default 10 s. */
  readonly callTimeoutMs?: number;
  /** Audiences the sidecar itself needs (the configured clouds'): kept fresh from the start, never dropped. */
  readonly audiences?: readonly string[];
  /** Other audiences (asked for by the pod) kept fresh at once; the least recently used beyond this is dropped. Default 32. */
  readonly maxAudiences?: number;
  readonly streamBackoff?: RefreshPolicy;
  readonly jwtPolicy?: RefreshPolicy;
  readonly random?: () => number;
}

/** Builds the source; nothing is read until start(). whenReady() resolves with the first good X.509-SVID. */
export function createWorkloadApiSource(options: WorkloadApiSourceOptions): WorkloadApiSource {
  return new WorkloadApiSource(options);
}

export class WorkloadApiSource implements X509Source, JwtSource {
  readonly #o: WorkloadApiSourceOptions;
  readonly #td: TrustDomain;
  readonly #client: WorkloadApiClient;
  readonly #listeners = new Listeners<[X509Svid]>();
  readonly #watchers: StreamWatcher[] = [];
  readonly #jwt: CredentialCache<JwtSvid>;
  #x509: X509Context | undefined;
  #bundle: X509Bundle | undefined;
  #jwtBundles = new Map<string, JwtBundle>();
  #lastRefusal: string | undefined;
  #final: ConnectorError | undefined;
  #ready: { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void };
  #closed = false;

  constructor(options: WorkloadApiSourceOptions) {
    this.#o = options;
    this.#td = TrustDomain.parse(options.trustDomain);
    const address = parseWorkloadApiAddress(options.socket);
    const { Client } = workloadApiDefinition();
    this.#client = new Client(address.target, grpc.credentials.createInsecure(), {
      'grpc.initial_reconnect_backoff_ms': 500,
      'grpc.max_reconnect_backoff_ms': 5_000,
    }) as WorkloadApiClient;
    let resolve!: () => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => undefined); // rejection is reported through whenReady() callers
    this.#ready = { promise, resolve, reject };
    this.#jwt = new CredentialCache<JwtSvid>({
      cloud: 'workload-api',
      name: 'jwt-svid',
      exchange: (audience, signal) => this.#fetchJwtSvid(audience, signal),
      pinned: options.audiences ?? [],
      expiresAt: (svid) => svid.expiresAt,
      policy: options.jwtPolicy ?? WORKLOAD_API_JWT_POLICY,
      clock: options.clock,
      logger: options.logger,
      metrics: options.metrics,
      maxKeys: options.maxAudiences ?? 32,
      maxKeyLength: MAX_AUDIENCE_LENGTH,
      ...(options.random ? { random: options.random } : {}),
    });
  }

  /** Opens the streams (idempotent); returns at once, whenReady() tells when an SVID is held. */
  async start(): Promise<void> {
    if (this.#watchers.length > 0 || this.#closed) return;
    const common = {
      clock: this.#o.clock,
      logger: this.#o.logger,
      metrics: this.#o.metrics,
      ...(this.#o.streamBackoff ? { backoff: this.#o.streamBackoff } : {}),
      ...(this.#o.random ? { random: this.#o.random } : {}),
    };
    this.#watchers.push(
      new StreamWatcher({
        ...common,
        rpc: 'FetchX509SVID',
        open: () => this.#open('FetchX509SVID'),
        onMessage: (m) => this.#onX509Svid(m),
        onFinal: (e) => this.#onFinal(e),
      }),
      new StreamWatcher({
        ...common,
        rpc: 'FetchX509Bundles',
        open: () => this.#open('FetchX509Bundles'),
        onMessage: (m) => this.#onX509Bundles(m),
      }),
      new StreamWatcher({
        ...common,
        rpc: 'FetchJWTBundles',
        open: () => this.#open('FetchJWTBundles'),
        onMessage: (m) => this.#onJwtBundles(m),
      }),
    );
    for (const w of this.#watchers) w.start();
  }

  // ---- X509Source ----

  current(): X509Svid | undefined {
    const svid = this.#x509?.svid;
    return svid && svid.notAfter.getTime() > this.#o.clock.now() ? svid : undefined;
  }

  bundle(): X509Bundle | undefined {
    return this.#bundle;
  }

  /** Bundles of federated trust domains from the last X.509 message, by trust domain name. */
  federatedBundles(): ReadonlyMap<string, X509Bundle> {
    return this.#x509?.federated ?? new Map();
  }

  /** Our trust domain's JWT bundle from FetchJWTBundles, when the agent has sent one. */
  jwtBundle(): JwtBundle | undefined {
    return this.#jwtBundles.get(this.#td.name);
  }

  /** Called after a new X.509-SVID or bundle is swapped in; also the JwtSource identity-change signal. */
  subscribe(listener: (svid: X509Svid) => void): Unsubscribe {
    return this.#listeners.add(listener);
  }

  /** Resolves with the first good X.509-SVID (or on close); rejects if the agent refuses FetchX509SVID for good. */
  whenReady(): Promise<void> {
    return this.#ready.promise;
  }

  // ---- JwtSource ----

  async fetchJwtSvid(audience: string, signal: AbortSignal): Promise<JwtSvid> {
    if (this.#closed)
      throw new ConnectorError('identity_unavailable', 'the Workload API source is closed', { retryable: false });
    const lookup = await this.#jwt.get(audience, signal);
    if (!lookup.ok) throw lookup.error;
    return lookup.value;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const w of this.#watchers) w.stop();
    this.#jwt.stop();
    this.#client.close();
    this.#ready.resolve();
  }

  // ---- streams ----

  #open(rpc: 'FetchX509SVID' | 'FetchX509Bundles' | 'FetchJWTBundles'): grpc.ClientReadableStream<unknown> {
    const method = this.#client[rpc] as (
      request: object,
      metadata: grpc.Metadata,
    ) => grpc.ClientReadableStream<unknown>;
    return method.call(this.#client, {}, securityMetadata());
  }

  #onX509Svid(message: unknown): boolean {
    const { logger, metrics, clock } = this.#o;
    let context: X509Context;
    try {
      if (!isX509SvidResponse(message))
        throw new ConnectorError('svid_invalid', 'the Workload API sent an X509SVIDResponse of an unexpected shape');
      context = readX509SvidResponse(message, {
        trustDomain: this.#td,
        hint: this.#o.hint,
        now: new Date(clock.now()),
      });
    } catch (thrown) {
      const error = toConnectorError(thrown, 'svid_invalid');
      metrics?.svidUpdates.inc({ kind: 'x509', outcome: 'refused' });
      if (error.message !== this.#lastRefusal) {
        const keeping = this.#x509?.svid.id.toString() ?? null;
        logger.warn(
          { source: 'workload-api', code: error.code, keeping, err: error.message },
          keeping
            ? 'refused the X.509-SVID from the Workload API; keeping the last good SVID'
            : 'refused the X.509-SVID from the Workload API; no usable SVID yet',
        );
        this.#lastRefusal = error.message;
      }
      return false;
    }
    this.#lastRefusal = undefined;
    for (const warning of context.warnings) logger.warn({ source: 'workload-api' }, warning);
    const previous = this.#x509;
    this.#x509 = context;
    const bundleChanged = !this.#bundle?.equals(context.bundle);
    this.#bundle = context.bundle;
    const leafChanged = !previous?.svid.certificates[0]?.raw.equals(
      context.svid.certificates[0]?.raw ?? Buffer.alloc(0),
    );
    if (!leafChanged && !bundleChanged) return true;
    metrics?.svidUpdates.inc({ kind: 'x509', outcome: 'accepted' });
    metrics?.svidExpiry.set({ kind: 'x509' }, Math.round(context.svid.notAfter.getTime() / 1000));
    const svid = context.svid;
    logger.info(
      {
        source: 'workload-api',
        spiffeId: svid.id.toString(),
        notAfter: svid.notAfter.toISOString(),
        serial: svid.certificates[0]?.serialNumber,
        hint: context.hint || undefined,
      },
      previous ? 'X.509-SVID rotated' : 'X.509-SVID received',
    );
    if (previous && !previous.svid.id.equals(svid.id)) {
      // Another identity: JWT-SVIDs of the old one must not be handed out any more.
      logger.warn(
        { from: previous.svid.id.toString(), to: svid.id.toString() },
        'the Workload API identity changed; dropping cached JWT-SVIDs',
      );
      this.#jwt.reset();
    }
    this.#ready.resolve();
    this.#listeners.emit(svid);
    return true;
  }

  #onX509Bundles(message: unknown): boolean {
    const { logger, clock } = this.#o;
    try {
      if (!isX509BundlesResponse(message))
        throw new ConnectorError(
          'bundle_invalid',
          'the Workload API sent an X509BundlesResponse of an unexpected shape',
        );
      const bundle = readX509BundlesResponse(message, this.#td);
      if (!bundle)
        throw new ConnectorError(
          'bundle_invalid',
          `the Workload API sent X.509 bundles without one for ${this.#td.name}`,
        );
      if (this.#bundle?.equals(bundle)) return true;
      const svid = this.#x509?.svid;
      if (svid) verifyX509Svid(svid.certificates, bundle, new Date(clock.now()));
      this.#bundle = bundle;
      logger.info(
        { source: 'workload-api', trustDomain: this.#td.name, authorities: bundle.authorities.length },
        'X.509 trust bundle updated',
      );
      if (svid) this.#listeners.emit(svid);
      return true;
    } catch (thrown) {
      logger.warn(
        { source: 'workload-api', err: toConnectorError(thrown).message },
        'refused the X.509 bundles from the Workload API; keeping the last good bundle',
      );
      return false;
    }
  }

  #onJwtBundles(message: unknown): boolean {
    const { logger } = this.#o;
    if (!isJwtBundlesResponse(message)) {
      logger.warn(
        { source: 'workload-api' },
        'the Workload API sent a JWTBundlesResponse of an unexpected shape; ignored',
      );
      return false;
    }
    // The whole map is replaced (docs/spiffe.md#workload-api-streams: a bundle absent from a message is unloaded).
    const next = new Map<string, JwtBundle>();
    for (const [key, json] of Object.entries(message.bundles)) {
      try {
        const td = TrustDomain.parse(key);
        next.set(td.name, JwtBundle.parseJwks(td, json.toString('utf8')));
      } catch (thrown) {
        logger.warn(
          { source: 'workload-api', trustDomain: key, err: toConnectorError(thrown).message },
          'skipped a JWT bundle from the Workload API',
        );
      }
    }
    this.#jwtBundles = next;
    return true;
  }

  #onFinal(error: ConnectorError): void {
    this.#final = error;
    if (!this.#x509) this.#ready.reject(error);
  }

  /** The reason FetchX509SVID stopped for good, if it did. */
  finalError(): ConnectorError | undefined {
    return this.#final;
  }

  // ---- JWT-SVIDs ----

  #fetchJwtSvid(audience: string, signal: AbortSignal): Promise<JwtSvid> {
    const timeout = this.#o.callTimeoutMs ?? 10_000;
    return new Promise<JwtSvid>((resolve, reject) => {
      const method = this.#client['FetchJWTSVID'] as (
        request: object,
        metadata: grpc.Metadata,
        options: grpc.CallOptions,
        callback: (error: grpc.ServiceError | null, response: unknown) => void,
      ) => grpc.ClientUnaryCall;
      const call = method.call(
        this.#client,
        { audience: [audience], spiffe_id: '' },
        securityMetadata(),
        { deadline: Date.now() + timeout },
        (error, response) => {
          signal.removeEventListener('abort', cancel);
          if (error) return reject(workloadApiError(error, `FetchJWTSVID for audience ${audience}`));
          try {
            resolve(this.#readJwtSvid(response, audience));
          } catch (thrown) {
            reject(toConnectorError(thrown, 'jwt_svid_invalid'));
          }
        },
      );
      const cancel = (): void => call.cancel();
      signal.addEventListener('abort', cancel, { once: true });
    });
  }

  #readJwtSvid(response: unknown, audience: string): JwtSvid {
    if (!isJwtSvidResponse(response))
      throw new ConnectorError('upstream_malformed', 'the Workload API sent a JWTSVIDResponse of an unexpected shape', {
        retryable: true,
      });
    const hint = this.#o.hint;
    const entry = hint === undefined ? response.svids[0] : response.svids.find((s) => s.hint === hint);
    if (!entry) {
      throw new ConnectorError(
        'identity_unavailable',
        hint === undefined
          ? 'the Workload API returned no JWT-SVID'
          : `the Workload API returned no JWT-SVID with hint ${JSON.stringify(hint)}`,
        { retryable: true },
      );
    }
    const svid = parseJwtSvidInsecure(entry.svid, { now: new Date(this.#o.clock.now()) });
    const fail = (problem: string): ConnectorError =>
      new ConnectorError('jwt_svid_invalid', `refused the JWT-SVID from the Workload API: ${problem}`, {
        retryable: true,
      });
    if (svid.id.toString() !== entry.spiffe_id)
      throw fail(`the entry names ${JSON.stringify(entry.spiffe_id)} but the token's sub is ${svid.id.toString()}`);
    if (!svid.id.memberOf(this.#td))
      throw fail(`it is for ${svid.id.toString()}, outside the configured trust domain ${this.#td.name}`);
    if (!svid.audience.includes(audience))
      throw fail(`its audience ${svid.audience.join(', ')} does not include ${audience}`);
    return svid;
  }
}
