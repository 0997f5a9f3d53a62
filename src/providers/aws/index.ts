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
  /** Per-request timeout for STS, default 10 s. */
  readonly stsRequestTimeoutMs?: number;
}

export const awsModule: CloudModule = {
  cloud: 'aws',
  create: (context) => createAwsProvider(context),
};

export async function createAwsProvider(ctx: ProviderContext, options: AwsProviderOptions = {}): Promise<CloudProvider> {
  const aws = ctx.config.aws;
  if (!aws) throw new ConnectorError('config_invalid', 'aws: the section is missing');
  const jwt = ctx.identity.jwt;
  if (!jwt) throw new ConnectorError('config_invalid', 'aws: AWS federation needs JWT-SVIDs: configure spiffe.jwt or spiffe.workloadApi');

  const authToken = new Secret(randomBytes(32).toString('base64url'));
  await writeTokenFile(join(ctx.stateDir, AWS_CONTAINER_TOKEN_FILE), authToken);

  // The SDK is loaded only now, when AWS is configured.
  const [{ StsWebIdentityExchange }, { awsRouter }] = await Promise.all([import('./exchange.ts'), import('./endpoints.ts')]);
  const exchange = new StsWebIdentityExchange({
    config: aws,
    jwt,
    clock: ctx.clock,
    logger: ctx.logger,
    ...(options.stsRequestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.stsRequestTimeoutMs }),
  });
  const credential = new RefreshingCredential<AwsCredentials>({
    cloud: 'aws',
    name: 'web-identity',
    fetch: (signal) => exchange.exchange(signal),
    expiresAt: (c) => c.expiration,
    policy: AWS_POLICY,
    clock: ctx.clock,
    logger: ctx.logger,
    metrics: ctx.metrics,
    timeoutMs: (options.stsRequestTimeoutMs ?? 10_000) + 5_000,
  });
  const unsubscribe = jwt.subscribe(() => {
    exchange.identityChanged();
    void credential.refreshNow('JWT-SVID changed');
  });
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
      exchange.close();
    },
  };
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
