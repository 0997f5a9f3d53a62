// Test wiring for the Google provider: the Google stand-ins trusting the dev OIDC signer and dev CA
// (identities from test/helpers/identity.ts), the provider mounted on a loopback express app, raw
// requests, and an unmodified app run as a child process.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DevCa } from '@spiffe-connector/dev/dev-ca.ts';
import { FakeGcp } from '@spiffe-connector/dev/fake-gcp.ts';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import type { Clock } from '../../src/base/clock.ts';
import { validate } from '../../src/config/common.ts';
import { type SidecarConfig, sidecarSchema } from '../../src/config/schema.ts';
import type { Logger } from '../../src/ops/logger.ts';
import { gcpEnv } from '../../src/providers/gcp/env.ts';
import { createGcpProvider, type GcpProviderOptions } from '../../src/providers/gcp/module.ts';
import type { JwtSource, X509Source } from '../../src/spiffe/source.ts';
import { type RawResponse, raw } from '../helpers/http.ts';
import { devX509Source, signerJwtSource, type TestJwtSource, type TestX509Source } from '../helpers/identity.ts';
import { type MountedProvider, mountProvider } from '../helpers/provider-harness.ts';

export type { RawResponse } from '../helpers/http.ts';
export { until } from '../helpers/until.ts';

export const PROJECT_ID = 'my-project';
export const PROJECT_NUMBER = '123456789012';
export const POOL = `projects/${PROJECT_NUMBER}/locations/global/workloadIdentityPools/spiffe-pool`;
export const PROVIDER = `${POOL}/providers/spiffe`;
export const AUDIENCE = `//iam.googleapis.com/${PROVIDER}`;
export const SERVICE_ACCOUNT = 'app@my-project.iam.gserviceaccount.com';
export const SPIFFE_ID = 'spiffe://example.org/ns/default/sa/app';
export const CLOUD_PLATFORM = 'https://www.googleapis.com/auth/cloud-platform';

/** JWT-SVIDs for SPIFFE_ID (or `spiffeId`) signed by the world's issuer at the clock's time. */
export function jwtSource(world: GoogleWorld, o: { spiffeId?: string; clock?: Clock } = {}): TestJwtSource {
  const clock = o.clock;
  return signerJwtSource({
    signer: world.signer,
    spiffeId: o.spiffeId ?? SPIFFE_ID,
    ...(clock ? { now: () => clock.now() } : {}),
  });
}

/**
 * X.509-SVIDs for SPIFFE_ID minted by the world's CA (one is current at once), at the clock's time:
 * the fake checks notBefore against that clock, which a ManualClock keeps behind the real time.
 */
export function x509Source(world: GoogleWorld, o: { clock?: Clock } = {}): Promise<TestX509Source> {
  const clock = o.clock;
  return devX509Source({
    ca: world.ca,
    spiffeId: SPIFFE_ID,
    ttlSeconds: 24 * 3600,
    ...(clock ? { now: () => clock.now() } : {}),
  });
}

export interface GoogleWorld {
  readonly signer: DevOidcSigner;
  readonly ca: DevCa;
  readonly fake: FakeGcp;
  /** A file with the DevCa root: gcp.caFile, so the sidecar trusts the fake's HTTPS certificate. */
  readonly caFile: string;
  readonly dir: string;
  close(): Promise<void>;
}

