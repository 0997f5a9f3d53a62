// The emulated Azure managed-identity surfaces (docs/azure.md "App Service", "IMDS", "MSI_ENDPOINT"): App Service
// 2019-08-01 (the per-pod X-IDENTITY-HEADER), IMDS (`Metadata: true`) and the MSI_ENDPOINT form POST.
// Tokens come only from the per-resource credential lookup. Hot path: one path comparison per surface, a query
// string read once per caller (an app asks the same way every time), bodies encoded once per token (and second),
// the identity header's digest computed once, and no promise while the cache holds the token.
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { parse as parseQuery } from 'node:querystring';
import express from 'express';
import type { Clock } from '../../base/clock.ts';
import type { Secret } from '../../base/secret.ts';
import type { CredentialLookup } from '../../cache/credential-cache.ts';
import { secretMatcher } from '../../http/guards.ts';
import type { Logger } from '../../ops/logger.ts';
import { lookupProblem, type MetadataRequest, type Reply, type Surface, type SurfaceName } from '../contract.ts';
import { PerCredential } from '../per-credential.ts';
import { type AzureAccessToken, resourceKey } from './credential.ts';
import { APP_SERVICE_PATH, IMDS_TOKEN_PATH, MSI_PATH } from './env.ts';
import { type Params, type Parsed, parseTokenRequest, type ServedIdentity } from './request.ts';
import { type AzureProblem, appServiceProblem, appServiceTokenBody, imdsProblem, imdsTokenBody } from './responses.ts';

export interface AzureSurfacesOptions {
  /** Tokens by resource. */
  readonly tokens: CredentialLookup<AzureAccessToken>;
  readonly served: ServedIdentity;
  /** The X-IDENTITY-HEADER secret App Service callers must present. */
  readonly identityHeader: Secret;
  /**
   * Containers with a client id of their own (azure.containers): App Service answers a request with one's
   * header for that client id only, from its own cache keys (resourceKey).
   */
  readonly containers?: ReadonlyArray<{
    readonly name: string;
    readonly clientId: string;
    readonly identityHeader: Secret;
  }>;
  readonly clock: Clock;
  readonly logger: Logger;
}

type AzureSurface = 'azure-appservice' | 'azure-imds' | 'azure-msi';

const METADATA_HEADER_MISSING = 'Required metadata header not specified';
const TOKEN_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' };
const APP_SERVICE = APP_SERVICE_PATH.toLowerCase();
const IMDS = IMDS_TOKEN_PATH.toLowerCase();
const MSI = MSI_PATH.toLowerCase();

