// Test wiring for IAM Roles Anywhere: a dev CA that is the trust anchor, X.509-SVIDs that carry a subject
// (as SPIRE's do; the stand-in refuses empty ones as AWS documents), the Roles Anywhere stand-in that
// trusts the CA, and the AWS provider in Roles Anywhere mode behind a loopback express app.

import { join } from 'node:path';
import { FakeRolesAnywhere, type FakeRolesAnywhereOptions } from '@spiffe-connector/dev/fake-roles-anywhere.ts';
import type { Clock } from '../../src/base/clock.ts';
import { validate } from '../../src/config/common.ts';
import { type SidecarConfig, sidecarSchema } from '../../src/config/schema.ts';
import { AWS_CONTAINER_TOKEN_FILE } from '../../src/providers/aws/env.ts';
import { createAwsProvider } from '../../src/providers/aws/module.ts';
import type { X509Source } from '../../src/spiffe/source.ts';
import { parseX509Svid, type X509Svid } from '../../src/spiffe/x509-svid.ts';
import { SettableX509Source } from '../helpers/identity.ts';
import type { DevCa, DevKeyType, IssuedCertificate } from '../helpers/pki.ts';
import { type MountedProvider, mountProvider } from '../helpers/provider-harness.ts';

export { raw } from '../helpers/http.ts';
export { until } from '../helpers/until.ts';

export const REGION = 'eu-west-1';
export const ACCOUNT = '111122223333';
export const ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/app`;
export const TRUST_ANCHOR_ARN = `arn:aws:rolesanywhere:${REGION}:${ACCOUNT}:trust-anchor/0f0e0d0c-0b0a-4909-8807-060504030201`;
export const PROFILE_ARN = `arn:aws:rolesanywhere:${REGION}:${ACCOUNT}:profile/01020304-0506-4708-8900-0a0b0c0d0e0f`;
export const TD = 'example.org';
export const SPIFFE_ID = `spiffe://${TD}/ns/default/sa/app`;

const HOUR = 3600_000;

export interface SvidOptions {
  readonly keyType?: DevKeyType;
  readonly subject?: string;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly spiffeId?: string;
}

/** An X.509-SVID profile (cA=false, digitalSignature, one URI SAN) with a subject unless told otherwise. */
export function issueSvid(ca: DevCa, o: SvidOptions = {}): Promise<IssuedCertificate> {
  const now = Date.now();
  return ca.issueCertificate({
    subject: o.subject ?? 'CN=app, O=example',
    uris: [o.spiffeId ?? SPIFFE_ID],
    basicConstraints: { ca: false },
    keyUsage: ['digitalSignature', 'keyEncipherment'],
    extKeyUsage: ['serverAuth', 'clientAuth'],
    notBefore: o.notBefore ?? new Date(now - 60_000),
    notAfter: o.notAfter ?? new Date(now + HOUR),
    ...(o.keyType ? { keyType: o.keyType } : {}),
  });
}

/** An X509Source over SVIDs minted by `ca`, rotating on demand. */
export class TestX509Source extends SettableX509Source {
  static async create(ca: DevCa, o: SvidOptions = {}): Promise<TestX509Source> {
    const issued = await issueSvid(ca, o);
    return new TestX509Source(ca, parseX509Svid(issued.chainPem, issued.keyPem));
  }

  async rotate(o: SvidOptions = {}): Promise<X509Svid> {
    const issued = await issueSvid(this.ca, o);
    return this.set(parseX509Svid(issued.chainPem, issued.keyPem));
  }
}

/** The stand-in trusting `ca` as TRUST_ANCHOR_ARN, with PROFILE_ARN listing ROLE_ARN (cap 3600 s). */
export function startFakeRolesAnywhere(
  ca: DevCa,
  over: Partial<FakeRolesAnywhereOptions> = {},
): Promise<FakeRolesAnywhere> {
  return FakeRolesAnywhere.start({
    region: REGION,
    trustAnchors: [{ arn: TRUST_ANCHOR_ARN, caPem: ca.certPem }],
    profiles: [{ arn: PROFILE_ARN, roleArns: [ROLE_ARN], durationSeconds: 3600 }],
    roles: [{ arn: ROLE_ARN, trustAnchorArns: [TRUST_ANCHOR_ARN], sanUri: `spiffe://${TD}/ns/default/*` }],
    ...over,
  });
}

export function rolesAnywhereConfig(o: {
  endpoint: string;
  stateDir: string;
  sessionDurationSeconds?: number;
  spiffe?: Record<string, unknown>;
}): SidecarConfig {
  return validate(
    sidecarSchema,
    {
      spiffe: o.spiffe ?? { trustDomain: TD, x509: { dir: '/unused' } },
      server: { metadataAddress: '127.0.0.1:0', stateDir: o.stateDir },
      aws: {
        roleArn: ROLE_ARN,
        region: REGION,
        sessionDurationSeconds: o.sessionDurationSeconds ?? 3600,
        rolesAnywhere: { trustAnchorArn: TRUST_ANCHOR_ARN, profileArn: PROFILE_ARN, endpoint: o.endpoint },
      },
    },
    'test config',
  );
}

export interface RaSidecar extends MountedProvider {
  readonly tokenFile: string;
}

/** The AWS provider in Roles Anywhere mode, mounted the way the composition root mounts it. */
export async function startRaSidecar(o: {
  endpoint: string;
  x509: X509Source;
  clock?: Clock;
  sessionDurationSeconds?: number;
  spiffe?: Record<string, unknown>;
  requestTimeoutMs?: number;
}): Promise<RaSidecar> {
  const mounted = await mountProvider({
    config: (stateDir) =>
      rolesAnywhereConfig({
        endpoint: o.endpoint,
        stateDir,
        ...(o.sessionDurationSeconds ? { sessionDurationSeconds: o.sessionDurationSeconds } : {}),
        ...(o.spiffe ? { spiffe: o.spiffe } : {}),
      }),
    identity: { x509: o.x509, jwt: undefined },
    clock: o.clock,
    create: (ctx) =>
      createAwsProvider(ctx, o.requestTimeoutMs === undefined ? {} : { stsRequestTimeoutMs: o.requestTimeoutMs }),
  });
  return { ...mounted, tokenFile: join(mounted.stateDir, AWS_CONTAINER_TOKEN_FILE) };
}
