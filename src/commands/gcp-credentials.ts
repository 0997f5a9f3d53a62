// Google credentials with no metadata server (VMs, CI): `gcp-credentials` prints an external-account
// credentials file whose executable source runs `gcp-subject-token`, which prints the host's JWT-SVID in
// the executable response format google-auth-library reads (docs/gcp.md "Executable-sourced credentials").
import { randomBytes } from 'node:crypto';
import { chmod, rename, rm, writeFile } from 'node:fs/promises';
import { buildIdentity } from '../app.ts';
import type { Clock } from '../base/clock.ts';
import { ConnectorError, toConnectorError } from '../base/errors.ts';
import { ConfigError } from '../config/common.ts';
import type { Environment } from '../config/load.ts';
import type { SidecarConfig } from '../config/schema.ts';
import { createLogger } from '../ops/logger.ts';
import { Metrics } from '../ops/metrics.ts';
import { googleSubjectProblem, providerAudience, stsTokenUrl, usesX509Path } from '../providers/gcp/env.ts';

export const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
/** What google-auth-library allows for an executable: 5 to 120 s. The subject-token command stops well before. */
export const EXECUTABLE_TIMEOUT_MS = 30_000;
const SUBJECT_TOKEN_DEADLINE_MS = 25_000;

export interface ExternalAccountFile {
  readonly type: 'external_account';
  readonly audience: string;
  readonly subject_token_type: string;
  readonly token_url: string;
  readonly service_account_impersonation_url?: string;
  readonly credential_source: {
    readonly executable: { readonly command: string; readonly timeout_millis: number; readonly output_file?: string };
  };
}

/**
 * The credentials file. `command` is the program and its arguments; the Google libraries split the
 * command at whitespace (Python without honouring quotes), so no part may contain any.
 */
export function externalAccountFile(
  config: SidecarConfig,
  command: readonly string[],
  outputFile?: string,
): ExternalAccountFile {
  const gcp = config.gcp;
  if (!gcp) throw new ConnectorError('config_invalid', 'the config has no gcp section');
  if (usesX509Path(config)) {
    throw new ConnectorError(
      'config_invalid',
      'executable-sourced credentials carry a JWT-SVID; this config has only an X.509-SVID (spiffe.x509), which Google takes over mTLS from the sidecar alone: configure spiffe.jwt or spiffe.workloadApi',
    );
  }
  for (const part of [...command, ...(outputFile === undefined ? [] : [outputFile])]) {
    if (part === '' || /[\s"']/.test(part))
      throw new ConnectorError(
        'usage',
        `${JSON.stringify(part)} contains whitespace or quotes, which the Google libraries split on: install or link it at a path without them (or pass --executable)`,
      );
  }
  return {
    type: 'external_account',
    audience: providerAudience(gcp),
    subject_token_type: JWT_TOKEN_TYPE,
    token_url: stsTokenUrl(gcp, false),
    ...(gcp.serviceAccount
      ? {
          service_account_impersonation_url: `${gcp.iamCredentialsEndpoint.replace(/\/+$/, '')}/v1/projects/-/serviceAccounts/${gcp.serviceAccount}:generateAccessToken`,
        }
      : {}),
    credential_source: {
      executable: {
        command: command.join(' '),
        timeout_millis: EXECUTABLE_TIMEOUT_MS,
        ...(outputFile === undefined ? {} : { output_file: outputFile }),
      },
    },
  };
}

/** The executable response (version 1), success or not. */
export type ExecutableResponse =
  | {
      readonly version: 1;
      readonly success: true;
      readonly token_type: string;
      readonly id_token: string;
      readonly expiration_time: number;
    }
  | { readonly version: 1; readonly success: false; readonly code: string; readonly message: string };

/**
 * The JWT-SVID for the provider's audience, from the configured source. The library names the audience
 * it will exchange for in GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE: a credentials file for another provider is refused.
 * With GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE, the response is also written there (mode 0600) for the library to reuse.
 */
export async function gcpSubjectToken(
  config: SidecarConfig,
  options: { readonly clock: Clock; readonly env: Environment },
): Promise<ExecutableResponse> {
  try {
    const response = await subjectToken(config, options);
    const outputFile = options.env['GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE'];
    if (outputFile) await writePrivate(outputFile, JSON.stringify(response));
    return response;
  } catch (thrown) {
    return failedResponse(thrown);
  }
}

/** An error as the executable response format words it: a code and a one-line message. */
export function failedResponse(thrown: unknown): ExecutableResponse {
  const e = toConnectorError(thrown);
  const message =
    e instanceof ConfigError
      ? `invalid configuration: ${e.message.split('\n')[0]}: ${e.problems.join('; ')}`
      : e.message.replace(/\s*\n\s*/g, ' ');
  return { version: 1, success: false, code: e.upstreamCode ?? e.code, message };
}

async function subjectToken(
  config: SidecarConfig,
  options: { readonly clock: Clock; readonly env: Environment },
): Promise<ExecutableResponse> {
  const gcp = config.gcp;
  if (!gcp) throw new ConnectorError('config_invalid', 'the config has no gcp section');
  const audience = providerAudience(gcp);
  const asked = options.env['GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE'];
  if (asked !== undefined && asked !== audience)
    throw new ConnectorError(
      'config_invalid',
      `the credentials file is for ${asked}, but this config's provider is ${audience}`,
    );
  if (options.env['GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE'] === '1')
    throw new ConnectorError('usage', 'interactive mode is not supported: the SVID needs no user');
  const deps = { clock: options.clock, logger: createLogger({ level: 'silent' }), metrics: new Metrics() };
  const identity = await buildIdentity(config, deps, { watch: false });
  try {
    for (const source of identity.all) await source.start?.();
    if (!identity.jwt)
      throw new ConnectorError(
        'config_invalid',
        'executable-sourced credentials need JWT-SVIDs: configure spiffe.jwt or spiffe.workloadApi',
      );
    const signal = AbortSignal.timeout(SUBJECT_TOKEN_DEADLINE_MS);
    const svid = await identity.jwt.fetchJwtSvid(audience, signal);
    const problem = googleSubjectProblem(config, svid.id.toString());
    if (problem) throw new ConnectorError('jwt_svid_invalid', problem);
    return {
      version: 1,
      success: true,
      token_type: JWT_TOKEN_TYPE,
      id_token: svid.token.reveal(),
      expiration_time: Math.floor(svid.expiresAt.getTime() / 1000),
    };
  } finally {
    for (const source of identity.all) await source.close().catch(() => {});
  }
}

/** Atomically, readable by the owner only: the file holds a bearer token. */
async function writePrivate(path: string, text: string): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(temp, text, { mode: 0o600, flag: 'wx' });
    await chmod(temp, 0o600);
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw new ConnectorError(
      'internal',
      `cannot write the output file ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      { cause: error },
    );
  }
}