/** The three surfaces, App Service first (its path lies under /msi/, which the MSI surface claims otherwise). */
export function azureSurfaces(o: AzureSurfacesOptions): Surface[] {
  // Who a header stands for: the pod's identity, or a container's own. Every matcher runs on every request
  // (constant time whichever matches); a header that matches none is refused.
  const callers: Caller[] = [
    caller(secretMatcher(o.identityHeader.reveal()), o.served, undefined),
    ...(o.containers ?? []).map((c) =>
      caller(secretMatcher(c.identityHeader.reveal()), { clientId: c.clientId, container: c.name }, c.name),
    ),
  ];
  const pod = callers[0] as Caller;
  const bodies = new BodyCache();
  const form = express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 32 });
  const problemOf = (surface: AzureSurface, problem: AzureProblem) =>
    surface === 'azure-appservice' ? appServiceProblem(problem, randomUUID()) : imdsProblem(problem);

  const refuse = (
    res: ServerResponse,
    reply: Reply,
    surface: AzureSurface,
    status: 400 | 401,
    description: string,
    error = 'invalid_request',
  ): void => reply(res, problemOf(surface, { kind: 'refused', status, refusal: { error, description } }));

  /** Answers from the cache when it holds the token (no promise on this path); waits for a first fetch otherwise. */
  const serve = (
    req: MetadataRequest,
    res: ServerResponse,
    reply: Reply,
    surface: AzureSurface,
  ): Promise<void> | void => {
    let caller = pod;
    if (surface === 'azure-appservice') {
      const presented = header(req, 'x-identity-header');
      let found: Caller | undefined;
      for (const c of callers) if (c.matches(presented) && found === undefined) found = c;
      if (found === undefined)
        return refuse(
          res,
          reply,
          surface,
          401,
          'X-IDENTITY-HEADER is missing or does not match IDENTITY_HEADER',
          'unauthorized',
        );
      caller = found;
    } else if (header(req, 'metadata')?.trim().toLowerCase() !== 'true') {
      return refuse(res, reply, surface, 400, METADATA_HEADER_MISSING);
    }
    const parsed = surface === 'azure-msi' ? parseForm(req, caller.served) : caller.parseQuery(surface, req.search);
    if (!parsed.ok) return refuse(res, reply, surface, 400, parsed.refusal.description, parsed.refusal.error);
    const key = resourceKey(caller.container, parsed.request.resource);
    const lookup = o.tokens.peek(key);
    if (lookup.ok) return answer(res, reply, surface, caller, lookup.value);
    return waitAndServe(res, reply, surface, caller, key);
  };

  const answer = (res: ServerResponse, reply: Reply, surface: AzureSurface, caller: Caller, token: AzureAccessToken) =>
    reply(res, {
      status: 200,
      headers: TOKEN_HEADERS,
      body: bodies.body(surface, caller.served.clientId, token, o.clock.now()),
    });

  const waitAndServe = async (
    res: ServerResponse,
    reply: Reply,
    surface: AzureSurface,
    caller: Caller,
    key: string,
  ): Promise<void> => {
    const gone = new AbortController();
    res.once('close', () => gone.abort());
    const lookup = await o.tokens.get(key, gone.signal);
    if (res.writableEnded || gone.signal.aborted) return;
    if (lookup.ok) return answer(res, reply, surface, caller, lookup.value);
    // A refused or throttled key is the caller's doing and costs no call: debug, so a flood cannot flood the log.
    const level = lookup.error.code === 'throttled' || lookup.error.code === 'request_invalid' ? 'debug' : 'warn';
    o.logger[level](
      {
        cloud: 'azure',
        surface,
        code: lookup.error.code,
        upstreamCode: lookup.error.upstreamCode,
        retryAfterSeconds: lookup.retryAfterSeconds,
        err: lookup.error.message,
      },
      'no Azure token to serve',
    );
    return reply(res, problemOf(surface, lookupProblem(lookup)));
  };

  const notFound = (req: MetadataRequest, res: ServerResponse, reply: Reply, what: string): void =>
    reply(
      res,
      imdsProblem({
        kind: 'refused',
        status: 404,
        refusal: { error: 'not_found', description: `${req.method} ${req.path} is not served here${what}` },
      }),
    );

  const methodNotAllowed = (res: ServerResponse, reply: Reply, surface: AzureSurface, allow: string): void => {
    const answer = problemOf(surface, {
      kind: 'refused',
      status: 405,
      refusal: { error: 'method_not_allowed', description: `Use ${allow}` },
    });
    reply(res, { ...answer, headers: { ...answer.headers, allow } });
  };

  const surface = (
    name: AzureSurface & SurfaceName,
    claims: (path: string) => boolean,
    handle: Surface['handle'],
  ): Surface => ({
    name,
    claims: (path) => claims(trimSlash(path.toLowerCase())),
    problem: (problem) => problemOf(name, problem),
    handle,
  });

  return [
    surface(
      'azure-appservice',
      (p) => p === APP_SERVICE,
      (req, res, reply) => {
        if (req.method !== 'GET' && req.method !== 'HEAD')
          return methodNotAllowed(res, reply, 'azure-appservice', 'GET');
        return serve(req, res, reply, 'azure-appservice');
      },
    ),
    // IMDS: the token path (SDKs probe it without the Metadata header and need a fast 400); the rest of
    // IMDS (instance metadata, the credential probe, ...) is 404, so clients fall back, never a proxy.
    surface(
      'azure-imds',
      (p) => p === '/metadata' || p.startsWith('/metadata/'),
      (req, res, reply) => {
        if (trimSlash(req.path.toLowerCase()) !== IMDS) return notFound(req, res, reply, `; only ${IMDS_TOKEN_PATH}`);
        if (req.method !== 'GET' && req.method !== 'HEAD') return methodNotAllowed(res, reply, 'azure-imds', 'GET');
        return serve(req, res, reply, 'azure-imds');
      },
    ),
    surface(
      'azure-msi',
      (p) => p === '/msi' || p.startsWith('/msi/'),
      (req, res, reply) => {
        if (trimSlash(req.path.toLowerCase()) !== MSI) return notFound(req, res, reply, '');
        if (req.method !== 'POST') return methodNotAllowed(res, reply, 'azure-msi', 'POST');
        // Only the form parser can fail here: a body it cannot read (too large, bad encoding) is the caller's error.
        form(req, res, (error?: unknown) => {
          if (error)
            return reply(
              res,
              imdsProblem({
                kind: 'refused',
                status: 400,
                refusal: { error: 'invalid_request', description: 'The request body could not be read as a form' },
              }),
            );
          void serve(req, res, reply, 'azure-msi')?.catch(() => res.destroy());
        });
      },
    ),
  ];
}

