// A stand-in Kubernetes API server on 127.0.0.1 (HTTPS, its own CA) that answers
// GET /api/v1/namespaces/{ns}/serviceaccounts/{name} as the real one does: a bearer token is required
// (401 Unauthorized Status without a known one), the token's user needs `get` on serviceaccounts
// (403 Forbidden Status naming the user, as RBAC words it), an absent account is a 404 NotFound Status,
// and a found one is the ServiceAccount object. Every request is recorded for the tests to inspect.
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { DevCa } from '../helpers/pki.ts';

export interface ServiceAccountObject {
  readonly namespace: string;
  readonly name: string;
  readonly annotations?: Record<string, string>;
}

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly authorization: string | undefined;
}

export interface KubeApiStandin {
  /** KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT as the kubelet sets them. */
  readonly env: { KUBERNETES_SERVICE_HOST: string; KUBERNETES_SERVICE_PORT: string };
  readonly caPem: string;
  readonly requests: RecordedRequest[];
  /** token → user name (what TokenReview would say). */
  readonly tokens: Map<string, string>;
  /** Users bound to a role with `get` on serviceaccounts. */
  readonly canGet: Set<string>;
  put(sa: ServiceAccountObject): void;
  delete(namespace: string, name: string): void;
  /** Answer every request after `ms` (a slow API server). */
  delayMs: number;
  close(): Promise<void>;
}

function status(code: number, reason: string, message: string, details?: Record<string, string>): string {
  return JSON.stringify({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  });
}

export async function startKubeApiStandin(): Promise<KubeApiStandin> {
  const ca = await DevCa.create({ trustDomain: 'kube.example' });
  const cert = await ca.issueServerCert({ dnsNames: ['kubernetes.default.svc'], ipAddresses: ['127.0.0.1'] });
  const accounts = new Map<string, ServiceAccountObject>();
  const requests: RecordedRequest[] = [];
  const tokens = new Map<string, string>();
  const canGet = new Set<string>();
  const timers = new Set<NodeJS.Timeout>();
  const state = { delayMs: 0 };

  const server: Server = createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    const path = new URL(req.url ?? '/', 'https://kubernetes').pathname;
    const authorization = req.headers.authorization;
    requests.push({ method: req.method ?? '', path, authorization });
    const send = (code: number, body: string): void => {
      const write = (): void => {
        timers.delete(timer);
        if (!res.destroyed)
          res
            .writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
            .end(body);
      };
      const timer = setTimeout(write, state.delayMs);
      timers.add(timer);
    };
    const bearer = /^Bearer (.+)$/.exec(authorization ?? '')?.[1];
    const user = bearer === undefined ? undefined : tokens.get(bearer);
    if (user === undefined) return send(401, status(401, 'Unauthorized', 'Unauthorized'));
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/serviceaccounts\/([^/]+)$/.exec(path);
    if (!m) return send(404, status(404, 'NotFound', 'the server could not find the requested resource'));
    const [, namespace = '', name = ''] = m;
    if (req.method !== 'GET')
      return send(
        405,
        status(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource'),
      );
    if (!canGet.has(user)) {
      return send(
        403,
        status(
          403,
          'Forbidden',
          `serviceaccounts "${name}" is forbidden: User "${user}" cannot get resource "serviceaccounts" in API group "" in the namespace "${namespace}"`,
          {
            name,
            kind: 'serviceaccounts',
          },
        ),
      );
    }
    const sa = accounts.get(`${namespace}/${name}`);
    if (!sa)
      return send(
        404,
        status(404, 'NotFound', `serviceaccounts "${name}" not found`, { name, kind: 'serviceaccounts' }),
      );
    send(
      200,
      JSON.stringify({
        kind: 'ServiceAccount',
        apiVersion: 'v1',
        metadata: {
          name,
          namespace,
          uid: '6f1c0f3e-3a51-4d5b-9b7e-1b1d9a0c2f10',
          resourceVersion: '4242',
          creationTimestamp: '2026-01-01T00:00:00Z',
          ...(sa.annotations ? { annotations: sa.annotations } : {}),
        },
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(port) },
    caPem: ca.certPem,
    requests,
    tokens,
    canGet,
    put: (sa) => void accounts.set(`${sa.namespace}/${sa.name}`, sa),
    delete: (namespace, name) => void accounts.delete(`${namespace}/${name}`),
    get delayMs() {
      return state.delayMs;
    },
    set delayMs(ms: number) {
      state.delayMs = ms;
    },
    close: async () => {
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
