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

/** The KEY=VALUE pairs an app container needs, in a stable order. */
export function appEnvironment(config: SidecarConfig, metadataOrigin = configuredMetadataOrigin(config)): EnvLines {
  const lines: EnvLines = [];
  for (const c of configuredClouds(config)) lines.push(...c.env(config, metadataOrigin));
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
