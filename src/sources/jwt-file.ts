// A JWT-SVID kept fresh in a file by someone else (spiffe-helper, a projected token): re-read on
// change and before expiry; a bad or expired token is refused and the last good one kept while valid.
// A poll reads only a file whose stat changed (files/file-stamp.ts), and parses only a token it does not hold.
import { readFile as fsReadFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Clock, TimerHandle } from '../base/clock.ts';
import { ConnectorError, toConnectorError } from '../base/errors.ts';
import { type StatBig, stamper } from '../files/file-stamp.ts';
import { type DirectoryWatch, watchDirectory } from '../files/watch-dir.ts';
import type { Logger } from '../ops/logger.ts';
import type { Metrics } from '../ops/metrics.ts';
import { type JwtSvid, parseJwtSvidInsecure, signatureBytes } from '../spiffe/jwt-svid.ts';
import { type JwtSource, Listeners, type Unsubscribe } from '../spiffe/source.ts';
import { TrustDomain } from '../spiffe/spiffe-id.ts';

export interface JwtFileOptions {
  readonly file: string;
  readonly trustDomain: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics?: Metrics | undefined;
  readonly readFile?: (path: string) => Promise<string>;
  /** Injected for tests; defaults to fs.promises.stat, unless readFile is injected (then every poll reads). */
  readonly stat?: StatBig;
  /** Fallback poll interval, default 30 s. */
  readonly pollIntervalMs?: number;
  readonly debounceMs?: number;
  readonly watch?: boolean;
  /**
   * Audiences the configured clouds ask for (AWS `aws.audience`, Google's provider, Entra's
   * `azure.audience`). A token lacking one is refused, so it never replaces one that has them all.
   */
  readonly requiredAudiences?: readonly string[];
}

export class JwtFileSource implements JwtSource {
  readonly #o: JwtFileOptions;
  readonly #td: TrustDomain;
  readonly #listeners = new Listeners<[]>();
  readonly #stampNow: () => Promise<string | undefined>;
  #current: JwtSvid | undefined;
  /** The file's stamp when #current was read from it (files/file-stamp.ts): unchanged, a poll reads nothing. */
  #stamp: string | undefined;
  #lastRefusal: string | undefined;
  #warnedNoIssuer = false;
  #watcher: DirectoryWatch | undefined;
  #timer: TimerHandle | undefined;
  #debounce: TimerHandle | undefined;
  #closed = false;

  constructor(options: JwtFileOptions) {
    this.#o = options;
    this.#td = TrustDomain.parse(options.trustDomain);
    this.#stampNow = stamper([options.file], options);
  }

  async start(): Promise<void> {
    await this.reload('start');
    if (this.#o.watch !== false) {
      // Watch the directory: projected volumes and csi drivers swap a `..data` symlink.
      // The directory is re-watched when it is removed and created again.
      this.#watcher = watchDirectory(dirname(this.#o.file), {
        depth: 0,
        onChange: () => {
          if (this.#closed) return;
          if (this.#debounce) this.#o.clock.clearTimeout(this.#debounce);
          this.#debounce = this.#o.clock.setTimeout(() => void this.reload('file changed'), this.#o.debounceMs ?? 250);
        },
        onError: (error) =>
          this.#o.logger.warn({ err: error.message }, 'watching the JWT-SVID file failed; polling continues'),
      });
      await this.#watcher.ready;
    }
  }

  /** The held JWT-SVID, if still valid. */
  current(): JwtSvid | undefined {
    const held = this.#current;
    return held && held.expiresAt.getTime() > this.#o.clock.now() ? held : undefined;
  }

