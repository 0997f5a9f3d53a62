// The composition root: the only module that knows every other. Builds the identity sources, the
// configured clouds (each loaded only when configured), the loopback metadata listener and the ops
// listener, and owns the start and drain order (docs/architecture.md "Flow").
import { mkdir } from 'node:fs/promises';
import type { Clock } from './base/clock.ts';
import { parseHostPort } from './config/common.ts';
import type { SidecarConfig } from './config/schema.ts';
import { configuredClouds, perContainerBoundary, requiredAudiences } from './env.ts';
import { startMetadataListener } from './metadata/listener.ts';
import type { Logger } from './ops/logger.ts';
import type { Metrics } from './ops/metrics.ts';
import { type OpsServer, type ReadinessReport, startOpsServer } from './ops/ops-server.ts';
import type { CloudProvider, ProviderContext } from './providers/contract.ts';
import type { Identity, JwtSource, X509Source } from './spiffe/source.ts';
import type { JwtBundleSource } from './surfaces/workload-api/jwt-bundle-source.ts';

export interface AppDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Called on every request the metadata listener receives (the process's heap release: ops/heap-release.ts). */
  readonly onRequest?: () => void;
}

export interface RunningApp {
  /** http://127.0.0.1:<port> of the metadata listener (the port is real even when configured as 0). */
  readonly metadataOrigin: string;
  readonly opsUrl: string;
  /** Where /metrics is served: opsUrl, or the metrics listener's own. */
  readonly metricsUrl: string;
  readonly identity: Identity;
  readiness(): ReadinessReport;
  /** Resolves when every configured cloud holds credentials (or `signal` aborts). */
  whenReady(signal?: AbortSignal): Promise<void>;
  /** Answer 503 for `drainSeconds`, then close everything. */
  shutdown(drainSeconds?: number): Promise<void>;
}

