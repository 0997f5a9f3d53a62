// Builds one pod's sidecar config: the pod's annotations over the cluster defaults, validated by the
// sidecar's own schema and parser (schema.ts, load.ts), every problem named by its annotation.

import {
  containerRelativeUriSchema as awsRelativeUriSchema,
  containerAuthorizationTokenSchema as awsTokenSchema,
} from '../config/aws.ts';
import { identityHeaderSchema } from '../config/azure.ts';
import { deepFreeze, formatPath } from '../config/common.ts';
import { WORKLOAD_IDENTITY_PROVIDER } from '../config/gcp.ts';
import { type SidecarConfig, sidecarSchema } from '../config/schema.ts';
import type { ClusterDefaults } from '../config/webhook.ts';
import { AWS_CONTAINER_TOKEN_FILE } from '../providers/aws/env.ts';
import {
  ANNOTATIONS,
  type AnnotationValue,
  annotationForPath,
  CLOUD_ANNOTATION,
  type Cloud,
  INJECT,
  PER_CONTAINER_ANNOTATIONS,
  type PodSettings,
} from './annotations.ts';
import { containersDir } from './sidecar-container.ts';

export interface BuiltSidecarConfig {
  /** The YAML the sidecar reads from SPIFFE_CONNECTOR_CONFIG. */
  readonly text: string;
  /** That YAML as the sidecar parses it. */
  readonly config: SidecarConfig;
}

export type BuildResult = { readonly built: BuiltSidecarConfig } | { readonly problems: readonly string[] };

export interface BuildOptions {
  readonly prefix: string;
  /** A fresh random value for azure.identityHeader, aws.containerAuthorizationToken and aws.containerRelativeUri (one each per pod). */
  readonly randomSecret: () => string;
}

type Tree = Record<string, unknown>;

const CLOUDS: readonly Cloud[] = ['aws', 'gcp', 'azure'];
/** The Workload API socket the sidecar serves, in the token directory the app containers mount. */
export const WORKLOAD_API_SOCKET = 'workload-api.sock';

function setPath(tree: Tree, path: readonly string[], value: unknown): void {
  let node = tree;
  for (const part of path.slice(0, -1)) {
    const next = node[part];
    if (typeof next === 'object' && next !== null) node = next as Tree;
    else node = node[part] = {};
  }
  node[path[path.length - 1] as string] = value;
}

function getPath(tree: unknown, path: readonly PropertyKey[]): unknown {
  let node = tree;
  for (const part of path) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<PropertyKey, unknown>)[part];
  }
  return node;
}

function port(settings: PodSettings, name: string, fallback: number): number {
  const v = settings.values.get(name);
  return typeof v === 'number' ? v : fallback;
}

/** Per cloud, the config keys of its surfaces that carry no per-container secret. */
const SECRETLESS_SURFACES: ReadonlyArray<readonly [Cloud, readonly string[]]> = [
  ['aws', ['imds']],
  ['azure', ['imds', 'msi']],
];

