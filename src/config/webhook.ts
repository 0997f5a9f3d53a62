// The admission webhook's config (`spiffe-connector webhook --config FILE`, the chart's ConfigMap):
// its HTTPS listener, the sidecar it injects, and the cluster defaults that pod annotations override.
import * as z from 'zod';
import { awsSchema, rolesAnywhereDefaultsSchema } from './aws.ts';
import { azureSchema } from './azure.ts';
import { hostPort, httpsUrl, loadYamlConfig, parseYamlConfig } from './common.ts';
import { gcpSchema } from './gcp.ts';

const file = z.string({ error: 'is required' }).min(1, 'must name a file');
const port = z.number().int('must be a whole number').min(1, 'must be 1-65535').max(65535, 'must be 1-65535');
const absolutePath = z.string().regex(/^\/[^\0]*$/, 'must be an absolute path');

/** A Kubernetes resource quantity (core/v1 Quantity): 100m, 64Mi, 1.5, 2G. */
const quantity = z
  .union([z.string(), z.number()])
  .transform((q) => String(q))
  .pipe(
    z
      .string()
      .regex(
        /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[munkMGTPE]|[KMGTPE]i)?$/,
        'must be a Kubernetes quantity such as 100m or 64Mi',
      ),
  );

const resourceList = z
  .object({ cpu: quantity.optional(), memory: quantity.optional(), 'ephemeral-storage': quantity.optional() })
  .strict();

/** A DNS-subdomain prefix ending in "/" (Kubernetes annotation key prefix rules). */
const annotationPrefix = z
  .string()
  .max(254)
  .regex(
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/$/,
    'must be a DNS subdomain followed by "/", such as spiffe-connector.io/',
  );

