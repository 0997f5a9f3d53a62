// The sidecar's config (config.example.yaml documents every key): spiffe sources, listeners, and one optional section
// per cloud. A cloud section that is absent means that cloud is not served.
import * as z from 'zod/mini';
import { awsSchema } from './aws.ts';
import { azureSchema } from './azure.ts';
import {
  hostPort,
  httpsUrl,
  isLoopbackHost,
  logLevel,
  loopbackHostPort,
  parseHostPort,
  trustDomain,
} from './common.ts';
import { gcpSchema } from './gcp.ts';

const nonEmpty = z.string().check(z.minLength(1));

const x509Schema = z.strictObject({
  dir: z._default(nonEmpty, '/var/run/secrets/spiffe.io'),
  certFile: z._default(nonEmpty, 'tls.crt'),
  keyFile: z._default(nonEmpty, 'tls.key'),
  bundleFile: z._default(nonEmpty, 'ca.crt'),
  /** Seconds between fallback polls of the files, besides watching them. */
  pollIntervalSeconds: z._default(z.number().check(z.int(), z.gte(1), z.lte(3600)), 30),
});

const jwtSchema = z
  .strictObject({
    file: z.optional(nonEmpty),
    exchange: z.optional(
      z.strictObject({
        url: httpsUrl,
        /** PEM CA bundle to trust for the issuer's serving certificate, instead of the system roots (used when absent). */
        caFile: z.optional(nonEmpty),
      }),
    ),
  })
  .check(
    z.superRefine((value, ctx) => {
      const set = [value.file, value.exchange].filter((v) => v !== undefined).length;
      if (set !== 1) ctx.addIssue({ code: 'custom', message: 'set exactly one of file or exchange' });
    }),
  );