/** The raw config (before schema defaults), exactly what is serialized for the sidecar. */
function compose(settings: PodSettings, defaults: ClusterDefaults): Tree {
  const spiffe: Tree = { trustDomain: defaults.trustDomain, x509: { dir: defaults.csi.mountPath } };
  if (defaults.jwt.exchangeUrl !== undefined) {
    spiffe['jwt'] = {
      exchange: {
        url: defaults.jwt.exchangeUrl,
        ...(defaults.jwt.caFile === undefined ? {} : { caFile: defaults.jwt.caFile }),
      },
    };
  }
  const raw: Tree = {
    spiffe,
    server: {
      metadataAddress: `127.0.0.1:${port(settings, 'metadata-port', defaults.metadataPort)}`,
      opsAddress: `0.0.0.0:${port(settings, 'ops-port', defaults.opsPort)}`,
      metricsAddress: `${settings.values.get('metrics-pod-wide') === true ? '0.0.0.0' : '127.0.0.1'}:${port(settings, 'metrics-port', defaults.metricsPort)}`,
      stateDir: defaults.stateDir,
    },
    log: { level: defaults.logLevel },
  };
  // Cloud defaults are frozen and may nest (aws.rolesAnywhere): annotations are set on a copy.
  for (const cloud of CLOUDS) if (settings.clouds.has(cloud)) raw[cloud] = structuredClone(defaults[cloud]);
  if (settings.values.get('workload-api') === true) {
    const server = raw['server'] as Tree;
    server['workloadApiSocket'] = `${defaults.stateDir.replace(/\/+$/, '')}/${WORKLOAD_API_SOCKET}`;
    if (defaults.workloadApiJwksUrl !== undefined) server['workloadApiJwksUrl'] = defaults.workloadApiJwksUrl;
  }
  for (const [name, value] of settings.values) {
    if (
      name === 'metadata-port' ||
      name === 'ops-port' ||
      name === 'metrics-port' ||
      name === 'metrics-pod-wide' ||
      name === 'workload-api' ||
      name === 'aws-legacy-token'
    )
      continue;
    const path = pathOf(name);
    if (path) setPath(raw, path, value satisfies AnnotationValue);
  }
  // A role per container: its own token file in its own directory of the containers volume (sidecar-container.ts),
  // which is all that container mounts of it.
  for (const [container, own] of settings.containers ?? []) {
    if (own.aws !== undefined) {
      const aws = raw['aws'] as Tree;
      const list = (aws['containers'] ?? {}) as Tree;
      aws['containers'] = list;
      list[container] = {
        roleArn: own.aws,
        tokenFile: `${containersDir(defaults.stateDir)}/${container}/${AWS_CONTAINER_TOKEN_FILE}`,
      };
    }
    if (own.azure !== undefined) {
      const azure = raw['azure'] as Tree;
      const list = (azure['containers'] ?? {}) as Tree;
      azure['containers'] = list;
      list[container] = { clientId: own.azure };
    }
  }
  // Injected pods get only the surfaces that carry a per-container secret unless asked: IMDS, Azure IMDS and
  // MSI_ENDPOINT answer any process in the pod, so skip-containers could not keep them out.
  for (const [cloud, keys] of SECRETLESS_SURFACES) {
    const section = raw[cloud] as Tree | undefined;
    if (section) for (const key of keys) if (section[key] === undefined) section[key] = false;
  }
  const gcp = raw['gcp'] as Tree | undefined;
  if (gcp && gcp['projectNumber'] === undefined && typeof gcp['workloadIdentityProvider'] === 'string') {
    const m = WORKLOAD_IDENTITY_PROVIDER.exec(gcp['workloadIdentityProvider']);
    if (m?.[1]) gcp['projectNumber'] = m[1];
  }
  return raw;
}

/**
 * Configs already validated, by their serialized form (without the per-pod identity header): the pods
 * of one Deployment share their annotations, so schema validation runs once per distinct config.
 */
const validated = new Map<string, SidecarConfig>();
const MAX_VALIDATED = 512;

function remember(key: string, config: SidecarConfig): void {
  if (validated.size >= MAX_VALIDATED) {
    const oldest = validated.keys().next().value;
    if (oldest !== undefined) validated.delete(oldest);
  }
  validated.set(key, config);
}

function pathOf(name: string): readonly string[] | undefined {
  return ANNOTATIONS.find((a) => a.name === name)?.path;
}