  async fetchJwtSvid(audience: string, _signal: AbortSignal): Promise<JwtSvid> {
    let held = this.current();
    if (!held) {
      await this.reload('requested');
      held = this.current();
    }
    if (!held) {
      throw new ConnectorError(
        'identity_unavailable',
        `no valid JWT-SVID in ${this.#o.file}${this.#lastRefusal ? `: ${this.#lastRefusal}` : ''}`,
        { retryable: true },
      );
    }
    if (!held.audience.includes(audience)) {
      throw new ConnectorError(
        'jwt_svid_invalid',
        `the JWT-SVID in ${this.#o.file} is for audience ${held.audience.join(', ')}, not ${audience}; issue it with that audience`,
        { retryable: true },
      );
    }
    return held;
  }

  subscribe(listener: () => void): Unsubscribe {
    return this.#listeners.add(listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) this.#o.clock.clearTimeout(this.#timer);
    if (this.#debounce) this.#o.clock.clearTimeout(this.#debounce);
    await this.#watcher?.close();
  }

  async reload(reason: string): Promise<void> {
    const { clock, logger, metrics } = this.#o;
    const stamp = await this.#stampNow();
    if (stamp !== undefined && stamp === this.#stamp && this.current()) return this.#scheduleNext();
    this.#stamp = undefined;
    try {
      const read = this.#o.readFile ?? ((p: string) => fsReadFile(p, 'utf8'));
      let text: string;
      try {
        text = await read(this.#o.file);
      } catch (error) {
        throw new ConnectorError(
          'jwt_svid_invalid',
          `cannot read ${this.#o.file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
          { cause: error },
        );
      }
      if (this.current()?.token.reveal() === text.trim()) {
        // The token held: nothing to parse or check again (a file just written is read again; see #stamp).
        this.#lastRefusal = undefined;
        this.#stamp = stamp;
        return this.#scheduleNext();
      }
      const svid = parseJwtSvidInsecure(text.trim(), { now: new Date(clock.now()) });
      if (!svid.id.memberOf(this.#td)) {
        throw new ConnectorError(
          'jwt_svid_invalid',
          `the JWT-SVID is for ${svid.id.toString()}, outside the configured trust domain ${this.#td.name}`,
        );
      }
      const missing = (this.#o.requiredAudiences ?? []).filter((a) => !svid.audience.includes(a));
      if (missing.length > 0) {
        throw new ConnectorError(
          'jwt_svid_invalid',
          `the JWT-SVID (audience ${svid.audience.join(', ')}) lacks the audience ${missing.join(', ')} that the configured clouds need; issue it with every one of them`,
        );
      }
      checkSameKeySize(this.#current, svid);
      this.#lastRefusal = undefined;
      this.#stamp = stamp;
      if (svid.issuer === undefined && !this.#warnedNoIssuer) {
        this.#warnedNoIssuer = true;
        logger.warn(
          { file: this.#o.file },
          'the JWT-SVID has no iss claim; AWS, Google and Entra all require one (SPIRE adds it only when jwt_issuer is set)',
        );
      }
      const previous = this.#current;
      if (!previous || previous.token.reveal() !== svid.token.reveal()) {
        this.#current = svid;
        metrics?.svidUpdates.inc({ kind: 'jwt', outcome: 'accepted' });
        logger.info(
          { reason, spiffeId: svid.id.toString(), audience: svid.audience, expiresAt: svid.expiresAt.toISOString() },
          previous ? 'JWT-SVID rotated' : 'JWT-SVID loaded',
        );
        if (previous) this.#listeners.emit();
      }
    } catch (thrown) {
      const error = toConnectorError(thrown, 'jwt_svid_invalid');
      if (error.message !== this.#lastRefusal) {
        logger.warn(
          { reason, file: this.#o.file, err: error.message, keeping: this.current() ? 'the last good JWT-SVID' : null },
          'refused the JWT-SVID file',
        );
        metrics?.svidUpdates.inc({ kind: 'jwt', outcome: 'refused' });
        this.#lastRefusal = error.message;
      }
    }
    const held = this.current();
    if (held) metrics?.svidExpiry.set({ kind: 'jwt' }, Math.round(held.expiresAt.getTime() / 1000));
    this.#scheduleNext();
  }

  /** Next read: half of the held token's remaining life, at most the poll interval. */
  #scheduleNext(): void {
    if (this.#closed) return;
    if (this.#timer) this.#o.clock.clearTimeout(this.#timer);
    const poll = this.#o.pollIntervalMs ?? 30_000;
    const held = this.current();
    const delay = held ? Math.max(1_000, Math.min(poll, (held.expiresAt.getTime() - this.#o.clock.now()) / 2)) : poll;
    this.#timer = this.#o.clock.setTimeout(() => void this.reload('scheduled'), delay);
  }
}

/**
 * A token signed with the key that signed the held one has a signature of the same length (for RSA,
 * the modulus size). A different length is a file cut short, not a rotation.
 */
function checkSameKeySize(held: JwtSvid | undefined, next: JwtSvid): void {
  if (
    !held ||
    held.algorithm !== next.algorithm ||
    held.keyId === undefined ||
    held.keyId !== next.keyId ||
    held.issuer !== next.issuer
  )
    return;
  const was = signatureBytes(held.token.reveal().split('.')[2] ?? '');
  const now = signatureBytes(next.token.reveal().split('.')[2] ?? '');
  if (was !== now) {
    throw new ConnectorError(
      'jwt_svid_invalid',
      `the JWT-SVID's signature is ${now ?? '?'} bytes, but key ${JSON.stringify(next.keyId)} made ${was ?? '?'}-byte signatures; the token looks cut short`,
    );
  }
}