interface Startable {
  start?(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Builds the identity sources the config names. Nothing is read until start(). `watch: false` (one-shot
 * commands such as `credential-process`) reads files when asked instead of watching them.
 */
export async function buildIdentity(
  config: SidecarConfig,
  deps: AppDeps,
  options: { readonly watch?: boolean } = {},
): Promise<Identity & { readonly all: Startable[] }> {
  const s = config.spiffe;
  const common = { clock: deps.clock, logger: deps.logger, metrics: deps.metrics };
  const watch = options.watch === false ? { watch: false } : {};
  let x509: X509Source | undefined;
  let jwt: JwtSource | undefined;
  const all: Startable[] = [];
  if (s.workloadApi) {
    const { createWorkloadApiSource } = await import('./sources/workload-api/client.ts');
    const source = createWorkloadApiSource({
      socket: s.workloadApi.socket,
      trustDomain: s.trustDomain,
      audiences: requiredAudiences(config),
      ...(s.workloadApi.hint ? { hint: s.workloadApi.hint } : {}),
      ...common,
    });
    x509 = source;
    jwt = source;
    all.push(source as unknown as Startable);
  } else if (s.x509) {
    const { X509FilesSource } = await import('./sources/x509-files.ts');
    const source = new X509FilesSource({ ...s.x509, trustDomain: s.trustDomain, ...common, ...watch });
    x509 = source;
    all.push(source);
  }
  if (s.jwt?.file) {
    const { JwtFileSource } = await import('./sources/jwt-file.ts');
    const source = new JwtFileSource({
      file: s.jwt.file,
      trustDomain: s.trustDomain,
      requiredAudiences: requiredAudiences(config),
      ...common,
      ...watch,
    });
    jwt = source;
    all.push(source);
  } else if (s.jwt?.exchange && x509) {
    const { createJwtExchangeSource } = await import('./sources/jwt-exchange.ts');
    const { readFile } = await import('node:fs/promises');
    const caPem = s.jwt.exchange.caFile ? await readFile(s.jwt.exchange.caFile, 'utf8') : undefined;
    const source = createJwtExchangeSource({
      url: s.jwt.exchange.url,
      ...(caPem ? { caPem } : {}),
      x509,
      audiences: requiredAudiences(config),
      ...common,
    });
    jwt = source;
    all.push(source as unknown as Startable);
  }
  return { x509, jwt, all };
}

export async function startApp(config: SidecarConfig, deps: AppDeps): Promise<RunningApp> {
  const { logger } = deps;
  await mkdir(config.server.stateDir, { recursive: true });
  const identity = await buildIdentity(config, deps);

  const listenAddress = parseHostPort(config.server.metadataAddress);
  if (!listenAddress) throw new Error('metadataAddress was validated at load');
  const metadata = await startMetadataListener({
    host: listenAddress.host,
    port: listenAddress.port,
    ...(config.server.metadataPort80 && listenAddress.port !== 80 ? { alsoPorts: [80] } : {}),
    linkLocal: config.server.linkLocal,
    metrics: deps.metrics,
    logger,
    ...(deps.onRequest ? { onRequest: deps.onRequest } : {}),
  });
  const metadataOrigin = metadata.origin;

  const context: ProviderContext = {
    config,
    identity,
    clock: deps.clock,
    logger,
    metrics: deps.metrics,
    metadataPort: metadata.port,
    stateDir: config.server.stateDir,
  };
  const providers: CloudProvider[] = [];
  for (const cloud of configuredClouds(config)) providers.push(await (await cloud.load()).create(context));
  metadata.mount(providers.flatMap((p) => p.surfaces));

  // `reasons` are fixed text (shown on the pod-wide probes listener); `details` carry the causes.
  const readiness = (): ReadinessReport => {
    const reasons: string[] = [];
    const details: string[] = [];
    const add = (reason: string, detail = reason): void => {
      reasons.push(reason);
      details.push(detail);
    };
    if (metadata.draining()) add('shutting down');
    if (identity.x509 && !identity.x509.current()) add('no valid X.509-SVID');
    for (const p of providers) {
      const r = p.readiness();
      if (!r.ready) add(`${p.cloud}: no valid credentials`, `${p.cloud}: ${r.reason ?? 'no valid credentials'}`);
    }
    return { ready: reasons.length === 0, reasons, details };
  };

  const opsAddress = parseHostPort(config.server.opsAddress);
  const metricsAddress = parseHostPort(config.server.metricsAddress);
  if (!opsAddress || !metricsAddress) throw new Error('opsAddress and metricsAddress were validated at load');
  // One listener when both addresses are the same; otherwise probes and metrics apart.
  const together = config.server.metricsAddress === config.server.opsAddress;
  const ops: OpsServer = await startOpsServer({
    host: opsAddress.host,
    port: opsAddress.port,
    readiness,
    logger,
    ...(together ? { metrics: deps.metrics } : {}),
  });
  const metricsServer: OpsServer | undefined = together
    ? undefined
    : await startOpsServer({
        host: metricsAddress.host,
        port: metricsAddress.port,
        metrics: deps.metrics,
        readiness,
        logger,
      });

  // Identity first (providers ask it for SVIDs), then the clouds.
  for (const source of identity.all) await source.start?.();
  for (const p of providers) await p.start();
  const workloadApi = await startWorkloadApi(config, identity, deps);
  // `check` refuses these; `run` serves what it was told, and says once why it is no boundary.
  for (const problem of perContainerBoundary(config).problems)
    logger.warn(
      { setting: problem.key },
      `the roles per container are no boundary: ${problem.key}: ${problem.message}`,
    );
  logger.info(
    {
      metadata: metadataOrigin,
      ops: ops.url,
      metrics: metricsServer?.url ?? ops.url,
      clouds: providers.map((p) => p.cloud),
    },
    'spiffe-connector is listening',
  );

  return {
    metadataOrigin,
    opsUrl: ops.url,
    metricsUrl: metricsServer?.url ?? ops.url,
    identity,
    readiness,
    whenReady: (signal) =>
      new Promise<void>((resolve) => {
        const check = (): void => {
          if (readiness().ready || signal?.aborted) {
            resolve();
            return;
          }
          deps.clock.setTimeout(check, 50);
        };
        check();
      }),
    shutdown: async (drainSeconds = config.server.drainSeconds) => {
      if (metadata.draining()) return;
      metadata.drain();
      logger.info({ drainSeconds }, 'draining');
      if (drainSeconds > 0) await new Promise((resolve) => setTimeout(resolve, drainSeconds * 1000));
      await Promise.all([metadata.close(), ops.close(), metricsServer?.close()]);
      for (const p of providers) await p.stop();
      for (const w of workloadApi) await w.close();
      for (const source of identity.all) await source.close();
      logger.info('stopped');
    },
  };
}

/** The SPIFFE Workload API served to the pod (server.workloadApiSocket), backed by our own sources. */
async function startWorkloadApi(
  config: SidecarConfig,
  identity: Identity,
  deps: AppDeps,
): Promise<Array<{ close(): Promise<void> }>> {
  const path = config.server.workloadApiSocket;
  if (!path || !identity.x509) return [];
  const common = {
    trustDomain: config.spiffe.trustDomain,
    clock: deps.clock,
    logger: deps.logger,
    metrics: deps.metrics,
  };
  const closers: Array<{ close(): Promise<void> }> = [];
  let jwtBundle: JwtBundleSource | undefined;
  if (config.server.workloadApiJwksUrl) {
    const { startJwksBundleSource } = await import('./surfaces/workload-api/jwt-bundle-source.ts');
    jwtBundle = await startJwksBundleSource({ url: config.server.workloadApiJwksUrl, ...common });
    closers.push(jwtBundle);
  }
  const { startWorkloadApiServer } = await import('./surfaces/workload-api/server.ts');
  const server = await startWorkloadApiServer({
    path,
    x509: identity.x509,
    ...(identity.jwt ? { jwt: identity.jwt } : {}),
    ...(jwtBundle ? { jwtBundle } : {}),
    ...common,
  });
  closers.unshift(server);
  return closers;
}
