// The issuer's ops listener: /healthz (alive), /readyz (keys and bundle loaded, not draining), /metrics
// (its own Prometheus registry). Kept off the discovery listener, which an Ingress exposes.
import { createServer, type Server } from 'node:http';
import type { IssuerMetrics } from './metrics.ts';

export interface Readiness {
  readonly ready: boolean;
  readonly reasons: readonly string[];
}

export function createOpsServer(metrics: IssuerMetrics, readiness: () => Readiness): Server {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const r = readiness();
      res
        .writeHead(r.ready ? 200 : 503, { 'content-type': 'text/plain' })
        .end(r.ready ? 'ready\n' : `not ready:\n${r.reasons.map((x) => `- ${x}`).join('\n')}\n`);
    } else if (path === '/metrics') {
      metrics.text().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        () => res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n'),
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  server.keepAliveTimeout = 5_000;
  return server;
}
