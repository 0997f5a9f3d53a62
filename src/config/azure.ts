// The `azure` section of the sidecar config (config.example.yaml; facts from docs/azure.md#federated-credentials).
import * as z from 'zod/mini';
import { containerNames, headerSecret, httpsUrl } from './common.ts';

const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** The App Service X-IDENTITY-HEADER secret (see `identityHeader` below). */
export const identityHeaderSchema = headerSecret(16);

const nonEmpty = z.string().check(z.minLength(1));

/** One container's own client id (docs/azure.md "App Service"): its own App Service identity header. */
const containerIdentitySchema = z.strictObject({
  clientId: z.string({ error: 'is required' }).check(z.regex(GUID, 'must be the application (client) ID, a GUID')),
  /** That container's X-IDENTITY-HEADER (the webhook sets one); else one is generated in <stateDir>/azure-identity-header.<container>. */
  identityHeader: z.optional(identityHeaderSchema),
});

export const azureSchema = z.strictObject({
  tenantId: z.string({ error: 'is required' }).check(z.regex(GUID, 'must be the directory (tenant) ID, a GUID')),
  clientId: z.string({ error: 'is required' }).check(z.regex(GUID, 'must be the application (client) ID, a GUID')),
  authorityHost: z._default(httpsUrl, 'https://login.microsoftonline.com'),
  audience: z._default(nonEmpty, 'api://AzureADTokenExchange'),
  /** Object (principal) ID of the identity: requests naming it by object_id/principal_id are served as the default. */
  objectId: z.optional(z.string().check(z.regex(GUID, 'must be the object (principal) ID, a GUID'))),
  /** ARM resource ID of a user-assigned managed identity: requests naming it by mi_res_id/msi_res_id are served as the default. */
  resourceId: z.optional(
    z
      .string()
      .check(
        z.regex(
          /^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.ManagedIdentity\/userAssignedIdentities\/[^/]+$/i,
          'must be a user-assigned identity ARM ID (/subscriptions/…/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>)',
        ),
      ),
  ),
  /** The App Service X-IDENTITY-HEADER secret (the webhook sets one per pod); else one is generated in <stateDir>/azure-identity-header. */
  identityHeader: z.optional(identityHeaderSchema),
  /** File mode: keep a JWT-SVID for `audience` fresh at this path (relative paths are under server.stateDir) for SDKs that read AZURE_FEDERATED_TOKEN_FILE. */
  tokenFile: z.optional(nonEmpty),
  /** PEM file of extra CA certificates to trust for authorityHost (private clouds, TLS inspection, the dev Entra stand-in). */
  caFile: z.optional(nonEmpty),
  /** Resources whose tokens are fetched at start and kept fresh (readiness waits for them); others are fetched on first request. */
  warmResources: z._default(z.array(nonEmpty).check(z.maxLength(16)), ['https://management.azure.com']),
  /** When set, only these resources (and the warm ones) are served; any other is refused at once, without calling Entra. */
  allowedResources: z.optional(z.array(nonEmpty).check(z.maxLength(256))),
  /**
   * Containers with a client id of their own, by container name: each gets its own IDENTITY_HEADER, which the
   * App Service endpoint answers with that client id only; the others keep clientId.
   */
  containers: z._default(z.record(z.string(), containerIdentitySchema), {}).check(z.superRefine(containerNames)),
  /** Serve the App Service endpoint (IDENTITY_ENDPOINT, the per-pod X-IDENTITY-HEADER: the surface to prefer). */
  appService: z._default(z.boolean(), true),
  /** Also emulate IMDS, which any process in the pod can read (it carries no secret). */
  imds: z._default(z.boolean(), true),
  /** Also serve the MSI_ENDPOINT form POST (the Azure CLI's), which carries no secret either. */
  msi: z._default(z.boolean(), true),
});

export type AzureConfig = z.output<typeof azureSchema>;
export type ContainerIdentity = AzureConfig['containers'][string];
