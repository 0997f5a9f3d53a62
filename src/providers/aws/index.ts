// The AWS cloud module: env lines and description (pure), and the running provider: the container token
// file, STS credentials kept fresh by the cache, and the emulated endpoints (reference/aws.md §7).
import { randomBytes } from 'node:crypto';
import { chmod, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AWS_POLICY } from '../../cache/refresh-policy.ts';
import { RefreshingCredential } from '../../cache/refreshing-credential.ts';
import { ConnectorError } from '../../base/errors.ts';
import { Secret } from '../../base/secret.ts';
import type { CloudModule, CloudProvider, ProviderContext } from '../contract.ts';
import type { AwsCredentials } from './credentials.ts';
import { AWS_CONTAINER_TOKEN_FILE } from './env.ts';

export interface AwsProviderOptions {
  /** Per-request timeout for STS (or Roles Anywhere), default 10 s. */
  readonly stsRequestTimeoutMs?: number;
}

export const awsModule: CloudModule = {
  cloud: 'aws',
  create: (context) => createAwsProvider(context),
};

export async function createAwsProvider(ctx: ProviderContext, options: AwsProviderOptions = {}): Promise<CloudProvider> {
  const aws = ctx.config.aws;
  if (!aws) throw new ConnectorError('config_invalid', 'aws: the section is missing');
  const upstream = aws.rolesAnywhere ? await rolesAnywhereUpstream(ctx, options) : await webIdentityUpstream(ctx, options);

  const authToken = new Secret(randomBytes(32).toString('base64url'));
  await writeTokenFile(join(ctx.stateDir, AWS_CONTAINER_TOKEN_FILE), authToken);

  const { awsRouter } = await import('./endpoints.ts');
  const credential = new RefreshingCredential<AwsCredentials>({
    cloud: 'aws',
    name: upstream.name,
    fetch: upstream.fetch,
    expiresAt: (c) => c.expiration,
    policy: AWS_POLICY,
    clock: ctx.clock,
    logger: ctx.logger,
    metrics: ctx.metrics,
    timeoutMs: (options.stsRequestTimeoutMs ?? 10_000) + 5_000,
  });
  const unsubscribe = upstream.subscribe((reason) => void credential.refreshNow(reason));
  const router = awsRouter({
    credentials: credential,
    authToken,
    roleArn: aws.roleArn,
    region: aws.region,
    imds: aws.imds,
    metadataPort: ctx.metadataPort,
    clock: ctx.clock,
    metrics: ctx.metrics,
  });

  return {
    cloud: 'aws',
    router,
    start: async () => credential.start(),
    readiness: () => {
      const lookup = credential.get();
      return lookup.ok ? { ready: true } : { ready: false, reason: lookup.error.message };
    },
    stop: async () => {
      unsubscribe();
      credential.stop();
      upstream.close();
    },
  };
}

/** One AWS exchange: how to fetch, and when the identity behind it changed. */
interface AwsUpstream {
  readonly name: string;
  readonly fetch: (signal: AbortSignal) => Promise<AwsCredentials>;
  subscribe(changed: (reason: string) => void): () => void;
  close(): void;
}

async function webIdentityUpstream(ctx: ProviderContext, options: AwsProviderOptions): Promise<AwsUpstream> {
  const jwt = ctx.identity.jwt;
  if (!ctx.config.aws || !jwt) throw new ConnectorError('config_invalid', 'aws: AWS federation needs JWT-SVIDs: configure spiffe.jwt or spiffe.workloadApi');
  // The SDK is loaded only now, when AWS web identity is configured.
  const { StsWebIdentityExchange } = await import('./exchange.ts');
  const exchange = new StsWebIdentityExchange({
    config: ctx.config.aws,
    jwt,
    clock: ctx.clock,
    logger: ctx.logger,
    ...(options.stsRequestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.stsRequestTimeoutMs }),
  });
  return {
    name: 'web-identity',
    fetch: (signal) => exchange.exchange(signal),
    subscribe: (changed) =>
      jwt.subscribe(() => {
        exchange.identityChanged();
        changed('JWT-SVID changed');
      }),
    close: () => exchange.close(),
  };
}

async function rolesAnywhereUpstream(ctx: ProviderContext, options: AwsProviderOptions): Promise<AwsUpstream> {
  const aws = ctx.config.aws;
  const x509 = ctx.identity.x509;
  if (!aws?.rolesAnywhere || !x509) throw new ConnectorError('config_invalid', 'aws.rolesAnywhere: IAM Roles Anywhere signs with the X.509-SVID: configure spiffe.x509 or spiffe.workloadApi');
  const { createRolesAnywhereExchange } = await import('./roles-anywhere.ts');
  const exchange = createRolesAnywhereExchange({
    config: { ...aws, rolesAnywhere: aws.rolesAnywhere },
    x509,
    clock: ctx.clock,
    logger: ctx.logger,
    ...(options.stsRequestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.stsRequestTimeoutMs }),
  });
  // A rotated SVID signs a new session at once: the old certificate may be revoked or expire first.
  return { name: 'roles-anywhere', fetch: exchange, subscribe: (changed) => x509.subscribe(() => changed('X.509-SVID rotated')), close: () => {} };
}

/** Writes the token atomically (temp file + rename), 0644, with no trailing newline (JS and botocore reject one). */
export async function writeTokenFile(path: string, token: Secret): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(temp, token.reveal(), { mode: 0o644, flag: 'wx' });
    await chmod(temp, 0o644);
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw new ConnectorError('internal', `cannot write the AWS container token file ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { cause: error });
  }
}
