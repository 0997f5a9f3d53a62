// `spiffe-connector dev` (`npm start`): everything on this machine's loopback — a dev trust domain
// whose X.509-SVID rotates like csi-driver-spiffe's, the issuer, stand-ins for AWS STS, Google STS/IAM
// and Entra, and the sidecar in front (plus a second sidecar on IAM Roles Anywhere, dev-roles-anywhere.ts)
// — then prints the exports and commands to try.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunningApp, startApp } from '../../../src/app.ts';
import { systemClock } from '../../../src/base/clock.ts';
import { validate } from '../../../src/config/common.ts';
import { type SidecarConfig, sidecarSchema } from '../../../src/config/schema.ts';
import { appEnvironment, shellQuote } from '../../../src/env.ts';
import { createLogger, type Logger } from '../../../src/ops/logger.ts';
import { Metrics } from '../../../src/ops/metrics.ts';
import { writeAtomicDir } from './atomic-dir.ts';
import { DevCa } from './dev-ca.ts';
import { type DevIssuer, startDevIssuer } from './dev-issuer.ts';
import { type DevRolesAnywhere, startDevRolesAnywhere } from './dev-roles-anywhere.ts';
import { ENTRA_FEDERATION_AUDIENCE, FakeEntra } from './fake-entra.ts';
import { FakeGcp } from './fake-gcp.ts';
import { FakeSts } from './fake-sts.ts';

export const DEV_TRUST_DOMAIN = 'spiffe-connector.dev';
export const DEV_SPIFFE_ID = `spiffe://${DEV_TRUST_DOMAIN}/ns/default/sa/app`;
export const DEV_AWS_ROLE = 'arn:aws:iam::111122223333:role/dev-app';
export const DEV_GCP_PROJECT = 'dev-project';
export const DEV_GCP_NUMBER = '123456789012';
export const DEV_GCP_PROVIDER = `projects/${DEV_GCP_NUMBER}/locations/global/workloadIdentityPools/dev-pool/providers/spiffe`;
export const DEV_GCP_SERVICE_ACCOUNT = `app@${DEV_GCP_PROJECT}.iam.gserviceaccount.com`;
export const DEV_AZURE_TENANT = '72f988bf-0000-4000-8000-000000000001';
export const DEV_AZURE_CLIENT = '11111111-2222-4333-8444-555555555555';

export interface DevOptions {
  /** Port of the loopback metadata listener; 0 picks one. */
  readonly metadataPort: number;
  /** How often the X.509-SVID rotates (it lives three times as long). */
  readonly rotateSeconds: number;
  readonly logger?: Logger;
  /** With the default logger: every info line (each exchange, each rotation) instead of warnings and errors only. */
  readonly verbose?: boolean;
  /** Where the banner goes; stdout by default. */
  readonly print?: (text: string) => void;
}

export interface RunningDev {
  readonly app: RunningApp;
  readonly config: SidecarConfig;
  readonly env: ReadonlyArray<readonly [string, string]>;
  readonly stsUrl: string;
  readonly gcpUrl: string;
  readonly entra: FakeEntra;
  readonly sts: FakeSts;
  readonly gcp: FakeGcp;
  readonly issuer: DevIssuer;
  /** AWS through IAM Roles Anywhere: a second sidecar with an SVID that has a subject. */
  readonly rolesAnywhere: DevRolesAnywhere;
  /** Rotates the dev X.509-SVID now (also happens every rotateSeconds). */
  rotate(): Promise<void>;
  close(): Promise<void>;
}