/** A dev OIDC issuer, a dev CA, and the Google stand-ins trusting both, with SERVICE_ACCOUNT impersonable by the pool. */
export async function startGoogleWorld(options: { clock?: Clock } = {}): Promise<GoogleWorld> {
  const signer = await DevOidcSigner.start();
  // The root is checked against the fake's clock too: minted at that clock's time.
  const ca = await DevCa.create({
    trustDomain: 'example.org',
    ...(options.clock ? { now: new Date(options.clock.now()) } : {}),
  });
  const serverCert = await ca.issueServerCert({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const fake = await FakeGcp.start({
    allowLoopbackHttpIssuers: true,
    ...(options.clock ? { clock: options.clock } : {}),
    tls: { certPem: serverCert.certPem, keyPem: serverCert.keyPem },
    providers: [{ name: PROVIDER, issuer: signer.issuer, trustAnchorsPem: ca.certPem }],
    serviceAccounts: [{ email: SERVICE_ACCOUNT, impersonators: [`principalSet://iam.googleapis.com/${POOL}/*`] }],
  });
  const dir = await mkdtemp(join(tmpdir(), 'spiffe-connector-gcp-'));
  const caFile = join(dir, 'ca.pem');
  await writeFile(caFile, ca.certPem);
  return {
    signer,
    ca,
    fake,
    caFile,
    dir,
    close: async () => {
      await fake.close();
      await signer.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function gcpConfig(o: {
  world: GoogleWorld;
  stateDir: string;
  x509: boolean;
  serviceAccount: boolean;
}): SidecarConfig {
  const endpoint = o.x509 ? (o.world.fake.httpsUrl as string) : o.world.fake.url;
  return validate(
    sidecarSchema,
    {
      spiffe: o.x509
        ? { trustDomain: 'example.org', x509: { dir: '/unused' } }
        : { trustDomain: 'example.org', jwt: { file: '/unused/jwt-svid' } },
      server: { metadataAddress: '127.0.0.1:0', stateDir: o.stateDir },
      gcp: {
        projectId: PROJECT_ID,
        projectNumber: PROJECT_NUMBER,
        workloadIdentityProvider: PROVIDER,
        ...(o.serviceAccount ? { serviceAccount: SERVICE_ACCOUNT } : {}),
        stsEndpoint: endpoint,
        iamCredentialsEndpoint: endpoint,
        caFile: o.world.caFile,
        zone: 'europe-west1-b',
      },
    },
    'test config',
  );
}

export interface Sidecar extends MountedProvider {
  /** The lines `spiffe-connector env` prints for Google. */
  readonly env: Record<string, string>;
}

/** The Google provider behind a loopback express app, the way the composition root mounts it. */
export async function startSidecar(o: {
  world: GoogleWorld;
  jwt?: JwtSource;
  x509?: X509Source;
  serviceAccount?: boolean;
  clock?: Clock;
  options?: GcpProviderOptions;
  logger?: Logger;
}): Promise<Sidecar> {
  const mounted = await mountProvider({
    logger: o.logger,
    config: (stateDir) =>
      gcpConfig({ world: o.world, stateDir, x509: o.jwt === undefined, serviceAccount: o.serviceAccount ?? true }),
    identity: { x509: o.x509, jwt: o.jwt },
    clock: o.clock,
    create: (ctx) => createGcpProvider(ctx, { hostname: 'app-7d4b9c-xyz', ...o.options }),
  });
  return { ...mounted, env: Object.fromEntries(gcpEnv(mounted.config, mounted.origin)) };
}

/**
 * Exchanges the provider's caches have finished, by outcome: counted once the token or the error is
 * stored, which is after the stand-in counted its answer (wait on this before asking the sidecar).
 */
export async function exchangesSettled(
  s: Sidecar,
  outcome: 'success' | 'retryable_error' | 'permanent_error',
): Promise<number> {
  const metric = await s.metrics.exchanges.get();
  return metric.values.find((v) => v.labels.cloud === 'gcp' && v.labels.outcome === outcome)?.value ?? 0;
}

export const FLAVOR = { 'Metadata-Flavor': 'Google' } as const;

/** A raw HTTP GET with `Metadata-Flavor: Google` unless other headers are given. */
export function get(
  port: number,
  path: string,
  headers: Record<string, string> = FLAVOR,
  method = 'GET',
): Promise<RawResponse> {
  return raw(port, method, path, headers);
}

export interface AdcResult {
  available?: boolean;
  projectId?: string;
  metadataProjectId?: string;
  numericProjectId?: number | string;
  accessToken?: string | null;
  email?: string | null;
  scopedToken?: string | null;
  idToken?: { authorization: string | null; viaProvider: string };
  errors: Record<string, string>;
}

/** Runs test/gcp/adc-client.ts in a child Node with only `env` (plus PATH and an empty HOME). */
export async function runAdcClient(
  env: Record<string, string>,
  args: { audience?: string; scopes?: readonly string[] } = {},
): Promise<AdcResult> {
  const home = await mkdtemp(join(tmpdir(), 'spiffe-connector-gcp-home-'));
  try {
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        process.execPath,
        [join(import.meta.dirname, 'adc-client.ts'), args.audience ?? '', (args.scopes ?? []).join(',')],
        { env: { PATH: dirname(process.execPath), HOME: home, CLOUDSDK_CONFIG: home, ...env }, timeout: 60_000 },
        (error, out, err) => (error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out)),
      );
    });
    return JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as AdcResult;
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}
