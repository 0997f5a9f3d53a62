// Watches a directory so that it survives the directory itself being removed and created again (a
// volume re-mounted, an SVID directory rebuilt by its writer): the parent is watched for the
// directory's own entry, and the watcher inside is re-armed when the directory comes back.
import { watch as watchFs } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { type FSWatcher, watch } from 'chokidar';

export interface DirectoryWatchOptions {
  /** How deep below the directory events count (0: its entries only). */
  readonly depth: number;
  /** Something in (or of) the directory changed. Called often during a burst; debounce it. */
  readonly onChange: () => void;
  readonly onError: (error: Error) => void;
}

export interface DirectoryWatch {
  /** Resolves once the first scan is done and changes are being seen. */
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

export function watchDirectory(dir: string, options: DirectoryWatchOptions): DirectoryWatch {
  const target = resolve(dir);
  const parent = dirname(target);
  let closed = false;
  let inner: FSWatcher | undefined;
  let arming: Promise<void> = Promise.resolve();

  const armInner = (): Promise<void> => {
    const previous = inner;
    const next = watch(target, { depth: options.depth, ignoreInitial: true, followSymlinks: false });
    inner = next;
    next.on('all', () => options.onChange());
    next.on('error', (error) => options.onError(error as Error));
    const ready = new Promise<void>((done) => next.once('ready', () => done()));
    return Promise.all([previous?.close(), ready]).then(() => undefined);
  };

  // The parent, only for the directory's own entry (its removal and its return), with node's own fs.watch:
  // it names the entry of each event, so a busy parent (/tmp, say) costs one comparison per event, where a
  // chokidar watcher would read the parent and stat every entry in it.
  const name = basename(target);
  const outer =
    parent === target
      ? undefined
      : watchFs(parent, (_event, filename) => {
          if (closed || (filename !== null && filename.toString() !== name)) return;
          options.onChange();
          void stat(target).then(
            () => {
              if (closed) return;
              arming = arming
                .then(() => (closed ? undefined : armInner()))
                .catch((error: unknown) => options.onError(error as Error));
            },
            () => undefined,
          );
        });
  outer?.on('error', (error) => options.onError(error));
  const outerReady = Promise.resolve();

  arming = armInner();
  return {
    ready: Promise.all([arming, outerReady]).then(() => undefined),
    close: async () => {
      closed = true;
      await arming.catch(() => undefined);
      outer?.close();
      await inner?.close();
    },
  };
}
