// The X.509-SVID from files in the csi-driver-spiffe layout (reference/spiffe.md §5): watch the
// directory (the `..data` symlink swap), debounce, poll as a fallback, verify before swapping in;
// a bad or half-written set is refused with a clear log line and the last good SVID stays.
import { readFile as fsReadFile } from 'node:fs/promises';
import { join } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Clock, TimerHandle } from '../clock.ts';
import { ConnectorError, toConnectorError } from '../errors.ts';
import type { Logger } from '../ops/logger.ts';
import type { Metrics } from '../ops/metrics.ts';
import { X509Bundle } from '../spiffe/bundle.ts';
import { TrustDomain } from '../spiffe/spiffe-id.ts';
import { parseX509Svid, verifyX509Svid, type X509Svid } from '../spiffe/x509-svid.ts';
import { Listeners, type Unsubscribe, type X509Source } from './source.ts';

export interface X509FilesOptions {
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly bundleFile: string;
  readonly trustDomain: string;
  readonly pollIntervalSeconds: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics?: Metrics | undefined;
  /** Injected for tests; defaults to fs.promises.readFile. */
  readonly readFile?: (path: string) => Promise<string>;
  /** Milliseconds to wait for a burst of file events to settle. Default 250. */
  readonly debounceMs?: number;
  /** Watch the directory (default true); polling alone otherwise. */
  readonly watch?: boolean;
}

export interface LoadedX509 {
  readonly svid: X509Svid;
  readonly bundle: X509Bundle;
}

/** Reads and verifies one set of files. Pure apart from the reads; throws ConnectorError. */
export async function loadX509Files(options: Pick<X509FilesOptions, 'dir' | 'certFile' | 'keyFile' | 'bundleFile' | 'trustDomain'>, now: Date, read: (path: string) => Promise<string> = (p) => fsReadFile(p, 'utf8')): Promise<LoadedX509> {
  const td = TrustDomain.parse(options.trustDomain);
  const readOne = async (name: string, what: string): Promise<string> => {
    try {
      return await read(join(options.dir, name));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new ConnectorError('svid_invalid', `cannot read the ${what} ${join(options.dir, name)}${code ? ` (${code})` : ''}`, { cause: error, retryable: true });
    }
  };
  const [certPem, keyPem, bundlePem] = await Promise.all([
    readOne(options.certFile, 'certificate file'),
    readOne(options.keyFile, 'private key file'),
    readOne(options.bundleFile, 'trust bundle file'),
  ]);
  const bundle = X509Bundle.parsePem(td, bundlePem);
  const svid = parseX509Svid(certPem, keyPem);
  if (!svid.id.memberOf(td)) {
    throw new ConnectorError('svid_invalid', `the X.509-SVID is for ${svid.id.toString()}, outside the configured trust domain ${td.name}`);
  }
  verifyX509Svid(svid.certificates, bundle, now);
  return { svid, bundle };
}

export class X509FilesSource implements X509Source {
  readonly #o: X509FilesOptions;
  readonly #listeners = new Listeners<[X509Svid]>();
  #current: LoadedX509 | undefined;
  #watcher: FSWatcher | undefined;
  #debounce: TimerHandle | undefined;
  #poll: TimerHandle | undefined;
  #loading: Promise<void> | undefined;
  #again = false;
  #lastRefusal: string | undefined;
  #readyWaiters: Array<() => void> = [];
  #closed = false;

  constructor(options: X509FilesOptions) {
    this.#o = options;
  }

  /** Loads once (refusals logged, not thrown), then watches and polls. */
  async start(): Promise<void> {
    await this.reload('start');
    if (this.#o.watch !== false) {
      this.#watcher = watch(this.#o.dir, { depth: 0, ignoreInitial: true, followSymlinks: false });
      this.#watcher.on('all', () => this.#scheduleReload());
      this.#watcher.on('error', (error) => this.#o.logger.warn({ err: (error as Error).message, dir: this.#o.dir }, 'watching the SVID directory failed; polling continues'));
    }
    this.#schedulePoll();
  }

  current(): X509Svid | undefined {
    const held = this.#current;
    if (!held || held.svid.notAfter.getTime() <= this.#o.clock.now()) return undefined;
    return held.svid;
  }

  bundle(): X509Bundle | undefined {
    return this.#current?.bundle;
  }

  subscribe(listener: (svid: X509Svid) => void): Unsubscribe {
    return this.#listeners.add(listener);
  }

  whenReady(): Promise<void> {
    if (this.#current || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#debounce) this.#o.clock.clearTimeout(this.#debounce);
    if (this.#poll) this.#o.clock.clearTimeout(this.#poll);
    await this.#watcher?.close();
    for (const w of this.#readyWaiters.splice(0)) w();
  }

  /** Reads the files now; one read at a time, a request during a read runs right after it. */
  reload(reason: string): Promise<void> {
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

  async #load(reason: string): Promise<void> {
    const { logger, metrics, clock } = this.#o;
    let loaded: LoadedX509;
    try {
      loaded = await loadX509Files(this.#o, new Date(clock.now()), this.#o.readFile);
    } catch (thrown) {
      const error = toConnectorError(thrown, 'svid_invalid');
      if (error.message !== this.#lastRefusal) {
        logger.warn({ reason, dir: this.#o.dir, code: error.code, keeping: this.#current ? this.#current.svid.id.toString() : null, err: error.message }, this.#current ? 'refused the new X.509-SVID files; keeping the last good SVID' : 'no usable X.509-SVID yet');
        metrics?.svidUpdates.inc({ kind: 'x509', outcome: 'refused' });
        this.#lastRefusal = error.message;
      }
      return;
    }
    this.#lastRefusal = undefined;
    const previous = this.#current;
    if (previous && sameSvid(previous, loaded)) return;
    this.#current = loaded;
    metrics?.svidUpdates.inc({ kind: 'x509', outcome: 'accepted' });
    metrics?.svidExpiry.set({ kind: 'x509' }, Math.round((loaded.svid.notAfter.getTime() - clock.now()) / 1000));
    logger.info({ reason, spiffeId: loaded.svid.id.toString(), notAfter: loaded.svid.notAfter.toISOString(), serial: loaded.svid.certificates[0]?.serialNumber }, previous ? 'X.509-SVID rotated' : 'X.509-SVID loaded');
    for (const w of this.#readyWaiters.splice(0)) w();
    this.#listeners.emit(loaded.svid);
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
    }, this.#o.pollIntervalSeconds * 1000);
  }
}

function sameSvid(a: LoadedX509, b: LoadedX509): boolean {
  const la = a.svid.certificates[0];
  const lb = b.svid.certificates[0];
  if (!la || !lb || la.fingerprint256 !== lb.fingerprint256) return false;
  if (a.bundle.authorities.length !== b.bundle.authorities.length) return false;
  return a.bundle.authorities.every((c, i) => c.fingerprint256 === b.bundle.authorities[i]?.fingerprint256);
}
