// The pod annotations the webhook reads (docs/webhook.md lists them): each one's name, what sidecar
// config key it sets, and how its text is read. Pure: annotations in, settings or problems out.

export type Cloud = 'aws' | 'gcp' | 'azure';

type Kind = 'string' | 'seconds' | 'bool' | 'port' | 'list' | 'roles';

export interface AnnotationSpec {
  /** The name after the prefix: `aws-role-arn` for `spiffe-connector.io/aws-role-arn`. */
  readonly name: string;
  readonly kind: Kind;
  /** The sidecar config key it sets (schema.ts), or undefined for the webhook's own controls. */
  readonly path?: readonly string[];
  /** Setting it serves this cloud. */
  readonly cloud?: Cloud;
  readonly description: string;
}

export const INJECT = 'inject';
export const SKIP_CONTAINERS = 'skip-containers';
export const INIT_CONTAINERS = 'init-containers';

export const ANNOTATIONS: readonly AnnotationSpec[] = [
  { name: INJECT, kind: 'bool', description: '"true" injects the sidecar (also read from a label of the same name)' },
  {
    name: SKIP_CONTAINERS,
    kind: 'string',
    description: 'comma-separated app containers that get neither the environment nor the token mount',
  },
  {
    name: INIT_CONTAINERS,
    kind: 'bool',
    description:
      '"true" also serves the init containers: the sidecar starts before them and they get the environment and the token mount',
  },
  {
    name: 'aws-role-arn',
    kind: 'string',
    cloud: 'aws',
    path: ['aws', 'roleArn'],
    description: 'IAM role to assume with the JWT-SVID; serves AWS',
  },
  {
    name: 'aws-region',
    kind: 'string',
    cloud: 'aws',
    path: ['aws', 'region'],
    description: 'AWS region (AWS_REGION, the STS endpoint)',
  },
  {
    name: 'aws-audience',
    kind: 'string',
    cloud: 'aws',
    path: ['aws', 'audience'],
    description: 'audience of the JWT-SVID sent to STS (the IAM OIDC provider client ID)',
  },
  {
    name: 'aws-session-duration',
    kind: 'seconds',
    cloud: 'aws',
    path: ['aws', 'sessionDurationSeconds'],
    description: 'seconds the role session lasts (900-43200)',
  },
  {
    name: 'aws-extra-roles',
    kind: 'roles',
    cloud: 'aws',
    path: ['aws', 'extraRoles'],
    description:
      'NAME=ROLE_ARN[,NAME=ROLE_ARN...]: roles assumed with the pod role, one AWS_PROFILE each (their trust policies name aws-role-arn)',
  },
  {
    name: 'aws-imds',
    kind: 'bool',
    cloud: 'aws',
    path: ['aws', 'imds'],
    description:
      '"true" also emulates EC2 IMDSv2, which every process in the pod can read (no per-container secret); off by default',
  },
  {
    name: 'aws-legacy-token',
    kind: 'bool',
    cloud: 'aws',
    path: ['aws', 'containerAuthorizationToken'],
    description:
      '"true" also gives the app the literal AWS_CONTAINER_AUTHORIZATION_TOKEN (a per-pod token the webhook generates, visible in the pod spec) for AWS SDKs that predate the token file; off by default',
  },
  {
    name: 'aws-trust-anchor-arn',
    kind: 'string',
    cloud: 'aws',
    path: ['aws', 'rolesAnywhere', 'trustAnchorArn'],
    description:
      'IAM Roles Anywhere trust anchor: sign CreateSession with the X.509-SVID instead of a JWT-SVID (with aws-profile-arn)',
  },
  {
    name: 'aws-profile-arn',
    kind: 'string',
    cloud: 'aws',
    path: ['aws', 'rolesAnywhere', 'profileArn'],
    description: 'IAM Roles Anywhere profile that lists the role (with aws-trust-anchor-arn)',
  },
  {
    name: 'gcp-workload-identity-provider',
    kind: 'string',
    cloud: 'gcp',
    path: ['gcp', 'workloadIdentityProvider'],
    description:
      'projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>; serves Google Cloud',
  },
  {
    name: 'gcp-service-account',
    kind: 'string',
    cloud: 'gcp',
    path: ['gcp', 'serviceAccount'],
    description: 'service account to impersonate; serves Google Cloud',
  },
  {
    name: 'gcp-extra-service-accounts',
    kind: 'list',
    cloud: 'gcp',
    path: ['gcp', 'extraServiceAccounts'],
    description:
      'comma-separated service accounts also impersonated, served under their own email on the metadata server',
  },
  {
    name: 'gcp-project-id',
    kind: 'string',
    cloud: 'gcp',
    path: ['gcp', 'projectId'],
    description: 'project ID the metadata server reports',
  },
  {
    name: 'gcp-project-number',
    kind: 'string',
    cloud: 'gcp',
    path: ['gcp', 'projectNumber'],
    description: 'project number (default: the one in the workload identity provider)',
  },
  {
    name: 'azure-client-id',
    kind: 'string',
    cloud: 'azure',
    path: ['azure', 'clientId'],
    description: 'application (client) ID of the app registration or managed identity; serves Azure',
  },
  {
    name: 'azure-tenant-id',
    kind: 'string',
    cloud: 'azure',
    path: ['azure', 'tenantId'],
    description: 'directory (tenant) ID',
  },
  {
    name: 'azure-imds',
    kind: 'bool',
    cloud: 'azure',
    path: ['azure', 'imds'],
    description: '"true" also emulates Azure IMDS, which every process in the pod can read (no secret); off by default',
  },
  {
    name: 'azure-msi',
    kind: 'bool',
    cloud: 'azure',
    path: ['azure', 'msi'],
    description:
      '"true" also serves MSI_ENDPOINT (the Azure CLI), which every process in the pod can read (no secret); off by default',
  },
  {
    name: 'azure-audience',
    kind: 'string',
    cloud: 'azure',
    path: ['azure', 'audience'],
    description: 'audience of the JWT-SVID sent to Entra (the federated credential audience)',
  },
  {
    name: 'metadata-port',
    kind: 'port',
    path: ['server', 'metadataAddress'],
    description: 'loopback port of the emulated metadata endpoints',
  },
  {
    name: 'metadata-port-80',
    kind: 'bool',
    path: ['server', 'metadataPort80'],
    description:
      '"true" also serves the metadata endpoints on 127.0.0.1:80, for clients that drop the port; sets the pod sysctl net.ipv4.ip_unprivileged_port_start=80 (a safe sysctl), so every container of the pod may bind ports from 80 up',
  },
  {
    name: 'link-local',
    kind: 'bool',
    path: ['server', 'linkLocal'],
    description:
      '"true" also serves every enabled metadata surface on 169.254.169.254:80 and 169.254.170.2:80, as the real services, for clients that hard-code those addresses (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI at a per-pod path, metadata.google.internal in hostAliases); adds an init container with NET_ADMIN that puts the addresses on lo, which Pod Security "baseline" forbids; off by default',
  },
  {
    name: 'ops-port',
    kind: 'port',
    path: ['server', 'opsAddress'],
    description: 'port of the sidecar /healthz /readyz (the probes, on every pod address)',
  },
  {
    name: 'metrics-port',
    kind: 'port',
    path: ['server', 'metricsAddress'],
    description: 'port of the sidecar /metrics, on the pod loopback unless metrics-pod-wide is "true"',
  },
  {
    name: 'metrics-pod-wide',
    kind: 'bool',
    description:
      '"true" serves /metrics on every pod address, for a Prometheus that scrapes pods; default loopback only',
  },
  {
    name: 'log-level',
    kind: 'string',
    path: ['log', 'level'],
    description: 'sidecar log level: trace, debug, info, warn, error',
  },
  {
    name: 'workload-api',
    kind: 'bool',
    path: ['server', 'workloadApiSocket'],
    description:
      '"true" also serves the SPIFFE Workload API to the app containers (SPIFFE_ENDPOINT_SOCKET, a socket in the token directory)',
  },
];

