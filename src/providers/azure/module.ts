// The Azure cloud module: the Entra exchange wrapped by the per-resource credential cache (the warm
// resources pinned), the three managed-identity surfaces, and file mode's federated token file.
// @azure/identity is imported only in create(), so a config without `azure` never loads it.
import { readFile } from 'node:fs/promises';
import { Agent as HttpsAgent } from 'node:https';
import { createSecureContext, getCACertificates } from 'node:tls';
import { ConnectorError } from '../../base/errors.ts';
import { CredentialCache } from '../../cache/credential-cache.ts';
import { TOKEN_POLICY } from '../../cache/refresh-policy.ts';
import type { AzureConfig } from '../../config/azure.ts';
import type { CloudModule, CloudProvider, ProviderContext, Readiness } from '../contract.ts';
import type { AzureAccessToken } from './credential.ts';
import { MAX_RESOURCE_LENGTH, resourceKey, splitResourceKey } from './credential.ts';
import { azureSurfaces } from './endpoints.ts';
import { tokenFilePath } from './env.ts';
import { type AzureIdentitySdk, EntraExchange } from './exchange.ts';
import { resolveIdentityHeader } from './identity-header.ts';
import { AzureTokenFile } from './token-file.ts';

/** Resources held (and kept fresh) at once besides the warm ones; the least recently used beyond this is dropped. */
export const MAX_RESOURCES = 64;

export interface AzureProviderOptions {
  /** Replaces the dynamically imported @azure/identity (tests of failure paths). */
  readonly sdk?: AzureIdentitySdk;
  /** The clock msal stamps expiry with; only tests replace it. */
  readonly sdkNow?: () => number;
  /** Timeout of each request to Entra, default 10 s. */
  readonly requestTimeoutMs?: number;
}

export const azureModule: CloudModule = {
  cloud: 'azure',

  create(context) {
    return createAzureProvider(context);
  },
};

