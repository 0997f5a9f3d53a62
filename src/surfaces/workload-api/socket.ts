// The Unix socket the pod's Workload API listens on: a stale socket file removed, the socket born
// with its final mode (umask around the synchronous bind) and chmod-ed again after, so at no moment
// can a user outside the owner and group connect.
//
// Mode 0660 (owner and group read/write: connecting needs write permission; the execute bit means
// nothing on a socket, so this is "0770"). The app container usually runs as another uid: give the
// pod a securityContext.fsGroup. Kubelet makes the shared emptyDir setgid to that group, so the socket
// belongs to it and every container of the pod (which all carry the fsGroup) can connect; nobody else can.
import type { Stats } from 'node:fs';
import { chmod, lstat, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { ConnectorError } from '../../base/errors.ts';
import type { Logger } from '../../ops/logger.ts';

export const WORKLOAD_API_SOCKET_MODE = 0o660;

/** Listens on `path` with `mode`; every accepted connection goes to `onConnection`. Returns the socket's inode too. */
export async function listenUnixSocket(
  path: string,
  mode: number,
  logger: Logger,
  onConnection: (socket: Socket) => void,
): Promise<{ server: Server; inode: number }> {
  await removeStaleSocket(path, logger);
  const server = createServer();
  server.on('connection', onConnection);
  const listening = new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  // Node binds a pipe synchronously inside listen(), so this umask covers exactly that bind.
  const previous = process.umask(0o777 & ~mode);
  try {
    server.listen(path);
  } finally {
    process.umask(previous);
  }
  try {
    await listening;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConnectorError(
      'config_invalid',
      `cannot listen on the Workload API socket ${path}${code ? ` (${code})` : ''}; is ${dirname(path)} a writable directory?`,
      { cause: error },
    );
  }
  await chmod(path, mode);
  return { server, inode: (await lstat(path)).ino };
}

/** Removes a socket file no process listens on; refuses to touch anything that is not a socket. */
async function removeStaleSocket(path: string, logger: Logger): Promise<void> {
  let stats: Stats;
  try {
    stats = await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (!stats.isSocket()) {
    throw new ConnectorError(
      'config_invalid',
      `${path} exists and is not a socket; refusing to replace it with the Workload API socket`,
    );
  }
  if (await someoneListens(path)) {
    throw new ConnectorError(
      'config_invalid',
      `another process already serves ${path}; refusing to take its socket over`,
    );
  }
  await unlink(path);
  logger.info({ path }, 'removed a stale Workload API socket file');
}

function someoneListens(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(path);
    const done = (result: boolean): void => {
      socket.destroy();
      resolve(result);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.setTimeout(1_000, () => done(false));
  });
}

/** Unlinks `path` if it is still the socket this process created (same inode). */
export async function unlinkOwnSocket(path: string, inode: number | undefined): Promise<void> {
  try {
    const stats = await lstat(path);
    if (stats.isSocket() && (inode === undefined || stats.ino === inode)) await unlink(path);
  } catch {
    // Already gone.
  }
}
