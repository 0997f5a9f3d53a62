// The webhook's HTTPS listener: POST /mutate answers AdmissionReview v1; /healthz, /readyz, /metrics for
// the kubelet and Prometheus (and /metrics alone on a plain-HTTP port when webhook.metricsAddress is set).
// The serving certificate is reloaded when cert-manager renews it.
import { randomBytes } from 'node:crypto';
import {
  createServer as createHttpServer,
  type Server as HttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Clock } from '../base/clock.ts';
import { parseHostPort } from '../config/common.ts';
import type { WebhookConfig } from '../config/webhook.ts';
import { readBody } from '../http/read-body.ts';
import type { Logger } from '../ops/logger.ts';
import {
  type AdmissionResponse,
  type AdmissionReview,
  allow,
  deny,
  isAdmissionReview,
  reviewResponse,
} from './admission.ts';
import { AdmissionCache } from './admission-cache.ts';
import { WebhookMetrics } from './metrics.ts';
import type { ServiceAccountAnnotations } from './mutate.ts';
import { isPod, type Pod, podDisplayName } from './pod.ts';
import { InClusterServiceAccounts } from './service-accounts.ts';
import { watchServingPair } from './serving-cert.ts';

/** Larger than any AdmissionReview of a Pod (the API server caps objects near 3 MiB; a review carries one). */
const MAX_BODY_BYTES = 8 * 1024 * 1024;

export interface WebhookDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics?: WebhookMetrics;
  /** One fresh secret per injected pod (the Azure identity header); 32 random bytes by default. */
  readonly randomSecret?: () => string;
  /** Watch the certificate directory (default true); polling alone otherwise. */
  readonly watch?: boolean;
  /** Where KUBERNETES_SERVICE_HOST/PORT are read for ServiceAccount lookups (process.env by default). */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

export interface RunningWebhook {
  /** https://host:port as bound (0.0.0.0 reported as 127.0.0.1). */
  readonly url: string;
  readonly port: number;
  /** http://host:port of the plain-HTTP metrics listener, when webhook.metricsAddress is set. */
  readonly metricsUrl?: string;
  readonly metrics: WebhookMetrics;
  close(): Promise<void>;
}

function hostOf(bound: AddressInfo): string {
  if (bound.family === 'IPv6') return `[${bound.address === '::' ? '::1' : bound.address}]`;
  return bound.address === '0.0.0.0' ? '127.0.0.1' : bound.address;
}

/** 32 random bytes (base64url) per call, drawn from a pool refilled 64 secrets at a time (one CSPRNG call each). */
function pooledSecrets(): () => string {
  let pool = Buffer.alloc(0);
  let offset = 0;
  return () => {
    if (offset + 32 > pool.length) {
      pool = randomBytes(32 * 64);
      offset = 0;
    }
    const secret = pool.subarray(offset, offset + 32).toString('base64url');
    pool.fill(0, offset, offset + 32);
    offset += 32;
    return secret;
  };
}

type Answer = { status: number; type: string; body: string };

const text = (status: number, body: string): Answer => ({
  status,
  type: 'text/plain; charset=utf-8',
  body: `${body}\n`,
});

