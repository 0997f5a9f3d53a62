// The X.509-SVID from files in the csi-driver-spiffe layout (docs/spiffe.md#csi-driver-spiffe): watch the
// directory (the `..data` symlink swap), debounce, poll as a fallback, verify before swapping in;
// a bad or half-written set is refused with a clear log line and the last good SVID stays.
import { readFile as fsReadFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../base/clock.ts';
import { ConnectorError } from '../base/errors.ts';
import { type StatBig, stamper } from '../files/file-stamp.ts';
import { Reloading } from '../files/reloading.ts';
import type { Logger } from '../ops/logger.ts';
import type { Metrics } from '../ops/metrics.ts';
import { X509Bundle } from '../spiffe/bundle.ts';
import { Listeners, type Unsubscribe, type X509Source } from '../spiffe/source.ts';
import { TrustDomain } from '../spiffe/spiffe-id.ts';
import { parseX509Svid, verifyX509Svid, type X509Svid } from '../spiffe/x509-svid.ts';

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
  /** Injected for tests; defaults to fs.promises.stat, unless readFile is injected (then every poll reads). */
  readonly stat?: StatBig;
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
export async function loadX509Files(
  options: Pick<X509FilesOptions, 'dir' | 'certFile' | 'keyFile' | 'bundleFile' | 'trustDomain'>,
  now: Date,
  read: (path: string) => Promise<string> = (p) => fsReadFile(p, 'utf8'),
): Promise<LoadedX509> {
  const td = TrustDomain.parse(options.trustDomain);
  const readOne = async (name: string, what: string): Promise<string> => {
    try {
      return await read(join(options.dir, name));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new ConnectorError(
        'svid_invalid',
        `cannot read the ${what} ${join(options.dir, name)}${code ? ` (${code})` : ''}`,
        { cause: error, retryable: true },
      );
    }
  };
  // Read together, but report a missing file in a fixed order (certificate, key, bundle), not whichever failed first.
  const reads = await Promise.allSettled([
    readOne(options.certFile, 'certificate file'),
    readOne(options.keyFile, 'private key file'),
    readOne(options.bundleFile, 'trust bundle file'),
  ]);
  for (const r of reads) if (r.status === 'rejected') throw r.reason;
  const [certPem, keyPem, bundlePem] = reads.map((r) => (r as PromiseFulfilledResult<string>).value) as [
    string,
    string,
    string,
  ];
  const bundle = X509Bundle.parsePem(td, bundlePem);
  const svid = parseX509Svid(certPem, keyPem);
  if (!svid.id.memberOf(td)) {
    throw new ConnectorError(
      'svid_invalid',
      `the X.509-SVID is for ${svid.id.toString()}, outside the configured trust domain ${td.name}`,
    );
  }
  verifyX509Svid(svid.certificates, bundle, now);
  return { svid, bundle };
}

export class X509FilesSource implements X509Source {
  readonly #o: X509FilesOptions;
  readonly #listeners = new Listeners<[X509Svid]>();
  readonly #files: Reloading<LoadedX509>;
  /** The files' stamp when the held set was read (files/file-stamp.ts): unchanged, a poll reads nothing. */
  #stamp: string | undefined;
  #readyWaiters: Array<() => void> = [];
  #closed = false;

  constructor(options: X509FilesOptions) {
    this.#o = options;
    const { clock, logger, metrics } = options;
    const stampNow = stamper(
      [options.certFile, options.keyFile, options.bundleFile].map((name) => join(options.dir, name)),
      options,
    );
    this.#files = new Reloading<LoadedX509>({
      what: 'X.509-SVID files',
      watchDirs: [options.dir],
      load: async (previous) => {
        const stamp = await stampNow();
        if (stamp !== undefined && stamp === this.#stamp && previous && previous.svid.notAfter.getTime() > clock.now())
          return previous;
        this.#stamp = undefined;
        const loaded = await loadX509Files(options, new Date(clock.now()), options.readFile);
        this.#stamp = stamp;
        return loaded;
      },
      fingerprint: fingerprint,
      describe: (held) => held.svid.id.toString(),
      clock,
      logger,
      pollMs: options.pollIntervalSeconds * 1000,
      debounceMs: options.debounceMs ?? 250,
      watch: options.watch ?? true,
      onRefuse: () => metrics?.svidUpdates.inc({ kind: 'x509', outcome: 'refused' }),
      onSwap: (loaded, previous) => {
        metrics?.svidUpdates.inc({ kind: 'x509', outcome: 'accepted' });
        metrics?.svidExpiry.set({ kind: 'x509' }, Math.round(loaded.svid.notAfter.getTime() / 1000));
        logger.info(
          {
            spiffeId: loaded.svid.id.toString(),
            notAfter: loaded.svid.notAfter.toISOString(),
            serial: loaded.svid.certificates[0]?.serialNumber,
          },
          previous ? 'X.509-SVID rotated' : 'X.509-SVID loaded',
        );
        for (const w of this.#readyWaiters.splice(0)) w();
        this.#listeners.emit(loaded.svid);
      },
    });
  }

  /** Loads once (a refusal is logged, not thrown: the SVID may not be there yet), then watches and polls. */
  start(): Promise<void> {
    return this.#files.startWithoutValue();
  }

  current(): X509Svid | undefined {
    const held = this.#files.current();
    if (!held || held.svid.notAfter.getTime() <= this.#o.clock.now()) return undefined;
    return held.svid;
  }

  bundle(): X509Bundle | undefined {
    return this.#files.current()?.bundle;
  }

  subscribe(listener: (svid: X509Svid) => void): Unsubscribe {
    return this.#listeners.add(listener);
  }

  whenReady(): Promise<void> {
    if (this.#files.current() || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#files.close();
    for (const w of this.#readyWaiters.splice(0)) w();
  }

  /** Reads the files now; one read at a time, a request during a read runs right after it. */
  reload(reason: string): Promise<void> {
    return this.#files.reload(reason);
  }
}

/** The leaf and every authority: the same fingerprint means nothing changed. */
function fingerprint(loaded: LoadedX509): string {
  return [
    loaded.svid.certificates[0]?.fingerprint256 ?? '',
    ...loaded.bundle.authorities.map((c) => c.fingerprint256),
  ].join('|');
}
