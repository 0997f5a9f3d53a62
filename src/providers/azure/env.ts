// What an app container is told about Azure (docs/azure.md "Source selection"): the managed-identity
// endpoints in the order SDKs prefer them, where they live on the metadata listener, plus the
// workload-identity file in file mode. Pure: the identity header value is resolved by the caller.
import { isAbsolute, join } from 'node:path';
import type { EnvLines } from '../../base/env-lines.ts';
import { METADATA_IP } from '../../base/link-local.ts';
import type { AzureConfig, ContainerIdentity } from '../../config/azure.ts';
import type { CloudEnvironment } from '../contract.ts';
import { IDENTITY_HEADER_FILE, identityHeaderFile, resolveIdentityHeader } from './identity-header.ts';

/** App Service 2019-08-01, named by IDENTITY_ENDPOINT. */
export const APP_SERVICE_PATH = '/msi/token';
/** The MSI_ENDPOINT form POST (Cloud Shell shape; Azure CLI 2.45 uses it). */
export const MSI_PATH = '/msi/legacy';
/** IMDS token path, appended by SDKs to AZURE_POD_IDENTITY_AUTHORITY_HOST. */
export const IMDS_TOKEN_PATH = '/metadata/identity/oauth2/token';

/** Where file mode writes the JWT-SVID: azure.tokenFile, relative paths under the state directory. */
export function tokenFilePath(azure: AzureConfig, stateDir: string): string | undefined {
  if (azure.tokenFile === undefined) return undefined;
  return isAbsolute(azure.tokenFile) ? azure.tokenFile : join(stateDir, azure.tokenFile);
}

/**
 * The env lines. Every modern SDK picks App Service (IDENTITY_ENDPOINT + IDENTITY_HEADER) first; az 2.45 uses
 * MSI_ENDPOINT; clients that know neither use IMDS at AZURE_POD_IDENTITY_AUTHORITY_HOST. AZURE_CLIENT_ID is
 * what DefaultAzureCredential passes as client_id, which the endpoints treat as the default identity.
 */
export function azureEnv(
  azure: AzureConfig,
  stateDir: string,
  metadataOrigin: string,
  identityHeader: string,
  linkLocal = false,
  /** A container with a client id of its own (azure.containers): its own header (the one given) and client id, no token file. */
  ownClientId?: string,
): EnvLines {
  const lines: EnvLines = [];
  if (azure.appService)
    lines.push(['IDENTITY_ENDPOINT', `${metadataOrigin}${APP_SERVICE_PATH}`], ['IDENTITY_HEADER', identityHeader]);
  if (azure.msi) lines.push(['MSI_ENDPOINT', `${metadataOrigin}${MSI_PATH}`]);
  // Link-local mode: IMDS is where the SDKs look without a variable (169.254.169.254).
  if (azure.imds && !linkLocal) lines.push(['AZURE_POD_IDENTITY_AUTHORITY_HOST', metadataOrigin]);
  lines.push(['AZURE_CLIENT_ID', ownClientId ?? azure.clientId], ['AZURE_TENANT_ID', azure.tenantId]);
  if (ownClientId !== undefined) return lines;
  const file = tokenFilePath(azure, stateDir);
  if (file !== undefined) {
    lines.push(['AZURE_FEDERATED_TOKEN_FILE', file], ['AZURE_AUTHORITY_HOST', azure.authorityHost.replace(/\/+$/, '')]);
  }
  return lines;
}

/** What `check` prints about Azure, one line each (check prefixes the cloud); never the identity header itself. */
export function describeAzure(
  azure: AzureConfig,
  stateDir: string,
  metadataOrigin: string,
  linkLocal = false,
): string[] {
  const header = azure.identityHeader !== undefined ? 'azure.identityHeader' : join(stateDir, IDENTITY_HEADER_FILE);
  const lines = [
    `Entra workload identity federation for application ${azure.clientId} in tenant ${azure.tenantId} at ${azure.authorityHost}, presenting JWT-SVIDs for audience ${azure.audience}`,
    azure.appService
      ? `App Service managed identity: ${metadataOrigin}${APP_SERVICE_PATH} (X-IDENTITY-HEADER from ${header})`
      : 'App Service managed identity: off (azure.appService: false)',
    azure.imds
      ? linkLocal
        ? `IMDS managed identity: http://${METADATA_IP}${IMDS_TOKEN_PATH}, where the SDKs look without a variable, and ${metadataOrigin}${IMDS_TOKEN_PATH} (any process in the pod can read it)`
        : `IMDS managed identity: ${metadataOrigin}${IMDS_TOKEN_PATH} (AZURE_POD_IDENTITY_AUTHORITY_HOST; any process in the pod can read it)`
      : 'IMDS managed identity: off (azure.imds: false)',
    azure.msi
      ? `MSI_ENDPOINT form POST: ${metadataOrigin}${MSI_PATH} (Azure CLI 2.45; any process in the pod can read it)`
      : 'MSI_ENDPOINT: off (azure.msi: false)',
    ...Object.entries(azure.containers).map(
      ([name, c]) =>
        `container ${name}: application ${c.clientId}, federated with the same JWT-SVID, on the App Service endpoint with its own X-IDENTITY-HEADER (from ${c.identityHeader !== undefined ? `azure.containers.${name}.identityHeader` : join(stateDir, identityHeaderFile(name))}); a request with its header is answered for that client id only`,
    ),
    azure.warmResources.length > 0
      ? `tokens fetched at start and kept fresh for ${azure.warmResources.join(', ')}; other resources on first request`
      : 'tokens fetched on first request for each resource',
  ];
  const file = tokenFilePath(azure, stateDir);
  if (file !== undefined)
    lines.push(
      `file mode: a JWT-SVID for ${azure.audience} kept fresh at ${file} (AZURE_FEDERATED_TOKEN_FILE, exchanged by the SDK at ${azure.authorityHost})`,
    );
  return lines;
}

/** The container's own Azure identity, when azure.containers names it. */
export function ownAzureIdentity(azure: AzureConfig, container: string | undefined): ContainerIdentity | undefined {
  return container !== undefined && Object.hasOwn(azure.containers, container)
    ? azure.containers[container]
    : undefined;
}

export const azureEnvironment: CloudEnvironment = {
  cloud: 'azure',
  env: (config, origin, container) => {
    if (!config.azure) return [];
    const own = ownAzureIdentity(config.azure, container);
    const header =
      own === undefined
        ? resolveIdentityHeader(config.azure.identityHeader, config.server.stateDir)
        : resolveIdentityHeader(own.identityHeader, config.server.stateDir, container);
    return azureEnv(
      config.azure,
      config.server.stateDir,
      origin,
      header.reveal(),
      config.server.linkLocal,
      own?.clientId,
    );
  },
  describe: (config, origin) =>
    config.azure ? describeAzure(config.azure, config.server.stateDir, origin, config.server.linkLocal) : [],
  audiences: (config) => (config.azure ? [config.azure.audience] : []),
};