/**
 * Success bodies encoded once per token (IMDS's and MSI's, whose `expires_in` counts down, once per second). A token
 * is one caller's (its cache key names the container), so its client id is always the same.
 */
class BodyCache {
  readonly #appService = new PerCredential<AzureAccessToken, Buffer>();
  readonly #imds = new PerCredential<AzureAccessToken, Buffer>();

  body(surface: AzureSurface, clientId: string, token: AzureAccessToken, nowMs: number): Buffer {
    if (surface === 'azure-appservice')
      return (
        this.#appService.get(token, 0) ??
        this.#appService.keep(token, 0, Buffer.from(JSON.stringify(appServiceTokenBody(token, clientId))))
      );
    const second = Math.floor(nowMs / 1000);
    return (
      this.#imds.get(token, second) ??
      this.#imds.keep(token, second, Buffer.from(JSON.stringify(imdsTokenBody(token, clientId, nowMs))))
    );
  }
}

/** Who an identity header stands for, with the token requests its callers' query strings asked for. */
interface Caller {
  readonly matches: (presented: string | undefined) => boolean;
  readonly served: ServedIdentity;
  readonly container: string | undefined;
  /** The request a query string asks for, read once per query text: an app sends the same query every time. */
  parseQuery(surface: AzureSurface, search: string): Parsed;
}

/** Query strings remembered per caller and surface; more distinct ones start the memory afresh. */
const REMEMBERED_QUERIES = 64;

function caller(matches: Caller['matches'], served: ServedIdentity, container: string | undefined): Caller {
  const read: Partial<Record<AzureSurface, Map<string, Parsed>>> = {};
  return {
    matches,
    served,
    container,
    parseQuery(surface, search) {
      let queries = read[surface];
      if (queries === undefined) {
        queries = new Map();
        read[surface] = queries;
      }
      let parsed = queries.get(search);
      if (parsed === undefined) {
        // As express's default ("simple") query parser read it: a repeated parameter is a list.
        parsed = parseTokenRequest(parseQuery(search), surface, served);
        if (queries.size >= REMEMBERED_QUERIES) queries.clear();
        queries.set(search, parsed);
      }
      return parsed;
    },
  };
}

/** The MSI endpoint's request: its query and its form body together (the body wins a name both give). */
function parseForm(req: MetadataRequest, served: ServedIdentity): Parsed {
  const query: Params = parseQuery(req.search);
  return parseTokenRequest(isParams(req.body) ? { ...query, ...req.body } : query, 'azure-msi', served);
}

function header(req: MetadataRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function trimSlash(path: string): string {
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

function isParams(body: unknown): body is Params {
  return body !== null && typeof body === 'object' && !Array.isArray(body);
}
