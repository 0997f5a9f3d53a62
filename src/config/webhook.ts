// The admission webhook's config (`spiffe-connector webhook --config FILE`, the chart's ConfigMap):
// its HTTPS listener, the sidecar it injects, and the cluster defaults that pod annotations override.
import * as z from 'zod/mini';
import { awsSchema, rolesAnywhereDefaultsSchema } from './aws.ts';
import { azureSchema } from './azure.ts';
import { hostPort, httpsUrl, loadYamlConfig, logLevel, parseYamlConfig, trustDomain } from './common.ts';
import { gcpSchema } from './gcp.ts';

const file = z.string({ error: 'is required' }).check(z.minLength(1, 'must name a file'));
const port = z
  .number()
  .check(z.int('must be a whole number'), z.gte(1, 'must be 1-65535'), z.lte(65535, 'must be 1-65535'));
const absolutePath = z.string().check(z.regex(/^\/[^\0]*$/, 'must be an absolute path'));

/** A Kubernetes resource quantity (core/v1 Quantity): 100m, 64Mi, 1.5, 2G. */
const quantity = z.pipe(
  z.pipe(
    z.union([z.string(), z.number()]),
    z.transform((q) => String(q)),
  ),
  z
    .string()
    .check(
      z.regex(
        /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[munkMGTPE]|[KMGTPE]i)?$/,
        'must be a Kubernetes quantity such as 100m or 64Mi',
      ),
    ),
);

const resourceList = z.strictObject({
  cpu: z.optional(quantity),
  memory: z.optional(quantity),
  'ephemeral-storage': z.optional(quantity),
});

/** A DNS-subdomain prefix ending in "/" (Kubernetes annotation key prefix rules). */
const annotationPrefix = z
  .string()
  .check(
    z.maxLength(254),
    z.regex(
      /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/$/,
      'must be a DNS subdomain followed by "/", such as spiffe-connector.io/',
    ),
  );

/**
 * A cloud's defaults: checked against that cloud's own schema (every key optional), but kept as written,
 * so the sidecar config built from them holds only what an operator set and the sidecar applies its own defaults.
 */
function cloudDefaults(schema: z.ZodMiniObject): z.ZodMiniType<Record<string, unknown>> {
  const partial = z.partial(schema);
  return z._default(
    z.record(z.string(), z.unknown()).check(
      z.superRefine((value, ctx) => {
        const checked = partial.safeParse(value);
        if (!checked.success)
          for (const issue of checked.error.issues)
            ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
      }),
    ),
    {},
  );
}

const serviceAccountsDefaults = {
  enabled: false,
  tokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
  caFile: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
  timeoutSeconds: 2,
  cacheSeconds: 30,
  onError: 'deny',
} as const;

