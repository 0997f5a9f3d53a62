// The annotations of a pod's ServiceAccount, read from the Kubernetes API the way in-cluster clients do:
// the API server at KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT, the projected token (re-read, the
// kubelet rotates it) as a bearer token, its CA bundle to verify the server. Only
// GET /api/v1/namespaces/{ns}/serviceaccounts/{name} (the chart's ClusterRole allows `get` and nothing
// else). Answers are reused for cacheSeconds; failures are never cached. docs/webhook.md describes it.
import { readFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import type { Clock } from '../base/clock.ts';
import type { WebhookConfig } from '../config/webhook.ts';

export type ServiceAccountLookup =
  | { readonly found: true; readonly annotations: Readonly<Record<string, string>> }
  /** The API answered 404: the account does not exist (the API server's own admission decides what that means). */
  | { readonly found: false }
  | { readonly error: string };

export interface ServiceAccountSource {
  get(namespace: string, name: string): Promise<ServiceAccountLookup>;
}

type Settings = WebhookConfig['webhook']['serviceAccounts'];

/** Entries kept at most (oldest dropped first): a cluster's busiest accounts, not all of them. */
const MAX_ENTRIES = 1024;
/** Larger than any ServiceAccount (the API server caps objects near 1.5 MiB in etcd). */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

/** Kubernetes object names: DNS subdomains (namespaces are DNS labels, a subset). */
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function statusMessage(body: string): string | undefined {
  try {
    const status = JSON.parse(body) as { kind?: unknown; message?: unknown };
    if (status.kind === 'Status' && typeof status.message === 'string') return status.message.slice(0, 500);
  } catch {
    // not a Status
  }
  return undefined;
}

function isStringMap(value: unknown): value is Record<string, string> {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.values(value).every((v) => typeof v === 'string')
  );
}

export interface InClusterOptions {
  readonly settings: Settings;
  readonly clock: Clock;
  /** Only annotations under this prefix are kept (the webhook reads no others). */
  readonly prefix: string;
  /** Where KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT come from (process.env by default). */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

export class InClusterServiceAccounts implements ServiceAccountSource {
  readonly #settings: Settings;
  readonly #clock: Clock;
  readonly #env: Readonly<Record<string, string | undefined>>;
  readonly #prefix: string;
  readonly #cache = new Map<string, { at: number; value: ServiceAccountLookup }>();
  readonly #inFlight = new Map<string, Promise<ServiceAccountLookup>>();
  /** One kept-alive connection pool per CA bundle (a new one when the mounted CA changes). */
  #agent: { ca: string; agent: Agent } | undefined;

  constructor(options: InClusterOptions) {
    this.#settings = options.settings;
    this.#clock = options.clock;
    this.#env = options.env ?? process.env;
    this.#prefix = options.prefix;
  }

  /** The API server's base URL, or why there is none. */
  apiServer(): { url: URL } | { error: string } {
    const host = this.#env['KUBERNETES_SERVICE_HOST'];
    const port = this.#env['KUBERNETES_SERVICE_PORT'];
    if (!host || !port)
      return { error: 'KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not running in a pod?)' };
    try {
      return { url: new URL(`https://${host.includes(':') ? `[${host}]` : host}:${port}`) };
    } catch {
      return { error: `KUBERNETES_SERVICE_HOST/PORT (${host}:${port}) do not make a URL` };
    }
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.#agent?.agent.destroy();
    this.#agent = undefined;
  }

  async get(namespace: string, name: string): Promise<ServiceAccountLookup> {
    if (!NAME.test(namespace) || !NAME.test(name))
      return { error: `"${namespace}/${name}" is not a valid ServiceAccount name` };
    const key = `${namespace}/${name}`;
    const cached = this.#cache.get(key);
    const ttl = this.#settings.cacheSeconds * 1000;
    if (cached && this.#clock.now() - cached.at < ttl) return cached.value;
    let pending = this.#inFlight.get(key);
    if (!pending) {
      pending = this.#fetch(namespace, name).finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, pending);
    }
    const value = await pending;
    if (!('error' in value) && ttl > 0) {
      this.#cache.delete(key);
      if (this.#cache.size >= MAX_ENTRIES) {
        const oldest = this.#cache.keys().next().value;
        if (oldest !== undefined) this.#cache.delete(oldest);
      }
      this.#cache.set(key, { at: this.#clock.now(), value });
    }
    return value;
  }

  async #fetch(namespace: string, name: string): Promise<ServiceAccountLookup> {
    const server = this.apiServer();
    if ('error' in server) return server;
    let token: string;
    let ca: Buffer;
    try {
      token = (await readFile(this.#settings.tokenFile, 'utf8')).trim();
    } catch (error) {
      return {
        error: `cannot read the ServiceAccount token ${this.#settings.tokenFile} (${(error as NodeJS.ErrnoException).code ?? 'error'}; automountServiceAccountToken off?)`,
      };
    }
    if (token === '') return { error: `the ServiceAccount token ${this.#settings.tokenFile} is empty` };
    try {
      ca = await readFile(this.#settings.caFile);
    } catch (error) {
      return {
        error: `cannot read the API server CA ${this.#settings.caFile} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      };
    }
    const url = new URL(`/api/v1/namespaces/${namespace}/serviceaccounts/${name}`, server.url);
    const caText = ca.toString('utf8');
    if (this.#agent?.ca !== caText) {
      this.#agent?.agent.destroy();
      this.#agent = {
        ca: caText,
        agent: new Agent({ keepAlive: true, maxSockets: 4, maxFreeSockets: 1, timeout: 60_000, ca }),
      };
    }
    const agent = this.#agent.agent;
    const answer = await new Promise<{ status: number; body: string } | { error: string }>((resolve) => {
      const req = request(
        url,
        {
          method: 'GET',
          agent,
          headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
          timeout: this.#settings.timeoutSeconds * 1000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_RESPONSE_BYTES) {
              req.destroy();
              resolve({ error: 'the API server answer is too large' });
            } else chunks.push(chunk);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', (error) =>
            resolve({
              error: `reading the API server answer failed (${(error as NodeJS.ErrnoException).code ?? error.message})`,
            }),
          );
        },
      );
      req.on('timeout', () => {
        req.destroy();
        resolve({ error: `the API server did not answer within ${this.#settings.timeoutSeconds} s` });
      });
      req.on('error', (error: NodeJS.ErrnoException) =>
        resolve({ error: `cannot reach the API server at ${server.url.host} (${error.code ?? error.message})` }),
      );
      req.end();
    });
    if ('error' in answer) return answer;
    if (answer.status === 404) return { found: false };
    if (answer.status !== 200) {
      const why = statusMessage(answer.body);
      const hint =
        answer.status === 403
          ? " (the webhook needs get on serviceaccounts: the chart's ClusterRole)"
          : answer.status === 401
            ? ' (its ServiceAccount token was refused)'
            : '';
      return { error: `the API server answered ${answer.status}${why ? `: ${why}` : ''}${hint}` };
    }
    let object: { kind?: unknown; metadata?: { annotations?: unknown } };
    try {
      object = JSON.parse(answer.body) as typeof object;
    } catch {
      return { error: 'the API server answer is not JSON' };
    }
    if (object.kind !== 'ServiceAccount') return { error: 'the API server answer is not a ServiceAccount' };
    const annotations = object.metadata?.annotations ?? {};
    if (!isStringMap(annotations)) return { error: "the ServiceAccount's annotations are not a map of strings" };
    return {
      found: true,
      annotations: Object.fromEntries(Object.entries(annotations).filter(([k]) => k.startsWith(this.#prefix))),
    };
  }
}