export async function runDev(options: DevOptions): Promise<RunningDev> {
  const logger = options.logger ?? createLogger({ level: options.verbose ? 'info' : 'warn' });
  const print = options.print ?? ((text: string) => process.stdout.write(text));
  const base = await mkdtemp(join(tmpdir(), 'spiffe-connector-dev-'));
  const cleanups: Array<() => Promise<void>> = [() => rm(base, { recursive: true, force: true })];
  const closeAll = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  };
  try {
    const ca = await DevCa.create({ trustDomain: DEV_TRUST_DOMAIN });
    const svidDir = join(base, 'spiffe.io');
    const rotate = async (): Promise<void> => {
      const svid = await ca.issueX509Svid({
        spiffeId: DEV_SPIFFE_ID,
        ttlSeconds: Math.max(60, options.rotateSeconds * 3),
      });
      await writeAtomicDir(svidDir, [
        { name: 'tls.crt', content: svid.certPem },
        { name: 'tls.key', content: svid.keyPem, mode: 0o600 },
        { name: 'ca.crt', content: ca.certPem },
      ]);
    };
    await rotate();
    let rotateRolesAnywhere = async (): Promise<void> => {};
    const rotation = setInterval(() => {
      Promise.all([rotate(), rotateRolesAnywhere()]).then(
        () => logger.info({ dir: svidDir }, 'dev trust domain rotated the X.509-SVID'),
        (error: unknown) => logger.error({ err: (error as Error).message }, 'dev SVID rotation failed'),
      );
    }, options.rotateSeconds * 1000);
    rotation.unref();
    cleanups.push(async () => clearInterval(rotation));

    const gcpAudience = `//iam.googleapis.com/${DEV_GCP_PROVIDER}`;
    const issuer = await startDevIssuer({
      ca,
      trustDomain: DEV_TRUST_DOMAIN,
      audiences: ['sts.amazonaws.com', gcpAudience, ENTRA_FEDERATION_AUDIENCE],
      logger: logger.child({ component: 'issuer' }),
    });
    cleanups.push(() => issuer.close());
    const caFile = join(base, 'dev-ca.crt');
    await writeFile(caFile, ca.certPem);

    // The dev issuer is http://127.0.0.1:<port>, which AWS, Google and Entra would refuse as an identity
    // provider: each stand-in takes it only because allowLoopbackHttpIssuers says so.
    const sts = await FakeSts.start({
      allowLoopbackHttpIssuers: true,
      providers: [{ issuer: issuer.issuerUrl, audiences: ['sts.amazonaws.com'] }],
      roles: [
        {
          arn: DEV_AWS_ROLE,
          issuer: issuer.issuerUrl,
          audience: 'sts.amazonaws.com',
          subject: `spiffe://${DEV_TRUST_DOMAIN}/*`,
          maxSessionDurationSeconds: 3600,
        },
      ],
    });
    cleanups.push(() => sts.close());
    const gcp = await FakeGcp.start({
      allowLoopbackHttpIssuers: true,
      providers: [{ name: DEV_GCP_PROVIDER, issuer: issuer.issuerUrl }],
      serviceAccounts: [
        {
          email: DEV_GCP_SERVICE_ACCOUNT,
          impersonators: [
            `principalSet://iam.googleapis.com/projects/${DEV_GCP_NUMBER}/locations/global/workloadIdentityPools/dev-pool/*`,
          ],
        },
      ],
    });
    cleanups.push(() => gcp.close());
    const entra = await FakeEntra.start({
      allowLoopbackHttpIssuers: true,
      tenantId: DEV_AZURE_TENANT,
      ca,
      applications: [
        {
          clientId: DEV_AZURE_CLIENT,
          federatedCredentials: [{ name: 'dev', issuer: issuer.issuerUrl, subject: DEV_SPIFFE_ID }],
        },
      ],
    });
    cleanups.push(() => entra.close());

    const config = validate(
      sidecarSchema,
      {
        spiffe: {
          trustDomain: DEV_TRUST_DOMAIN,
          x509: { dir: svidDir },
          jwt: { exchange: { url: issuer.tokenUrl, caFile } },
        },
        server: {
          metadataAddress: `127.0.0.1:${options.metadataPort}`,
          opsAddress: '127.0.0.1:0',
          stateDir: join(base, 'state'),
          drainSeconds: 0,
        },
        aws: { roleArn: DEV_AWS_ROLE, region: 'us-east-1', stsEndpoint: sts.url },
        gcp: {
          projectId: DEV_GCP_PROJECT,
          projectNumber: DEV_GCP_NUMBER,
          workloadIdentityProvider: DEV_GCP_PROVIDER,
          serviceAccount: DEV_GCP_SERVICE_ACCOUNT,
          stsEndpoint: gcp.url,
          iamCredentialsEndpoint: gcp.url,
        },
        azure: { tenantId: DEV_AZURE_TENANT, clientId: DEV_AZURE_CLIENT, authorityHost: entra.authorityHost, caFile },
      },
      'dev mode',
    );
    const app = await startApp(config, { clock: systemClock, logger, metrics: new Metrics({ defaultMetrics: true }) });
    cleanups.push(() => app.shutdown(0));
    await app.whenReady();
    const ttlSeconds = Math.max(60, options.rotateSeconds * 3);
    const rolesAnywhere = await startDevRolesAnywhere({
      ca,
      spiffeId: DEV_SPIFFE_ID,
      roleArn: DEV_AWS_ROLE,
      base,
      ttlSeconds,
      logger: logger.child({ sidecar: 'roles-anywhere' }),
    });
    cleanups.push(() => rolesAnywhere.close());
    const rotateBoth = async (): Promise<void> => {
      await rotate();
      await rolesAnywhere.rotate();
    };
    rotateRolesAnywhere = () => rolesAnywhere.rotate();
    const env = appEnvironment(config, app.metadataOrigin);
    print(
      banner({
        app,
        env,
        stsUrl: sts.url,
        gcpUrl: gcp.url,
        entraUrl: entra.authorityHost,
        issuer,
        svidDir,
        rotateSeconds: options.rotateSeconds,
        verbose: options.verbose === true,
        rolesAnywhere,
      }),
    );
    return {
      app,
      config,
      env,
      stsUrl: sts.url,
      gcpUrl: gcp.url,
      entra,
      sts,
      gcp,
      issuer,
      rolesAnywhere,
      rotate: rotateBoth,
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

/** What the banner's commands say when run without the exports (before any client starts). */
const NO_EXPORTS = 'paste the export lines above first';

function banner(o: {
  app: RunningApp;
  env: ReadonlyArray<readonly [string, string]>;
  stsUrl: string;
  gcpUrl: string;
  entraUrl: string;
  issuer: DevIssuer;
  svidDir: string;
  rotateSeconds: number;
  verbose: boolean;
  rolesAnywhere: DevRolesAnywhere;
}): string {
  const exports = o.env.map(([k, v]) => `export ${k}=${shellQuote(v)}`).join('\n');
  const origin = o.app.metadataOrigin;
  const ra = Object.fromEntries(o.rolesAnywhere.env);
  return `
spiffe-connector dev is ready: every cloud below is a local stand-in, nothing leaves this machine.

  identity        ${DEV_SPIFFE_ID}
                  X.509-SVID in ${o.svidDir}, rotated every ${o.rotateSeconds} s (..data swap)
  issuer          ${o.issuer.issuerUrl}/.well-known/openid-configuration  (token exchange ${o.issuer.tokenUrl})
  AWS STS         ${o.stsUrl}    role ${DEV_AWS_ROLE}
  Roles Anywhere  ${o.rolesAnywhere.fake.url}    a second sidecar at ${o.rolesAnywhere.app.metadataOrigin}, signing with the SVID in
                  ${o.rolesAnywhere.svidDir} (it has a subject: Roles Anywhere refuses csi-driver-spiffe's empty one)
  Google STS/IAM  ${o.gcpUrl}    service account ${DEV_GCP_SERVICE_ACCOUNT}
  Entra           ${o.entraUrl}    tenant ${DEV_AZURE_TENANT}, application ${DEV_AZURE_CLIENT}
  metadata        ${origin}
  ops             ${o.app.opsUrl}/readyz  ${o.app.opsUrl}/metrics

In another shell, paste these exports (what \`spiffe-connector env\` prints for this config):

${exports}

Then, in that shell, one command per cloud (those that need the exports stop at once, saying so, without them):

  # AWS: the CLI takes role credentials from the sidecar's container endpoint
  aws sts get-caller-identity --endpoint-url ${o.stsUrl} --region "\${AWS_REGION:?${NO_EXPORTS}}"

  # AWS through IAM Roles Anywhere: the second sidecar's container endpoint
  curl -sS --fail-with-body -H "Authorization: $(cat ${ra['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'] ?? ''})" ${ra['AWS_CONTAINER_CREDENTIALS_FULL_URI'] ?? ''}

  # Google: a fresh gcloud config, so that gcloud asks the metadata server instead of a logged-in account
  CLOUDSDK_CONFIG=$(mktemp -d) GCE_METADATA_HOST="\${GCE_METADATA_HOST:?${NO_EXPORTS}}" gcloud auth print-access-token

  # Azure: the App Service identity endpoint (-sS --fail-with-body: errors are printed, not hidden)
  curl -sS --fail-with-body -H "X-IDENTITY-HEADER: $IDENTITY_HEADER" "\${IDENTITY_ENDPOINT:?${NO_EXPORTS}}?resource=https://storage.azure.com&api-version=2019-08-01"

${o.verbose ? 'Logging every line (--verbose).' : 'Logging warnings and errors only; `npm start -- --verbose` logs every exchange.'} Ctrl-C stops everything.
`;
}
