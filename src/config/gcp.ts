// The `gcp` section of the sidecar config (config.example.yaml; checks from docs/gcp.md#oidc-requirements).
import * as z from 'zod/mini';
import { httpsUrl } from './common.ts';

export const WORKLOAD_IDENTITY_PROVIDER =
  /^projects\/(\d+)\/locations\/global\/workloadIdentityPools\/([a-z0-9-]{4,32})\/providers\/([a-z0-9-]{4,32})$/;

const serviceAccountEmail = z
  .string()
  .check(
    z.regex(
      /^[a-z0-9-]+@[a-z0-9.-]+\.iam\.gserviceaccount\.com$|^[^@\s/]+@[^@\s/]+$/,
      'must be a service account email',
    ),
  );

export const gcpSchema = z.strictObject({
  projectId: z
    .string({ error: 'is required' })
    .check(
      z.regex(/^[a-z][a-z0-9-]{4,28}[a-z0-9]$/, 'must be a GCP project ID (6-30 lowercase letters, digits, hyphens)'),
    ),
  projectNumber: z.coerce
    .string({ error: 'is required' })
    .check(z.regex(/^\d{1,20}$/, 'must be the numeric project number, digits only (quote it in YAML)')),
  workloadIdentityProvider: z
    .string({ error: 'is required' })
    .check(
      z.regex(
        WORKLOAD_IDENTITY_PROVIDER,
        'must be projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>',
      ),
    ),
  serviceAccount: z.optional(serviceAccountEmail),
  /**
   * More service accounts the federated principal may impersonate, served under their own email at
   * instance/service-accounts/<email>/token as GCE serves each attached account.
   */
  extraServiceAccounts: z._default(z.array(serviceAccountEmail).check(z.maxLength(16)), []).check(
    z.superRefine((emails, ctx) => {
      emails.forEach((e, i) => {
        if (emails.indexOf(e) !== i) ctx.addIssue({ code: 'custom', path: [i], message: `repeats ${e}` });
        if (e === 'default') ctx.addIssue({ code: 'custom', path: [i], message: 'must be an email, not "default"' });
      });
    }),
  ),
  stsEndpoint: z._default(httpsUrl, 'https://sts.googleapis.com'),
  iamCredentialsEndpoint: z._default(httpsUrl, 'https://iamcredentials.googleapis.com'),
  /** Extra PEM CA bundle trusted (besides the system roots) for stsEndpoint and iamCredentialsEndpoint: private endpoints, dev, tests. */
  caFile: z.optional(z.string().check(z.minLength(1))),
  /** Zone served at instance/zone as projects/<projectNumber>/zones/<zone>. */
  zone: z._default(
    z.string().check(z.regex(/^[a-z][a-z0-9-]{0,62}$/, 'must be a zone name such as europe-west1-b')),
    'unknown',
  ),
  /** When set, ID tokens are served only for these audiences; any other is refused at once, without calling Google. */
  allowedAudiences: z.optional(z.array(z.string().check(z.minLength(1), z.maxLength(2048))).check(z.maxLength(256))),
});

export type GcpConfig = z.output<typeof gcpSchema>;
