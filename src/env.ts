// What the app container is told (docs/architecture.md "What the app sees"): every configured
// cloud's lines plus NO_PROXY, and the JWT-SVID audiences those clouds need. `spiffe-connector env`, `check`, the dev mode and the webhook use this;
// it imports only the pure providers/<cloud>/env.ts modules, never a cloud's endpoints or SDK.
import type { EnvLines } from './base/env-lines.ts';
import { GCE_METADATA_NAME, LINK_LOCAL_ADDRESSES } from './base/link-local.ts';
import { CLOUDS, type CloudEntry } from './clouds.ts';
import type { SidecarConfig } from './config/schema.ts';
import type { Cloud } from './ops/metrics.ts';
import { workloadApiEnv } from './surfaces/workload-api/env.ts';

export const LOOPBACK_NO_PROXY = '127.0.0.1,localhost,::1';
/** Link-local mode: the real services' addresses too, so an HTTP(S)_PROXY never carries a metadata request. */
export const LINK_LOCAL_NO_PROXY = `${LOOPBACK_NO_PROXY},${LINK_LOCAL_ADDRESSES.join(',')},${GCE_METADATA_NAME}`;

/** http://<metadataAddress> as configured. */
export function configuredMetadataOrigin(config: SidecarConfig): string {
  return `http://${config.server.metadataAddress}`;
}

/** The clouds this config configures, in the registry's order. */
export function configuredClouds(config: SidecarConfig): CloudEntry[] {
  return CLOUDS.filter((c) => config[c.cloud] !== undefined);
}

/** One cloud's lines (empty when that cloud is not configured). */
export function cloudEnvironment(
  cloud: Cloud,
  config: SidecarConfig,
  metadataOrigin = configuredMetadataOrigin(config),
): EnvLines {
  return config[cloud] ? (CLOUDS.find((c) => c.cloud === cloud)?.env(config, metadataOrigin) ?? []) : [];
}

/**
 * The KEY=VALUE pairs an app container needs, in a stable order: for `container` when named (its own AWS
 * role or Azure client id, if the config gives it one), else the pod's.
 */
export function appEnvironment(
  config: SidecarConfig,
  metadataOrigin = configuredMetadataOrigin(config),
  container?: string,
): EnvLines {
  const lines: EnvLines = [];
  for (const c of configuredClouds(config)) lines.push(...c.env(config, metadataOrigin, container));
  lines.push(...workloadApiEnv(config));
  const noProxy = config.server.linkLocal ? LINK_LOCAL_NO_PROXY : LOOPBACK_NO_PROXY;
  lines.push(['NO_PROXY', noProxy], ['no_proxy', noProxy]);
  return lines;
}

/** What `check` says each configured cloud would serve. */
export function describeClouds(
  config: SidecarConfig,
  metadataOrigin = configuredMetadataOrigin(config),
): Array<readonly [Cloud, string]> {
  return configuredClouds(config).flatMap((c) =>
    c.describe(config, metadataOrigin).map((line) => [c.cloud, line] as const),
  );
}

/** Quotes a value for a POSIX shell `export` line. */
export function shellQuote(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The audiences the configured clouds will ask JWT-SVIDs for. */
export function requiredAudiences(config: SidecarConfig): string[] {
  return configuredClouds(config).flatMap((c) => c.audiences(config));
}

/** The containers this config gives an identity of their own (aws.containers, azure.containers). */
export function ownIdentityContainers(config: SidecarConfig): string[] {
  return [...new Set([...Object.keys(config.aws?.containers ?? {}), ...Object.keys(config.azure?.containers ?? {})])];
}

/**
 * What keeps a role (or client id) per container from being a boundary (docs/webhook.md "A role per
 * container"): a surface or file any process of the pod can use without a container's own secret. `problems`
 * (by config key) make it no boundary at all; `notes` say what stays shared. Both empty without per-container
 * identities.
 */
export function perContainerBoundary(config: SidecarConfig): {
  problems: Array<{ readonly key: string; readonly message: string }>;
  notes: string[];
} {
  const aws = Object.keys(config.aws?.containers ?? {}).length > 0;
  const azure = Object.keys(config.azure?.containers ?? {}).length > 0;
  const problems: Array<{ key: string; message: string }> = [];
  const notes: string[] = [];
  if (!aws && !azure) return { problems, notes };
  const open =
    'carries no per-container secret, so any process of the pod, a container with an identity of its own too,';
  if (aws && config.aws?.imds)
    problems.push({ key: 'aws.imds', message: `EC2 IMDS ${open} gets the pod role there; set it false` });
  if (azure && config.azure?.imds)
    problems.push({ key: 'azure.imds', message: `Azure IMDS ${open} gets the pod's client id there; set it false` });
  if (azure && config.azure?.msi)
    problems.push({ key: 'azure.msi', message: `MSI_ENDPOINT ${open} gets the pod's client id there; set it false` });
  if (config.azure?.tokenFile !== undefined)
    problems.push({
      key: 'azure.tokenFile',
      message:
        "the federated token file holds the pod's JWT-SVID, which every per-container role and client id trusts: whoever reads it can be any of them; unset it",
    });
  if (config.server.workloadApiSocket !== undefined)
    problems.push({
      key: 'server.workloadApiSocket',
      message:
        "the Workload API hands the pod's JWT-SVIDs to whoever reaches its socket, and every per-container role and client id trusts them; unset it",
    });
  if (config.gcp)
    notes.push(
      "gcp: every container gets the pod's Google service account: the GCE metadata server carries no per-container secret; for a Google identity per container, run that container in a pod of its own (its own SPIFFE ID)",
    );
  notes.push(
    "per-container identities: a boundary only as far as containers cannot read each other's files and environment (no shareProcessNamespace, different UIDs or no /proc access, no shared hostPath, not privileged)",
  );
  return { problems, notes };
}
