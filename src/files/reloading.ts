// A value read from files that is reloaded when they change (Kubernetes Secret/ConfigMap mounts swap a
// `..data` symlink, so the parent directories are watched), polled as a fallback; a load that fails
// is refused with one log line and the last good value stays in use.
import type { Clock, TimerHandle } from '../base/clock.ts';
import { type ConnectorError, toConnectorError } from '../base/errors.ts';
import type { Logger } from '../ops/logger.ts';
import { type DirectoryWatch, watchDirectory } from './watch-dir.ts';

export interface ReloadingOptions<T> {
  /** What is loaded, for log lines: "signing keys", "trust bundle", "serving certificate". */
  readonly what: string;
  /** Directories to watch (a file's parent directory, or the keys directory itself). */
  readonly watchDirs: readonly string[];
  /** Reads and validates everything; throws ConnectorError to refuse. */
  readonly load: (previous: T | undefined) => Promise<T>;
  /** A short digest of a value: an unchanged digest means nothing to swap or log. */
  readonly fingerprint: (value: T) => string;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Fallback poll interval; default 30 s. */
  readonly pollMs?: number;
  /** Wait for a burst of file events to settle; default 250 ms. */
  readonly debounceMs?: number;
  /** Watch the directories (default true); polling alone otherwise. */
  readonly watch?: boolean;
  readonly onSwap?: (value: T, previous: T | undefined) => void;
  readonly onRefuse?: (error: ConnectorError) => void;
  /** Names a held value in log lines (e.g. its SPIFFE ID); never a secret. */
  readonly describe?: (value: T) => string;
}

export class Reloading<T> {
  readonly #o: ReloadingOptions<T>;
  #value: T | undefined;
  #digest: string | undefined;
  #lastRefusal: string | undefined;
  #loading: Promise<void> | undefined;
  #again = false;
  #watchers: DirectoryWatch[] = [];
  #debounce: TimerHandle | undefined;
  #poll: TimerHandle | undefined;
  #closed = false;

  constructor(options: ReloadingOptions<T>) {
    this.#o = options;
  }

  /** Loads once (throwing if that fails: nothing good to keep yet), then watches and polls. */
  async start(): Promise<T> {
    const value = await this.#o.load(undefined);
    this.#value = value;
    this.#digest = this.#o.fingerprint(value);
    this.#o.onSwap?.(value, undefined);
    await this.#watchAndPoll();
    return value;
  }

  /** Like start(), but a failed first load is logged like any refusal and the next change or poll tries again. */
  async startWithoutValue(): Promise<void> {
    await this.#load('start');
    await this.#watchAndPoll();
  }

  async #watchAndPoll(): Promise<void> {
    if (this.#o.watch !== false) {
      for (const dir of new Set(this.#o.watchDirs)) {
        // Survives the directory being removed and created again (its parent is watched too).
        const watcher = watchDirectory(dir, {
          depth: 1,
          onChange: () => this.#scheduleReload(),
          onError: (error) =>
            this.#o.logger.warn({ dir, err: error.message }, `watching the ${this.#o.what} failed; polling continues`),
        });
        this.#watchers.push(watcher);
      }
      await Promise.all(this.#watchers.map((w) => w.ready));
    }
    this.#schedulePoll();
  }

  /** The last good value. Only undefined before start() succeeded. */
  current(): T | undefined {
    return this.#value;
  }

  /** The message of the last refused load, while the files stay bad. */
  lastRefusal(): string | undefined {
    return this.#lastRefusal;
  }

  /** Reads again now; one read at a time, a request during a read runs right after it. */
  reload(reason: string): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#loading) {
      this.#again = true;
      return this.#loading;
    }
    this.#loading = this.#load(reason).finally(() => {
      this.#loading = undefined;
      if (this.#again && !this.#closed) {
        this.#again = false;
        void this.reload('changed during a read');
      }
    });
    return this.#loading;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#debounce) this.#o.clock.clearTimeout(this.#debounce);
    if (this.#poll) this.#o.clock.clearTimeout(this.#poll);
    await Promise.all(this.#watchers.map((w) => w.close()));
    this.#watchers = [];
  }

  async #load(reason: string): Promise<void> {
    const { logger, what } = this.#o;
    let value: T;
    try {
      value = await this.#o.load(this.#value);
    } catch (thrown) {
      const error = toConnectorError(thrown, 'config_invalid');
      if (error.message !== this.#lastRefusal) {
        const held = this.#value;
        if (held === undefined) logger.warn({ reason, code: error.code, err: error.message }, `no usable ${what} yet`);
        else
          logger.error(
            { reason, code: error.code, keeping: this.#o.describe?.(held), err: error.message },
            `refused the new ${what}; keeping the last good ones`,
          );
        this.#lastRefusal = error.message;
        this.#o.onRefuse?.(error);
      }
      return;
    }
    if (this.#lastRefusal !== undefined) logger.info({ reason }, `the ${what} are readable again`);
    this.#lastRefusal = undefined;
    const digest = this.#o.fingerprint(value);
    if (digest === this.#digest) return;
    const previous = this.#value;
    this.#value = value;
    this.#digest = digest;
    this.#o.onSwap?.(value, previous);
  }

  #scheduleReload(): void {
    if (this.#closed) return;
    if (this.#debounce) this.#o.clock.clearTimeout(this.#debounce);
    this.#debounce = this.#o.clock.setTimeout(() => {
      this.#debounce = undefined;
      void this.reload('files changed');
    }, this.#o.debounceMs ?? 250);
  }

  #schedulePoll(): void {
    if (this.#closed) return;
    this.#poll = this.#o.clock.setTimeout(() => {
      void this.reload('poll').finally(() => this.#schedulePoll());
    }, this.#o.pollMs ?? 30_000);
  }
}
