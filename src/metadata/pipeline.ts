// The one request pipeline in front of every emulated surface on the loopback metadata listener: it
// finds the surface that claims the path, then refuses, in that surface's own shape, what no surface
// may answer (a target or Host naming another host, a forwarded request, a repeated Host or
// Authorization header, a request while draining), counts every answer by surface and status, and logs
// refusals. Surfaces see only requests that passed, as Node's own request with its path found once. See
// docs/architecture.md "The metadata listener".
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConnectorError } from '../base/errors.ts';
import { hostIsLinkLocal, hostIsLoopback, isForwarded, isLinkLocalAddress } from '../http/guards.ts';
import type { Logger } from '../ops/logger.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { Answer, MetadataRequest, Problem, Reply, Surface } from '../providers/contract.ts';

export interface PipelineOptions {
  readonly surfaces: readonly Surface[];
  readonly draining: () => boolean;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

/** Answers a request some surface claims; passes on (`next`) any other. */
export type Pipeline = (req: IncomingMessage, res: ServerResponse, next: () => void) => void;

/** Headers a request may carry once only: two of them could be read differently by two parsers. */
const SINGLE_HEADERS = ['host', 'authorization'] as const;

export function metadataPipeline(o: PipelineOptions): Pipeline {
  const replies = new Map<Surface, Reply>(o.surfaces.map((s) => [s, replier(s, o.metrics)]));
  return (incoming, res, next) => {
    const target = incoming.url ?? '/';
    const q = target.indexOf('?');
    const path = pathOf(q === -1 ? target : target.slice(0, q));
    let surface: Surface | undefined;
    for (const s of o.surfaces) {
      if (s.claims(path)) {
        surface = s;
        break;
      }
    }
    if (!surface) return next();
    const req = Object.assign(incoming, { path, search: q === -1 ? '' : target.slice(q + 1) }) as MetadataRequest;
    const reply = replies.get(surface) as Reply;
    const problem = refusal(req, o);
    if (problem) {
      o.logger.debug({ surface: surface.name, method: req.method, problem: problem.kind }, 'metadata request refused');
      const answer = surface.problem(problem, req);
      return reply(
        res,
        problem.kind === 'draining' ? { ...answer, headers: { ...answer.headers, Connection: 'close' } } : answer,
      );
    }
    const done = surface.handle(req, res, reply);
    if (done instanceof Promise) {
      done.catch((error: unknown) => {
        o.logger.error(
          { surface: surface.name, err: error instanceof Error ? error.message : String(error) },
          'metadata request failed',
        );
        if (!res.headersSent)
          reply(
            res,
            surface.problem(
              {
                kind: 'unavailable',
                error: new ConnectorError('internal', 'the sidecar could not answer this request', { retryable: true }),
                retryAfterSeconds: 1,
              },
              req,
            ),
          );
        else res.destroy();
      });
    }
  };
}

/**
 * The path of a request target, its query cut off. An absolute-form target (`http://host/path`) is claimed by the
 * surface its path names, which then refuses it in its own shape (`refusal`).
 */
function pathOf(path: string): string {
  if (path.startsWith('/')) return path;
  const absolute = /^[a-z][a-z0-9+.-]*:\/\/[^/]*(\/.*)?$/i.exec(path);
  return absolute ? (absolute[1] ?? '/') : path;
}

function refusal(req: IncomingMessage, o: PipelineOptions): Problem | undefined {
  // An absolute-form target (`GET http://other/...`) names a host of its own: the real services are never proxies.
  if (!req.url?.startsWith('/')) return { kind: 'foreign-host' };
  for (const name of SINGLE_HEADERS) if (repeated(req.rawHeaders, name)) return { kind: 'ambiguous', header: name };
  // The Host must name the port this connection came in on (the listener may serve two: server.metadataPort80),
  // and on a link-local address (server.linkLocal) that address itself, as the real services' clients send it.
  const local = req.socket.localAddress;
  const hostOk =
    local !== undefined && isLinkLocalAddress(local)
      ? hostIsLinkLocal(req.headers.host, local)
      : hostIsLoopback(req.headers.host, req.socket.localPort ?? -1);
  if (!hostOk) return { kind: 'foreign-host' };
  if (isForwarded(req)) return { kind: 'forwarded' };
  if (o.draining()) return { kind: 'draining' };
  return undefined;
}

/** Node keeps only the first of some repeated headers; the raw list shows them all. */
function repeated(raw: readonly string[], name: string): boolean {
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const header = raw[i] as string;
    if (header.length === name.length && header.toLowerCase() === name && ++seen > 1) return true;
  }
  return false;
}

/** Writes answers for one surface and counts them; label children are cached (this is the hot path). */
function replier(surface: Surface, metrics: Metrics): Reply {
  const children = new Map<number, { inc(): void }>();
  return (res: ServerResponse, answer: Answer) => {
    res.writeHead(answer.status, answer.headers as Record<string, string | number>).end(answer.body);
    let child = children.get(answer.status);
    if (!child) {
      child = metrics.requests.labels({ surface: surface.name, status: String(answer.status) });
      children.set(answer.status, child);
    }
    child.inc();
  };
}
