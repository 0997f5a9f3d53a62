// The `aws` section of the sidecar config: STS web identity (a JWT-SVID) by default, or IAM Roles
// Anywhere (the X.509-SVID) when `rolesAnywhere` is set; limits as in docs/aws.md.
import * as z from 'zod/mini';
import { containerNames, headerSecret, httpsUrl } from './common.ts';

const ARN_ID = '[0-9A-Za-z-]{1,64}';
export const TRUST_ANCHOR_ARN = new RegExp(
  `^arn:(aws[a-z-]*):rolesanywhere:([a-z]{2}(?:-[a-z]+)+-\\d):(\\d{12}):trust-anchor/${ARN_ID}$`,
);
export const PROFILE_ARN = new RegExp(
  `^arn:(aws[a-z-]*):rolesanywhere:([a-z]{2}(?:-[a-z]+)+-\\d):(\\d{12}):profile/${ARN_ID}$`,
);

const rolesAnywhereFields = z.strictObject({
  trustAnchorArn: z
    .string({ error: 'is required' })
    .check(
      z.regex(
        TRUST_ANCHOR_ARN,
        'must be a Roles Anywhere trust anchor ARN (arn:aws:rolesanywhere:<region>:<12-digit account>:trust-anchor/<id>)',
      ),
    ),
  profileArn: z
    .string({ error: 'is required' })
    .check(
      z.regex(
        PROFILE_ARN,
        'must be a Roles Anywhere profile ARN (arn:aws:rolesanywhere:<region>:<12-digit account>:profile/<id>)',
      ),
    ),
  /** Default: https://rolesanywhere.<the trust anchor's region>.amazonaws.com. */
  endpoint: z.optional(httpsUrl),
});

/** Cluster defaults (the webhook) may give any part; the pod's annotations complete it. */
export const rolesAnywhereDefaultsSchema = z.partial(rolesAnywhereFields);

const rolesAnywhereSchema = rolesAnywhereFields.check(
  z.superRefine((value, ctx) => {
    const anchor = TRUST_ANCHOR_ARN.exec(value.trustAnchorArn);
    const profile = PROFILE_ARN.exec(value.profileArn);
    if (anchor && profile && (anchor[2] !== profile[2] || anchor[1] !== profile[1])) {
      ctx.addIssue({
        code: 'custom',
        path: ['profileArn'],
        message: `must be in the trust anchor's region (${anchor[2]}): Roles Anywhere answers for one region`,
      });
    }
  }),
);

const ROLE_ARN = /^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/;

const roleArn = z
  .string({ error: 'is required' })
  .check(z.regex(ROLE_ARN, 'must be an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)'));

/** Seconds an STS session lasts: at least 900, at most `max`. */
const sessionDuration = (max: number, tooLong: string) =>
  z._default(
    z
      .number()
      .check(
        z.int('must be a whole number of seconds'),
        z.gte(900, 'must be at least 900 (STS minimum)'),
        z.lte(max, tooLong),
      ),
    3600,
  );

/** A role assumed with the pod's role credentials (role chaining): one AWS config profile each. */
const extraRoleSchema = z.strictObject({
  /** The profile name apps select (AWS_PROFILE, --profile). */
  name: z.string({ error: 'is required' }).check(
    z.regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'must be a profile name: letters, digits, "_", ".", "-", at most 64'),
    z.refine((n) => n !== 'default', 'must not be "default": that profile is the pod\'s own role'),
  ),
  roleArn,
  /** STS holds chained sessions to one hour. */
  sessionDurationSeconds: sessionDuration(3600, 'must be at most 3600: STS limits role chaining to one hour'),
});

/** One container's own role (docs/aws.md "A role per container"): its own path, token file and session. */
const containerRoleSchema = z.strictObject({
  roleArn,
  /** Where the sidecar writes this container's token (relative paths are under server.stateDir). Default containers/<name>/aws-container-token. */
  tokenFile: z.optional(z.string().check(z.minLength(1))),
});

/** The literal AWS_CONTAINER_AUTHORIZATION_TOKEN (see `containerAuthorizationToken` below). */
export const containerAuthorizationTokenSchema = headerSecret(32);

