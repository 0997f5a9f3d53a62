// The issuer's config (issuer.example.yaml documents every key): the `spiffe-connector issuer` X.509→JWT exchange
// server. Every problem is reported with its path (common.ts); the issuer URL follows OIDC Discovery §4.
import * as z from 'zod/mini';
import { hostPort, httpsUrl, loadYamlConfig, logLevel, parseYamlConfig, trustDomain } from './common.ts';

/** The `iss` claim and the base of discovery: https (http only on loopback, for dev), a path allowed, no query, fragment or user info. */
const issuerUrl = httpsUrl.check(
  z.superRefine((value, ctx) => {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return; // httpsUrl reported it
    }
    if (url.search !== '' || url.hash !== '' || value.includes('?') || value.includes('#')) {
      ctx.addIssue({
        code: 'custom',
        message: 'must have no query or fragment (OIDC Discovery: the issuer is a plain https URL, a path allowed)',
      });
    }
    if (url.username !== '' || url.password !== '') ctx.addIssue({ code: 'custom', message: 'must have no user info' });
  }),
);

const file = z.string({ error: 'is required' }).check(z.minLength(1, 'must name a file'));

/** An audience the issuer will mint tokens for: any non-blank string (cloud audiences are URIs or names). */
const audience = z.string().check(
  z.minLength(1, 'must not be empty'),
  z.maxLength(600, 'must be at most 600 characters (the Entra federated credential limit)'),
  z.refine((s) => s.trim() === s, 'must have no leading or trailing spaces'),
);

/** AWS session-tag limits (IAM User Guide, "Passing session tags in AWS STS"). */
export const MAX_SESSION_TAGS = 50;
export const MAX_TAG_KEY = 128;
export const MAX_TAG_VALUE = 256;
/** Characters AWS allows in tag keys and values: letters, digits, spaces and `_ . : / = + - @`. */
export const TAG_CHARS = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u;

const PLACEHOLDER = /\{([A-Za-z][A-Za-z0-9]*)\}/g;

/** The `{name}` placeholders a template uses. */
export function placeholders(template: string): string[] {
  return [...template.matchAll(PLACEHOLDER)].map((m) => m[1] ?? '');
}

/** Session tags for AWS from the SPIFFE ID's path; checked against AWS's session-tag rules at load. */
const awsSessionTags = z
  .strictObject({
    pathTemplate: z
      .string({ error: 'is required' })
      .check(
        z.regex(
          /^(\/([A-Za-z0-9._-]+|\{[A-Za-z][A-Za-z0-9]*\}))+$/,
          'must be a SPIFFE ID path whose segments are literal or one {name}, e.g. /ns/{namespace}/sa/{serviceAccount}',
        ),
      ),
    principalTags: z.record(z.string(), z.string(), { error: 'must be a map of tag key to value template' }),
    transitiveTagKeys: z._default(z.array(z.string()), []),
  })
  .check(
    z.superRefine((value, ctx) => {
      const names = new Set([...placeholders(value.pathTemplate), 'trustDomain']);
      const keys = Object.keys(value.principalTags);
      if (keys.length === 0)
        ctx.addIssue({ code: 'custom', path: ['principalTags'], message: 'list at least one tag' });
      if (keys.length > MAX_SESSION_TAGS)
        ctx.addIssue({
          code: 'custom',
          path: ['principalTags'],
          message: `must have at most ${MAX_SESSION_TAGS} tags (the AWS session tag limit)`,
        });
      const lower = new Set<string>();
      for (const [key, template] of Object.entries(value.principalTags)) {
        if (key.length < 1 || key.length > MAX_TAG_KEY)
          ctx.addIssue({
            code: 'custom',
            path: ['principalTags', key],
            message: `tag keys must be 1-${MAX_TAG_KEY} characters`,
          });
        if (!TAG_CHARS.test(key))
          ctx.addIssue({
            code: 'custom',
            path: ['principalTags', key],
            message: 'tag keys may hold only letters, digits, spaces and _ . : / = + - @',
          });
        if (key.toLowerCase().startsWith('aws:'))
          ctx.addIssue({ code: 'custom', path: ['principalTags', key], message: 'tag keys must not start with aws:' });
        if (lower.has(key.toLowerCase()))
          ctx.addIssue({
            code: 'custom',
            path: ['principalTags', key],
            message: 'AWS tag keys are case-insensitive: this key is listed twice',
          });
        lower.add(key.toLowerCase());
        for (const name of placeholders(template)) {
          if (!names.has(name))
            ctx.addIssue({
              code: 'custom',
              path: ['principalTags', key],
              message: `{${name}} is not in pathTemplate (nor {trustDomain})`,
            });
        }
        if (!TAG_CHARS.test(template.replace(/\{[A-Za-z][A-Za-z0-9]*\}/g, '')))
          ctx.addIssue({
            code: 'custom',
            path: ['principalTags', key],
            message: 'tag values may hold only letters, digits, spaces and _ . : / = + - @',
          });
      }
      value.transitiveTagKeys.forEach((key, i) => {
        if (!keys.includes(key))
          ctx.addIssue({
            code: 'custom',
            path: ['transitiveTagKeys', i],
            message: `"${key}" is not a key of principalTags`,
          });
      });
    }),
  );

