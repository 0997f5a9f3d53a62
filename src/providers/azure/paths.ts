// Where the Azure surfaces live on the loopback metadata listener; shared by env.ts (what apps are told)
// and endpoints.ts (what is served). IMDS keeps its real path (reference/azure.md §1, §2, implication 2).

/** App Service 2019-08-01, named by IDENTITY_ENDPOINT. */
export const APP_SERVICE_PATH = '/msi/token';
/** The MSI_ENDPOINT form POST (Cloud Shell shape; Azure CLI 2.45 uses it). */
export const MSI_PATH = '/msi/legacy';
/** IMDS token path, appended by SDKs to AZURE_POD_IDENTITY_AUTHORITY_HOST. */
export const IMDS_TOKEN_PATH = '/metadata/identity/oauth2/token';
/** The file, in the state directory, holding the generated X-IDENTITY-HEADER secret. */
export const IDENTITY_HEADER_FILE = 'azure-identity-header';
