// The App Service X-IDENTITY-HEADER secret (docs/azure.md#app-service): azure.identityHeader when the webhook set
// one, else a random value created once in <stateDir>/azure-identity-header (0600), so `env` and `run` agree.
import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConnectorError } from '../../base/errors.ts';
import { Secret } from '../../base/secret.ts';

const USABLE = /^[A-Za-z0-9._~+/=-]{16,256}$/;

/** The file, in the state directory, holding the generated X-IDENTITY-HEADER secret. */
export const IDENTITY_HEADER_FILE = 'azure-identity-header';

/** The generated header's file: the pod's, or a container's own (azure.containers) beside it. */
export function identityHeaderFile(container?: string): string {
  return container === undefined ? IDENTITY_HEADER_FILE : `${IDENTITY_HEADER_FILE}.${container}`;
}

/**
 * The configured header, or the one in the state directory, creating it if absent. Synchronous because
 * `env` is. Creation is atomic (write a private temp file, hard-link it into place), so two processes
 * starting together end up with the same value.
 */
export function resolveIdentityHeader(configured: string | undefined, stateDir: string, container?: string): Secret {
  if (configured !== undefined) return new Secret(configured);
  const file = join(stateDir, identityHeaderFile(container));
  const existing = readIfPresent(file);
  if (existing !== undefined) return existing;
  try {
    mkdirSync(stateDir, { recursive: true });
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(tmp, randomBytes(32).toString('base64url'), { mode: 0o600, flag: 'wx' });
    try {
      linkSync(tmp, file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      unlinkSync(tmp);
    }
  } catch (error) {
    throw new ConnectorError(
      'config_invalid',
      `cannot create ${file} for the Azure identity header (${(error as NodeJS.ErrnoException).code ?? String(error)}); set azure.identityHeader or make server.stateDir writable`,
      { cause: error },
    );
  }
  const created = readIfPresent(file);
  if (created === undefined) throw new ConnectorError('internal', `${file} vanished right after it was created`);
  return created;
}

function readIfPresent(file: string): Secret | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConnectorError(
      'config_invalid',
      `cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? String(error)})`,
      { cause: error },
    );
  }
  const value = text.trim();
  if (!USABLE.test(value)) {
    throw new ConnectorError(
      'config_invalid',
      `${file} does not hold a usable identity header (16-256 header-safe characters); delete it to have a new one made`,
    );
  }
  return new Secret(value);
}
