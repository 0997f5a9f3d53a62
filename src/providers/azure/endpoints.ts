// The emulated Azure managed-identity surfaces on the loopback listener: App Service 2019-08-01, IMDS and the
// MSI_ENDPOINT form POST (reference/azure.md §1, §2, implications 2–6). Tokens come only from the cache.
// Hot path: one dispatch on the path (no per-route layers), bodies serialized once per token (and second),
// metric children cached, the identity header's digest computed once.
import { randomUUID } from 'node:crypto';
import express, { Router, type Request, type Response } from 'express';
import type { Clock } from '../../base/clock.ts';
import type { Lookup } from '../../cache/refreshing-credential.ts';
import type { Logger } from '../../ops/logger.ts';
import type { Metrics } from '../../ops/metrics.ts';
import type { Secret } from '../../base/secret.ts';
import { hostIsLoopback, isForwarded, secretMatcher } from '../../http/guards.ts';
import { APP_SERVICE_PATH, IMDS_TOKEN_PATH, MSI_PATH } from './paths.ts';
import { parseTokenRequest, type Params, type ServedIdentity, type Surface } from './request.ts';
import { appServiceProblem, appServiceTokenBody, imdsProblem, imdsTokenBody, type Answer, type Problem } from './responses.ts';
import type { AzureAccessToken } from './token.ts';

/** Where the endpoints get tokens: the per-resource cache. */
export interface AzureTokens {
  /** The cached token for `resource` at once (starting its first fetch if it is new). */
  peek(resource: string): Lookup<AzureAccessToken>;
  /** As peek, but waits for a new resource's first fetch to settle. */
  get(resource: string, signal: AbortSignal): Promise<Lookup<AzureAccessToken>>;
}

export interface AzureEndpointsOptions {
  readonly tokens: AzureTokens;
  readonly served: ServedIdentity;
  /** The X-IDENTITY-HEADER secret App Service callers must present. */
  readonly identityHeader: Secret;
  readonly metadataPort: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly draining: () => boolean;
}

const METADATA_HEADER_MISSING = 'Required metadata header not specified';
const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8' };
const TOKEN_HEADERS = { ...JSON_HEADERS, 'cache-control': 'no-store' };
const APP_SERVICE = APP_SERVICE_PATH.toLowerCase();
const IMDS = IMDS_TOKEN_PATH.toLowerCase();
const MSI = MSI_PATH.toLowerCase();

