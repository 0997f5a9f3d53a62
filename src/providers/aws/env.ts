// What an app container needs to find the AWS endpoints (docs/aws.md#environment): FULL_URI +
// TOKEN_FILE (RELATIVE_URI, which wins everywhere, only in link-local mode with aws.containerRelativeUri). The literal TOKEN only when
// aws.containerAuthorizationToken is configured, and then with the file's value: Java v2 prefers TOKEN, the
// other SDKs FILE (README.md "Compatibility"), and both give the same answer.

import type { X509Certificate } from 'node:crypto';
import { posix } from 'node:path';
import type { EnvLines } from '../../base/env-lines.ts';
import { CONTAINER_CREDENTIALS_IP, METADATA_IP } from '../../base/link-local.ts';
import { rolesAnywhereEndpoint, rolesAnywhereRegion } from '../../config/aws.ts';
import type { SidecarConfig } from '../../config/schema.ts';
import type { CloudEnvironment } from '../contract.ts';

/** Where the container-credentials endpoint answers on the metadata listener. */
export const CONTAINER_CREDENTIALS_PATH = '/v1/credentials';

/** The token file's name inside server.stateDir. */
export const AWS_CONTAINER_TOKEN_FILE = 'aws-container-token';

export function awsTokenFilePath(config: SidecarConfig): string {
  return posix.join(config.server.stateDir, AWS_CONTAINER_TOKEN_FILE);
}

/** Where a container's own role (aws.containers) answers: CONTAINER_CREDENTIALS_PATH/<container>. */
export function containerCredentialsPath(container: string): string {
  return `${CONTAINER_CREDENTIALS_PATH}/${container}`;
}

/** Where the sidecar writes a container's own token: its tokenFile (relative under server.stateDir), default containers/<name>/aws-container-token. */
export function awsContainerTokenFilePath(config: SidecarConfig, container: string): string {
  const file =
    config.aws?.containers[container]?.tokenFile ?? posix.join('containers', container, AWS_CONTAINER_TOKEN_FILE);
  return posix.isAbsolute(file) ? file : posix.join(config.server.stateDir, file);
}

/** The container's own role, when aws.containers names it. */
export function ownAwsRole(config: SidecarConfig, container: string | undefined): string | undefined {
  if (container === undefined || !config.aws || !Object.hasOwn(config.aws.containers, container)) return undefined;
  return config.aws.containers[container]?.roleArn;
}

/** The AWS shared config file's name inside server.stateDir: a profile per extra role. */
export const AWS_SHARED_CONFIG_FILE = 'aws-config';

export function awsSharedConfigPath(config: SidecarConfig): string {
  return posix.join(config.server.stateDir, AWS_SHARED_CONFIG_FILE);
}

/**
 * The shared config file (AWS_CONFIG_FILE) naming one profile per aws.extraRoles entry, each assuming its
 * role with the pod's own credentials from this sidecar (`credential_source`: the container endpoint, or
 * IMDS when that is the only surface), as botocore and the JS SDK chain them (docs/aws.md "Role chaining").
 * Undefined when there are no extra roles. No secrets: the file names roles only.
 */
export function awsSharedConfig(
  config: SidecarConfig,
  /** The chained session's name per profile (role_session_name), once the pod's identity is known. */
  sessionName?: (profile: string) => string,
): string | undefined {
  const aws = config.aws;
  if (!aws || aws.extraRoles.length === 0) return undefined;
  const source = aws.containerCredentials ? 'EcsContainer' : 'Ec2InstanceMetadata';
  const header =
    "# Written by spiffe-connector from aws.extraRoles: AWS_PROFILE=<name> assumes that role with the pod's own.\n";
  return (
    header +
    aws.extraRoles
      .map(
        (r) =>
          `\n[profile ${r.name}]\nrole_arn = ${r.roleArn}\ncredential_source = ${source}\nduration_seconds = ${r.sessionDurationSeconds}\nregion = ${aws.region}\n${sessionName ? `role_session_name = ${sessionName(r.name)}\n` : ''}`,
      )
      .join('')
  );
}

/**
 * The lines for one app container: a container with its own role (aws.containers) gets its own path and
 * token file, never the pod's token, literal token or extra-role profiles (those chain from the pod's role);
 * any other container (or none named) the pod's.
 */
export function awsEnv(config: SidecarConfig, metadataOrigin: string, container?: string): EnvLines {
  const aws = config.aws;
  if (!aws) return [];
  const origin = metadataOrigin.replace(/\/+$/, '');
  const lines: EnvLines = [];
  if (container !== undefined && ownAwsRole(config, container) !== undefined) {
    lines.push(
      ['AWS_CONTAINER_CREDENTIALS_FULL_URI', `${origin}${containerCredentialsPath(container)}`],
      ['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE', awsContainerTokenFilePath(config, container)],
    );
    if (aws.imds) lines.push(['AWS_EC2_METADATA_SERVICE_ENDPOINT', origin]);
    lines.push(['AWS_REGION', aws.region], ['AWS_DEFAULT_REGION', aws.region]);
    return lines;
  }
  const linkLocal = config.server.linkLocal;
  if (aws.containerCredentials) {
    // Every SDK takes RELATIVE_URI over FULL_URI (fromHttp, botocore, Go, Java): with it, FULL_URI would go unread.
    if (linkLocal && aws.containerRelativeUri !== undefined)
      lines.push(['AWS_CONTAINER_CREDENTIALS_RELATIVE_URI', aws.containerRelativeUri]);
    else
      lines.push(
        ['AWS_CONTAINER_CREDENTIALS_FULL_URI', `${origin}${CONTAINER_CREDENTIALS_PATH}`],
        ['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE', awsTokenFilePath(config)],
      );
    if (aws.containerAuthorizationToken !== undefined)
      lines.push(['AWS_CONTAINER_AUTHORIZATION_TOKEN', aws.containerAuthorizationToken]);
  }
  if (aws.imds) lines.push(['AWS_EC2_METADATA_SERVICE_ENDPOINT', linkLocal ? `http://${METADATA_IP}` : origin]);
  lines.push(['AWS_REGION', aws.region], ['AWS_DEFAULT_REGION', aws.region]);
  if (aws.extraRoles.length > 0) lines.push(['AWS_CONFIG_FILE', awsSharedConfigPath(config)]);
  return lines;
}