const awsClaims = z.strictObject({
  /** Only tokens for this audience carry the AWS claims. */
  audience: z._default(z.string().check(z.minLength(1)), 'sts.amazonaws.com'),
  sessionTags: z.optional(awsSessionTags),
  /** Put https://aws.amazon.com/source_identity (the SPIFFE ID's path, dots for slashes) in the tokens. */
  sourceIdentity: z._default(z.boolean(), false),
});

/** Beyond the JWKS max-age, for verifiers whose fetch of the JWKS was slow or late. */
export const KEY_ACTIVATION_MARGIN_SECONDS = 60;

/** A token bucket: `burst` requests at once, then `perSecond` on average. */
const bucket = z.strictObject({
  burst: z.number().check(z.int('must be a whole number'), z.gte(1), z.lte(1_000_000)),
  perSecond: z.number().check(z.positive('must be more than 0'), z.lte(1_000_000)),
});

/**
 * Defaults: a sidecar asks once per audience at start and at each SVID rotation (minutes apart), so 30
 * at once and one every 2 s per client is ample; the overall bucket bounds what many clients add up to.
 */
export const DEFAULT_RATE_LIMIT = {
  perClient: { burst: 30, perSecond: 0.5 },
  overall: { burst: 500, perSecond: 100 },
} as const;

export const issuerSchema = z.strictObject({
  issuer: z.pipe(
    z
      .strictObject({
        url: issuerUrl,
        trustDomain,
        bundleFile: file,
        tokenAddress: z._default(hostPort, '0.0.0.0:8443'),
        tls: z.strictObject({ certFile: file, keyFile: file }),
        discoveryAddress: z._default(hostPort, '0.0.0.0:8080'),
        /** /healthz, /readyz, /metrics: kept off the discovery listener, which is meant for an Ingress. */
        opsAddress: z._default(hostPort, '0.0.0.0:9090'),
        keysDir: file,
        /**
         * Keep publishing the key a reload replaced, signing with it until the new one has been published for
         * keyActivationDelaySeconds: for a key rotated in place (cert-manager's tls.key, rotationPolicy Always).
         */
        retainReplacedKey: z.optional(z.boolean()),
        audiences: z.array(audience, { error: 'must be a list of audiences' }).check(
          z.minLength(1, 'list at least one audience'),
          z.superRefine((list, ctx) => {
            const seen = new Set<string>();
            list.forEach((a, i) => {
              if (seen.has(a)) ctx.addIssue({ code: 'custom', path: [i], message: `"${a}" is listed twice` });
              seen.add(a);
            });
          }),
        ),
        tokenLifetimeSeconds: z._default(
          z
            .number()
            .check(
              z.int('must be a whole number of seconds'),
              z.gte(60, 'must be at least 60'),
              z.lte(86400, 'must be at most 86400 (Google refuses tokens living longer than 24 h)'),
            ),
          3600,
        ),
        /** RS256 is the one algorithm AWS, Google and Entra all accept; ES256 for AWS/Google only. */
        algorithm: z._default(z.enum(['RS256', 'ES256']), 'RS256'),
        /**
         * A key found after start signs only once it has been published this long, so that verifiers holding
         * a cached JWKS have fetched it first. Default: discoveryMaxAgeSeconds + KEY_ACTIVATION_MARGIN_SECONDS.
         */
        keyActivationDelaySeconds: z.optional(z.number().check(z.int(), z.gte(0), z.lte(86400))),
        /** Cache-Control max-age of the discovery document and the JWKS. */
        discoveryMaxAgeSeconds: z._default(z.number().check(z.int(), z.gte(0), z.lte(86400)), 300),
        /** Seconds to keep answering (503 on /readyz) after SIGTERM before closing. */
        drainSeconds: z._default(z.number().check(z.gte(0), z.lte(60)), 3),
        /** Session tags and source identity for AWS (AssumeRoleWithWebIdentity reads them from the token). */
        aws: z.optional(awsClaims),
        /** Token buckets on POST /token: per client SPIFFE ID and overall; beyond them, 429 with Retry-After. */
        rateLimit: z.optional(
          z.strictObject({
            perClient: z._default(bucket, DEFAULT_RATE_LIMIT.perClient),
            overall: z._default(bucket, DEFAULT_RATE_LIMIT.overall),
          }),
        ),
      })
      .check(
        z.superRefine((value, ctx) => {
          if (value.aws && !value.audiences.includes(value.aws.audience)) {
            ctx.addIssue({
              code: 'custom',
              path: ['aws', 'audience'],
              message: `must be one of issuer.audiences (${value.audiences.join(', ')})`,
            });
          }
        }),
      ),
    z.transform((value) => ({
      ...value,
      keyActivationDelaySeconds:
        value.keyActivationDelaySeconds ?? value.discoveryMaxAgeSeconds + KEY_ACTIVATION_MARGIN_SECONDS,
    })),
  ),
  log: z._default(z.strictObject({ level: z._default(logLevel, 'info') }), { level: 'info' }),
});

export type IssuerFileConfig = z.output<typeof issuerSchema>;
export type IssuerConfig = IssuerFileConfig['issuer'];
export type SigningAlgorithm = IssuerConfig['algorithm'];
export type IssuerAwsConfig = NonNullable<IssuerConfig['aws']>;

export function loadIssuerConfig(path: string): Promise<IssuerFileConfig> {
  return loadYamlConfig(issuerSchema, path);
}

export function parseIssuerConfig(text: string, source = 'issuer config'): IssuerFileConfig {
  return parseYamlConfig(issuerSchema, text, source);
}