/**
 * Annotations that name a container after a dot: `aws-role-arn.api` gives container `api` a role of its own
 * (docs/webhook.md "A role per container"). The name part of an annotation key is at most 63 characters, so
 * the container's name is at most 63 minus the annotation's name and the dot.
 */
export interface PerContainerSpec {
  readonly name: string;
  readonly cloud: 'aws' | 'azure';
  readonly description: string;
}

export const PER_CONTAINER_ANNOTATIONS: readonly PerContainerSpec[] = [
  {
    name: 'aws-role-arn',
    cloud: 'aws',
    description:
      "IAM role of that container alone (aws.containers.<container>.roleArn), assumed with the pod's JWT-SVID; the container gets its own credentials path and token file, and not the pod's",
  },
  {
    name: 'azure-client-id',
    cloud: 'azure',
    description:
      "client ID of that container alone (azure.containers.<container>.clientId), federated with the pod's JWT-SVID; the container gets its own IDENTITY_HEADER",
  },
];

/** A Kubernetes container name (a DNS label). */
const CONTAINER_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** The annotation whose presence serves each cloud, named when that cloud's setup is incomplete. */
export const CLOUD_ANNOTATION: Readonly<Record<Cloud, string>> = {
  aws: 'aws-role-arn',
  gcp: 'gcp-workload-identity-provider',
  azure: 'azure-client-id',
};

