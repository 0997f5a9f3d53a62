// Starts the real webhook over HTTPS on 127.0.0.1:0 with a serving certificate from a test CA, and
// posts AdmissionReviews to it the way the API server does (TLS verified against that CA).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Agent, request } from 'undici';
import { type Clock, ManualClock } from '../../src/base/clock.ts';
import { parseWebhookConfig, type WebhookConfig } from '../../src/config/webhook.ts';
import { silentLogger } from '../../src/ops/logger.ts';
import { type RunningWebhook, startWebhook } from '../../src/webhook/server.ts';
import { DevCa } from '../helpers/pki.ts';

export const WEBHOOK_CONFIG = (certFile: string, keyFile: string): string => `
webhook:
  address: 127.0.0.1:0
  tls: { certFile: ${certFile}, keyFile: ${keyFile}, reloadIntervalSeconds: 60 }
  drainSeconds: 0
sidecar:
  image: registry.example/spiffe-connector:0.1.0
defaults:
  trustDomain: cluster.example
  jwt: { exchangeUrl: "https://spiffe-connector-issuer.spiffe-connector.svc:8443/token" }
  aws: { region: eu-west-1 }
  gcp: { projectId: my-project }
  azure: { tenantId: 00000000-0000-0000-0000-000000000000 }
log: { level: silent }
`;

export interface Harness {
  readonly webhook: RunningWebhook;
  readonly config: WebhookConfig;
  readonly ca: DevCa;
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly clock: Clock;
  post(body: unknown, contentType?: string): Promise<{ status: number; json: unknown; text: string }>;
  get(path: string): Promise<{ status: number; text: string }>;
  /** Certificate of the server as a fresh TLS connection sees it. */
  peerFingerprint(): Promise<string>;
}

export interface HarnessOptions {
  readonly configText?: (certFile: string, keyFile: string) => string;
  readonly clock?: Clock;
  readonly secrets?: () => string;
  /** The webhook's view of the environment (KUBERNETES_SERVICE_HOST/PORT for ServiceAccount lookups). */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

export async function startHarness(t: TestContext, options: HarnessOptions = {}): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'webhook-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ca = await DevCa.create({ trustDomain: 'cluster.example' });
  const cert = await ca.issueServerCert({
    dnsNames: ['spiffe-connector-webhook.spiffe-connector.svc'],
    ipAddresses: ['127.0.0.1'],
  });
  const certFile = join(dir, 'tls.crt');
  const keyFile = join(dir, 'tls.key');
  await writeFile(certFile, cert.certPem);
  await writeFile(keyFile, cert.keyPem);
  const config = parseWebhookConfig((options.configText ?? WEBHOOK_CONFIG)(certFile, keyFile), 'test webhook config');
  const clock = options.clock ?? new ManualClock();
  let n = 0;
  const webhook = await startWebhook(config, {
    clock,
    logger: silentLogger(),
    watch: false,
    ...(options.env ? { env: options.env } : {}),
    randomSecret: options.secrets ?? (() => `test-identity-header-${String(++n).padStart(4, '0')}`),
  });
  const agent = new Agent({ connect: { ca: ca.certPem, servername: 'spiffe-connector-webhook.spiffe-connector.svc' } });
  t.after(async () => {
    await agent.close();
    await webhook.close();
  });
  return {
    webhook,
    config,
    ca,
    dir,
    certFile,
    keyFile,
    clock,
    async post(body, contentType = 'application/json') {
      const res = await request(`${webhook.url}/mutate`, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': contentType },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await res.body.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: res.statusCode, json, text };
    },
    async get(path) {
      const res = await request(`${webhook.url}${path}`, { dispatcher: agent });
      return { status: res.statusCode, text: await res.body.text() };
    },
    async peerFingerprint() {
      const { connect } = await import('node:tls');
      return new Promise((resolve, reject) => {
        const socket = connect(
          {
            host: '127.0.0.1',
            port: webhook.port,
            ca: ca.certPem,
            servername: 'spiffe-connector-webhook.spiffe-connector.svc',
          },
          () => {
            const fp = socket.getPeerX509Certificate()?.fingerprint256 ?? '';
            socket.end();
            resolve(fp);
          },
        );
        socket.on('error', reject);
      });
    },
  };
}

let uid = 0;

/** An AdmissionReview v1 for a Pod CREATE, as the API server sends it. */
export function podReview(pod: unknown, namespace: string, operation = 'CREATE'): Record<string, unknown> {
  uid += 1;
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: `00000000-0000-4000-8000-${String(uid).padStart(12, '0')}`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      namespace,
      operation,
      userInfo: {
        username: 'system:serviceaccount:kube-system:replicaset-controller',
        groups: ['system:serviceaccounts', 'system:authenticated'],
      },
      object: pod,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
    },
  };
}
