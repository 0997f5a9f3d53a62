// Writing a secret the app container reads from the shared state directory: atomically (a temp file in
// the same directory, then rename, so a reader never sees half a token), with no trailing newline (the
// AWS SDKs for JavaScript and Python reject one), mode 0640: the owner and the pod's fsGroup, nobody else.
import { randomBytes } from 'node:crypto';
import { chmod, rename, rm, writeFile } from 'node:fs/promises';
import { ConnectorError } from '../base/errors.ts';
import type { Secret } from '../base/secret.ts';

export const SECRET_FILE_MODE = 0o640;

export async function writeSecretFile(path: string, secret: Secret, what: string, signal?: AbortSignal): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(temp, secret.reveal(), { mode: SECRET_FILE_MODE, flag: 'wx', ...(signal ? { signal } : {}) });
    // The umask may have taken bits away from the mode given to open().
    await chmod(temp, SECRET_FILE_MODE);
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw new ConnectorError(
      'internal',
      `cannot write the ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      { cause: error },
    );
  }
}
