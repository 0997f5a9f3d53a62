// The emulated GCE metadata server (docs/gcp.md "Metadata paths", "Request checks"): root and listing probes, static facts,
// service accounts, and token and identity answered from the credential lookups. Never calls Google.
import type { ServerResponse } from 'node:http';
import type { Clock } from '../../base/clock.ts';
import { ConnectorError } from '../../base/errors.ts';
import type { CredentialLookup, Lookup } from '../../cache/credential-cache.ts';
import { type Answer, lookupProblem, type MetadataRequest, type Reply, type Surface } from '../contract.ts';
import { PerCredential } from '../per-credential.ts';
import { type GcpToken, scopeKey } from './credential.ts';
import {
  buildTree,
  isAccountDir,
  lookup,
  type MetadataFacts,
  type Rendered,
  renderLeaf,
  renderListing,
  renderRecursive,
  TOKEN_LEAVES,
} from './metadata-tree.ts';
import { metadataAnswer, metadataProblem, metadataValue, notFound, tokenBody } from './responses.ts';

const PREFIX = '/computeMetadata/v1';
const MAX_SCOPES = 32;
const SCOPE = /^[\x21-\x2b\x2d-\x7e]{1,256}$/;
export const MAX_AUDIENCE = 2048;

/** Longest a `wait_for_change` request is held, and how many may be held at once. */
export const MAX_WAIT_SECONDS = 3600;
export const MAX_WAITING = 64;

export interface MetadataSurfaceOptions {
  readonly facts: MetadataFacts;
  /** Access tokens by scope key (credential.ts scopeKey); `defaultScopes` is the key of a request without `scopes=`. */
  readonly accessTokens: CredentialLookup<GcpToken>;
  readonly defaultScopes: readonly string[];
  /** Access tokens of the other accounts (gcp.extraServiceAccounts) by email, keyed by scope set like accessTokens. */
  readonly extraAccounts?: ReadonlyMap<string, CredentialLookup<GcpToken>>;
  /** ID tokens by audience; undefined when no service account is configured (no ID tokens). */
  readonly idTokens: CredentialLookup<GcpToken> | undefined;
  readonly clock: Clock;
  /** Text answered for identity requests when there are no ID tokens (GKE-style 404). */
  readonly noIdentityText: string;
}

export function metadataSurface(o: MetadataSurfaceOptions): Surface {
  const tree = buildTree(o.facts);
  const defaultKey = scopeKey(o.defaultScopes);
  const waiting = new Set<() => void>();
  return {
    name: 'gcp-metadata',
    claims: (path) => path === '/' || path === '/computeMetadata' || path.startsWith('/computeMetadata/'),
    problem: (problem) => metadataProblem(problem),
    handle(req: MetadataRequest, res: ServerResponse, reply: Reply) {
      const path = req.path;
      if (req.method !== 'GET' && req.method !== 'HEAD')
        return reply(res, metadataAnswer(405, false, 'Method Not Allowed\n', { Allow: 'GET, HEAD' }));
      if (path === '/') return reply(res, metadataAnswer(200, false, '0.1/\ncomputeMetadata/\n'));
      if (req.headers['metadata-flavor'] !== 'Google')
        return reply(res, metadataAnswer(403, false, 'Missing required header "Metadata-Flavor": "Google"\n'));
      if (path === '/computeMetadata' || path === '/computeMetadata/')
        return reply(res, metadataAnswer(200, false, 'v1/\n'));
      if (path !== PREFIX && !path.startsWith(`${PREFIX}/`)) return reply(res, notFound());
      const segments = path
        .slice(PREFIX.length)
        .split('/')
        .filter((s) => s !== '');
      const query = new URLSearchParams(req.search);
      const json = query.get('alt') === 'json';
      const recursive = query.get('recursive')?.toLowerCase() === 'true';

      const last = segments[segments.length - 1];
      if (
        segments.length === 4 &&
        isAccountDir(segments.slice(0, 3)) &&
        (TOKEN_LEAVES as readonly string[]).includes(last ?? '')
      ) {
        if (!lookup(tree, segments.slice(0, 3))) return reply(res, notFound());
        // default/ and the default email are one account; any other listed email is an extra account.
        const extra =
          segments[2] === 'default' || segments[2] === o.facts.email
            ? undefined
            : o.extraAccounts?.get(segments[2] ?? '');
        if (last === 'token') {
          const scopes = parseScopes(query.get('scopes'));
          if (scopes === false)
            return reply(
              res,
              metadataAnswer(
                400,
                false,
                `Bad Request: scopes must be at most ${MAX_SCOPES} comma-separated scope names.\n`,
              ),
            );
          const key = scopes === undefined ? defaultKey : scopeKey(scopes);
          const tokens = extra ?? o.accessTokens;
          // The common case answers from the cache at once, without a promise.
          const cached = tokens.peek(key);
          if (cached.ok && secondsLeft(cached, o.clock) >= 1) return reply(res, tokenAnswer(cached, o.clock));
          return waitFor(
            res,
            reply,
            (signal) => tokens.get(key, signal),
            (found) => tokenAnswer(found, o.clock),
            o.clock,
          );
        }
        if (extra)
          return reply(
            res,
            metadataAnswer(
              404,
              false,
              'spiffe-connector serves ID tokens for the default service account (gcp.serviceAccount) only.\n',
            ),
          );
        const audience = query.get('audience') ?? '';
        if (audience === '') return reply(res, metadataAnswer(400, false, 'non-empty audience parameter required\n'));
        if (audience.length > MAX_AUDIENCE)
          return reply(res, metadataAnswer(400, false, `audience must be at most ${MAX_AUDIENCE} characters\n`));
        // format (standard|full) and licenses are accepted; the ID token always carries the email.
        const ids = o.idTokens;
        if (!ids) return reply(res, metadataAnswer(404, false, o.noIdentityText));
        return waitFor(
          res,
          reply,
          (signal) => ids.get(audience, signal),
          (found) => {
            const raw = found.value.token.reveal();
            return metadataAnswer(200, json, json ? JSON.stringify(raw) : raw);
          },
          o.clock,
        );
      }

      const node = lookup(tree, segments);
      if (!node) return reply(res, notFound());
      let answer: Answer;
      if ('leaf' in node) answer = rendered(renderLeaf(node.leaf, json));
      else if (recursive)
        answer = rendered({
          json: true,
          body: JSON.stringify(renderRecursive(node, segments.length === 2 && segments[1] === 'service-accounts')),
        });
      else
        answer = rendered(
          renderListing(node as Parameters<typeof renderListing>[0], isAccountDir(segments) ? TOKEN_LEAVES : [], json),
        );
      if (query.get('wait_for_change')?.toLowerCase() !== 'true') return reply(res, answer);
      // wait_for_change: answer at once when the caller's last_etag is not the current one; else hold until
      // the value changes (this tree never does) or timeout_sec passes, then answer the current value.
      const lastEtag = query.get('last_etag');
      if (lastEtag !== null && lastEtag !== answer.headers['ETag']) return reply(res, answer);
      const timeout = parseTimeout(query.get('timeout_sec'));
      if (timeout === undefined)
        return reply(
          res,
          metadataAnswer(
            400,
            false,
            `Bad Request: timeout_sec must be a whole number of seconds up to ${MAX_WAIT_SECONDS}.\n`,
          ),
        );
      if (waiting.size >= MAX_WAITING) return reply(res, metadataProblem({ kind: 'throttled', retryAfterSeconds: 1 }));
      const done = (): void => {
        o.clock.clearTimeout(timer);
        waiting.delete(done);
        if (!res.destroyed && !res.writableEnded) reply(res, answer);
      };
      const timer = o.clock.setTimeout(done, timeout * 1000);
      waiting.add(done);
      res.once('close', () => {
        o.clock.clearTimeout(timer);
        waiting.delete(done);
      });
    },
  };
}

