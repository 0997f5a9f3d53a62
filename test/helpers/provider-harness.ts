// One cloud provider behind a loopback express app, the way the composition root mounts it (its
// router, then a fallback 404), with a fresh state directory; for provider-level endpoint tests.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { systemClock, type Clock } from '../../src/base/clock.ts';
import type { SidecarConfig } from '../../src/config/schema.ts';
import { silentLogger } from '../../src/ops/logger.ts';
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
  close(): Promise<void>;
}

export async function mountProvider(o: {
  /** Builds the config for the state directory made for it. */
  config: (stateDir: string) => SidecarConfig;
  identity: Identity;
  clock?: Clock | undefined;
  create: (ctx: ProviderContext) => Promise<CloudProvider>;
}): Promise<MountedProvider> {
  const stateDir = await mkdtemp(join(tmpdir(), 'spiffe-connector-provider-'));
  const config = o.config(stateDir);
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  const server: Server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const metrics = new Metrics();
  const provider = await o.create({ config, identity: o.identity, clock: o.clock ?? systemClock, logger: silentLogger(), metrics, metadataPort: port, stateDir, draining: () => false });
  app.use(provider.router);
  app.use((_req, res) => void res.status(404).type('text/plain').send('app fallback\n'));
  await provider.start();
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    provider,
    metrics,
    stateDir,
    config,
    close: async () => {
      await provider.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}