/** Problems the schema would word for a config file, worded for the pod author instead. */
function precheck(settings: PodSettings, defaults: ClusterDefaults, prefix: string): string[] {
  const problems: string[] = [];
  if (defaults.jwt.exchangeUrl === undefined) {
    const names: Record<Cloud, string> = { aws: 'AWS', gcp: 'Google Cloud', azure: 'Entra' };
    // IAM Roles Anywhere signs with the X.509-SVID: AWS needs no issuer then.
    const rolesAnywhere =
      settings.values.has('aws-trust-anchor-arn') ||
      settings.values.has('aws-profile-arn') ||
      defaults.aws['rolesAnywhere'] !== undefined;
    for (const cloud of ['aws', 'azure'] as const) {
      if (settings.clouds.has(cloud) && !(cloud === 'aws' && rolesAnywhere)) {
        problems.push(
          `${prefix}${CLOUD_ANNOTATION[cloud]}: ${names[cloud]} federation needs JWT-SVIDs, and this cluster has no issuer exchange configured (webhook defaults.jwt.exchangeUrl; chart value issuer.enabled)`,
        );
      }
    }
  }
  const metadataPort = port(settings, 'metadata-port', defaults.metadataPort);
  const opsPort = port(settings, 'ops-port', defaults.opsPort);
  const metricsPort = port(settings, 'metrics-port', defaults.metricsPort);
  if (metadataPort === opsPort) {
    problems.push(
      `${prefix}${settings.values.has('ops-port') ? 'ops-port' : 'metadata-port'}: the metadata and ops ports must differ (both ${metadataPort})`,
    );
  }
  if (metricsPort === metadataPort) {
    problems.push(
      `${prefix}${settings.values.has('metrics-port') ? 'metrics-port' : 'metadata-port'}: the metadata and metrics ports must differ (both ${metricsPort})`,
    );
  }
  // The same port pod-wide is one listener for probes and metrics; on loopback it would collide with the probes.
  if (metricsPort === opsPort && settings.values.get('metrics-pod-wide') !== true) {
    problems.push(
      `${prefix}${settings.values.has('metrics-port') ? 'metrics-port' : 'ops-port'}: the ops and metrics ports must differ (both ${metricsPort}) unless ${prefix}metrics-pod-wide is "true"`,
    );
  }
  return problems;
}

function describeIssue(
  path: readonly PropertyKey[],
  message: string,
  raw: Tree,
  settings: PodSettings,
  prefix: string,
): string {
  if ((path[0] === 'aws' || path[0] === 'azure') && path[1] === 'containers' && typeof path[2] === 'string') {
    const own = PER_CONTAINER_ANNOTATIONS.find((a) => a.cloud === path[0]);
    if (own) return `${prefix}${own.name}.${path[2]}: ${message}`;
  }
  if (path.length === 0) {
    return `${prefix}${INJECT}: ${message} (annotate ${Object.values(CLOUD_ANNOTATION)
      .map((n) => prefix + n)
      .join(', ')} or ${prefix}gcp-service-account)`;
  }
  const spec = annotationForPath(path);
  if (spec) {
    if (settings.values.has(spec.name)) return `${prefix}${spec.name}: ${message}`;
    const where = `defaults.${formatPath(spec.path ?? path)}`;
    if (getPath(raw, spec.path ?? path) === undefined)
      return `${prefix}${spec.name}: is required (set it on the pod, or as the cluster default ${where})`;
    return `${prefix}${spec.name}: the cluster default ${where} ${message}`;
  }
  const cloud = CLOUDS.find((c) => c === path[0]);
  if (cloud) return `${prefix}${CLOUD_ANNOTATION[cloud]}: cluster default defaults.${formatPath(path)}: ${message}`;
  return `${prefix}${INJECT}: the cluster defaults give an invalid sidecar config: ${formatPath(path)}: ${message}`;
}

