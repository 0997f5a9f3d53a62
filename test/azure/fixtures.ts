// Test fixtures for the Azure provider: a JwtSource backed by DevOidcSigner, the Entra stand-in with a
// federated credential for that signer, and the provider mounted on an express app on 127.0.0.1:0.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { DevCa } from '@spiffe-connector/dev/dev-ca.ts';
import { FakeEntra } from '@spiffe-connector/dev/fake-entra.ts';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import type { Clock } from '../../src/base/clock.ts';
import { systemClock } from '../../src/base/clock.ts';
import { validate } from '../../src/config/common.ts';
import { type SidecarConfig, sidecarSchema } from '../../src/config/schema.ts';
import { cloudEnvironment } from '../../src/env.ts';
import { type MetadataListener, startMetadataListener } from '../../src/metadata/listener.ts';
import { type Logger, silentLogger } from '../../src/ops/logger.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { type AzureProviderOptions, createAzureProvider } from '../../src/providers/azure/module.ts';
import type { CloudProvider } from '../../src/providers/contract.ts';
import { signerJwtSource, type TestJwtSource } from '../helpers/identity.ts';

export const TENANT_ID = '72f988bf-86f1-41af-91ab-2d7cd011db47';
export const CLIENT_ID = '11111111-2222-3333-4444-555555555555';
export const OBJECT_ID = '99999999-8888-7777-6666-555555555555';
export const SPIFFE_ID = 'spiffe://example.org/ns/default/sa/app';

export interface AzureWorld {
  readonly signer: DevOidcSigner;
  /** JWT-SVIDs for SPIFFE_ID signed by `signer` (test/helpers/identity.ts). */
  readonly jwt: TestJwtSource;
  readonly entra: FakeEntra;
  readonly ca: DevCa;
  readonly dir: string;
  /** A file holding the dev CA (for azure.caFile and NODE_EXTRA_CA_CERTS). */
  readonly caFile: string;
}

/** The signer, the Entra stand-in with one application federated to SPIFFE_ID, and a temp state dir. */
export async function startWorld(
  t: TestContext,
  options: { tokenLifetimeSeconds?: number; federate?: boolean } = {},
): Promise<AzureWorld> {
  const signer = await DevOidcSigner.start();
  t.after(() => signer.close());
  const ca = await DevCa.create({ trustDomain: 'entra.test' });
  const entra = await FakeEntra.start({
    allowLoopbackHttpIssuers: true,
    tenantId: TENANT_ID,
    ca,
    applications: [
      {
        clientId: CLIENT_ID,
        objectId: OBJECT_ID,
        federatedCredentials: options.federate === false ? [] : [{ issuer: signer.issuer, subject: SPIFFE_ID }],
      },
    ],
    ...(options.tokenLifetimeSeconds === undefined ? {} : { tokenLifetimeSeconds: options.tokenLifetimeSeconds }),
  });
  t.after(() => entra.close());
  const dir = await mkdtemp(join(tmpdir(), 'sc-azure-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const caFile = join(dir, 'entra-ca.pem');
  await writeFile(caFile, entra.caPem);
  return { signer, jwt: signerJwtSource({ signer, spiffeId: SPIFFE_ID }), entra, ca, dir, caFile };
}

export function azureConfig(world: AzureWorld, azure: Record<string, unknown> = {}): SidecarConfig {
  return validate(
    sidecarSchema,
    {
      spiffe: { trustDomain: 'example.org', jwt: { file: 'jwt-svid' } },
      server: { metadataAddress: '127.0.0.1:8181', opsAddress: '127.0.0.1:0', stateDir: world.dir, drainSeconds: 0 },
      azure: {
        tenantId: TENANT_ID,
        clientId: CLIENT_ID,
        authorityHost: world.entra.authorityHost,
        caFile: world.caFile,
        warmResources: [],
        ...azure,
      },
    },
    'test config',
  );
}

export interface RunningAzure {
  readonly provider: CloudProvider;
  readonly origin: string;
  readonly port: number;
  readonly metrics: Metrics;
  readonly config: SidecarConfig;
  /** The env lines `spiffe-connector env` would print, as an object. */
  readonly env: Record<string, string>;
  /** drain() it to see the surfaces answer that they are shutting down. */
  readonly listener: MetadataListener;
}

/** Creates the Azure provider on a fresh metadata listener (the shared one, behind the request pipeline) and starts it. */
export async function runAzure(
  t: TestContext,
  world: AzureWorld,
  options: { azure?: Record<string, unknown>; clock?: Clock; logger?: Logger; provider?: AzureProviderOptions } = {},
): Promise<RunningAzure> {
  const metrics = new Metrics();
  const logger = options.logger ?? silentLogger();
  const listener = await startMetadataListener({ host: '127.0.0.1', port: 0, metrics, logger });
  t.after(() => listener.close(0));
  const config = azureConfig(world, options.azure);
  const provider = await createAzureProvider(
    {
      config,
      identity: { x509: undefined, jwt: world.jwt },
      clock: options.clock ?? systemClock,
      logger,
      metrics,
      metadataPort: listener.port,
      stateDir: world.dir,
    },
    options.provider,
  );
  listener.mount(provider.surfaces);
  await provider.start();
  t.after(() => provider.stop());
  const env = Object.fromEntries(cloudEnvironment('azure', config, listener.origin));
  return { provider, origin: listener.origin, port: listener.port, metrics, config, env, listener };
}

/**
 * Exchanges the provider's cache has finished, by outcome: counted once the token or the error is stored,
 * which is after the stand-in counted its answer (wait on this, not on the stand-in, before asking the sidecar).
 */
export async function exchangesSettled(
  run: RunningAzure,
  outcome: 'success' | 'retryable_error' | 'permanent_error',
): Promise<number> {
  const metric = await run.metrics.exchanges.get();
  return metric.values.find((v) => v.labels.cloud === 'azure' && v.labels.outcome === outcome)?.value ?? 0;
}
