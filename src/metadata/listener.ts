// The loopback metadata listener: an HTTP server on the configured address whose every request goes
// through the one pipeline (pipeline.ts) to the surface that claims it, or gets a plain 404. The
// composition root and the tests mount surfaces on it the same way.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Logger } from '../ops/logger.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { Surface } from '../providers/contract.ts';
import { metadataPipeline } from './pipeline.ts';

export interface MetadataListener {
  /** http://<host>:<port> (the port is real even when configured as 0). */
  readonly origin: string;
  readonly port: number;
  /** Puts these surfaces behind the pipeline, in order; anything they do not claim is 404. Once. */
  mount(surfaces: readonly Surface[]): void;
  /** From now on every surface answers that it is shutting down. */
  drain(): void;
  draining(): boolean;
  /** Stops accepting, lets answers in flight finish (at most `graceMs`), then closes every connection. */
  close(graceMs?: number): Promise<void>;
}

/** Listens on `host:port`, and on `host:<each of alsoPorts>` with the same surfaces (server.metadataPort80). */
export async function startMetadataListener(o: {
  host: string;
  port: number;
  alsoPorts?: readonly number[];
  metrics: Metrics;
  logger: Logger;
}): Promise<MetadataListener> {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  let draining = false;
  let mounted = false;
  const listen = (port: number): Promise<Server> => {
    const server: Server = createServer({ keepAliveTimeout: 5_000 }, app);
    return new Promise<Server>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, o.host, () => {
        server.off('error', reject);
        resolve(server);
      });
    });
  };
  const server = await listen(o.port);
  const port = (server.address() as AddressInfo).port;
  const servers: Server[] = [server];
  for (const extra of o.alsoPorts ?? []) {
    try {
      servers.push(await listen(extra));
    } catch (error) {
      for (const s of servers) s.close();
      const code = (error as NodeJS.ErrnoException).code;
      const hint =
        code === 'EACCES'
          ? ': the pod needs the sysctl net.ipv4.ip_unprivileged_port_start=80 (or NET_BIND_SERVICE)'
          : '';
      throw new Error(`cannot listen on ${o.host}:${extra} (${code ?? String(error)})${hint}`, { cause: error });
    }
  }
  const hostForUrl = o.host.includes(':') ? `[${o.host}]` : o.host;
  return {
    origin: `http://${hostForUrl}:${port}`,
    port,
    mount(surfaces) {
      if (mounted) throw new Error('the metadata listener is mounted once');
      mounted = true;
      app.use(metadataPipeline({ surfaces, draining: () => draining, metrics: o.metrics, logger: o.logger }));
      app.use((_req, res) => {
        res.status(404).type('text/plain').send('not found\n');
      });
    },
    drain() {
      draining = true;
    },
    draining: () => draining,
    close: async (graceMs = 1_000) => {
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => resolve());
              s.closeIdleConnections();
              setTimeout(() => s.closeAllConnections(), graceMs).unref();
            }),
        ),
      );
    },
  };
}