export function describeAws(config: SidecarConfig, metadataOrigin: string): string[] {
  const aws = config.aws;
  if (!aws) return [];
  const origin = metadataOrigin.replace(/\/+$/, '');
  const sts = aws.stsEndpoint ?? `https://sts.${aws.region}.amazonaws.com`;
  const ra = aws.rolesAnywhere;
  const exchange = ra
    ? `AWS: assume ${aws.roleArn} with the X.509-SVID through IAM Roles Anywhere (CreateSession at ${rolesAnywhereEndpoint(ra)}, region ${rolesAnywhereRegion(ra)}, trust anchor ${ra.trustAnchorArn}, profile ${ra.profileArn}, ${aws.sessionDurationSeconds} s sessions: the profile's duration must allow that)`
    : `AWS: assume ${aws.roleArn} with a JWT-SVID for audience "${aws.audience}" (AssumeRoleWithWebIdentity at ${sts}, ${aws.sessionDurationSeconds} s sessions, region ${aws.region})`;
  const linkLocal = config.server.linkLocal;
  const relative = linkLocal && aws.containerRelativeUri !== undefined;
  return [
    exchange,
    aws.containerCredentials && relative
      ? `AWS container credentials: http://${CONTAINER_CREDENTIALS_IP} at the per-pod path in AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (aws.containerRelativeUri: the path is the secret, since SDKs send no token there; readable by whoever can read the pod spec or the config); also ${origin}${CONTAINER_CREDENTIALS_PATH} with the token`
      : aws.containerCredentials
        ? `AWS container credentials: ${origin}${CONTAINER_CREDENTIALS_PATH} (Authorization token in ${awsTokenFilePath(config)}${
            aws.containerAuthorizationToken === undefined
              ? ')'
              : ', and in AWS_CONTAINER_AUTHORIZATION_TOKEN for SDKs that predate the token file: aws.containerAuthorizationToken, readable by whoever can read the pod spec or the config)'
          }`
        : 'AWS container credentials: off (aws.containerCredentials: false)',
    aws.imds
      ? `AWS IMDSv2: ${linkLocal ? `http://${METADATA_IP}/latest/ and ` : ''}${origin}/latest/ (role ${aws.roleArn.slice(aws.roleArn.lastIndexOf('/') + 1)}; any process in the pod can read it, prefer the container endpoint)`
      : 'AWS IMDSv2: off (aws.imds: false)',
    ...(linkLocal && aws.containerCredentials && !relative
      ? [
          `AWS container credentials at http://${CONTAINER_CREDENTIALS_IP}: not served (set aws.containerRelativeUri for clients that know only AWS_CONTAINER_CREDENTIALS_RELATIVE_URI; the webhook sets one per pod)`,
        ]
      : []),
    ...Object.entries(aws.containers).map(
      ([name, c]) =>
        `AWS container ${name}: assume ${c.roleArn} with the same ${ra ? 'X.509-SVID (Roles Anywhere CreateSession; the profile must list it)' : `JWT-SVID (session name ${name}@...)`}, served on ${origin}${containerCredentialsPath(name)} with the token in ${awsContainerTokenFilePath(config, name)}; its trust policy names the same SPIFFE ID as ${aws.roleArn}'s`,
    ),
    ...aws.extraRoles.map(
      (r) =>
        `AWS profile ${r.name} (AWS_PROFILE=${r.name}, in ${awsSharedConfigPath(config)}): assumes ${r.roleArn} with ${aws.roleArn}'s credentials (${r.sessionDurationSeconds} s sessions); its trust policy must name ${aws.roleArn}`,
    ),
  ];
}

/**
 * What IAM Roles Anywhere would refuse about this X.509-SVID, known without calling it: an empty subject
 * (AWS documents such certificates as unsupported; csi-driver-spiffe issues them so) and key types other
 * than RSA and EC. Empty when Roles Anywhere is not configured.
 */
export function rolesAnywhereProblems(
  config: SidecarConfig,
  leaf: X509Certificate,
  keyType: string | undefined,
): string[] {
  if (!config.aws?.rolesAnywhere) return [];
  const problems: string[] = [];
  // node:crypto gives undefined (not '') for an empty subject.
  if (!(leaf.subject as string | undefined)?.trim()) {
    problems.push(
      'the X.509-SVID has an empty subject (csi-driver-spiffe issues SVIDs so, with the SPIFFE ID only in the URI SAN). AWS documents that IAM Roles Anywhere does not support certificates with an empty subject, so CreateSession would be refused. Use AWS web identity (aws without rolesAnywhere, JWT-SVIDs from the issuer) or SVIDs with a subject (SPIRE sets one); see README.md "AWS with IAM Roles Anywhere"',
    );
  }
  if (keyType !== 'ec' && keyType !== 'rsa')
    problems.push(`the X.509-SVID has a ${keyType ?? 'unknown'} key; IAM Roles Anywhere accepts RSA and EC keys only`);
  return problems;
}

export const awsEnvironment: CloudEnvironment = {
  cloud: 'aws',
  env: awsEnv,
  describe: describeAws,
  audiences: (config) => (config.aws && !config.aws.rolesAnywhere ? [config.aws.audience] : []),
};
