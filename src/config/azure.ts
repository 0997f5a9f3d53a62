// The `azure` section of the sidecar config (config.example.yaml; facts from docs/azure.md#federated-credentials).
import * as z from 'zod';
import { httpsUrl } from './common.ts';

const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

export const azureSchema = z
  .object({
    tenantId: z.string({ error: 'is required' }).regex(GUID, 'must be the directory (tenant) ID, a GUID'),
    clientId: z.string({ error: 'is required' }).regex(GUID, 'must be the application (client) ID, a GUID'),
    authorityHost: httpsUrl.default('https://login.microsoftonline.com'),
    audience: z.string().min(1).default('api://AzureADTokenExchange'),
    /** Object (principal) ID of the identity: requests naming it by object_id/principal_id are served as the default. */
    objectId: z.string().regex(GUID, 'must be the object (principal) ID, a GUID').optional(),
    /** ARM resource ID of a user-assigned managed identity: requests naming it by mi_res_id/msi_res_id are served as the default. */
    resourceId: z
      .string()
      .regex(
        /^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.ManagedIdentity\/userAssignedIdentities\/[^/]+$/i,
        'must be a user-assigned identity ARM ID (/subscriptions/…/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>)',
      )
      .optional(),
    /** The App Service X-IDENTITY-HEADER secret (the webhook sets one per pod); else one is generated in <stateDir>/azure-identity-header. */
    identityHeader: z
      .string()
      .min(16, 'must be at least 16 characters')
      .max(256, 'must be at most 256 characters')
      .regex(/^[A-Za-z0-9._~+/=-]+$/, 'must be letters, digits and ._~+/=- only (it travels in an HTTP header)')
      .optional(),
    /** File mode: keep a JWT-SVID for `audience` fresh at this path (relative paths are under server.stateDir) for SDKs that read AZURE_FEDERATED_TOKEN_FILE. */
    tokenFile: z.string().min(1).optional(),
    /** PEM file of extra CA certificates to trust for authorityHost (private clouds, TLS inspection, the dev Entra stand-in). */
    caFile: z.string().min(1).optional(),
    /** Resources whose tokens are fetched at start and kept fresh (readiness waits for them); others are fetched on first request. */
    warmResources: z.array(z.string().min(1)).max(16).default(['https://management.azure.com']),
    /** When set, only these resources (and the warm ones) are served; any other is refused at once, without calling Entra. */
    allowedResources: z.array(z.string().min(1)).max(256).optional(),
    /** Serve the App Service endpoint (IDENTITY_ENDPOINT, the per-pod X-IDENTITY-HEADER: the surface to prefer). */
    appService: z.boolean().default(true),
    /** Also emulate IMDS, which any process in the pod can read (it carries no secret). */
    imds: z.boolean().default(true),
    /** Also serve the MSI_ENDPOINT form POST (the Azure CLI's), which carries no secret either. */
    msi: z.boolean().default(true),
  })
  .strict();

export type AzureConfig = z.output<typeof azureSchema>;