/** AWS_CONTAINER_CREDENTIALS_RELATIVE_URI in link-local mode (see `containerRelativeUri` below). */
export const containerRelativeUriSchema = z
  .string()
  .check(
    z.regex(
      /^\/v2\/credentials\/[A-Za-z0-9._~-]{32,128}$/,
      'must be /v2/credentials/ followed by 32-128 unguessable characters (A-Za-z0-9._~-)',
    ),
  );

export const awsSchema = z.strictObject({
  roleArn,
  region: z
    .string({ error: 'is required' })
    .check(z.regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'must be an AWS region such as eu-west-1')),
  audience: z._default(
    z.string().check(z.minLength(1), z.maxLength(255, 'must be at most 255 characters (IAM OIDC client ID limit)')),
    'sts.amazonaws.com',
  ),
  sessionDurationSeconds: sessionDuration(43200, 'must be at most 43200 (STS maximum)'),
  stsEndpoint: z.optional(httpsUrl),
  /** Serve the container-credentials endpoint (the per-container token: the surface to prefer). */
  containerCredentials: z._default(z.boolean(), true),
  /**
   * The container-credentials token, also given to the app as the literal AWS_CONTAINER_AUTHORIZATION_TOKEN
   * for SDKs released before AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (README.md "Compatibility"). It must stay
   * the same for the pod's life (the app reads it once, at start), so it is configured, not generated: the
   * webhook sets one per pod (annotation aws-legacy-token). Unset: a fresh token in the token file only.
   */
  containerAuthorizationToken: z.optional(containerAuthorizationTokenSchema),
  /**
   * With server.linkLocal: the path of the container-credentials endpoint at 169.254.170.2, given to the app as
   * AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (which every SDK prefers, old ones included). Old SDKs send no token
   * there, so the path is the secret, stable for the pod's life. The webhook sets one per pod (annotation link-local).
   */
  containerRelativeUri: z.optional(containerRelativeUriSchema),
  /** Also emulate EC2 IMDSv2, which any process in the pod can read (it carries no per-container secret). */
  imds: z._default(z.boolean(), true),
  /** Roles assumed from the pod's role: an AWS config profile each (AWS_CONFIG_FILE), and `credential-process --role NAME`. */
  extraRoles: z._default(z.array(extraRoleSchema).check(z.maxLength(64)), []).check(
    z.superRefine((roles, ctx) => {
      const seen = new Set<string>();
      roles.forEach((r, i) => {
        if (seen.has(r.name))
          ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `repeats the profile name ${r.name}` });
        seen.add(r.name);
      });
    }),
  ),
  /**
   * Containers with a role of their own, by container name: each is served on /v1/credentials/<name> with a
   * token of its own, exchanged with the same JWT-SVID; the others keep roleArn.
   */
  containers: z._default(z.record(z.string(), containerRoleSchema), {}).check(z.superRefine(containerNames)),
  /** Sign Roles Anywhere CreateSession with the X.509-SVID instead of exchanging a JWT-SVID at STS. */
  rolesAnywhere: z.optional(rolesAnywhereSchema),
});

export type AwsConfig = z.output<typeof awsSchema>;
export type ExtraRole = AwsConfig['extraRoles'][number];
export type ContainerRole = AwsConfig['containers'][string];
export type RolesAnywhereConfig = NonNullable<AwsConfig['rolesAnywhere']>;

/** The region Roles Anywhere is called in: the trust anchor's (its profile is checked to match). */
export function rolesAnywhereRegion(config: RolesAnywhereConfig): string {
  return TRUST_ANCHOR_ARN.exec(config.trustAnchorArn)?.[2] ?? '';
}

/** The endpoint CreateSession goes to: the override, or the regional endpoint of the anchor's partition. */
export function rolesAnywhereEndpoint(config: RolesAnywhereConfig): string {
  if (config.endpoint) return config.endpoint.replace(/\/+$/, '');
  const partition = TRUST_ANCHOR_ARN.exec(config.trustAnchorArn)?.[1] ?? 'aws';
  const suffix = partition === 'aws-cn' ? 'amazonaws.com.cn' : 'amazonaws.com';
  return `https://rolesanywhere.${rolesAnywhereRegion(config)}.${suffix}`;
}