const trustDomain = z
  .string({ error: 'is required' })
  .transform((s) => s.replace(/^spiffe:\/\//, ''))
  .pipe(
    z.string().regex(/^[a-z0-9._-]{1,255}$/, 'must be a trust domain name: lowercase letters, digits, ".", "_", "-"'),
  );

/**
 * A cloud's defaults: checked against that cloud's own schema (every key optional), but kept as written,
 * so the sidecar config built from them holds only what an operator set and the sidecar applies its own defaults.
 */
function cloudDefaults(schema: z.ZodObject): z.ZodType<Record<string, unknown>> {
  const partial = schema.partial().strict();
  return z
    .record(z.string(), z.unknown())
    .superRefine((value, ctx) => {
      const checked = partial.safeParse(value);
      if (!checked.success)
        for (const issue of checked.error.issues)
          ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
    })
    .default({});
}

const logLevel = z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

export const webhookSchema = z
  .object({
    webhook: z
      .object({
        /** HTTPS listener for POST /mutate and /healthz, /readyz, /metrics. */
        address: hostPort.default('0.0.0.0:8443'),
        /** The serving certificate (cert-manager's Secret mount); reloaded when the files change. */
        tls: z
          .object({
            certFile: file,
            keyFile: file,
            /** Fallback poll of the files besides watching their directory. */
            reloadIntervalSeconds: z.number().int().min(1).max(3600).default(60),
          })
          .strict(),
        /** Prefix of every annotation the webhook reads. */
        annotationPrefix: annotationPrefix.default('spiffe-connector.io/'),
        /** Seconds to keep answering (503 on /readyz) after SIGTERM before closing. */
        drainSeconds: z.number().min(0).max(60).default(3),
        /** Plain-HTTP listener for /metrics only (Prometheus without the webhook's serving CA); off when unset. */
        metricsAddress: hostPort.optional(),
        /**
         * The pod's ServiceAccount annotations (same names as on pods; a pod annotation overrides), read from the
         * API server with the in-cluster conventions: KUBERNETES_SERVICE_HOST/PORT, the mounted token and CA.
         */
        serviceAccounts: z
          .object({
            enabled: z.boolean().default(false),
            tokenFile: file.default('/var/run/secrets/kubernetes.io/serviceaccount/token'),
            caFile: file.default('/var/run/secrets/kubernetes.io/serviceaccount/ca.crt'),
            /** How long one GET may take; keep it well under the MutatingWebhookConfiguration's timeoutSeconds. */
            timeoutSeconds: z.number().min(0.1).max(30).default(2),
            /** How long a ServiceAccount's annotations are reused for the next pods of that account. */
            cacheSeconds: z.number().int().min(0).max(3600).default(30),
            /** What a failed lookup does: deny the pod (failurePolicy Fail), or inject from the pod's annotations alone with a warning (Ignore). */
            onError: z.enum(['deny', 'podAnnotationsOnly']).default('deny'),
          })
          .strict()
          .default({
            enabled: false,
            tokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
            caFile: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
            timeoutSeconds: 2,
            cacheSeconds: 30,
            onError: 'deny',
          }),
      })
      .strict(),
    sidecar: z
      .object({
        /** Container name of the injected sidecar; a pod with a container of this name counts as injected. */
        name: z
          .string()
          .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label')
          .max(63)
          .default('spiffe-connector'),
        image: z.string({ error: 'is required' }).min(1, 'must name an image'),
        imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).default('IfNotPresent'),
        resources: z
          .object({ requests: resourceList.optional(), limits: resourceList.optional() })
          .strict()
          .default({ requests: { cpu: '10m', memory: '96Mi' }, limits: { memory: '192Mi' } }),
        /** Non-root user and group the sidecar runs as; the group also reads the csi-driver-spiffe files (fs-group). */
        /** null: no runAsUser (OpenShift's restricted SCC assigns one; runAsNonRoot still holds). */
        runAsUser: z.number().int().min(1, 'must not be 0: the sidecar runs as non-root').nullable().default(65532),
        runAsGroup: z.number().int().min(1, 'must not be 0').default(65532),
        /** How long the startup probe waits for the first credentials before the kubelet restarts the sidecar. */
        startupTimeoutSeconds: z.number().int().min(10).max(3600).default(120),
        /**
         * Serve the pod's init containers too: the sidecar goes first among the init containers (its startup probe
         * holds the next ones until credentials are ready) and they get the environment and token mount. Per pod:
         * annotation init-containers.
         */
        serveInitContainers: z.boolean().default(false),
      })
      .strict(),
    defaults: z
      .object({
        trustDomain,
        /** Loopback port of the emulated metadata endpoints (annotation metadata-port). */
        metadataPort: port.default(8181),
        /** Port of the sidecar's /healthz /readyz, the probes (annotation ops-port). */
        opsPort: port.default(9090),
        /** Port of the sidecar's /metrics, on the pod's loopback unless annotated metrics-pod-wide (annotation metrics-port). */
        metricsPort: port.default(9091),
        /** Shared emptyDir with the token files; mounted read-only into app containers. */
        stateDir: absolutePath.default('/var/run/spiffe-connector'),
        logLevel: logLevel.default('info'),
        /** The X.509-SVID volume (cert-manager csi-driver-spiffe). */
        csi: z
          .object({
            driver: z.string().min(1).default('spiffe.csi.cert-manager.io'),
            mountPath: absolutePath.default('/var/run/secrets/spiffe.io'),
            /** Extra volume attributes (for example spiffe.csi.cert-manager.io/trust-domain where the driver allows it). */
            volumeAttributes: z.record(z.string(), z.string()).default({}),
          })
          .strict()
          .default({
            driver: 'spiffe.csi.cert-manager.io',
            mountPath: '/var/run/secrets/spiffe.io',
            volumeAttributes: {},
          }),
        /** Where JWT-SVIDs come from: the issuer's RFC 8693 token endpoint (X.509-SVID → JWT-SVID over mTLS). */
        jwt: z
          .object({
            exchangeUrl: httpsUrl.optional(),
            /**
             * PEM CAs (a path inside the sidecar) to trust for the issuer's serving certificate, e.g. the csi-driver-spiffe
             * ca.crt when that certificate comes from a CA in the trust bundle; the system roots when unset.
             */
            caFile: absolutePath.optional(),
          })
          .strict()
          .default({}),
        /** JWKS (or OIDC issuer URL) whose keys make the JWT bundle of the Workload API pods ask for (annotation workload-api). */
        workloadApiJwksUrl: httpsUrl.optional(),
        /** Cluster-wide defaults of each cloud; a cloud is served only when a pod names its role/identity. */
        aws: cloudDefaults(
          awsSchema.omit({ roleArn: true }).extend({ rolesAnywhere: rolesAnywhereDefaultsSchema.optional() }),
        ),
        gcp: cloudDefaults(gcpSchema.omit({ serviceAccount: true })),
        azure: cloudDefaults(azureSchema.pick({ tenantId: true, authorityHost: true, audience: true, caFile: true })),
      })
      .strict(),
    log: z
      .object({ level: logLevel.default('info') })
      .strict()
      .default({ level: 'info' }),
  })
  .strict();

export type WebhookConfig = z.output<typeof webhookSchema>;
export type SidecarSettings = WebhookConfig['sidecar'];
export type ClusterDefaults = WebhookConfig['defaults'];

export function loadWebhookConfig(path: string): Promise<WebhookConfig> {
  return loadYamlConfig(webhookSchema, path);
}

export function parseWebhookConfig(text: string, source = 'webhook config'): WebhookConfig {
  return parseYamlConfig(webhookSchema, text, source);
}