export function buildSidecarConfig(
  settings: PodSettings,
  defaults: ClusterDefaults,
  options: BuildOptions,
): BuildResult {
  const { prefix } = options;
  const pre = precheck(settings, defaults, prefix);
  if (pre.length > 0) return { problems: pre };
  const raw = compose(settings, defaults);
  const key = JSON.stringify(raw);
  let config = validated.get(key);
  if (!config) {
    const checked = sidecarSchema.safeParse(raw);
    if (!checked.success) {
      const problems = checked.error.issues
        // The project number follows from the provider name; a missing provider is the one problem to report.
        .filter(
          (issue) =>
            !(
              issue.path.join('.') === 'gcp.projectNumber' &&
              getPath(raw, ['gcp', 'workloadIdentityProvider']) === undefined
            ),
        )
        .map((issue) => describeIssue(issue.path, issue.message, raw, settings, prefix));
      return { problems: [...new Set(problems)] };
    }
    config = deepFreeze(checked.data);
    remember(key, config);
  }
  const azure = raw['azure'] as Tree | undefined;
  if (azure && config.azure) {
    // One identity header per pod, shared by the sidecar and the app. Checked by the schema's own rule.
    const header = identityHeaderSchema.parse(options.randomSecret());
    azure['identityHeader'] = header;
    // And one per container with a client id of its own: its own secret, never another container's.
    const own = azure['containers'] as Record<string, Tree> | undefined;
    const containers = { ...config.azure.containers };
    for (const [name, entry] of Object.entries(own ?? {})) {
      const mine = identityHeaderSchema.parse(options.randomSecret());
      entry['identityHeader'] = mine;
      containers[name] = Object.freeze({
        ...containers[name],
        clientId: String(entry['clientId']),
        identityHeader: mine,
      });
    }
    config = Object.freeze({
      ...config,
      azure: Object.freeze({ ...config.azure, identityHeader: header, containers: Object.freeze(containers) }),
    });
  }
  const aws = raw['aws'] as Tree | undefined;
  if (aws && config.aws && settings.values.get('aws-legacy-token') === true) {
    // The literal token old AWS SDKs read: one per pod, fixed at injection, so the same for the pod's life.
    const token = awsTokenSchema.parse(options.randomSecret());
    aws['containerAuthorizationToken'] = token;
    config = Object.freeze({ ...config, aws: Object.freeze({ ...config.aws, containerAuthorizationToken: token }) });
  }
  if (aws && config.aws?.containerCredentials && config.server.linkLocal) {
    // Link-local mode: old SDKs send no token to AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, so its path is the
    // per-pod secret, fixed at injection like the legacy token.
    const uri = awsRelativeUriSchema.parse(`/v2/credentials/${options.randomSecret()}`);
    aws['containerRelativeUri'] = uri;
    config = Object.freeze({ ...config, aws: Object.freeze({ ...config.aws, containerRelativeUri: uri }) });
  }
  // Validated by the sidecar's own schema; the text is YAML whose every scalar is a JSON literal, so
  // parseSidecarConfig (load.ts) reads back exactly `raw` plus schema defaults, i.e. `config` (tests
  // check it), at a fraction of the cost of a YAML library round trip on every admission.
  return { built: { text: toYaml(raw), config } };
}

/** A string that YAML reads back as that same string unquoted: no indicators, no number/bool/null look-alikes. */
const PLAIN = /^[A-Za-z/_][A-Za-z0-9._/@+=-]*(:[A-Za-z0-9._/@+=-]+)*$/;
const RESERVED = /^(true|false|null|yes|no|on|off|y|n|~)$/i;

function scalar(value: unknown): string {
  if (typeof value === 'string' && PLAIN.test(value) && !RESERVED.test(value)) return value;
  return JSON.stringify(value);
}

/** Block-style YAML of a tree of maps and scalars: plain where unambiguous, else JSON literals (valid YAML double-quoted/flow). */
export function toYaml(tree: Tree, indent = ''): string {
  let out = '';
  for (const [key, value] of Object.entries(tree)) {
    if (value === undefined) continue;
    const k = /^[A-Za-z][A-Za-z0-9]*$/.test(key) ? key : JSON.stringify(key);
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const inner = toYaml(value as Tree, `${indent}  `);
      out += inner === '' ? `${indent}${k}: {}\n` : `${indent}${k}:\n${inner}`;
    } else {
      out += `${indent}${k}: ${scalar(value)}\n`;
    }
  }
  return out;
}
