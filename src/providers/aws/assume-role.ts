// Role chaining: sts:AssumeRole signed with the pod's role credentials, for an aws.extraRoles entry
// (docs/aws.md "Role chaining"). `credential-process --role NAME` uses it; in a pod the SDKs do the same
// from the profile the sidecar writes. One attempt per call: retrying is the caller's.
import type { AssumeRoleCommandOutput } from '@aws-sdk/client-sts';
import type { AwsConfig, ExtraRole } from '../../config/aws.ts';
import type { AwsCredentials } from './credential.ts';
import { roleSessionName, type StsSdk } from './exchange.ts';
import { mapStsError, stsSession } from './upstream-errors.ts';

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
  // As the profiles the sidecar writes name it: <profile>@<SPIFFE path>, so CloudTrail says which extra role and whose.
  const sessionName = base.spiffeId === undefined ? base.sessionName : roleSessionName(base.spiffeId, role.name);
  let output: AssumeRoleCommandOutput;
  try {
    output = await client.send(
      new sdk.AssumeRoleCommand({
        RoleArn: role.roleArn,
        RoleSessionName: sessionName,
        DurationSeconds: role.sessionDurationSeconds,
      }),
      { abortSignal: options.signal },
    );
  } catch (thrown) {
    throw mapStsError(thrown);
  } finally {
    client.destroy();
  }
  return {
    ...stsSession(output, 'AssumeRole'),
    roleArn: role.roleArn,
    sessionName,
    obtainedAt: new Date(options.now()),
  };
}