const workloadApiSchema = z.strictObject({
  socket: z
    .string()
    .check(
      z.regex(
        /^(unix:(\/\/)?\/[^?#]+|tcp:\/\/\d{1,3}(\.\d{1,3}){3}:\d{1,5})$/,
        'must be unix:///path/to.sock or tcp://IP:PORT',
      ),
    ),
  /**
   * Pick the SVID with this hint when the agent returns several (docs/spiffe.md#workload-api-streams); default the
   * first.
   */
  hint: z.optional(z.string().check(z.minLength(1), z.maxLength(1024))),
});

export const DEFAULT_METRICS_ADDRESS = '127.0.0.1:9091';

/** /metrics stays on loopback unless configured otherwise: with the probes when they are loopback, else on its own port. */
export function defaultMetricsAddress(opsAddress: string): string {
  const ops = parseHostPort(opsAddress);
  return ops && isLoopbackHost(ops.host) ? opsAddress : DEFAULT_METRICS_ADDRESS;
}

const serverSchema = z.strictObject({
  metadataAddress: z._default(loopbackHostPort, '127.0.0.1:8181'),
  /** /healthz and /readyz (the kubelet's probes; /readyz names what is not ready, never why). */
  opsAddress: z._default(hostPort, '0.0.0.0:9090'),
  /**
   * /metrics (and a /readyz that says why). Default: opsAddress when that is loopback, otherwise
   * 127.0.0.1:9091. Set it to opsAddress (or any pod-wide address) to let Prometheus scrape the pod.
   */
  metricsAddress: z.optional(hostPort),
  stateDir: z._default(nonEmpty, '/var/run/spiffe-connector'),
  /**
   * Also serve every metadata surface on port 80 of the metadataAddress host, for clients that drop the
   * port of AWS_EC2_METADATA_SERVICE_ENDPOINT. No privilege beyond the pod sysctl
   * net.ipv4.ip_unprivileged_port_start=80 (a safe sysctl; the webhook sets it), or NET_BIND_SERVICE.
   */
  metadataPort80: z._default(z.boolean(), false),
  /**
   * Link-local mode: also serve every metadata surface on 169.254.169.254:80 and 169.254.170.2:80, where the
   * real services answer, for clients that hard-code those addresses. The addresses must be on the pod's lo
   * (the webhook's init container adds them, with NET_ADMIN) and port 80 bindable (as for metadataPort80).
   */
  linkLocal: z._default(z.boolean(), false),
  /** Seconds to keep answering (503) after SIGTERM before closing. */
  drainSeconds: z._default(z.number().check(z.gte(0), z.lte(60)), 3),
  /** Serve the SPIFFE Workload API to the pod on this Unix socket path (in a volume shared with the app). */
  workloadApiSocket: z.optional(
    z.string().check(
      z.regex(/^\/[^\0]*[^/]$/, 'must be an absolute filesystem path to the socket file'),
      z.refine((p) => Buffer.byteLength(p) <= 107, 'must be at most 107 bytes (the Unix socket path limit)'),
    ),
  ),
  /** JWKS (or OIDC issuer, resolved by discovery) whose keys make the JWT bundle that socket serves. */
  workloadApiJwksUrl: z.optional(httpsUrl),
});

export const sidecarSchema = z
  .strictObject({
    spiffe: z.strictObject({
      trustDomain,
      x509: z.optional(x509Schema),
      jwt: z.optional(jwtSchema),
      workloadApi: z.optional(workloadApiSchema),
    }),
    server: z._default(
      z.pipe(
        serverSchema,
        z.transform((server) => ({
          ...server,
          metricsAddress: server.metricsAddress ?? defaultMetricsAddress(server.opsAddress),
        })),
      ),
      {
        metadataAddress: '127.0.0.1:8181',
        opsAddress: '0.0.0.0:9090',
        metricsAddress: DEFAULT_METRICS_ADDRESS,
        stateDir: '/var/run/spiffe-connector',
        drainSeconds: 3,
        metadataPort80: false,
        linkLocal: false,
      },
    ),
    log: z._default(z.strictObject({ level: z._default(logLevel, 'info') }), { level: 'info' }),
    aws: z.optional(awsSchema),
    gcp: z.optional(gcpSchema),
    azure: z.optional(azureSchema),
  })
  .check(
    z.superRefine((config, ctx) => {
      const s = config.spiffe;
      if (!s.x509 && !s.jwt && !s.workloadApi) {
        ctx.addIssue({ code: 'custom', path: ['spiffe'], message: 'configure an identity: x509, jwt or workloadApi' });
      }
      const hasJwt = s.jwt !== undefined || s.workloadApi !== undefined;
      if (s.jwt?.exchange && !s.x509 && !s.workloadApi) {
        ctx.addIssue({
          code: 'custom',
          path: ['spiffe', 'jwt', 'exchange'],
          message: 'the issuer exchange authenticates with an X.509-SVID: configure spiffe.x509 too',
        });
      }
      const hasX509 = s.x509 !== undefined || s.workloadApi !== undefined;
      if (config.aws && !config.aws.containerCredentials && !config.aws.imds) {
        ctx.addIssue({
          code: 'custom',
          path: ['aws', 'containerCredentials'],
          message: 'AWS serves no surface: enable containerCredentials or imds',
        });
      }
      if (config.aws?.containerRelativeUri !== undefined && !config.server.linkLocal) {
        ctx.addIssue({
          code: 'custom',
          path: ['aws', 'containerRelativeUri'],
          message: 'is served at 169.254.170.2, which only link-local mode listens on: set server.linkLocal: true',
        });
      }
      if (
        config.azure &&
        !config.azure.appService &&
        !config.azure.imds &&
        !config.azure.msi &&
        config.azure.tokenFile === undefined
      ) {
        ctx.addIssue({
          code: 'custom',
          path: ['azure', 'appService'],
          message: 'Azure serves no surface: enable appService, imds or msi, or set tokenFile',
        });
      }
      const awsContainers = Object.keys(config.aws?.containers ?? {});
      if (config.aws && awsContainers.length > 0 && !config.aws.containerCredentials) {
        ctx.addIssue({
          code: 'custom',
          path: ['aws', 'containers'],
          message:
            'roles per container are served on the container-credentials endpoint: enable aws.containerCredentials',
        });
      }
      if (config.azure && Object.keys(config.azure.containers).length > 0 && !config.azure.appService) {
        ctx.addIssue({
          code: 'custom',
          path: ['azure', 'containers'],
          message: 'client ids per container are served on the App Service endpoint: enable azure.appService',
        });
      }
      // The header says who asks: two callers with one header would be served as whichever is checked first.
      const headers = new Set(config.azure?.identityHeader === undefined ? [] : [config.azure.identityHeader]);
      for (const [name, c] of Object.entries(config.azure?.containers ?? {})) {
        if (c.identityHeader === undefined) continue;
        if (headers.has(c.identityHeader))
          ctx.addIssue({
            code: 'custom',
            path: ['azure', 'containers', name, 'identityHeader'],
            message: 'must differ from the pod’s and every other container’s identityHeader (it says who asks)',
          });
        headers.add(c.identityHeader);
      }
      if (config.aws?.rolesAnywhere && !hasX509) {
        ctx.addIssue({
          code: 'custom',
          path: ['aws', 'rolesAnywhere'],
          message:
            'IAM Roles Anywhere signs with the X.509-SVID, not a JWT-SVID: configure spiffe.x509 or spiffe.workloadApi',
        });
      } else if (config.aws && !config.aws.rolesAnywhere && !hasJwt) {
        ctx.addIssue({
          code: 'custom',
          path: ['aws'],
          message:
            'AWS federation needs JWT-SVIDs (or aws.rolesAnywhere with an X.509-SVID): configure spiffe.jwt or spiffe.workloadApi',
        });
      }
      if (config.azure && !hasJwt) {
        ctx.addIssue({
          code: 'custom',
          path: ['azure'],
          message: 'Entra federation needs JWT-SVIDs: configure spiffe.jwt or spiffe.workloadApi',
        });
      }
      const sameAccount =
        config.gcp?.serviceAccount === undefined
          ? -1
          : config.gcp.extraServiceAccounts.indexOf(config.gcp.serviceAccount);
      if (sameAccount !== -1)
        ctx.addIssue({
          code: 'custom',
          path: ['gcp', 'extraServiceAccounts', sameAccount],
          message: 'is already gcp.serviceAccount (the default account)',
        });
      if (config.gcp && !hasJwt && !s.x509) {
        ctx.addIssue({
          code: 'custom',
          path: ['gcp'],
          message:
            'Google federation needs JWT-SVIDs or an X.509-SVID: configure spiffe.jwt, spiffe.x509 or spiffe.workloadApi',
        });
      }
      if (!config.aws && !config.gcp && !config.azure) {
        ctx.addIssue({ code: 'custom', path: [], message: 'configure at least one cloud: aws, gcp or azure' });
      }
    }),
  );

export type SidecarConfig = z.output<typeof sidecarSchema>;
export type SpiffeConfig = SidecarConfig['spiffe'];
