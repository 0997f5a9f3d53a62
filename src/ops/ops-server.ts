// The ops listeners. The probes listener (server.opsAddress, reachable by the kubelet) answers /healthz
// (alive) and /readyz (every configured cloud holds valid credentials, and not draining) with fixed
// text only. The metrics listener (server.metricsAddress, loopback by default) answers /metrics
// (Prometheus) and a /readyz that also says why. When both addresses are the same, one listener
// serves everything. Kept apart from the loopback metadata listener.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';

export interface ReadinessReport {
  readonly ready: boolean;
  /** One fixed line per thing that is not ready ("aws: no valid credentials"): safe to show to anyone who can reach the probes. */
  readonly reasons: readonly string[];
  /** The same with the causes (upstream error text, configured names), for the loopback listener and the logs. */
  readonly details?: readonly string[];
}

export interface OpsServerOptions {
  readonly host: string;
  readonly port: number;
  /** Serve /healthz and /readyz (the probes). */
  readonly readiness?: () => ReadinessReport;
  /** Serve /metrics, and a /readyz with the details. */
  readonly metrics?: Metrics;
  readonly logger?: Logger;
}

export interface OpsServer {
  readonly url: string;
  /** Stops accepting, closes idle connections, lets answers in flight finish, and after `graceMs` (default 2 s) closes the rest. */
  close(graceMs?: number): Promise<void>;
}

/** The path of a request target, without parsing it as a URL (targets such as `//a:99999/x` make URL parsers throw). */
export function targetPath(target: string | undefined): string {
  const t = target ?? '/';
  const q = t.indexOf('?');
  return q === -1 ? t : t.slice(0, q);
}

export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const text = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void => {
    res
      .writeHead(status, {
        'content-type': 'text/plain; charset=utf-8',
        'content-length': Buffer.byteLength(body),
        ...headers,
      })
      .end(body);
  };
  const readyz = (res: ServerResponse, detailed: boolean): void => {
    const report = (options.readiness as () => ReadinessReport)();
    const lines = detailed ? (report.details ?? report.reasons) : report.reasons;
    text(
      res,
      report.ready ? 200 : 503,
      report.ready ? 'ready\n' : `not ready:\n${lines.map((r) => `- ${r}`).join('\n')}\n`,
    );
  };
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = targetPath(req.url);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      text(res, 405, 'method not allowed\n', { allow: 'GET, HEAD' });
      return;
    }
    if (options.readiness && path === '/healthz') {
      text(res, 200, 'ok\n');
      return;
    }
    if (options.readiness && path === '/readyz') {
      readyz(res, options.metrics !== undefined && isLoopback(options.host));
      return;
    }
    if (options.metrics && path === '/metrics') {
      const metrics = options.metrics;
      metrics.text().then(
        (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
        () => text(res, 500, 'metrics unavailable\n'),
      );
      return;
    }
    text(res, 404, 'not found\n');
  };
  const server: Server = createServer((req, res) => {
    // A defect in a handler answers 500 and is logged; it never leaves the request open.
    try {
      handle(req, res);
    } catch (error) {
      options.logger?.error({ err: (error as Error).message }, 'ops request failed');
      if (!res.headersSent) text(res, 500, 'internal error\n', { connection: 'close' });
      else res.destroy();
    }
  });
  server.keepAliveTimeout = 5_000;
  // Bounds for clients that open a connection and send nothing (or too slowly).
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host === '[::]' ? '[::1]' : host}:${address.port}`,
    close: (graceMs = 2_000) =>
      new Promise<void>((resolve) => {
        const force = setTimeout(() => server.closeAllConnections(), graceMs);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        // Keep-alive connections with no request in flight; busy ones close after their answer.
        server.closeIdleConnections();
      }),
  };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
