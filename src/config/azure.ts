// The `azure` section of the sidecar config (DESIGN.md "Config"; facts from reference/azure.md §3, §5).
import { z } from 'zod';
import { httpsUrl } from './common.ts';

const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

export const azureSchema = z
  .object({
    tenantId: z.string({ error: 'is required' }).regex(GUID, 'must be the directory (tenant) ID, a GUID'),
    clientId: z.string({ error: 'is required' }).regex(GUID, 'must be the application (client) ID, a GUID'),
    authorityHost: httpsUrl.default('https://login.microsoftonline.com'),
    audience: z.string().min(1).default('api://AzureADTokenExchange'),
  })
  .strict();

export type AzureConfig = z.output<typeof azureSchema>;
