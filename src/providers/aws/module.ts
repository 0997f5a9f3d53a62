// The AWS cloud module: the container token file, one exchange (web identity at STS, or IAM Roles
// Anywhere with the X.509-SVID) wrapped by the credential cache, and the two surfaces (container
// credentials, IMDSv2 when aws.imds). The AWS SDK is loaded only here, for web identity.
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ConnectorError } from '../../base/errors.ts';
import { Secret } from '../../base/secret.ts';
import { CredentialCache, type Exchange, SINGLE } from '../../cache/credential-cache.ts';
import { AWS_POLICY } from '../../cache/refresh-policy.ts';
import { writeSecretFile } from '../../files/secret-file.ts';
import type { CloudModule, CloudProvider, ProviderContext, Surface } from '../contract.ts';
import type { AwsCredentials } from './credential.ts';
import { containerSurface, imdsSurface, relativeUriSurface } from './endpoints.ts';
import { AWS_CONTAINER_TOKEN_FILE, AWS_SHARED_CONFIG_FILE, awsContainerTokenFilePath, awsSharedConfig } from './env.ts';
import { roleSessionName, StsWebIdentityExchange } from './exchange.ts';

export interface AwsProviderOptions {
  /** Per-request timeout for STS, default 10 s. */
  readonly stsRequestTimeoutMs?: number;
}

export const awsModule: CloudModule = {
  cloud: 'aws',
  create: (context) => createAwsProvider(context),
};

export async function createAwsProvider(
  ctx: ProviderContext,
  options: AwsProviderOptions = {},
): Promise<CloudProvider> {
  const aws = ctx.config.aws;
  if (!aws) throw new ConnectorError('config_invalid', 'aws: the section is missing');
  const upstream = await createAwsUpstream(ctx, options);

  // A configured token (the literal AWS_CONTAINER_AUTHORIZATION_TOKEN) is also the file's: SDKs that read
  // both agree whichever they prefer (README.md "Compatibility").
  const authToken = new Secret(aws.containerAuthorizationToken ?? randomBytes(32).toString('base64url'));
  await writeSecretFile(join(ctx.stateDir, AWS_CONTAINER_TOKEN_FILE), authToken, 'AWS container token file');
  // Not a secret, but written the same way: atomically, and readable by the app through the pod's fsGroup.
  // Written again once the pod's SPIFFE ID is known, naming each chained session <profile>@<SPIFFE path>
  // (role_session_name: else the SDK names it aws-sdk-js-<time>, botocore-session-<time>).
  const writeSharedConfig = async (spiffeId?: string): Promise<void> => {
    const text = awsSharedConfig(
      ctx.config,
      spiffeId === undefined ? undefined : (profile) => roleSessionName(spiffeId, profile),
    );
    if (text !== undefined)
      await writeSecretFile(join(ctx.stateDir, AWS_SHARED_CONFIG_FILE), new Secret(text), 'AWS shared config file');
  };
  await writeSharedConfig();
  let namedFor: string | undefined;
  const exchange: typeof upstream.exchange = async (key, signal) => {
    const issued = await upstream.exchange(key, signal);
    if (key === SINGLE && aws.extraRoles.length > 0 && issued.spiffeId !== undefined && issued.spiffeId !== namedFor) {
      // The profiles without the names still work: a failed rewrite is tried again with the next credentials.
      await writeSharedConfig(issued.spiffeId).then(
        () => {
          namedFor = issued.spiffeId;
        },
        (error: unknown) =>
          ctx.logger.warn(
            { cloud: 'aws', err: (error as Error).message },
            'cannot name the chained sessions in the AWS shared config file',
          ),
      );
    }
    return issued;
  };

  // A container with a role of its own (aws.containers) gets a token of its own, in a file of its own.
  const containers: Array<{ name: string; authToken: Secret }> = [];
  for (const name of Object.keys(aws.containers)) {
    const token = new Secret(randomBytes(32).toString('base64url'));
    // Its own directory (mode 0750, group: the pod's fsGroup): the webhook mounts just that directory (a subPath) into it.
    await mkdir(dirname(awsContainerTokenFilePath(ctx.config, name)), { recursive: true, mode: 0o750 });
    await writeSecretFile(awsContainerTokenFilePath(ctx.config, name), token, `AWS container token file of ${name}`);
    containers.push({ name, authToken: token });
  }

  // One cache: the pod's role (SINGLE) and each container's own role (keyed by its name), all pinned.
  const credentials = new CredentialCache<AwsCredentials>({
    cloud: 'aws',
    name: upstream.name,
    exchange,
    audit: (c) => ({
      principal: c.assumedRoleArn,
      sessionName: c.sessionName,
      spiffeId: c.spiffeId,
      upstreamRequestId: c.requestId,
    }),
    expiresAt: (c) => c.expiration,
    pinned: [SINGLE, ...containers.map((c) => c.name)],
    policy: AWS_POLICY,
    clock: ctx.clock,
    logger: ctx.logger,
    metrics: ctx.metrics,
    timeoutMs: (options.stsRequestTimeoutMs ?? 10_000) + 5_000,
  });
  const surfaces: Surface[] = [];
  if (aws.containerCredentials) surfaces.push(containerSurface({ credentials, authToken, containers }));
  if (aws.containerCredentials && aws.containerRelativeUri !== undefined && ctx.config.server.linkLocal)
    surfaces.push(relativeUriSurface({ credentials, relativeUri: aws.containerRelativeUri }));
  if (aws.imds) surfaces.push(imdsSurface({ credentials, roleArn: aws.roleArn, region: aws.region, clock: ctx.clock }));

  let unsubscribe: (() => void) | undefined;
  return {
    cloud: 'aws',
    surfaces,
    start: async () => {
      unsubscribe = upstream.subscribe((reason) => void credentials.refreshAll(reason));
      credentials.start();
    },
    readiness: () => {
      for (const key of [SINGLE, ...containers.map((c) => c.name)]) {
        const lookup = credentials.peek(key);
        if (!lookup.ok)
          return {
            ready: false,
            reason: key === SINGLE ? lookup.error.message : `container ${key}: ${lookup.error.message}`,
          };
      }
      return { ready: true };
    },
    stop: async () => {
      unsubscribe?.();
      credentials.stop();
      upstream.close();
    },
  };
}