export function azureRouter(o: AzureEndpointsOptions): Router {
  const router = Router();
  const form = express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 32 });
  const send = sender(o.metrics);
  const headerMatches = secretMatcher(o.identityHeader.reveal());
  const bodies = new BodyCache(o.served.clientId);

  const serve = async (req: Request, res: Response, surface: Surface): Promise<void> => {
    const answer = (problem: Problem): void => send(res, surface, surface === 'azure-appservice' ? appServiceProblem(problem, randomUUID()) : imdsProblem(problem));
    const refuse = (status: 400 | 401, description: string, error = 'invalid_request'): void => answer({ kind: 'refused', status, refusal: { error, description } });

    if (o.draining()) return answer({ kind: 'draining' });
    if (isForwarded(req)) return refuse(400, 'Request contains a forwarding header (X-Forwarded-For or Forwarded); the identity endpoint answers this pod only');
    if (!hostIsLoopback(req.headers.host, o.metadataPort)) return refuse(400, 'The Host header must name the loopback metadata address');
    if (surface === 'azure-appservice') {
      if (!headerMatches(header(req, 'x-identity-header'))) return refuse(401, 'X-IDENTITY-HEADER is missing or does not match IDENTITY_HEADER', 'unauthorized');
    } else if (header(req, 'metadata')?.trim().toLowerCase() !== 'true') {
      return refuse(400, METADATA_HEADER_MISSING);
    }

    const params: Params = surface === 'azure-msi' && isParams(req.body) ? { ...(req.query as Params), ...req.body } : (req.query as Params);
    const parsed = parseTokenRequest(params, surface, o.served);
    if (!parsed.ok) return refuse(400, parsed.refusal.description, parsed.refusal.error);
    const { resource } = parsed.request;

    let lookup = o.tokens.peek(resource);
    if (!lookup.ok) {
      const gone = new AbortController();
      res.once('close', () => gone.abort());
      lookup = await o.tokens.get(resource, gone.signal);
      if (res.writableEnded || gone.signal.aborted) return;
    }
    if (!lookup.ok) {
      o.logger.warn({ cloud: 'azure', surface, resource, code: lookup.error.code, upstreamCode: lookup.error.upstreamCode, retryAfterSeconds: lookup.retryAfterSeconds, err: lookup.error.message }, 'no Azure token to serve');
      return answer({ kind: 'unavailable', error: lookup.error, retryAfterSeconds: lookup.retryAfterSeconds });
    }
    send.raw(res, surface, 200, TOKEN_HEADERS, bodies.body(surface, lookup.value, o.clock.now()));
  };

  const notFound = (req: Request, res: Response, surface: Surface, what: string): void =>
    send(res, surface, imdsProblem({ kind: 'refused', status: 404, refusal: { error: 'not_found', description: `${req.method} ${req.path} is not served here${what}` } }));

  const methodNotAllowed = (res: Response, surface: Surface, allow: string): void => {
    const answer = imdsProblem({ kind: 'refused', status: 405, refusal: { error: 'method_not_allowed', description: `Use ${allow}` } });
    send(res, surface, { ...answer, headers: { ...answer.headers, allow } });
  };

  router.use((req, res, next) => {
    const path = trimSlash(req.path.toLowerCase());
    if (path === APP_SERVICE) {
      if (req.method !== 'GET' && req.method !== 'HEAD') return methodNotAllowed(res, 'azure-appservice', 'GET');
      return void serve(req, res, 'azure-appservice');
    }
    if (path === IMDS) {
      // SDKs probe this path without the Metadata header (with or without a query) and need a fast 400.
      if (req.method !== 'GET' && req.method !== 'HEAD') return methodNotAllowed(res, 'azure-imds', 'GET');
      return void serve(req, res, 'azure-imds');
    }
    if (path === MSI) {
      if (req.method !== 'POST') return methodNotAllowed(res, 'azure-msi', 'POST');
      // Only the form parser can fail here: a body it cannot read (too large, bad encoding) is the caller's error.
      return form(req, res, (error?: unknown) => {
        if (error) return send(res, 'azure-msi', imdsProblem({ kind: 'refused', status: 400, refusal: { error: 'invalid_request', description: 'The request body could not be read as a form' } }));
        void serve(req, res, 'azure-msi');
      });
    }
    // The rest of IMDS (instance metadata, the IMDSv2 credential probe, ...) is not served: 404 so clients
    // fall back, never a proxy to a real IMDS.
    if (path === '/metadata' || path.startsWith('/metadata/')) return notFound(req, res, 'azure-imds', `; only ${IMDS_TOKEN_PATH}`);
    if (path === '/msi' || path.startsWith('/msi/')) return notFound(req, res, 'azure-msi', '');
    next();
  });
  return router;
}

type Send = ((res: Response, surface: Surface, answer: Answer) => void) & {
  raw(res: Response, surface: Surface, status: number, headers: Readonly<Record<string, string>>, body: string): void;
};

/** Writes answers and counts them by surface and status; label children are cached (the hot path). */
function sender(metrics: Metrics): Send {
  const children = new Map<string, { inc(): void }>();
  const raw = (res: Response, surface: Surface, status: number, headers: Readonly<Record<string, string>>, body: string): void => {
    res.writeHead(status, headers).end(body);
    const key = `${surface} ${status}`;
    let child = children.get(key);
    if (!child) {
      child = metrics.requests.labels({ surface, status: String(status) });
      children.set(key, child);
    }
    child.inc();
  };
  const send = (res: Response, surface: Surface, answer: Answer): void => raw(res, surface, answer.status, { ...JSON_HEADERS, ...answer.headers }, JSON.stringify(answer.body));
  return Object.assign(send, { raw });
}

/** Success bodies serialized once per token and surface (IMDS's `expires_in` once per second). */
class BodyCache {
  readonly #clientId: string;
  readonly #bodies = new Map<string, { token: AzureAccessToken; second: number; body: string }>();

  constructor(clientId: string) {
    this.#clientId = clientId;
  }

  body(surface: Surface, token: AzureAccessToken, nowMs: number): string {
    const second = surface === 'azure-appservice' ? 0 : Math.floor(nowMs / 1000);
    const key = `${surface} ${token.resource}`;
    const hit = this.#bodies.get(key);
    if (hit && hit.token === token && hit.second === second) return hit.body;
    const body = JSON.stringify(surface === 'azure-appservice' ? appServiceTokenBody(token, this.#clientId) : imdsTokenBody(token, this.#clientId, nowMs));
    if (this.#bodies.size >= 512) this.#bodies.clear();
    this.#bodies.set(key, { token, second, body });
    return body;
  }
}

function header(req: Request, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function trimSlash(path: string): string {
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

function isParams(body: unknown): body is Params {
  return body !== null && typeof body === 'object' && !Array.isArray(body);
}
