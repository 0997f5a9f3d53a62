// What an app container needs to find the AWS endpoints (reference/aws.md §7.1, §7.6, §7.9): FULL_URI +
// TOKEN_FILE (never RELATIVE_URI, which wins everywhere, nor TOKEN, which Java prefers over FILE).
import { posix } from 'node:path';
import type { SidecarConfig } from '../../config/schema.ts';
import type { EnvLines } from '../../base/env-lines.ts';

/** Where the container-credentials endpoint answers on the metadata listener. */
export const CONTAINER_CREDENTIALS_PATH = '/v1/credentials';

/** The token file's name inside server.stateDir. */
export const AWS_CONTAINER_TOKEN_FILE = 'aws-container-token';

export function awsTokenFilePath(config: SidecarConfig): string {
  return posix.join(config.server.stateDir, AWS_CONTAINER_TOKEN_FILE);
}

export function awsEnv(config: SidecarConfig, metadataOrigin: string): EnvLines {
  const aws = config.aws;
  if (!aws) return [];
  const origin = metadataOrigin.replace(/\/+$/, '');
  const lines: EnvLines = [
    ['AWS_CONTAINER_CREDENTIALS_FULL_URI', `${origin}${CONTAINER_CREDENTIALS_PATH}`],
    ['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE', awsTokenFilePath(config)],
  ];
  if (aws.imds) lines.push(['AWS_EC2_METADATA_SERVICE_ENDPOINT', origin]);
  lines.push(['AWS_REGION', aws.region], ['AWS_DEFAULT_REGION', aws.region]);
  return lines;
}

export function describeAws(config: SidecarConfig, metadataOrigin: string): string[] {
  const aws = config.aws;
  if (!aws) return [];
  const origin = metadataOrigin.replace(/\/+$/, '');
  const sts = aws.stsEndpoint ?? `https://sts.${aws.region}.amazonaws.com`;
  return [
    `AWS: assume ${aws.roleArn} with a JWT-SVID for audience "${aws.audience}" (AssumeRoleWithWebIdentity at ${sts}, ${aws.sessionDurationSeconds} s sessions, region ${aws.region})`,
    `AWS container credentials: ${origin}${CONTAINER_CREDENTIALS_PATH} (Authorization token in ${awsTokenFilePath(config)})`,
    aws.imds
      ? `AWS IMDSv2: ${origin}/latest/ (role ${aws.roleArn.slice(aws.roleArn.lastIndexOf('/') + 1)}; any process in the pod can read it, prefer the container endpoint)`
      : 'AWS IMDSv2: off (aws.imds: false)',
  ];
}
