// One cloud provider's surfaces on a loopback metadata listener, mounted the way the composition root
// mounts them (behind the one request pipeline), with a fresh state directory; for provider-level tests.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Clock, systemClock } from '../../src/base/clock.ts';
import type { SidecarConfig } from '../../src/config/schema.ts';
import { type MetadataListener, startMetadataListener } from '../../src/metadata/listener.ts';
import { type Logger, silentLogger } from '../../src/ops/logger.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import type { CloudProvider, ProviderContext } from '../../src/providers/contract.ts';
import type { Identity } from '../../src/spiffe/source.ts';

export interface MountedProvider {
  readonly origin: string;
  readonly port: number;
  readonly provider: CloudProvider;
  readonly metrics: Metrics;
  readonly stateDir: string;
  readonly config: SidecarConfig;
  /** The listener the provider's surfaces are mounted on (drain() it to test draining). */
  readonly listener: MetadataListener;
  close(): Promise<void>;
}

export async function mountProvider(o: {
  /** Builds the config for the state directory made for it. */
  config: (stateDir: string) => SidecarConfig;
  identity: Identity;
  clock?: Clock | undefined;
  logger?: Logger | undefined;
  create: (ctx: ProviderContext) => Promise<CloudProvider>;
}): Promise<MountedProvider> {
  const stateDir = await mkdtemp(join(tmpdir(), 'spiffe-connector-provider-'));
  const config = o.config(stateDir);
  const metrics = new Metrics();
  const logger = o.logger ?? silentLogger();
  const listener = await startMetadataListener({ host: '127.0.0.1', port: 0, metrics, logger });
  const provider = await o.create({
    config,
    identity: o.identity,
    clock: o.clock ?? systemClock,
    logger,
    metrics,
    metadataPort: listener.port,
    stateDir,
  });
  listener.mount(provider.surfaces);
  await provider.start();
  return {
    origin: listener.origin,
    port: listener.port,
    provider,
    metrics,
    stateDir,
    config,
    listener,
    close: async () => {
      await provider.stop();
      await listener.close(0);
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}
