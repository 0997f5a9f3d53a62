// What the app container is told (DESIGN.md "What the app container is told"): every configured
// cloud's lines plus NO_PROXY. `spiffe-connector env`, the dev mode and the webhook all use this.
import type { SidecarConfig } from './config/schema.ts';
import { awsModule } from './providers/aws/index.ts';
import { gcpModule } from './providers/gcp/index.ts';
import { azureModule } from './providers/azure/index.ts';
import type { CloudModule, EnvLines } from './providers/provider.ts';
import { workloadApiEnv } from './workload-api/env.ts';

export const LOOPBACK_NO_PROXY = '127.0.0.1,localhost,::1';

/** http://<metadataAddress> as configured. */
export function configuredMetadataOrigin(config: SidecarConfig): string {
  return `http://${config.server.metadataAddress}`;
}

export function configuredModules(config: SidecarConfig): CloudModule[] {
  return [config.aws ? awsModule : undefined, config.gcp ? gcpModule : undefined, config.azure ? azureModule : undefined].filter(
    (m): m is CloudModule => m !== undefined,
  );
}

/** The KEY=VALUE pairs an app container needs, in a stable order. */
export function appEnvironment(config: SidecarConfig, metadataOrigin = configuredMetadataOrigin(config)): EnvLines {
  const lines: EnvLines = [];
  for (const module of configuredModules(config)) lines.push(...module.env(config, metadataOrigin));
  lines.push(...workloadApiEnv(config));
  lines.push(['NO_PROXY', LOOPBACK_NO_PROXY], ['no_proxy', LOOPBACK_NO_PROXY]);
  return lines;
}

/** Quotes a value for a POSIX shell `export` line. */
export function shellQuote(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}