export type AnnotationValue =
  | string
  | number
  | boolean
  | readonly string[]
  | ReadonlyArray<{ readonly name: string; readonly roleArn: string }>;

export interface PodSettings {
  readonly inject: boolean;
  readonly skipContainers: readonly string[];
  /** Annotation init-containers, when set. */
  readonly initContainers?: boolean;
  /** Every config-setting annotation present, by name, already typed. */
  readonly values: ReadonlyMap<string, AnnotationValue>;
  /** Clouds some annotation asks for. */
  readonly clouds: ReadonlySet<Cloud>;
  /** Per-container annotations: container name → the identity of its own, by cloud. */
  readonly containers?: ReadonlyMap<string, Readonly<Partial<Record<'aws' | 'azure', string>>>>;
}

export type SettingsResult = { readonly settings: PodSettings } | { readonly problems: readonly string[] };

const SPEC_BY_NAME = new Map(ANNOTATIONS.map((a) => [a.name, a]));

/** What readValue could not read: the reasons. */
interface Unreadable {
  readonly problems: string[];
}

function readValue(spec: AnnotationSpec, text: string): AnnotationValue | Unreadable {
  switch (spec.kind) {
    case 'list':
      return text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    case 'roles': {
      const roles: Array<{ name: string; roleArn: string }> = [];
      for (const entry of text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '')) {
        const i = entry.indexOf('=');
        if (i <= 0 || i === entry.length - 1)
          return { problems: [`must be NAME=ROLE_ARN[,NAME=ROLE_ARN...], not ${JSON.stringify(entry.slice(0, 100))}`] };
        roles.push({ name: entry.slice(0, i).trim(), roleArn: entry.slice(i + 1).trim() });
      }
      return roles;
    }
    case 'string':
      return text;
    case 'bool':
      if (text === 'true') return true;
      if (text === 'false') return false;
      return { problems: ['must be "true" or "false"'] };
    case 'seconds':
      return /^\d{1,9}$/.test(text) ? Number(text) : { problems: ['must be a whole number of seconds'] };
    case 'port': {
      const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
      return n >= 1 && n <= 65535 ? n : { problems: ['must be a port number, 1-65535'] };
    }
  }
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(
        (row[j] ?? 0) + 1,
        (next[j - 1] ?? 0) + 1,
        (row[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    row = next;
  }
  return row[b.length] ?? 0;
}

/** The known annotation a typo most likely meant (at most 3 edits away). */
function closest(name: string): string | undefined {
  let best: { name: string; d: number } | undefined;
  for (const a of ANNOTATIONS) {
    const d = editDistance(name, a.name);
    if (d <= 3 && (!best || d < best.d)) best = { name: a.name, d };
  }
  return best?.name;
}

/** Reads the annotations (and the inject label) of one pod. Unknown names under the prefix are problems: they are typos. */
export function readPodSettings(
  annotations: Readonly<Record<string, string>>,
  labels: Readonly<Record<string, string>>,
  prefix: string,
): SettingsResult {
  const problems: string[] = [];
  const values = new Map<string, AnnotationValue>();
  const clouds = new Set<Cloud>();
  const containers = new Map<string, Partial<Record<'aws' | 'azure', string>>>();
  let inject: boolean | undefined;
  let skipContainers: string[] = [];
  let initContainers: boolean | undefined;
  for (const [key, text] of Object.entries(annotations)) {
    if (!key.startsWith(prefix)) continue;
    const name = key.slice(prefix.length);
    const spec = SPEC_BY_NAME.get(name);
    const dot = name.indexOf('.');
    const perContainer = dot > 0 ? PER_CONTAINER_ANNOTATIONS.find((a) => a.name === name.slice(0, dot)) : undefined;
    if (!spec && perContainer) {
      const container = name.slice(dot + 1);
      if (!CONTAINER_NAME.test(container)) {
        problems.push(
          `${key}: "${container.slice(0, 63)}" is not a container name (lowercase letters, digits and "-"): ${prefix}${perContainer.name}.<container> names the container that gets its own identity`,
        );
        continue;
      }
      const own = containers.get(container) ?? {};
      containers.set(container, { ...own, [perContainer.cloud]: text.trim() });
      clouds.add(perContainer.cloud);
      continue;
    }
    if (!spec) {
      const near = closest(name);
      problems.push(
        `${key}: unknown annotation (${near ? `did you mean ${prefix}${near}? ` : ''}known: ${ANNOTATIONS.map((a) => a.name).join(', ')}, and per container ${PER_CONTAINER_ANNOTATIONS.map((a) => `${a.name}.<container>`).join(', ')})`,
      );
      continue;
    }
    const value = readValue(spec, text);
    if (typeof value === 'object' && 'problems' in value) {
      problems.push(...value.problems.map((m) => `${key}: ${m}`));
      continue;
    }
    if (name === INJECT) inject = value === true;
    else if (name === SKIP_CONTAINERS)
      skipContainers = String(value)
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    else if (name === INIT_CONTAINERS) initContainers = value === true;
    else {
      values.set(name, value);
      if (spec.cloud) clouds.add(spec.cloud);
    }
  }
  const injectProblem = problems.some((p) => p.startsWith(`${prefix}${INJECT}:`));
  if (inject === undefined) inject = labels[`${prefix}${INJECT}`] === 'true';
  // A pod that does not ask for the sidecar is left alone, whatever else it carries.
  if (!inject && !injectProblem)
    return { settings: { inject: false, skipContainers: [], values: new Map(), clouds: new Set() } };
  if (problems.length > 0) return { problems };
  return {
    settings: {
      inject,
      skipContainers,
      values,
      clouds,
      ...(initContainers === undefined ? {} : { initContainers }),
      ...(containers.size === 0 ? {} : { containers }),
    },
  };
}

/** The annotation that sets a config path (its longest matching prefix), if any. */
export function annotationForPath(path: readonly PropertyKey[]): AnnotationSpec | undefined {
  let best: AnnotationSpec | undefined;
  for (const spec of ANNOTATIONS) {
    const p = spec.path;
    if (!p || p.length > path.length || !p.every((part, i) => part === path[i])) continue;
    if (!best || (best.path?.length ?? 0) < p.length) best = spec;
  }
  return best;
}
