// What an app container is told about Google (docs/gcp.md#environment) and what
// `check` says would be served. Pure: config and the metadata origin in, lines out.

import type { EnvLines } from '../../base/env-lines.ts';
import { GCE_METADATA_NAME, METADATA_IP } from '../../base/link-local.ts';
import type { GcpConfig } from '../../config/gcp.ts';
import type { SidecarConfig } from '../../config/schema.ts';
import type { CloudEnvironment } from '../contract.ts';

/** The audience of the JWT-SVID Google STS accepts for this provider (docs/gcp.md#oidc-requirements). */
export function providerAudience(gcp: GcpConfig): string {
  return `//iam.googleapis.com/${gcp.workloadIdentityProvider}`;
}

/** host:port of the metadata origin, no scheme: what GCE_METADATA_* take (docs/gcp.md#environment). */
export function metadataHostPort(metadataOrigin: string): string {
  return new URL(metadataOrigin).host;
}

/** The federated principal of a SPIFFE ID mapped as google.subject (docs/gcp.md#sts-token-exchange). */
export function federatedPrincipal(gcp: GcpConfig, subject: string): string {
  const pool = gcp.workloadIdentityProvider.replace(/\/providers\/[^/]+$/, '');
  return `principal://iam.googleapis.com/${pool}/subject/${subject}`;
}

/**
 * The account name served at service-accounts/default/email when no service account is
 * impersonated: the workload pool, as GKE's metadata server answers for an unannotated
 * Kubernetes service account (docs/gcp.md#gke-metadata-server). It must be a single path segment.
 */
export function federatedAccountName(gcp: GcpConfig): string {
  return `${gcp.projectId}.svc.id.goog`;
}

/**
 * The STS token URL: the mTLS host for the X.509 path when the endpoint is Google's default
 * (docs/gcp.md#x509-federation).
 */
export function stsTokenUrl(gcp: GcpConfig, mtls: boolean): string {
  const base = gcp.stsEndpoint.replace(/\/+$/, '');
  if (mtls && base === 'https://sts.googleapis.com') return 'https://sts.mtls.googleapis.com/v1/token';
  return `${base}/v1/token`;
}

export function gcpEnv(config: SidecarConfig, metadataOrigin: string): EnvLines {
  const gcp = config.gcp;
  if (!gcp) return [];
  // Link-local mode: the real server's address, which clients that read no variable use anyway.
  const hostPort = config.server.linkLocal ? METADATA_IP : metadataHostPort(metadataOrigin);
  return [
    ['GCE_METADATA_HOST', hostPort],
    ['GCE_METADATA_IP', hostPort],
    ['GCE_METADATA_ROOT', hostPort],
    ['GOOGLE_CLOUD_PROJECT', gcp.projectId],
  ];
}

/** Whether the X.509 path is used: no JWT-SVID source configured, an X.509-SVID is. */
export function usesX509Path(config: SidecarConfig): boolean {
  const s = config.spiffe;
  return s.jwt === undefined && s.workloadApi === undefined && s.x509 !== undefined;
}

export function describeGcp(config: SidecarConfig, metadataOrigin: string): string[] {
  const gcp = config.gcp;
  if (!gcp) return [];
  const x509 = usesX509Path(config);
  const at = config.server.linkLocal
    ? `http://${METADATA_IP}/computeMetadata/v1/ (and http://${GCE_METADATA_NAME}/, which the pod's hostAliases map there) and ${metadataOrigin}/computeMetadata/v1/`
    : `${metadataOrigin}/computeMetadata/v1/`;
  const lines = [
    `GCE metadata server emulated at ${at} for project ${gcp.projectId} (${gcp.projectNumber}), zone ${gcp.zone}`,
    x509
      ? `exchange: X.509-SVID over mTLS (subject_token_type mtls) at ${stsTokenUrl(gcp, true)}, provider ${gcp.workloadIdentityProvider}`
      : `exchange: JWT-SVID for audience ${providerAudience(gcp)} at ${stsTokenUrl(gcp, false)}`,
    gcp.serviceAccount
      ? `access and ID tokens: impersonating ${gcp.serviceAccount} through ${gcp.iamCredentialsEndpoint} (the federated principal needs roles/iam.workloadIdentityUser and roles/iam.serviceAccountOpenIdTokenCreator on it)`
      : `access tokens: the federated principal itself (${federatedPrincipal(gcp, '<SPIFFE ID>')}), served as account ${federatedAccountName(gcp)}; ID tokens need gcp.serviceAccount (identity answers 404)`,
    'the SPIFFE ID is mapped as google.subject, which Google limits to 127 bytes: checked before every exchange',
  ];
  if (gcp.caFile) lines.push(`extra CA trusted for the Google endpoints: ${gcp.caFile}`);
  return lines;
}

/** Google limits the mapped google.subject (the SPIFFE ID) to 127 bytes (docs/gcp.md#oidc-requirements). */
export const MAX_GOOGLE_SUBJECT_BYTES = 127;

/** Why Google STS would refuse this SPIFFE ID as google.subject, or undefined (for `check`). */
export function googleSubjectProblem(config: SidecarConfig, spiffeId: string): string | undefined {
  if (!config.gcp) return undefined;
  const bytes = Buffer.byteLength(spiffeId);
  if (bytes <= MAX_GOOGLE_SUBJECT_BYTES) return undefined;
  return `the SPIFFE ID ${spiffeId} is ${bytes} bytes; Google limits google.subject to ${MAX_GOOGLE_SUBJECT_BYTES} bytes, so STS would refuse it`;
}

export const gcpEnvironment: CloudEnvironment = {
  cloud: 'gcp',
  env: gcpEnv,
  describe: describeGcp,
  audiences: (config) => (config.gcp ? [providerAudience(config.gcp)] : []),
};
