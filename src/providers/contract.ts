// What a cloud supplies, and all the composition root knows of it. A cloud turns an identity into
// credentials with exchanges `(key, signal) → credential` (cache/credential-cache.ts wraps each one),
// and answers apps on surfaces: a surface claims its paths on the loopback metadata listener, answers
// from a credential lookup only, and declares how its problems look in its own cloud's shape, so the
// listener's one request pipeline (metadata/pipeline.ts) can refuse, throttle and drain for it.
// See docs/architecture.md.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Clock } from '../base/clock.ts';
import type { ConnectorError } from '../base/errors.ts';
import type { SidecarConfig } from '../config/schema.ts';
import type { Logger } from '../ops/logger.ts';
import type { Cloud, Metrics } from '../ops/metrics.ts';
import type { Identity } from '../spiffe/source.ts';

export interface ProviderContext {
  readonly config: SidecarConfig;
  readonly identity: Identity;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Port of the loopback metadata listener (links a surface prints name it). */
  readonly metadataPort: number;
  /** Directory shared with the app container (token files). Exists and is writable. */
  readonly stateDir: string;
}

/** The surfaces' names: a fixed set, so they can be metric labels. */
export type SurfaceName =
  | 'aws-container'
  | 'aws-imds'
  | 'gcp-metadata'
  | 'azure-appservice'
  | 'azure-imds'
  | 'azure-msi';

/**
 * One answer, as a surface writes it. `body` is sent as is (HEAD requests get the headers only); a hot path's
 * bytes, encoded once, are written without encoding them again.
 */
export interface Answer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | number>>;
  readonly body: string | Buffer;
}

/** What can stop a request before, or instead of, its credential: each surface words it its own way. */
export type Problem =
  /** The Host header names something other than this loopback listener (DNS rebinding). */
  | { readonly kind: 'foreign-host' }
  /** The request came through a proxy (X-Forwarded-For, Forwarded), which the real services refuse. */
  | { readonly kind: 'forwarded' }
  /** A header that must appear once appears more than once. */
  | { readonly kind: 'ambiguous'; readonly header: string }
  /** The sidecar is shutting down. */
  | { readonly kind: 'draining' }
  /** A key this sidecar will not serve (over-long, not on an allow-list, no room for caller keys). */
  | { readonly kind: 'refused-key'; readonly message: string }
  /** Too many new keys: try again after the given wait. */
  | { readonly kind: 'throttled'; readonly retryAfterSeconds: number }
  /** No valid credential to serve (not fetched yet, expired, or refused upstream). */
  | { readonly kind: 'unavailable'; readonly error: ConnectorError; readonly retryAfterSeconds: number };

/** Writes an answer and counts it by surface and status. */
export type Reply = (res: ServerResponse, answer: Answer) => void;

/** A request as a surface gets it: Node's own, with its target split once into path and query. */
export interface MetadataRequest extends IncomingMessage {
  readonly path: string;
  /** The query: what follows the target's first `?`, without it ('' when there is none). */
  readonly search: string;
  /** A form body, once a surface has parsed one (Azure's MSI endpoint). */
  body?: unknown;
}

export interface Surface {
  readonly name: SurfaceName;
  /** Whether this surface answers `path` (the request's path without its query). */
  claims(path: string): boolean;
  /** This surface's answer to a problem, in its cloud's shape. */
  problem(problem: Problem, req: MetadataRequest): Answer;
  /** Answers a request that passed the pipeline's checks; never calls a cloud. */
  handle(req: MetadataRequest, res: ServerResponse, reply: Reply): void | Promise<void>;
}

export interface Readiness {
  readonly ready: boolean;
  /** Why not, in words for an operator (no secrets, no request input). */
  readonly reason?: string;
}

export interface CloudProvider {
  readonly cloud: Cloud;
  /** The emulated surfaces, mounted on the loopback metadata listener in this order. */
  readonly surfaces: readonly Surface[];
  /** Starts fetching credentials (before ready). */
  start(): Promise<void>;
  /** Ready only when this cloud holds valid credentials for what the pod was configured with. */
  readiness(): Readiness;
  stop(): Promise<void>;
}

/**
 * A cloud's pure side (in providers/<cloud>/env.ts): what apps are told, what `check` says, and the
 * JWT-SVID audiences its exchange needs. Loading it loads no endpoint, exchange or SDK.
 */
export interface CloudEnvironment {
  readonly cloud: Cloud;
  /**
   * The app's env lines; only called when the cloud is configured. `container`: the app container they are
   * for, which may have an identity of its own (aws.containers, azure.containers); absent, the pod's.
   */
  env(config: SidecarConfig, metadataOrigin: string, container?: string): Array<readonly [name: string, value: string]>;
  /** What `check` says would be served; only called when the cloud is configured. */
  describe(config: SidecarConfig, metadataOrigin: string): string[];
  /** Audiences of the JWT-SVIDs the exchange will ask for (none for an exchange that signs with the X.509-SVID). */
  audiences(config: SidecarConfig): string[];
}

/** A cloud's running side. Its env lines and description are pure functions in providers/<cloud>/env.ts, joined in src/env.ts. */
export interface CloudModule {
  readonly cloud: Cloud;
  /** Builds the running provider; loads the cloud's SDK only here. */
  create(context: ProviderContext): Promise<CloudProvider>;
}

/** The problem a failed lookup stands for: a refused key, throttled, or no credential to serve. */
export function lookupProblem(failed: { readonly error: ConnectorError; readonly retryAfterSeconds: number }): Problem {
  if (failed.error.code === 'throttled') return { kind: 'throttled', retryAfterSeconds: failed.retryAfterSeconds };
  if (failed.error.code === 'request_invalid') return { kind: 'refused-key', message: failed.error.message };
  return { kind: 'unavailable', error: failed.error, retryAfterSeconds: failed.retryAfterSeconds };
}
