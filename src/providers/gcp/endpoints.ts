// The emulated GCE metadata server (reference/gcp.md §1.3, §1.4 and requirements 2–7): root and
// listing probes, static facts, service accounts, token and identity from the caches. Never calls Google.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Router, type NextFunction, type Request, type Response } from 'express';
import type { Clock } from '../../base/clock.ts';
import type { ConnectorError } from '../../base/errors.ts';
import type { Logger } from '../../ops/logger.ts';
import type { Metrics } from '../../ops/metrics.ts';
import { hostIsLoopback, isForwarded } from '../../http/guards.ts';
import type { Lookup } from '../../cache/refreshing-credential.ts';
import { buildTree, isAccountDir, lookup, renderLeaf, renderListing, renderRecursive, TOKEN_LEAVES, type MetadataFacts, type Rendered } from './metadata-tree.ts';
import type { GcpToken, GcpTokens } from './token.ts';

export const SURFACE = 'gcp-metadata';
const PREFIX = '/computeMetadata/v1';
const MAX_SCOPES = 32;
const SCOPE = /^[\x21-\x2b\x2d-\x7e]{1,256}$/;
const MAX_AUDIENCE = 2048;

const BASE_HEADERS = {
  'Metadata-Flavor': 'Google',
  Server: 'Metadata Server for VM',
  'X-XSS-Protection': '0',
  'X-Frame-Options': 'SAMEORIGIN',
} as const;

export interface MetadataEndpointOptions {
  readonly facts: MetadataFacts;
  readonly tokens: GcpTokens;
  /** Port of the loopback listener: the Host header must name it. */
  readonly metadataPort: number;
  readonly clock: Clock;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Text answered for identity requests when there are no ID tokens (GKE-style 404). */
  readonly noIdentityText: string;
}

