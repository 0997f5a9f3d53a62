// The AWS credential the sidecar holds and serves: the domain type shared by the exchange (which makes
// it) and the endpoints (which serve it), so neither imports the other.
import type { Secret } from '../../base/secret.ts';

export interface AwsCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: Secret;
  readonly sessionToken: Secret;
  readonly expiration: Date;
  /** The 12-digit account, from the assumed-role ARN. */
  readonly accountId: string;
  /** The IAM role that was assumed (arn:aws:iam::<account>:role/<name>). */
  readonly roleArn: string;
  /** arn:aws:sts::<account>:assumed-role/<role>/<session>. */
  readonly assumedRoleArn: string;
  readonly sessionName: string;
  /** When the sidecar obtained it. */
  readonly obtainedAt: Date;
  /** The SPIFFE ID it was exchanged for, and AWS's id of the request that issued it (for the audit event). */
  readonly spiffeId?: string | undefined;
  readonly requestId?: string | undefined;
}

/** `arn:<partition>:sts::<account>:assumed-role/<role>/<session>` → its account, or undefined. */
export function accountFromAssumedRoleArn(arn: string): string | undefined {
  return /^arn:aws[a-z-]*:sts::(\d{12}):assumed-role\/[^/]+\/[^/]+$/.exec(arn)?.[1];
}

/** The role's name: the last segment of its ARN (IMDS lists it under iam/security-credentials/). */
export function roleNameFromArn(roleArn: string): string {
  return roleArn.slice(roleArn.lastIndexOf('/') + 1);
}

/** The account of an IAM ARN (`arn:aws:iam::<account>:...`). */
export function accountFromArn(arn: string): string {
  return arn.split(':')[4] ?? '';
}

/**
 * `YYYY-MM-DDTHH:MM:SSZ`: UTC, no fraction, no offset. JS fromHttp accepts only `Z`; botocore's IMDS
 * fetcher fails to parse fractions (docs/aws.md#timestamps).
 */
export function awsTimestamp(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
