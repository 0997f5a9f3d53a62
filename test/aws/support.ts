// Test wiring for the AWS provider: a JwtSource signing with DevOidcSigner (test/helpers/identity.ts), a
// fake STS trusting it, and the provider mounted on a loopback express app.
import { join } from 'node:path';
import { type FakeRole, FakeSts } from '@spiffe-connector/dev/fake-sts.ts';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { type Clock, systemClock } from '../../src/base/clock.ts';
import { validate } from '../../src/config/common.ts';
import { type SidecarConfig, sidecarSchema } from '../../src/config/schema.ts';
import { AWS_CONTAINER_TOKEN_FILE } from '../../src/providers/aws/env.ts';
import { createAwsProvider } from '../../src/providers/aws/module.ts';
import type { JwtSource } from '../../src/spiffe/source.ts';
import { signerJwtSource, type TestJwtSource } from '../helpers/identity.ts';

export { type RawResponse, raw } from '../helpers/http.ts';
export { until } from '../helpers/until.ts';

import type { Logger } from '../../src/ops/logger.ts';
import { type MountedProvider, mountProvider } from '../helpers/provider-harness.ts';

export const ROLE_ARN = 'arn:aws:iam::111122223333:role/app';
export const ACCOUNT = '111122223333';
export const AUDIENCE = 'sts.amazonaws.com';
export const SPIFFE_ID = 'spiffe://example.org/ns/default/sa/app';

/** JWT-SVIDs for SPIFFE_ID (or `sub`) signed by the dev signer at the clock's time (test/helpers/identity.ts). */
export function awsJwtSource(signer: DevOidcSigner, options: { sub?: string; clock?: Clock } = {}): TestJwtSource {
  const clock = options.clock ?? systemClock;
  return signerJwtSource({ signer, spiffeId: options.sub ?? SPIFFE_ID, now: () => clock.now() });
}

export function awsConfig(overrides: {
  stsEndpoint: string;
  stateDir: string;
  imds?: boolean;
  sessionDurationSeconds?: number;
  audience?: string;
  roleArn?: string;
  containerAuthorizationToken?: string;
}): SidecarConfig {
  return validate(
    sidecarSchema,
    {
      spiffe: { trustDomain: 'example.org', jwt: { file: '/unused/jwt-svid' } },
      server: { metadataAddress: '127.0.0.1:0', stateDir: overrides.stateDir },
      aws: {
        roleArn: overrides.roleArn ?? ROLE_ARN,
        region: 'eu-west-1',
        audience: overrides.audience ?? AUDIENCE,
        sessionDurationSeconds: overrides.sessionDurationSeconds ?? 3600,
        stsEndpoint: overrides.stsEndpoint,
        imds: overrides.imds ?? true,
        ...(overrides.containerAuthorizationToken === undefined
          ? {}
          : { containerAuthorizationToken: overrides.containerAuthorizationToken }),
      },
    },
    'test config',
  );
}

export interface StsWorld {
  readonly signer: DevOidcSigner;
  readonly fake: FakeSts;
  close(): Promise<void>;
}

/** A dev OIDC issuer and a fake STS that registers it and trusts it for ROLE_ARN. */
export async function startStsWorld(
  options: {
    clock?: Clock;
    role?: Partial<FakeRole>;
    providerAudiences?: string[];
    expirationFractionMs?: number;
  } = {},
): Promise<StsWorld> {
  const signer = await DevOidcSigner.start();
  const fake = await FakeSts.start({
    allowLoopbackHttpIssuers: true,
    region: 'eu-west-1',
    ...(options.expirationFractionMs ? { expirationFractionMs: options.expirationFractionMs } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
    providers: [{ issuer: signer.issuer, audiences: options.providerAudiences ?? [AUDIENCE] }],
    roles: [
      { arn: ROLE_ARN, issuer: signer.issuer, audience: AUDIENCE, maxSessionDurationSeconds: 43200, ...options.role },
    ],
  });
  return {
    signer,
    fake,
    close: async () => {
      await fake.close();
      await signer.close();
    },
  };
}

export interface Sidecar extends MountedProvider {
  readonly tokenFile: string;
}

/** The AWS provider behind a loopback express app, the way the composition root mounts it. */
export async function startSidecar(options: {
  stsEndpoint: string;
  jwt: JwtSource;
  clock?: Clock;
  imds?: boolean;
  sessionDurationSeconds?: number;
  stsRequestTimeoutMs?: number;
  containerAuthorizationToken?: string;
  logger?: Logger;
}): Promise<Sidecar> {
  const mounted = await mountProvider({
    logger: options.logger,
    config: (stateDir) =>
      awsConfig({
        stsEndpoint: options.stsEndpoint,
        stateDir,
        ...(options.imds === undefined ? {} : { imds: options.imds }),
        ...(options.sessionDurationSeconds ? { sessionDurationSeconds: options.sessionDurationSeconds } : {}),
        ...(options.containerAuthorizationToken === undefined
          ? {}
          : { containerAuthorizationToken: options.containerAuthorizationToken }),
      }),
    identity: { x509: undefined, jwt: options.jwt },
    clock: options.clock,
    create: (ctx) =>
      createAwsProvider(
        ctx,
        options.stsRequestTimeoutMs === undefined ? {} : { stsRequestTimeoutMs: options.stsRequestTimeoutMs },
      ),
  });
  return { ...mounted, tokenFile: join(mounted.stateDir, AWS_CONTAINER_TOKEN_FILE) };
}