export async function createAzureProvider(
  ctx: ProviderContext,
  options: AzureProviderOptions = {},
): Promise<CloudProvider> {
  const azure = ctx.config.azure;
  if (!azure) throw new ConnectorError('config_invalid', 'azure: the azure section is missing');
  const jwt = ctx.identity.jwt;
  if (!jwt)
    throw new ConnectorError(
      'config_invalid',
      'azure: Entra federation needs JWT-SVIDs: configure spiffe.jwt or spiffe.workloadApi',
    );
  const { clock, logger, metrics } = ctx;

  // The production build bundles @azure/identity into chunks of its own, loaded here: ~4 MB less resident
  // than requiring its CommonJS build from node_modules, and only what ClientAssertionCredential needs (sdk.ts).
  // Run from src/ (tests, dev), this loads its ESM build.
  const sdk: AzureIdentitySdk = options.sdk ?? (await import('./sdk.ts'));
  // One HTTP client for the provider's life, with one HTTPS agent: the client's own, or caFile's (entraAgent()).
  const httpClient = (await import('@azure/core-rest-pipeline')).createDefaultHttpClient();
  const agent = azure.caFile ? entraAgent(await readCaFile(azure.caFile)) : undefined;
  const exchangeFor = (clientId: string): EntraExchange =>
    new EntraExchange({
      tenantId: azure.tenantId,
      clientId,
      authorityHost: azure.authorityHost,
      audience: azure.audience,
      jwt,
      sdk,
      clock,
      logger,
      metrics,
      agent,
      ...(options.sdkNow ? { sdkNow: options.sdkNow } : {}),
      ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
      httpClient,
    });
  // The pod's client id, and each container's own (azure.containers) with its own header: one cache, keyed by
  // resourceKey (the resource, or `<container> <resource>`), the warm resources pinned for each.
  const exchange = exchangeFor(azure.clientId);
  const own = Object.entries(azure.containers).map(([name, c]) => ({
    name,
    clientId: c.clientId,
    identityHeader: resolveIdentityHeader(c.identityHeader, ctx.stateDir, name),
    exchange: exchangeFor(c.clientId),
  }));
  const tokens = new CredentialCache<AzureAccessToken>({
    cloud: 'azure',
    name: 'resource-token',
    audit: (t) => ({
      principal: `${t.clientId ?? azure.clientId} (tenant ${azure.tenantId})`,
      spiffeId: t.spiffeId,
      upstreamRequestId: t.requestId,
    }),
    exchange: async (key, signal) => {
      const { container, resource } = splitResourceKey(key);
      if (container === undefined) return exchange.fetchToken(resource, signal);
      const mine = own.find((c) => c.name === container);
      if (mine === undefined)
        throw new ConnectorError('request_invalid', 'no such container in azure.containers', { retryable: false });
      return { ...(await mine.exchange.fetchToken(resource, signal)), clientId: mine.clientId };
    },
    pinned: [
      ...azure.warmResources,
      ...own.flatMap((c) => azure.warmResources.map((resource) => resourceKey(c.name, resource))),
    ],
    allow: azure.allowedResources
      ? (key) => (azure.allowedResources as string[]).includes(splitResourceKey(key).resource)
      : undefined,
    expiresAt: (t) => t.expiresAt,
    policy: TOKEN_POLICY,
    clock,
    logger,
    metrics,
    maxKeys: MAX_RESOURCES,
    // Room for `<container> ` before the resource.
    maxKeyLength: MAX_RESOURCE_LENGTH + 64,
  });
  const filePath = tokenFilePath(azure, ctx.stateDir);
  const tokenFile =
    filePath === undefined
      ? undefined
      : new AzureTokenFile({ path: filePath, audience: azure.audience, jwt, clock, logger, metrics });

  const enabled = { 'azure-appservice': azure.appService, 'azure-imds': azure.imds, 'azure-msi': azure.msi } as const;
  const surfaces = azureSurfaces({
    tokens,
    served: { clientId: azure.clientId, objectId: azure.objectId, resourceId: azure.resourceId },
    identityHeader: resolveIdentityHeader(azure.identityHeader, ctx.stateDir),
    containers: own.map(({ name, clientId, identityHeader }) => ({ name, clientId, identityHeader })),
    clock,
    logger,
  }).filter((surface) => enabled[surface.name as keyof typeof enabled]);

  let unsubscribe: (() => void) | undefined;
  return {
    cloud: 'azure',
    surfaces,
    async start() {
      unsubscribe = jwt.subscribe(() => {
        void tokens.refreshAll('identity changed');
        void tokenFile?.refreshNow('identity changed');
      });
      tokens.start();
      tokenFile?.start();
    },
    readiness: () =>
      readiness(
        azure,
        own.map((c) => c.name),
        tokens,
        tokenFile,
      ),
    async stop() {
      unsubscribe?.();
      tokens.stop();
      tokenFile?.stop();
    },
  };
}

/** Ready when every warm resource has a valid token and the token file (file mode) is current. */
function readiness(
  azure: AzureConfig,
  containers: readonly string[],
  tokens: CredentialCache<AzureAccessToken>,
  tokenFile: AzureTokenFile | undefined,
): Readiness {
  for (const container of [undefined, ...containers]) {
    for (const resource of azure.warmResources) {
      const lookup = tokens.peek(resourceKey(container, resource));
      const whose = container === undefined ? '' : ` (container ${container})`;
      if (!lookup.ok)
        return { ready: false, reason: `azure: no token for ${resource}${whose}: ${lookup.error.message}` };
    }
  }
  const file = tokenFile?.status();
  if (file && !file.valid) return { ready: false, reason: `azure: federated token file: ${file.reason}` };
  return { ready: true };
}

/**
 * One HTTPS agent for every exchange of the provider, trusting the default roots and caFile's CAs: one
 * TLS context, its CA store built once. The SDK's agent for TLS settings carrying `ca` would build that
 * store again for every connection, and name its connections (and TLS session cache entries) by the
 * whole PEM text of the list.
 */
function entraAgent(caPem: string): HttpsAgent {
  return new HttpsAgent({
    keepAlive: true,
    secureContext: createSecureContext({ ca: [...getCACertificates('default'), caPem] }),
  });
}

async function readCaFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new ConnectorError(
      'config_invalid',
      `azure.caFile: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? String(error)})`,
      { cause: error },
    );
  }
}