/** One AWS exchange: how to obtain credentials, and when the identity behind them changed. */
export interface AwsUpstream {
  readonly name: string;
  readonly exchange: Exchange<AwsCredentials>;
  subscribe(changed: (reason: string) => void): () => void;
  close(): void;
}

/** The configured exchange (Roles Anywhere when aws.rolesAnywhere, else web identity), uncached: the sidecar caches it, `credential-process` calls it once. */
export function createAwsUpstream(ctx: ProviderContext, options: AwsProviderOptions = {}): Promise<AwsUpstream> {
  return ctx.config.aws?.rolesAnywhere ? rolesAnywhereUpstream(ctx, options) : webIdentityUpstream(ctx, options);
}

async function webIdentityUpstream(ctx: ProviderContext, options: AwsProviderOptions): Promise<AwsUpstream> {
  const jwt = ctx.identity.jwt;
  if (!ctx.config.aws || !jwt)
    throw new ConnectorError(
      'config_invalid',
      'aws: AWS federation needs JWT-SVIDs: configure spiffe.jwt or spiffe.workloadApi',
    );
  // The package is CommonJS: its exports are the module's default under Node and in the esbuild bundle
  // alike (a bundled import() of a CommonJS module gives only the default).
  const sdk = (await import('@aws-sdk/client-sts')).default;
  const exchange = new StsWebIdentityExchange({
    sdk,
    config: ctx.config.aws,
    jwt,
    clock: ctx.clock,
    logger: ctx.logger,
    ...(options.stsRequestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.stsRequestTimeoutMs }),
  });
  return {
    name: 'web-identity',
    exchange: (key, signal) => exchange.exchange(key, signal),
    subscribe: (changed) =>
      ctx.identity.jwt?.subscribe(() => {
        exchange.identityChanged();
        changed('JWT-SVID changed');
      }) ?? (() => {}),
    close: () => exchange.close(),
  };
}

async function rolesAnywhereUpstream(ctx: ProviderContext, options: AwsProviderOptions): Promise<AwsUpstream> {
  const aws = ctx.config.aws;
  const x509 = ctx.identity.x509;
  if (!aws?.rolesAnywhere || !x509)
    throw new ConnectorError(
      'config_invalid',
      'aws.rolesAnywhere: IAM Roles Anywhere signs with the X.509-SVID: configure spiffe.x509 or spiffe.workloadApi',
    );
  // Loaded only when configured: it brings undici, which web identity never uses.
  const { createRolesAnywhereExchange } = await import('./roles-anywhere.ts');
  const rolesAnywhere = aws.rolesAnywhere;
  const exchangeFor = (roleArn: string) =>
    createRolesAnywhereExchange({
      config: { ...aws, roleArn, rolesAnywhere },
      x509,
      clock: ctx.clock,
      logger: ctx.logger,
      ...(options.stsRequestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.stsRequestTimeoutMs }),
    });
  // The pod's role, and each container's own (aws.containers) with the same X.509-SVID: the profile lists them all.
  const exchanges = new Map([[SINGLE, exchangeFor(aws.roleArn)]]);
  for (const [name, own] of Object.entries(aws.containers)) exchanges.set(name, exchangeFor(own.roleArn));
  // A rotated SVID signs a new session at once: the old certificate may be revoked or expire first.
  return {
    name: 'roles-anywhere',
    exchange: async (key, signal) => {
      const exchange = exchanges.get(key);
      if (exchange === undefined)
        throw new ConnectorError('request_invalid', 'no such container in aws.containers', { retryable: false });
      return exchange(signal);
    },
    subscribe: (changed) => x509.subscribe(() => changed('X.509-SVID rotated')),
    close: () => {},
  };
}