export function metadataRouter(options: MetadataEndpointOptions): Router {
  const router = Router();
  const tree = buildTree(options.facts);
  const send = sender(options.metrics);

  router.use((req: Request, res: Response, next: NextFunction) => {
    const path = req.path;
    const underPrefix = path === '/computeMetadata' || path.startsWith('/computeMetadata/');
    if (path !== '/' && !underPrefix) return next();
    if (!hostIsLoopback(req.headers.host, options.metadataPort)) {
      options.logger.debug({ host: req.headers.host }, 'refused a metadata request for a foreign Host');
      return send(res, 403, false, 'Forbidden: the Host header must name this loopback metadata server.\n');
    }
    if (isForwarded(req)) return send(res, 403, false, 'Forbidden: requests with X-Forwarded-For are not accepted.\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, false, 'Method Not Allowed\n', { Allow: 'GET, HEAD' });
    if (path === '/') return send(res, 200, false, '0.1/\ncomputeMetadata/\n');
    if (req.headers['metadata-flavor'] !== 'Google') {
      return send(res, 403, false, 'Missing required header "Metadata-Flavor": "Google"\n');
    }
    if (path === '/computeMetadata' || path === '/computeMetadata/') return send(res, 200, false, 'v1/\n');
    if (path !== PREFIX && !path.startsWith(`${PREFIX}/`)) return notFound(send, res);
    const rest = path.slice(PREFIX.length);
    const segments = rest.split('/').filter((s) => s !== '');
    const url = req.originalUrl ?? req.url;
    const q = url.indexOf('?');
    const query = new URLSearchParams(q === -1 ? '' : url.slice(q + 1));
    const json = query.get('alt') === 'json';
    const recursive = query.get('recursive')?.toLowerCase() === 'true';

    // token and identity under an account directory.
    const last = segments[segments.length - 1];
    if (segments.length === 4 && isAccountDir(segments.slice(0, 3)) && (TOKEN_LEAVES as readonly string[]).includes(last ?? '')) {
      if (!lookup(tree, segments.slice(0, 3))) return notFound(send, res);
      if (last === 'token') {
        const scopes = parseScopes(query.get('scopes'));
        if (scopes === false) return send(res, 400, false, `Bad Request: scopes must be at most ${MAX_SCOPES} comma-separated scope names.\n`);
        // The common case answers from the cache at once, without a promise.
        const cached = options.tokens.peekAccessToken(scopes);
        if (cached.ok && remainingSeconds(cached, options.clock) >= 1) return sendToken(send, res, cached, options.clock);
        return waitFor(options, res, send, (signal) => token(options, scopes, signal, res, send));
      }
      return waitFor(options, res, send, (signal) => identity(options, query, signal, res, send, json));
    }

    const node = lookup(tree, segments);
    if (!node) return notFound(send, res);
    if ('leaf' in node) return sendRendered(send, res, renderLeaf(node.leaf, json));
    if (recursive) return sendRendered(send, res, { json: true, body: JSON.stringify(renderRecursive(node, segments.length === 2 && segments[1] === 'service-accounts')) });
    const extra = isAccountDir(segments) ? TOKEN_LEAVES : [];
    return sendRendered(send, res, renderListing(node as MetadataNodeDir, extra, json));
  });
  return router;
}

type MetadataNodeDir = Parameters<typeof renderListing>[0];
type Send = (res: ServerResponse, status: number, json: boolean, body: string, extra?: Record<string, string>) => void;

function sender(metrics: Metrics): Send {
  return (res, status, json, body, extra) => {
    res.writeHead(status, {
      ...BASE_HEADERS,
      'Content-Type': json ? 'application/json' : 'application/text',
      'Content-Length': Buffer.byteLength(body),
      ...extra,
    });
    res.end((res.req as IncomingMessage | undefined)?.method === 'HEAD' ? undefined : body);
    metrics.requests.inc({ surface: SURFACE, status: String(status) });
  };
}

function sendRendered(send: Send, res: ServerResponse, r: Rendered): void {
  send(res, 200, r.json, r.body);
}

function notFound(send: Send, res: ServerResponse): void {
  send(res, 404, false, 'Not Found\n');
}

/** Runs an answer that may wait for a first exchange, abandoned when the client goes away. */
function waitFor(o: MetadataEndpointOptions, res: ServerResponse, send: Send, work: (signal: AbortSignal) => Promise<void>): void {
  const abort = new AbortController();
  res.once('close', () => abort.abort());
  void work(abort.signal).catch((error: unknown) => {
    o.logger.error({ err: (error as Error).message }, 'metadata request failed');
    if (!res.headersSent) send(res, 500, false, 'Internal Server Error\n');
  });
}

/** `scopes=a,b` (commas or spaces): undefined for the default set, false when malformed. */
function parseScopes(raw: string | null): string[] | undefined | false {
  if (raw === null || raw.trim() === '') return undefined;
  const scopes = raw.split(/[,\s]+/).filter((s) => s !== '');
  if (scopes.length === 0) return undefined;
  if (scopes.length > MAX_SCOPES || !scopes.every((s) => SCOPE.test(s))) return false;
  return scopes;
}

async function token(o: MetadataEndpointOptions, scopes: string[] | undefined, signal: AbortSignal, res: ServerResponse, send: Send): Promise<void> {
  const found = await o.tokens.accessToken(scopes, signal);
  if (res.destroyed) return;
  if (!found.ok || remainingSeconds(found, o.clock) < 1) return sendError(o, res, send, found);
  sendToken(send, res, found, o.clock);
}

function sendToken(send: Send, res: ServerResponse, found: Lookup<GcpToken> & { ok: true }, clock: Clock): void {
  const body = `{"access_token":${JSON.stringify(found.value.token.reveal())},"expires_in":${remainingSeconds(found, clock)},"token_type":"Bearer"}`;
  send(res, 200, true, body);
}

async function identity(o: MetadataEndpointOptions, query: URLSearchParams, signal: AbortSignal, res: ServerResponse, send: Send, json: boolean): Promise<void> {
  const audience = query.get('audience') ?? '';
  if (audience === '') return send(res, 400, false, 'non-empty audience parameter required\n');
  if (audience.length > MAX_AUDIENCE) return send(res, 400, false, `audience must be at most ${MAX_AUDIENCE} characters\n`);
  // format (standard|full) and licenses are accepted; the ID token always carries the email.
  if (!o.tokens.idToken) return send(res, 404, false, o.noIdentityText);
  const found = await o.tokens.idToken(audience, signal);
  if (res.destroyed) return;
  if (!found.ok || remainingSeconds(found, o.clock) < 1) return sendError(o, res, send, found);
  const raw = found.value.token.reveal();
  send(res, 200, json, json ? JSON.stringify(raw) : raw);
}

function remainingSeconds(found: Lookup<GcpToken>, clock: Clock): number {
  return found.ok ? Math.floor((found.value.expiresAt.getTime() - clock.now()) / 1000) : 0;
}

function sendError(o: MetadataEndpointOptions, res: ServerResponse, send: Send, found: Lookup<GcpToken>): void {
  const answer = metadataError(found.ok ? undefined : found.error, found.ok ? 1 : found.retryAfterSeconds);
  o.logger.debug({ status: answer.status }, 'metadata token request not served');
  send(res, answer.status, false, answer.body, answer.retryAfter === undefined ? undefined : { 'Retry-After': String(answer.retryAfter) });
}

/**
 * The one place errors become metadata-server answers: retryable → 503 with Retry-After (Python and
 * Go retry 5xx, reference requirement 11); Google's refusal → its 4xx status with its text.
 */
export function metadataError(error: ConnectorError | undefined, retryAfterSeconds: number): { status: number; body: string; retryAfter?: number } {
  if (!error || error.retryable || error.code !== 'upstream_rejected') {
    const why = error ? `: ${error.message}` : '';
    return { status: 503, body: `Service Unavailable: no valid credentials yet${why}\n`, retryAfter: Math.max(1, retryAfterSeconds) };
  }
  const status = error.upstreamStatus !== undefined && error.upstreamStatus >= 400 && error.upstreamStatus < 500 ? error.upstreamStatus : 403;
  return { status, body: `${error.message}\n` };
}
