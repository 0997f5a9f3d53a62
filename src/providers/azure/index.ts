// The Azure CloudModule (src/providers/contract.ts): env lines and description (pure, plus the identity-header
// file), and the running provider: Entra exchange → per-resource token cache → emulated endpoints.
// @azure/identity is imported only in create(), so a config without `azure` never loads it.
import { readFile } from 'node:fs/promises';
import { KeyedCredentials } from '../../cache/keyed-credentials.ts';
import { TOKEN_POLICY } from '../../cache/refresh-policy.ts';
import type { AzureConfig } from '../../config/azure.ts';
import { ConnectorError } from '../../base/errors.ts';
import type { CloudModule, CloudProvider, ProviderContext, Readiness } from '../contract.ts';
import { azureRouter } from './endpoints.ts';
import { tokenFilePath } from './env.ts';
import { EntraExchange, type AzureIdentitySdk } from './exchange.ts';
import { resolveIdentityHeader } from './identity-header.ts';
import { AzureTokenFile } from './token-file.ts';
import type { AzureAccessToken } from './token.ts';

/** Resources held (and kept fresh) at once; the least recently used beyond this is dropped. */
export const MAX_RESOURCES = 64;

export interface AzureProviderOptions {
  /** Replaces the dynamically imported @azure/identity (tests of failure paths). */
  readonly sdk?: AzureIdentitySdk;
  /** The clock msal stamps expiry with; only tests replace it. */
  readonly sdkNow?: () => number;
}

export const azureModule: CloudModule = {
  cloud: 'azure',

  create(context) {
    return createAzureProvider(context);
  },
};

export async function createAzureProvider(ctx: ProviderContext, options: AzureProviderOptions = {}): Promise<CloudProvider> {
  const azure = ctx.config.azure;
  if (!azure) throw new ConnectorError('config_invalid', 'azure: the azure section is missing');
  const jwt = ctx.identity.jwt;
  if (!jwt) throw new ConnectorError('config_invalid', 'azure: Entra federation needs JWT-SVIDs: configure spiffe.jwt or spiffe.workloadApi');
  const { clock, logger, metrics } = ctx;

  // The production build bundles @azure/identity into chunks of its own, loaded here: ~4 MB less resident
  // than requiring its CommonJS build from node_modules. Run from src/ (tests, dev), this loads its ESM build.
  const sdk: AzureIdentitySdk = options.sdk ?? (await import('@azure/identity'));
  const trustedCaPem = azure.caFile ? await readCaFile(azure.caFile) : undefined;
  const exchange = new EntraExchange({
    tenantId: azure.tenantId,
    clientId: azure.clientId,
    authorityHost: azure.authorityHost,
    audience: azure.audience,
    jwt,
    sdk,
    clock,
    logger,
    metrics,
    trustedCaPem,
    ...(options.sdkNow ? { sdkNow: options.sdkNow } : {}),
  });
  const tokens = new KeyedCredentials<AzureAccessToken>({
    cloud: 'azure',
    fetch: (resource, signal) => exchange.fetchToken(resource, signal),
    expiresAt: (t) => t.expiresAt,
    policy: TOKEN_POLICY,
    clock,
    logger,
    metrics,
    maxEntries: MAX_RESOURCES,
    label: (resource) => resource.slice(0, 200),
  });
  const filePath = tokenFilePath(azure, ctx.stateDir);
  const tokenFile = filePath === undefined ? undefined : new AzureTokenFile({ path: filePath, audience: azure.audience, jwt, clock, logger, metrics });

  const router = azureRouter({
    tokens,
    served: { clientId: azure.clientId, objectId: azure.objectId, resourceId: azure.resourceId },
    identityHeader: resolveIdentityHeader(azure.identityHeader, ctx.stateDir),
    metadataPort: ctx.metadataPort,
    clock,
    logger,
    metrics,
    draining: ctx.draining,
  });

  let unsubscribe: (() => void) | undefined;
  return {
    cloud: 'azure',
    router,
    async start() {
      unsubscribe = jwt.subscribe(() => {
        void tokens.refreshAll('identity changed');
        void tokenFile?.refreshNow('identity changed');
      });
      tokens.warm(azure.warmResources);
      tokenFile?.start();
    },
    readiness: () => readiness(azure, tokens, tokenFile),
    async stop() {
      unsubscribe?.();
      tokens.stop();
      tokenFile?.stop();
    },
  };
}

/** Ready when every warm resource has a valid token and the token file (file mode) is current. */
function readiness(azure: AzureConfig, tokens: KeyedCredentials<AzureAccessToken>, tokenFile: AzureTokenFile | undefined): Readiness {
  for (const resource of azure.warmResources) {
    const lookup = tokens.peek(resource);
    if (!lookup.ok) return { ready: false, reason: `azure: no token for ${resource}: ${lookup.error.message}` };
  }
  const file = tokenFile?.status();
  if (file && !file.valid) return { ready: false, reason: `azure: federated token file: ${file.reason}` };
  return { ready: true };
}

async function readCaFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new ConnectorError('config_invalid', `azure.caFile: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? String(error)})`, { cause: error });
  }
}