function rendered(r: Rendered): Answer {
  return metadataValue(r.json, r.body);
}

/** Each token's answer, built once per second of its life (`expires_in` counts down), its body as bytes. */
const tokenAnswers = new PerCredential<GcpToken, Answer>();

function tokenAnswer(found: Lookup<GcpToken> & { ok: true }, clock: Clock): Answer {
  const seconds = secondsLeft(found, clock);
  const held = tokenAnswers.get(found.value, seconds);
  if (held) return held;
  const built = metadataAnswer(200, true, tokenBody(found.value.token.reveal(), seconds));
  return tokenAnswers.keep(found.value, seconds, { ...built, body: Buffer.from(built.body) });
}

/** Answers once a lookup that may wait for a first exchange settles; abandoned when the client goes away. */
async function waitFor(
  res: ServerResponse,
  reply: Reply,
  get: (signal: AbortSignal) => Promise<Lookup<GcpToken>>,
  ok: (found: Lookup<GcpToken> & { ok: true }) => Answer,
  clock: Clock,
): Promise<void> {
  const gone = new AbortController();
  res.once('close', () => gone.abort());
  const found = await get(gone.signal);
  if (res.destroyed || gone.signal.aborted) return;
  if (!found.ok) return reply(res, metadataProblem(lookupProblem(found)));
  if (secondsLeft(found, clock) < 1)
    return reply(
      res,
      metadataProblem({
        kind: 'unavailable',
        error: new ConnectorError(
          'credentials_unavailable',
          'the cached token is about to expire and is being refreshed',
          { retryable: true },
        ),
        retryAfterSeconds: 1,
      }),
    );
  reply(res, ok(found));
}

/** `timeout_sec`: absent means the longest hold; otherwise 1…MAX_WAIT_SECONDS whole seconds. */
function parseTimeout(raw: string | null): number | undefined {
  if (raw === null || raw === '') return MAX_WAIT_SECONDS;
  if (!/^\d{1,5}$/.test(raw)) return undefined;
  const n = Number(raw);
  return n >= 1 && n <= MAX_WAIT_SECONDS ? n : undefined;
}

/** `scopes=a,b` (commas or spaces): undefined for the default set, false when malformed. */
function parseScopes(raw: string | null): string[] | undefined | false {
  if (raw === null || raw.trim() === '') return undefined;
  const scopes = raw.split(/[,\s]+/).filter((s) => s !== '');
  if (scopes.length === 0) return undefined;
  if (scopes.length > MAX_SCOPES || !scopes.every((s) => SCOPE.test(s))) return false;
  return scopes;
}

function secondsLeft(found: Lookup<GcpToken>, clock: Clock): number {
  return found.ok ? Math.floor((found.value.expiresAt.getTime() - clock.now()) / 1000) : 0;
}
