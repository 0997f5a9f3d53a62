// Role chaining: sts:AssumeRole signed with the pod's role credentials, for an aws.extraRoles entry
// (docs/aws.md "Role chaining"). `credential-process --role NAME` uses it; in a pod the SDKs do the same
// from the profile the sidecar writes. One attempt per call: retrying is the caller's.
import type { AssumeRoleCommandOutput } from '@aws-sdk/client-sts';
import { ConnectorError } from '../../base/errors.ts';
import { Secret } from '../../base/secret.ts';
import type { AwsConfig, ExtraRole } from '../../config/aws.ts';
import { type AwsCredentials, accountFromAssumedRoleArn } from './credential.ts';
import type { StsSdk } from './exchange.ts';
import { mapStsError } from './upstream-errors.ts';

export async function assumeExtraRole(options: {
  readonly sdk: StsSdk;
  readonly config: AwsConfig;
  readonly base: AwsCredentials;
  readonly role: ExtraRole;
  readonly now: () => number;
  readonly signal: AbortSignal;
  readonly requestTimeoutMs?: number;
}): Promise<AwsCredentials> {
  const { sdk, config, base, role } = options;
  const timeout = options.requestTimeoutMs ?? 10_000;
  const client = new sdk.STSClient({
    region: config.region,
    ...(config.stsEndpoint ? { endpoint: config.stsEndpoint } : {}),
    maxAttempts: 1,
    credentials: {
      accessKeyId: base.accessKeyId,
      secretAccessKey: base.secretAccessKey.reveal(),
      sessionToken: base.sessionToken.reveal(),
      expiration: base.expiration,
    },
    requestHandler: { requestTimeout: timeout, connectionTimeout: timeout, throwOnRequestTimeout: true },
  });
  let output: AssumeRoleCommandOutput;
  try {
    output = await client.send(
      new sdk.AssumeRoleCommand({
        RoleArn: role.roleArn,
        RoleSessionName: base.sessionName,
        DurationSeconds: role.sessionDurationSeconds,
      }),
      { abortSignal: options.signal },
    );
  } catch (thrown) {
    throw mapStsError(thrown);
  } finally {
    client.destroy();
  }
  const c = output.Credentials;
  const assumedRoleArn = output.AssumedRoleUser?.Arn;
  const accountId = assumedRoleArn === undefined ? undefined : accountFromAssumedRoleArn(assumedRoleArn);
  if (
    !c?.AccessKeyId ||
    !c.SecretAccessKey ||
    !c.SessionToken ||
    !(c.Expiration instanceof Date) ||
    Number.isNaN(c.Expiration.getTime()) ||
    !assumedRoleArn ||
    !accountId
  ) {
    throw new ConnectorError(
      'upstream_malformed',
      'STS answered AssumeRole without complete credentials or an assumed-role ARN',
      { retryable: true },
    );
  }
  return {
    accessKeyId: c.AccessKeyId,
    secretAccessKey: new Secret(c.SecretAccessKey),
    sessionToken: new Secret(c.SessionToken),
    expiration: c.Expiration,
    accountId,
    roleArn: role.roleArn,
    assumedRoleArn,
    sessionName: base.sessionName,
    obtainedAt: new Date(options.now()),
  };
}
