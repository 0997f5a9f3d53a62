// The emulated Azure managed-identity surfaces on the loopback listener: App Service 2019-08-01, IMDS and the
// MSI_ENDPOINT form POST (reference/azure.md §1, §2, implications 2–6). Tokens come only from the cache.
import { randomUUID } from 'node:crypto';
import express, { Router, type Request, type Response } from 'express';
import type { Clock } from '../../clock.ts';
import type { Lookup } from '../../cache/refreshing-credential.ts';
import type { Logger } from '../../ops/logger.ts';
import type { Metrics } from '../../ops/metrics.ts';
import type { Secret } from '../../ops/redact.ts';
import { hostIsLoopback, isForwarded, secretEquals } from '../../server/guards.ts';
import { APP_SERVICE_PATH, IMDS_TOKEN_PATH, MSI_PATH } from './paths.ts';
import { parseTokenRequest, type Params, type ServedIdentity, type Surface } from './request.ts';
import { appServiceProblem, appServiceTokenBody, imdsProblem, imdsTokenBody, type Answer, type Problem } from './responses.ts';
import type { AzureAccessToken } from './token.ts';

/** Where the endpoints get tokens: the per-resource cache (waits only for a resource's very first fetch). */
export interface AzureTokens {
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

export function azureRouter(o: AzureEndpointsOptions): Router {
  const router = Router({ caseSensitive: false, strict: false });
  const form = express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 32 });

  router.get(APP_SERVICE_PATH, (req, res) => void serve(o, req, res, 'azure-appservice'));
  router.all(APP_SERVICE_PATH, (req, res) => methodNotAllowed(o, res, 'azure-appservice', 'GET'));

  // SDKs probe this path without the Metadata header (with or without a query) and need a fast 400.
  router.get(IMDS_TOKEN_PATH, (req, res) => void serve(o, req, res, 'azure-imds'));
  router.all(IMDS_TOKEN_PATH, (req, res) => methodNotAllowed(o, res, 'azure-imds', 'GET'));

  router.post(MSI_PATH, form, (req, res) => void serve(o, req, res, 'azure-msi'));
  router.all(MSI_PATH, (req, res) => methodNotAllowed(o, res, 'azure-msi', 'POST'));

  // Everything else of IMDS (instance metadata, the IMDSv2 credential probe, ...) is not served: 404 so
  // clients fall back, never a proxy to a real IMDS.
  router.use('/metadata', (req, res) => {
    send(o, res, 'azure-imds', imdsProblem({ kind: 'refused', status: 404, refusal: { error: 'not_found', description: `${req.method} ${req.baseUrl}${req.path} is not served here; only ${IMDS_TOKEN_PATH}` } }));
  });
  router.use('/msi', (req, res) => {
    send(o, res, 'azure-msi', imdsProblem({ kind: 'refused', status: 404, refusal: { error: 'not_found', description: `${req.method} ${req.baseUrl}${req.path} is not served here` } }));
  });
  // Only the form parser throws here: a body that cannot be read (too large, bad encoding) is the caller's error.
  router.use((error: unknown, _req: Request, res: Response, next: (e?: unknown) => void) => {
    if (res.headersSent) return next(error);
    send(o, res, 'azure-msi', imdsProblem({ kind: 'refused', status: 400, refusal: { error: 'invalid_request', description: 'The request body could not be read as a form' } }));
  });
  return router;
}

async function serve(o: AzureEndpointsOptions, req: Request, res: Response, surface: Surface): Promise<void> {
  const correlationId = randomUUID();
  const answer = (problem: Problem): void => send(o, res, surface, surface === 'azure-appservice' ? appServiceProblem(problem, correlationId) : imdsProblem(problem));
  const refuse = (status: 400 | 401, description: string, error = 'invalid_request'): void => answer({ kind: 'refused', status, refusal: { error, description } });

  if (o.draining()) return answer({ kind: 'draining' });
  if (isForwarded(req)) return refuse(400, 'Request contains a forwarding header (X-Forwarded-For or Forwarded); the identity endpoint answers this pod only');
  if (!hostIsLoopback(req.headers.host, o.metadataPort)) return refuse(400, 'The Host header must name the loopback metadata address');
  if (surface === 'azure-appservice') {
    if (!secretEquals(req.get('x-identity-header'), o.identityHeader.reveal())) {
      return refuse(401, 'X-IDENTITY-HEADER is missing or does not match IDENTITY_HEADER', 'unauthorized');
    }
  } else if (req.get('metadata')?.trim().toLowerCase() !== 'true') {
    return refuse(400, METADATA_HEADER_MISSING);
  }

  const params: Params = surface === 'azure-msi' && isParams(req.body) ? { ...(req.query as Params), ...req.body } : (req.query as Params);
  const parsed = parseTokenRequest(params, surface, o.served);
  if (!parsed.ok) return refuse(400, parsed.refusal.description, parsed.refusal.error);

  const gone = new AbortController();
  res.once('close', () => gone.abort());
  const lookup = await o.tokens.get(parsed.request.resource, gone.signal);
  if (res.writableEnded || gone.signal.aborted) return;
  if (!lookup.ok) {
    o.logger.warn({ cloud: 'azure', surface, resource: parsed.request.resource, code: lookup.error.code, upstreamCode: lookup.error.upstreamCode, retryAfterSeconds: lookup.retryAfterSeconds, err: lookup.error.message }, 'no Azure token to serve');
    return answer({ kind: 'unavailable', error: lookup.error, retryAfterSeconds: lookup.retryAfterSeconds });
  }
  const body = surface === 'azure-appservice' ? appServiceTokenBody(lookup.value, o.served.clientId) : imdsTokenBody(lookup.value, o.served.clientId, o.clock.now());
  send(o, res, surface, { status: 200, headers: { 'Cache-Control': 'no-store' }, body });
}

function methodNotAllowed(o: AzureEndpointsOptions, res: Response, surface: Surface, allow: string): void {
  const answer = imdsProblem({ kind: 'refused', status: 405, refusal: { error: 'method_not_allowed', description: `Use ${allow}` } });
  send(o, res, surface, { ...answer, headers: { ...answer.headers, Allow: allow } });
}

function send(o: AzureEndpointsOptions, res: Response, surface: Surface, answer: Answer): void {
  o.metrics.requests.inc({ surface, status: String(answer.status) });
  res.status(answer.status).set(answer.headers).json(answer.body);
}

function isParams(body: unknown): body is Params {
  return body !== null && typeof body === 'object' && !Array.isArray(body);
}
