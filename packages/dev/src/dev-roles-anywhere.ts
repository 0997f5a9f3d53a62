// The dev mode's IAM Roles Anywhere corner: the Roles Anywhere stand-in trusting the dev CA, and a second
// sidecar that signs CreateSession with an X.509-SVID of its own. That SVID carries a subject (as SPIRE's
// do), because Roles Anywhere does not take the empty-subject SVIDs csi-driver-spiffe issues (README.md
// "AWS with IAM Roles Anywhere"); it rotates with the main one.
import { join } from 'node:path';
import { type RunningApp, startApp } from '../../../src/app.ts';
import { systemClock } from '../../../src/base/clock.ts';
import { validate } from '../../../src/config/common.ts';
import { type SidecarConfig, sidecarSchema } from '../../../src/config/schema.ts';
import { appEnvironment } from '../../../src/env.ts';
import type { Logger } from '../../../src/ops/logger.ts';
import { Metrics } from '../../../src/ops/metrics.ts';
import { writeAtomicDir } from './atomic-dir.ts';
import type { DevCa } from './dev-ca.ts';
import { FakeRolesAnywhere } from './fake-roles-anywhere.ts';

export const DEV_RA_REGION = 'us-east-1';
export const DEV_RA_TRUST_ANCHOR = `arn:aws:rolesanywhere:${DEV_RA_REGION}:111122223333:trust-anchor/00000000-0000-4000-8000-0000000000a1`;
export const DEV_RA_PROFILE = `arn:aws:rolesanywhere:${DEV_RA_REGION}:111122223333:profile/00000000-0000-4000-8000-0000000000b1`;

export interface DevRolesAnywhere {
  readonly fake: FakeRolesAnywhere;
  readonly app: RunningApp;
  readonly config: SidecarConfig;
  readonly env: ReadonlyArray<readonly [string, string]>;
  readonly svidDir: string;
  /** Writes a new SVID (with a subject) for the Roles Anywhere sidecar. */
  rotate(): Promise<void>;
  close(): Promise<void>;
}

export async function startDevRolesAnywhere(o: {
  ca: DevCa;
  spiffeId: string;
  roleArn: string;
  base: string;
  ttlSeconds: number;
  logger: Logger;
}): Promise<DevRolesAnywhere> {
  const svidDir = join(o.base, 'spiffe-roles-anywhere');
  const rotate = async (): Promise<void> => {
    const now = Math.floor(Date.now() / 1000) * 1000;
    const svid = await o.ca.issueCertificate({
      subject: 'CN=app, O=spiffe-connector dev',
      uris: [o.spiffeId],
      basicConstraints: { ca: false },
      keyUsage: ['digitalSignature', 'keyEncipherment'],
      extKeyUsage: ['serverAuth', 'clientAuth'],
      notBefore: new Date(now),
      notAfter: new Date(now + o.ttlSeconds * 1000),
    });
    await writeAtomicDir(svidDir, [
      { name: 'tls.crt', content: svid.chainPem },
      { name: 'tls.key', content: svid.keyPem, mode: 0o600 },
      { name: 'ca.crt', content: o.ca.certPem },
    ]);
  };
  await rotate();
  const fake = await FakeRolesAnywhere.start({
    region: DEV_RA_REGION,
    trustAnchors: [{ arn: DEV_RA_TRUST_ANCHOR, caPem: o.ca.certPem }],
    profiles: [{ arn: DEV_RA_PROFILE, roleArns: [o.roleArn], durationSeconds: 3600 }],
    roles: [{ arn: o.roleArn, trustAnchorArns: [DEV_RA_TRUST_ANCHOR], sanUri: `spiffe://${o.ca.trustDomain}/*` }],
  });
  try {
    const config = validate(
      sidecarSchema,
      {
        spiffe: { trustDomain: o.ca.trustDomain, x509: { dir: svidDir } },
        server: {
          metadataAddress: '127.0.0.1:0',
          opsAddress: '127.0.0.1:0',
          stateDir: join(o.base, 'state-roles-anywhere'),
          drainSeconds: 0,
        },
        aws: {
          roleArn: o.roleArn,
          region: DEV_RA_REGION,
          rolesAnywhere: { trustAnchorArn: DEV_RA_TRUST_ANCHOR, profileArn: DEV_RA_PROFILE, endpoint: fake.url },
        },
      },
      'dev mode (Roles Anywhere)',
    );
    const app = await startApp(config, { clock: systemClock, logger: o.logger, metrics: new Metrics() });
    await app.whenReady();
    return {
      fake,
      app,
      config,
      env: appEnvironment(config, app.metadataOrigin),
      svidDir,
      rotate,
      close: async () => {
        await app.shutdown(0);
        await fake.close();
      },
    };
  } catch (error) {
    await fake.close();
    throw error;
  }
}