export async function startWebhook(config: WebhookConfig, deps: WebhookDeps): Promise<RunningWebhook> {
  const { logger, clock } = deps;
  const metrics = deps.metrics ?? new WebhookMetrics();
  const randomSecret = deps.randomSecret ?? pooledSecrets();
  const context = { config, randomSecret };
  const cache = new AdmissionCache();
  const address = parseHostPort(config.webhook.address);
  if (!address) throw new Error(`webhook.address ${config.webhook.address} is not HOST:PORT`);
  let draining = false;
  const lookups = config.webhook.serviceAccounts;
  const serviceAccounts: InClusterServiceAccounts | undefined = lookups.enabled
    ? new InClusterServiceAccounts({
        settings: lookups,
        clock,
        prefix: config.webhook.annotationPrefix,
        ...(deps.env ? { env: deps.env } : {}),
      })
    : undefined;

  /** The pod's ServiceAccount annotations, or the denial (or warning) a failed lookup gives. */
  async function accountOf(
    pod: Pod,
    namespace: string,
  ): Promise<{ account?: ServiceAccountAnnotations; warning?: string } | { denied: string }> {
    if (!serviceAccounts) return {};
    // A pod that opts out needs nothing from its account (and is not refused when the API server is away).
    const inject = `${config.webhook.annotationPrefix}inject`;
    if ((pod.metadata?.annotations?.[inject] ?? pod.metadata?.labels?.[inject]) === 'false') return {};
    const name =
      pod.spec.serviceAccountName ||
      (typeof pod.spec['serviceAccount'] === 'string' ? pod.spec['serviceAccount'] : '') ||
      'default';
    const started = process.hrtime.bigint();
    const got = await serviceAccounts.get(namespace, name);
    metrics.serviceAccountLookups.inc({ outcome: 'error' in got ? 'error' : got.found ? 'found' : 'not_found' });
    metrics.serviceAccountLookupDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
    if (!('error' in got))
      return got.found ? { account: { name: `${namespace}/${name}`, annotations: got.annotations } } : {};
    const what = `spiffe-connector: cannot read ServiceAccount ${namespace}/${name}, whose annotations may configure this pod: ${got.error}`;
    logger.warn({ serviceAccount: `${namespace}/${name}`, err: got.error }, 'ServiceAccount lookup failed');
    if (lookups.onError === 'deny')
      return {
        denied: `${what}; the pod is refused rather than started without its credentials (retry, or fix the webhook's API access)`,
      };
    return { warning: `${what}; injected from the pod's own annotations only` };
  }

  /** One review → one response; never throws (a failure is a denial the API server can show). */
  async function review(body: AdmissionReview): Promise<AdmissionResponse> {
    const req = body.request;
    const isPodCreate =
      req.kind.group === '' &&
      req.kind.version === 'v1' &&
      req.kind.kind === 'Pod' &&
      req.operation === 'CREATE' &&
      !req.subResource;
    if (!isPodCreate) {
      metrics.admissions.inc({ outcome: 'ignored' });
      return allow(req.uid, [], []);
    }
    const pod = req.object;
    if (!isPod(pod)) {
      metrics.admissions.inc({ outcome: 'denied' });
      return deny(
        req.uid,
        'spiffe-connector: the Pod object is malformed (spec.containers, volumes, env or annotations have the wrong shape)',
      );
    }
    const namespace = req.namespace ?? pod.metadata?.namespace ?? 'default';
    const who = podDisplayName(pod, namespace);
    const fromAccount = await accountOf(pod, namespace);
    if ('denied' in fromAccount) {
      metrics.admissions.inc({ outcome: 'denied' });
      logger.info({ uid: req.uid, pod: who, reason: fromAccount.denied }, 'denied a pod');
      return deny(req.uid, fromAccount.denied);
    }
    const admitted = cache.admit(pod, context, fromAccount.account);
    const { result } = admitted;
    const patchJson = admitted.patchJson;
    const extraWarnings = fromAccount.warning && result.outcome !== 'denied' ? [fromAccount.warning] : [];
    switch (result.outcome) {
      case 'denied':
        metrics.admissions.inc({ outcome: 'denied' });
        logger.info({ uid: req.uid, pod: who, reason: result.denied }, 'denied a pod');
        return deny(req.uid, result.denied);
      case 'injected': {
        metrics.admissions.inc({ outcome: 'injected' });
        const warnings = [...extraWarnings, ...result.warnings];
        metrics.warnings.inc(warnings.length);
        const sa =
          typeof pod.spec.serviceAccountName === 'string' && pod.spec.serviceAccountName !== ''
            ? pod.spec.serviceAccountName
            : 'default';
        const spiffeId = `spiffe://${config.defaults.trustDomain}/ns/${namespace}/sa/${sa}`;
        const clouds = (['aws', 'gcp', 'azure'] as const).filter((c) => result.config[c] !== undefined);
        logger.info(
          { uid: req.uid, pod: who, spiffeId, clouds, warnings: warnings.length, dryRun: req.dryRun === true },
          'injected the sidecar',
        );
        return allow(req.uid, patchJson ?? result.patch, warnings, { 'spiffe-id': spiffeId, clouds: clouds.join(',') });
      }
      case 'already-injected':
      case 'not-requested':
        metrics.admissions.inc({ outcome: result.outcome.replace('-', '_') });
        logger.debug({ uid: req.uid, pod: who, outcome: result.outcome }, 'nothing to inject');
        return allow(req.uid, [], extraWarnings);
    }
  }

  async function mutate(req: IncomingMessage): Promise<Answer> {
    if (req.method !== 'POST') return text(405, 'POST an AdmissionReview');
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? ''))
      return text(415, 'Content-Type must be application/json');
    const raw = await readBody(req, MAX_BODY_BYTES);
    if (!raw) return text(413, 'request body too large');
    const started = process.hrtime.bigint();
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString('utf8'));
    } catch {
      metrics.admissions.inc({ outcome: 'bad_request' });
      return text(400, 'the body is not JSON');
    }
    if (!isAdmissionReview(parsed)) {
      metrics.admissions.inc({ outcome: 'bad_request' });
      return text(400, 'the body is not an admission.k8s.io/v1 AdmissionReview with a request');
    }
    let response: AdmissionResponse;
    try {
      response = await review(parsed);
    } catch (error) {
      // A defect, not the pod's fault: deny with the reason rather than crash or silently skip injection.
      logger.error({ uid: parsed.request.uid, err: (error as Error).message }, 'reviewing a pod failed');
      metrics.admissions.inc({ outcome: 'error' });
      response = deny(
        parsed.request.uid,
        `spiffe-connector: internal error while injecting: ${(error as Error).message}`,
      );
    }
    const body = JSON.stringify(reviewResponse(response));
    metrics.duration.observe(Number(process.hrtime.bigint() - started) / 1e9);
    return { status: 200, type: 'application/json', body };
  }

  async function route(req: IncomingMessage): Promise<Answer> {
    // The target as sent, up to the query: URL parsers throw on targets such as `//a:99999/x`.
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === '/mutate') return mutate(req);
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(405, 'method not allowed');
    if (path === '/healthz') return text(200, 'ok');
    if (path === '/readyz') return draining ? text(503, 'draining') : text(200, 'ready');
    if (path === '/metrics')
      return { status: 200, type: metrics.registry.contentType, body: await metrics.registry.metrics() };
    return text(404, 'not found');
  }

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    route(req).then(
      (a) =>
        res
          .writeHead(a.status, { 'content-type': a.type, 'content-length': Buffer.byteLength(a.body) })
          .end(req.method === 'HEAD' ? undefined : a.body),
      (error: unknown) => {
        logger.error({ err: (error as Error).message }, 'request failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' }).end('internal error\n');
        else res.destroy();
      },
    );
  };

  let server: Server | undefined;
  const serving = watchServingPair({
    certFile: config.webhook.tls.certFile,
    keyFile: config.webhook.tls.keyFile,
    clock,
    logger,
    pollMs: config.webhook.tls.reloadIntervalSeconds * 1000,
    ...(deps.watch === undefined ? {} : { watch: deps.watch }),
    onChange: (c) => server?.setSecureContext({ cert: c.certPem, key: c.keyPem.reveal() }),
    onSwap: (c) => {
      metrics.reloads.inc({ outcome: 'accepted' });
      metrics.certificateExpiry.set(c.notAfter.getTime() / 1000);
    },
    onRefuse: () => metrics.reloads.inc({ outcome: 'refused' }),
  });
  const cert = await serving.start();
  server = createServer({ cert: cert.certPem, key: cert.keyPem.reveal(), minVersion: 'TLSv1.2' }, handler);
  // The API server keeps connections to webhooks alive; outlast its idle reuse so a POST never races a close.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 30_000;
  try {
    await new Promise<void>((resolve, reject) => {
      server?.once('error', reject);
      server?.listen(address.port, address.host.replace(/^\[|\]$/g, ''), () => resolve());
    });
  } catch (error) {
    await serving.close();
    throw error;
  }
  const bound = server.address() as AddressInfo;
  const host = hostOf(bound);
  logger.info(
    {
      address: `${bound.address}:${bound.port}`,
      trustDomain: config.defaults.trustDomain,
      serviceAccountLookups: lookups.enabled,
    },
    'webhook listening',
  );

  // Prometheus scrapes /metrics here over plain HTTP (no serving CA to distribute); nothing else is served.
  let metricsServer: HttpServer | undefined;
  let metricsUrl: string | undefined;
  if (config.webhook.metricsAddress !== undefined) {
    const metricsAt = parseHostPort(config.webhook.metricsAddress);
    if (!metricsAt) throw new Error(`webhook.metricsAddress ${config.webhook.metricsAddress} is not HOST:PORT`);
    const plain = createHttpServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://metrics').pathname;
      const answer: Promise<Answer> =
        req.method !== 'GET' && req.method !== 'HEAD'
          ? Promise.resolve(text(405, 'method not allowed'))
          : path === '/metrics'
            ? metrics.registry.metrics().then((body) => ({ status: 200, type: metrics.registry.contentType, body }))
            : Promise.resolve(text(404, 'not found (this port serves /metrics only)'));
      answer.then(
        (a) =>
          res
            .writeHead(a.status, { 'content-type': a.type, 'content-length': Buffer.byteLength(a.body) })
            .end(req.method === 'HEAD' ? undefined : a.body),
        () => res.writeHead(500, { 'content-type': 'text/plain' }).end('internal error\n'),
      );
    });
    plain.requestTimeout = 10_000;
    try {
      await new Promise<void>((resolve, reject) => {
        plain.once('error', reject);
        plain.listen(metricsAt.port, metricsAt.host.replace(/^\[|\]$/g, ''), () => resolve());
      });
    } catch (error) {
      await serving.close();
      await new Promise<void>((resolve) => server?.close(() => resolve()));
      throw error;
    }
    metricsServer = plain;
    const m = plain.address() as AddressInfo;
    metricsUrl = `http://${hostOf(m)}:${m.port}`;
    logger.info({ address: `${m.address}:${m.port}` }, 'webhook metrics listening (plain HTTP)');
  }

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      draining = true;
      const drainMs = config.webhook.drainSeconds * 1000;
      if (drainMs > 0) await new Promise<void>((resolve) => clock.setTimeout(resolve, drainMs));
      await serving.close();
      serviceAccounts?.close();
      await new Promise<void>((resolve) => {
        server?.close(() => resolve());
        server?.closeIdleConnections();
      });
      if (metricsServer) {
        await new Promise<void>((resolve) => {
          metricsServer?.close(() => resolve());
          metricsServer?.closeAllConnections();
        });
      }
    })();
    return closing;
  };
  return {
    url: `https://${host}:${bound.port}`,
    port: bound.port,
    ...(metricsUrl ? { metricsUrl } : {}),
    metrics,
    close,
  };
}
