// The loopback metadata listener: an HTTP server on the configured address whose every request goes
// through the one pipeline (pipeline.ts) to the surface that claims it, or gets a plain 404. The
// composition root and the tests mount surfaces on it the same way. What no surface claims goes on to express;
// what one claims never passes through it: express gives every request its own request and response prototypes
// (Object.setPrototypeOf, twice a request), and the objects of Node's HTTP code that then change shape made the AWS
// endpoint's server spend ~40 % more CPU a request: 86–102 µs against 60–71 (README.md "Measured").
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { LINK_LOCAL_ADDRESSES, LINK_LOCAL_PORT } from '../base/link-local.ts';
import type { Logger } from '../ops/logger.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { Surface } from '../providers/contract.ts';
import { metadataPipeline, type Pipeline } from './pipeline.ts';

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

/**
 * Listens on `host:port`, and on `host:<each of alsoPorts>` with the same surfaces (server.metadataPort80), and
 * with `linkLocal` on 169.254.169.254:80 and 169.254.170.2:80 too (server.linkLocal: the addresses must be on lo).
 */
export async function startMetadataListener(o: {
  host: string;
  port: number;
  alsoPorts?: readonly number[];
  linkLocal?: boolean;
  metrics: Metrics;
  logger: Logger;
  /** Called on every request, on every address, before it is answered. */
  onRequest?: () => void;
}): Promise<MetadataListener> {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  let draining = false;
  let pipeline: Pipeline | undefined;
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    if (pipeline) pipeline(req, res, () => app(req, res));
    else app(req, res);
  };
  const listen = (port: number, host = o.host): Promise<Server> => {
    const server: Server = createServer({ keepAliveTimeout: 5_000 }, onRequest);
    if (o.onRequest) server.on('request', o.onRequest);
    return new Promise<Server>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve(server);
      });
    });
  };
  const server = await listen(o.port);
  const port = (server.address() as AddressInfo).port;
  const servers: Server[] = [server];
  const extras = [
    ...(o.alsoPorts ?? []).map((p) => ({ host: o.host, port: p })),
    ...(o.linkLocal ? LINK_LOCAL_ADDRESSES.map((a) => ({ host: a, port: LINK_LOCAL_PORT })) : []),
  ];
  for (const extra of extras) {
    try {
      servers.push(await listen(extra.port, extra.host));
    } catch (error) {
      for (const s of servers) s.close();
      const code = (error as NodeJS.ErrnoException).code;
      const hint =
        code === 'EACCES'
          ? ': the pod needs the sysctl net.ipv4.ip_unprivileged_port_start=80 (or NET_BIND_SERVICE)'
          : code === 'EADDRNOTAVAIL'
            ? `: ${extra.host} is not on this pod's lo (server.linkLocal: the webhook's link-local init container adds it)`
            : '';
      throw new Error(`cannot listen on ${extra.host}:${extra.port} (${code ?? String(error)})${hint}`, {
        cause: error,
      });
    }
  }
  const hostForUrl = o.host.includes(':') ? `[${o.host}]` : o.host;
  return {
    origin: `http://${hostForUrl}:${port}`,
    port,
    mount(surfaces) {
      if (pipeline) throw new Error('the metadata listener is mounted once');
      pipeline = metadataPipeline({ surfaces, draining: () => draining, metrics: o.metrics, logger: o.logger });
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