export const webhookSchema = z.strictObject({
  webhook: z.strictObject({
    /** HTTPS listener for POST /mutate and /healthz, /readyz, /metrics. */
    address: z._default(hostPort, '0.0.0.0:8443'),
    /** The serving certificate (cert-manager's Secret mount); reloaded when the files change. */
    tls: z.strictObject({
      certFile: file,
      keyFile: file,
      /** Fallback poll of the files besides watching their directory. */
      reloadIntervalSeconds: z._default(z.number().check(z.int(), z.gte(1), z.lte(3600)), 60),
    }),
    /** Prefix of every annotation the webhook reads. */
    annotationPrefix: z._default(annotationPrefix, 'spiffe-connector.io/'),
    /** Seconds to keep answering (503 on /readyz) after SIGTERM before closing. */
    drainSeconds: z._default(z.number().check(z.gte(0), z.lte(60)), 3),
    /** Plain-HTTP listener for /metrics only (Prometheus without the webhook's serving CA); off when unset. */
    metricsAddress: z.optional(hostPort),
    /**
     * The pod's ServiceAccount annotations (same names as on pods; a pod annotation overrides), read from the
     * API server with the in-cluster conventions: KUBERNETES_SERVICE_HOST/PORT, the mounted token and CA.
     */
    serviceAccounts: z._default(
      z.strictObject({
        enabled: z._default(z.boolean(), serviceAccountsDefaults.enabled),
        tokenFile: z._default(file, serviceAccountsDefaults.tokenFile),
        caFile: z._default(file, serviceAccountsDefaults.caFile),
        /** How long one GET may take; keep it well under the MutatingWebhookConfiguration's timeoutSeconds. */
        timeoutSeconds: z._default(z.number().check(z.gte(0.1), z.lte(30)), serviceAccountsDefaults.timeoutSeconds),
        /** How long a ServiceAccount's annotations are reused for the next pods of that account. */
        cacheSeconds: z._default(
          z.number().check(z.int(), z.gte(0), z.lte(3600)),
          serviceAccountsDefaults.cacheSeconds,
        ),
        /** What a failed lookup does: deny the pod (failurePolicy Fail), or inject from the pod's annotations alone with a warning (Ignore). */
        onError: z._default(z.enum(['deny', 'podAnnotationsOnly']), serviceAccountsDefaults.onError),
      }),
      serviceAccountsDefaults,
    ),
  }),
  sidecar: z.strictObject({
    /** Container name of the injected sidecar; a pod with a container of this name counts as injected. */
    name: z._default(
      z.string().check(z.regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label'), z.maxLength(63)),
      'spiffe-connector',
    ),
    image: z.string({ error: 'is required' }).check(z.minLength(1, 'must name an image')),
    imagePullPolicy: z._default(z.enum(['Always', 'IfNotPresent', 'Never']), 'IfNotPresent'),
    resources: z._default(z.strictObject({ requests: z.optional(resourceList), limits: z.optional(resourceList) }), {
      requests: { cpu: '10m', memory: '96Mi' },
      limits: { memory: '192Mi' },
    }),
    /** Non-root user and group the sidecar runs as; the group also reads the csi-driver-spiffe files (fs-group). */
    /** null: no runAsUser (OpenShift's restricted SCC assigns one; runAsNonRoot still holds). */
    runAsUser: z._default(
      z.nullable(z.number().check(z.int(), z.gte(1, 'must not be 0: the sidecar runs as non-root'))),
      65532,
    ),
    runAsGroup: z._default(z.number().check(z.int(), z.gte(1, 'must not be 0')), 65532),
    /** How long the startup probe waits for the first credentials before the kubelet restarts the sidecar. */
    startupTimeoutSeconds: z._default(z.number().check(z.int(), z.gte(10), z.lte(3600)), 120),
    /**
     * Serve the pod's init containers too: the sidecar goes first among the init containers (its startup probe
     * holds the next ones until credentials are ready) and they get the environment and token mount. Per pod:
     * annotation init-containers.
     */
    serveInitContainers: z._default(z.boolean(), false),
    /**
     * The image of the init container that link-local mode adds (annotation link-local): this project's
     * Dockerfile target link-local-init, which puts 169.254.169.254 and 169.254.170.2 on the pod's lo. Unset:
     * pods that ask for link-local mode are refused.
     */
    linkLocalInitImage: z.optional(z.string().check(z.minLength(1, 'must name an image'))),
  }),
  defaults: z.strictObject({
    trustDomain,
    /** Loopback port of the emulated metadata endpoints (annotation metadata-port). */
    metadataPort: z._default(port, 8181),
    /** Port of the sidecar's /healthz /readyz, the probes (annotation ops-port). */
    opsPort: z._default(port, 9090),
    /** Port of the sidecar's /metrics, on the pod's loopback unless annotated metrics-pod-wide (annotation metrics-port). */
    metricsPort: z._default(port, 9091),
    /** Shared emptyDir with the token files; mounted read-only into app containers. */
    stateDir: z._default(absolutePath, '/var/run/spiffe-connector'),
    logLevel: z._default(logLevel, 'info'),
    /** The X.509-SVID volume (cert-manager csi-driver-spiffe). */
    csi: z._default(
      z.strictObject({
        driver: z._default(z.string().check(z.minLength(1)), 'spiffe.csi.cert-manager.io'),
        mountPath: z._default(absolutePath, '/var/run/secrets/spiffe.io'),
        /** Extra volume attributes (for example spiffe.csi.cert-manager.io/trust-domain where the driver allows it). */
        volumeAttributes: z._default(z.record(z.string(), z.string()), {}),
      }),
      {
        driver: 'spiffe.csi.cert-manager.io',
        mountPath: '/var/run/secrets/spiffe.io',
        volumeAttributes: {},
      },
    ),
    /** Where JWT-SVIDs come from: the issuer's RFC 8693 token endpoint (X.509-SVID → JWT-SVID over mTLS). */
    jwt: z._default(
      z.strictObject({
        exchangeUrl: z.optional(httpsUrl),
        /**
         * PEM CAs (a path inside the sidecar) to trust for the issuer's serving certificate, e.g. the csi-driver-spiffe
         * ca.crt when that certificate comes from a CA in the trust bundle; the system roots when unset.
         */
        caFile: z.optional(absolutePath),
      }),
      {},
    ),
    /** JWKS (or OIDC issuer URL) whose keys make the JWT bundle of the Workload API pods ask for (annotation workload-api). */
    workloadApiJwksUrl: z.optional(httpsUrl),
    /** Cluster-wide defaults of each cloud; a cloud is served only when a pod names its role/identity. */
    aws: cloudDefaults(
      // The relative URI is a per-pod secret the webhook generates: never a cluster default.
      z.extend(z.omit(awsSchema, { roleArn: true, containerRelativeUri: true, containers: true }), {
        rolesAnywhere: z.optional(rolesAnywhereDefaultsSchema),
      }),
    ),
    gcp: cloudDefaults(z.omit(gcpSchema, { serviceAccount: true })),
    azure: cloudDefaults(z.pick(azureSchema, { tenantId: true, authorityHost: true, audience: true, caFile: true })),
  }),
  log: z._default(z.strictObject({ level: z._default(logLevel, 'info') }), { level: 'info' }),
});

export type WebhookConfig = z.output<typeof webhookSchema>;
export type SidecarSettings = WebhookConfig['sidecar'];
export type ClusterDefaults = WebhookConfig['defaults'];

export function loadWebhookConfig(path: string): Promise<WebhookConfig> {
  return loadYamlConfig(webhookSchema, path);
}

export function parseWebhookConfig(text: string, source = 'webhook config'): WebhookConfig {
  return parseYamlConfig(webhookSchema, text, source);
}
