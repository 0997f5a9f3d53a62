// What the app container is told (docs/architecture.md "What the app sees"): every configured
// cloud's lines plus NO_PROXY, and the JWT-SVID audiences those clouds need. `spiffe-connector env`, `check`, the dev mode and the webhook use this;
// it imports only the pure providers/<cloud>/env.ts modules, never a cloud's endpoints or SDK.
import type { SidecarConfig } from './config/schema.ts';
import type { Cloud } from './ops/metrics.ts';
import type { EnvLines } from './base/env-lines.ts';
import { awsEnv, describeAws } from './providers/aws/env.ts';
import { describeGcp, gcpEnv, providerAudience } from './providers/gcp/env.ts';
import { azureEnv, describeAzure } from './providers/azure/env.ts';
import { resolveIdentityHeader } from './providers/azure/identity-header.ts';
import { workloadApiEnv } from './surfaces/workload-api/env.ts';

export const LOOPBACK_NO_PROXY = '127.0.0.1,localhost,::1';

interface CloudSurface {
  readonly cloud: Cloud;
  env(config: SidecarConfig, metadataOrigin: string): EnvLines;
  describe(config: SidecarConfig, metadataOrigin: string): string[];
}

const CLOUDS: readonly CloudSurface[] = [
  { cloud: 'aws', env: awsEnv, describe: describeAws },
  { cloud: 'gcp', env: gcpEnv, describe: describeGcp },
  {
    cloud: 'azure',
    env: (config, origin) =>
      config.azure ? azureEnv(config.azure, config.server.stateDir, origin, resolveIdentityHeader(config.azure.identityHeader, config.server.stateDir).reveal()) : [],
    describe: (config, origin) => (config.azure ? describeAzure(config.azure, config.server.stateDir, origin) : []),
  },
];

/** http://<metadataAddress> as configured. */
export function configuredMetadataOrigin(config: SidecarConfig): string {
  return `http://${config.server.metadataAddress}`;
}

function configured(config: SidecarConfig): CloudSurface[] {
  return CLOUDS.filter((c) => config[c.cloud] !== undefined);
}

/** One cloud's lines (empty when that cloud is not configured). */
export function cloudEnvironment(cloud: Cloud, config: SidecarConfig, metadataOrigin = configuredMetadataOrigin(config)): EnvLines {
  return config[cloud] ? (CLOUDS.find((c) => c.cloud === cloud)?.env(config, metadataOrigin) ?? []) : [];
}

/** The KEY=VALUE pairs an app container needs, in a stable order. */
export function appEnvironment(config: SidecarConfig, metadataOrigin = configuredMetadataOrigin(config)): EnvLines {
  const lines: EnvLines = [];
  for (const c of configured(config)) lines.push(...c.env(config, metadataOrigin));
  lines.push(...workloadApiEnv(config));
  lines.push(['NO_PROXY', LOOPBACK_NO_PROXY], ['no_proxy', LOOPBACK_NO_PROXY]);
  return lines;
}

/** What `check` says each configured cloud would serve. */
export function describeClouds(config: SidecarConfig, metadataOrigin = configuredMetadataOrigin(config)): Array<readonly [Cloud, string]> {
  return configured(config).flatMap((c) => c.describe(config, metadataOrigin).map((line) => [c.cloud, line] as const));
}

/** Quotes a value for a POSIX shell `export` line. */
export function shellQuote(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The audiences the configured clouds will ask JWT-SVIDs for. */
export function requiredAudiences(config: SidecarConfig): string[] {
  const out: string[] = [];
  if (config.aws && !config.aws.rolesAnywhere) out.push(config.aws.audience);
  if (config.gcp) out.push(providerAudience(config.gcp));
  if (config.azure) out.push(config.azure.audience);
  return out;
}
