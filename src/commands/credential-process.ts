// `spiffe-connector credential-process`: the AWS `credential_process` protocol, for hosts with no
// sidecar (VMs, CI). One exchange in this process, from the configured SVID files or Workload API, with
// no listener; stdout carries only the JSON the AWS SDKs and CLI read (docs/aws.md "credential_process").

import { buildIdentity } from '../app.ts';
import type { Clock } from '../base/clock.ts';
import { ConnectorError } from '../base/errors.ts';
import { SINGLE } from '../cache/credential-cache.ts';
import type { SidecarConfig } from '../config/schema.ts';
import { createLogger } from '../ops/logger.ts';
import { Metrics } from '../ops/metrics.ts';
import { type AwsCredentials, awsTimestamp } from '../providers/aws/credential.ts';
import type { ProviderContext } from '../providers/contract.ts';
import { loadX509Files } from '../sources/x509-files.ts';

/** What `credential_process` prints: the shape botocore and @aws-sdk/credential-provider-process read. */
export interface ProcessCredentials {
  readonly Version: 1;
  readonly AccessKeyId: string;
  readonly SecretAccessKey: string;
  readonly SessionToken: string;
  readonly Expiration: string;
}

export interface CredentialProcessOptions {
  readonly clock: Clock;
  /** A role of `aws.extraRoles` (by name), assumed with the base role's credentials. */
  readonly role?: string | undefined;
  /** Bound on the whole exchange, default 30 s. */
  readonly timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;

export async function credentialProcess(
  config: SidecarConfig,
  options: CredentialProcessOptions,
): Promise<ProcessCredentials> {
  const aws = config.aws;
  if (!aws) throw new ConnectorError('config_invalid', 'the config has no aws section');
  const extra = options.role === undefined ? undefined : aws.extraRoles.find((r) => r.name === options.role);
  if (options.role !== undefined && !extra) {
    const names = aws.extraRoles.map((r) => r.name);
    throw new ConnectorError(
      'usage',
      `no role ${JSON.stringify(options.role)} in aws.extraRoles${names.length === 0 ? ' (the config names none)' : ` (it names ${names.join(', ')})`}`,
    );
  }
  const signal = AbortSignal.timeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  // Silent: stderr is for the one line that says why, and the sources' logs are for a long-running sidecar.
  const deps = { clock: options.clock, logger: createLogger({ level: 'silent' }), metrics: new Metrics() };
  const identity = await buildIdentity(config, deps, { watch: false });
  let close = async (): Promise<void> => {};
  try {
    for (const source of identity.all) await source.start?.();
    if (aws.rolesAnywhere || config.spiffe.jwt?.exchange) await x509Ready(config, identity.x509, options.clock, signal);
    const context: ProviderContext = {
      config,
      identity,
      clock: options.clock,
      logger: deps.logger,
      metrics: deps.metrics,
      metadataPort: 0,
      stateDir: config.server.stateDir,
    };
    const { createAwsUpstream } = await import('../providers/aws/module.ts');
    const upstream = await createAwsUpstream(context);
    close = async () => upstream.close();
    const base = await withDeadline(upstream.exchange(SINGLE, signal), signal);
    if (!extra) return processCredentials(base);
    const { assumeExtraRole } = await import('../providers/aws/assume-role.ts');
    const sdk = (await import('@aws-sdk/client-sts')).default;
    const chained = await withDeadline(
      assumeExtraRole({ sdk, config: aws, base, role: extra, now: () => options.clock.now(), signal }),
      signal,
    );
    return processCredentials(chained);
  } finally {
    await close();
    for (const source of identity.all) await source.close().catch(() => {});
  }
}

export function processCredentials(c: AwsCredentials): ProcessCredentials {
  return {
    Version: 1,
    AccessKeyId: c.accessKeyId,
    SecretAccessKey: c.secretAccessKey.reveal(),
    SessionToken: c.sessionToken.reveal(),
    Expiration: awsTimestamp(c.expiration),
  };
}

/** The X.509-SVID, or why there is none: files are read once (they will not get better in a moment), the Workload API is waited for. */
async function x509Ready(
  config: SidecarConfig,
  x509: { current(): unknown; whenReady(): Promise<void> } | undefined,
  clock: Clock,
  signal: AbortSignal,
): Promise<void> {
  if (!x509)
    throw new ConnectorError(
      'config_invalid',
      'this exchange needs an X.509-SVID: configure spiffe.x509 or spiffe.workloadApi',
    );
  if (x509.current()) return;
  const files = config.spiffe.x509;
  if (files && !config.spiffe.workloadApi) {
    await loadX509Files({ ...files, trustDomain: config.spiffe.trustDomain }, new Date(clock.now()));
    if (x509.current()) return;
    throw new ConnectorError('identity_unavailable', `no valid X.509-SVID in ${files.dir}`);
  }
  await withDeadline(x509.whenReady(), signal);
  if (!x509.current()) throw new ConnectorError('identity_unavailable', 'the Workload API gave no valid X.509-SVID');
}

function withDeadline<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void =>
      reject(
        new ConnectorError(
          'timeout',
          'no credentials within the time allowed (the identity source or STS did not answer)',
        ),
      );
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
