// The issuer's config (DESIGN.md "Issuer config"): the `spiffe-connector issuer` X.509→JWT exchange
// server. Every problem is reported with its path (common.ts); the issuer URL follows OIDC Discovery §4.
import * as z from 'zod';
import { hostPort, httpsUrl, loadYamlConfig, parseYamlConfig } from './common.ts';

const trustDomain = z
  .string({ error: 'is required' })
  .transform((s) => s.replace(/^spiffe:\/\//, ''))
  .pipe(z.string().regex(/^[a-z0-9._-]{1,255}$/, 'must be a trust domain name: lowercase letters, digits, ".", "_", "-"'));

/** The `iss` claim and the base of discovery: https (http only on loopback, for dev), a path allowed, no query, fragment or user info. */
const issuerUrl = httpsUrl.superRefine((value, ctx) => {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return; // httpsUrl reported it
  }
  if (url.search !== '' || url.hash !== '' || value.includes('?') || value.includes('#')) {
    ctx.addIssue({ code: 'custom', message: 'must have no query or fragment (OIDC Discovery: the issuer is a plain https URL, a path allowed)' });
  }
  if (url.username !== '' || url.password !== '') ctx.addIssue({ code: 'custom', message: 'must have no user info' });
});

const file = z.string({ error: 'is required' }).min(1, 'must name a file');

/** An audience the issuer will mint tokens for: any non-blank string (cloud audiences are URIs or names). */
const audience = z
  .string()
  .min(1, 'must not be empty')
  .max(600, 'must be at most 600 characters (the Entra federated credential limit)')
  .refine((s) => s.trim() === s, 'must have no leading or trailing spaces');

export const issuerSchema = z
  .object({
    issuer: z
      .object({
        url: issuerUrl,
        trustDomain,
        bundleFile: file,
        tokenAddress: hostPort.default('0.0.0.0:8443'),
        tls: z.object({ certFile: file, keyFile: file }).strict(),
        discoveryAddress: hostPort.default('0.0.0.0:8080'),
        /** /healthz, /readyz, /metrics: kept off the discovery listener, which is meant for an Ingress. */
        opsAddress: hostPort.default('0.0.0.0:9090'),
        keysDir: file,
        /**
         * Keep publishing the key a reload replaced, signing with it until the new one has been published for
         * keyActivationDelaySeconds: for a key rotated in place (cert-manager's tls.key, rotationPolicy Always).
         */
        retainReplacedKey: z.boolean().optional(),
        audiences: z
          .array(audience, { error: 'must be a list of audiences' })
          .min(1, 'list at least one audience')
          .superRefine((list, ctx) => {
            const seen = new Set<string>();
            list.forEach((a, i) => {
              if (seen.has(a)) ctx.addIssue({ code: 'custom', path: [i], message: `"${a}" is listed twice` });
              seen.add(a);
            });
          }),
        tokenLifetimeSeconds: z
          .number()
          .int('must be a whole number of seconds')
          .min(60, 'must be at least 60')
          .max(86400, 'must be at most 86400 (Google refuses tokens living longer than 24 h)')
          .default(3600),
        /** RS256 is the one algorithm AWS, Google and Entra all accept; ES256 for AWS/Google only. */
        algorithm: z.enum(['RS256', 'ES256']).default('RS256'),
        /** A new key signs only after it has been published this long (set it to the JWKS max-age for a clean roll). */
        keyActivationDelaySeconds: z.number().int().min(0).max(86400).default(0),
        /** Cache-Control max-age of the discovery document and the JWKS. */
        discoveryMaxAgeSeconds: z.number().int().min(0).max(86400).default(300),
        /** Seconds to keep answering (503 on /readyz) after SIGTERM before closing. */
        drainSeconds: z.number().min(0).max(60).default(3),
      })
      .strict(),
    log: z
      .object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') })
      .strict()
      .default({ level: 'info' }),
  })
  .strict();

export type IssuerFileConfig = z.output<typeof issuerSchema>;
export type IssuerConfig = IssuerFileConfig['issuer'];
export type SigningAlgorithm = IssuerConfig['algorithm'];

export function loadIssuerConfig(path: string): Promise<IssuerFileConfig> {
  return loadYamlConfig(issuerSchema, path);
}

export function parseIssuerConfig(text: string, source = 'issuer config'): IssuerFileConfig {
  return parseYamlConfig(issuerSchema, text, source);
}
