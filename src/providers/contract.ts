// What the composition root needs from each cloud: a running provider (credentials kept fresh + the
// emulated endpoints). Env lines and descriptions are pure, in providers/<cloud>/env.ts.
import type { Router } from 'express';
import type { Clock } from '../base/clock.ts';
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
  /** Port of the loopback metadata listener (the Host check compares against it). */
  readonly metadataPort: number;
  /** Directory shared with the app container (token files). Exists and is writable. */
  readonly stateDir: string;
  /** True once SIGTERM arrived: answer 503 and close connections. */
  readonly draining: () => boolean;
}

export interface Readiness {
  readonly ready: boolean;
  /** Why not, in words for an operator (no secrets). */
  readonly reason?: string;
}

export interface CloudProvider {
  readonly cloud: Cloud;
  /** The emulated endpoints, mounted on the loopback metadata listener. Answers without upstream calls. */
  readonly router: Router;
  /** Starts fetching credentials (before ready). */
  start(): Promise<void>;
  /** Ready only when this cloud holds valid credentials. */
  readiness(): Readiness;
  stop(): Promise<void>;
}

/** A cloud's running side. Its env lines and description are pure functions in providers/<cloud>/env.ts, joined in src/env.ts. */
export interface CloudModule {
  readonly cloud: Cloud;
  /** Builds the running provider; loads the cloud's SDK only here. */
  create(context: ProviderContext): Promise<CloudProvider>;
}
