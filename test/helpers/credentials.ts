// Fixed credentials and a lookup that always answers with them: for surface tests that need a credential to
// serve but no exchange behind it.
import { Secret } from '../../src/base/secret.ts';
import type { CredentialLookup, Lookup } from '../../src/cache/credential-cache.ts';
import type { AwsCredentials } from '../../src/providers/aws/credential.ts';

export const ROLE_ARN = 'arn:aws:iam::111122223333:role/app';

/** AWS session credentials obtained at `nowMs`, expiring `lifeMs` later. */
export function awsCredentials(nowMs: number, lifeMs = 3_600_000): AwsCredentials {
  return {
    accessKeyId: 'ASIAEXAMPLEEXAMPLE12',
    secretAccessKey: new Secret('secret/with+chars=='),
    sessionToken: new Secret('IQoJb3JpZ2luX2VjSESSION'),
    expiration: new Date(nowMs + lifeMs),
    accountId: '111122223333',
    roleArn: ROLE_ARN,
    assumedRoleArn: 'arn:aws:sts::111122223333:assumed-role/app/ns.default.sa.app',
    sessionName: 'ns.default.sa.app',
    obtainedAt: new Date(nowMs),
  };
}

/** A lookup that answers every key with `value`, valid until `expiresAt`. */
export function fixedLookup<C>(value: C, expiresAt: Date): CredentialLookup<C> {
  const found: Lookup<C> = { ok: true, value, expiresAt };
  return { peek: () => found, get: async () => found };
}
