// The signing keys directory (a Kubernetes Secret mount): every visible file is a PEM private key;
// all are published, the newest by file name signs (signing-key.ts). Reloaded on change; a set with
// any weak or malformed key is refused whole and the last good set stays.
//
// With retainReplaced (a key that cert-manager rotates in place, tls.key of a Certificate's Secret) the
// key a reload replaced stays published and keeps signing until its successor has been published for
// the activation delay; it is dropped when the next one replaces the successor. Only this process
// remembers it: an issuer started after a rotation publishes and signs with the new key alone.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../base/clock.ts';
import { ConnectorError } from '../base/errors.ts';
import { Secret } from '../base/secret.ts';
import type { SigningAlgorithm } from '../config/issuer.ts';
import { Reloading } from '../files/reloading.ts';
import type { Logger } from '../ops/logger.ts';
import { KeySet, parseSigningKey, type SigningKey } from './signing-key.ts';

export interface KeyStoreOptions {
  readonly dir: string;
  readonly alg: SigningAlgorithm;
  readonly activationDelayMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly pollMs?: number;
  readonly watch?: boolean;
  readonly onRefuse?: () => void;
  /** Keep publishing (and signing with, until the delay passes) the key a reload replaced. */
  readonly retainReplaced?: boolean;
  /** Called with the new set after every accepted (re)load. */
  readonly onSwap?: (set: KeySet) => void;
}

/** Most keys a directory may hold: Google accepts at most 8 in an uploaded JWKS. */
export const MAX_KEYS = 8;

/** Reads every visible regular file of `dir` (following the Secret's symlinks) as a signing key. */
export async function readKeyDir(dir: string, alg: SigningAlgorithm): Promise<SigningKey[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => !n.startsWith('.')).sort();
  } catch (error) {
    throw new ConnectorError(
      'config_invalid',
      `cannot read the keys directory ${dir} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      { cause: error },
    );
  }
  const keys: SigningKey[] = [];
  const problems: string[] = [];
  for (const name of names) {
    const path = join(dir, name);
    try {
      const info = await stat(path);
      if (!info.isFile()) continue;
      if (info.size > 64 * 1024)
        throw new ConnectorError(
          'config_invalid',
          `signing key ${name}: ${info.size} bytes is too large for a PEM private key`,
        );
      keys.push(await parseSigningKey(name, new Secret(await readFile(path, 'utf8')), alg));
    } catch (error) {
      problems.push(
        error instanceof ConnectorError
          ? error.message
          : `signing key ${name}: cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  }
  if (problems.length > 0) throw new ConnectorError('config_invalid', `keys directory ${dir}: ${problems.join('; ')}`);
  if (keys.length === 0)
    throw new ConnectorError(
      'config_invalid',
      `keys directory ${dir} holds no signing key (PEM ${alg === 'RS256' ? 'RSA ≥2048-bit' : 'EC P-256'} private keys expected)`,
    );
  if (keys.length > MAX_KEYS)
    throw new ConnectorError(
      'config_invalid',
      `keys directory ${dir} holds ${keys.length} keys; at most ${MAX_KEYS} (Google's JWKS limit): remove retired keys`,
    );
  return keys;
}

export class KeyStore {
  readonly #o: KeyStoreOptions;
  readonly #reloading: Reloading<KeySet>;
  /** kid → when this process first saw it (0 for the keys found at start: they are already published). */
  readonly #firstSeen = new Map<string, number>();
  #lastSignerKid: string | undefined;

  constructor(options: KeyStoreOptions) {
    this.#o = options;
    this.#reloading = new Reloading<KeySet>({
      what: 'signing keys',
      watchDirs: [options.dir],
      clock: options.clock,
      logger: options.logger,
      ...(options.pollMs === undefined ? {} : { pollMs: options.pollMs }),
      ...(options.watch === undefined ? {} : { watch: options.watch }),
      load: async (previous) => {
        const keys = await readKeyDir(options.dir, options.alg);
        const now = previous === undefined ? 0 : options.clock.now();
        for (const k of keys) if (!this.#firstSeen.has(k.kid)) this.#firstSeen.set(k.kid, now);
        let retired: SigningKey[] = [];
        if (options.retainReplaced && previous) {
          // The newest of the keys that just left the directory: the one that was signing.
          const gone = previous.keys.filter((k) => !keys.some((n) => n.kid === k.kid));
          retired = gone.slice(-1).map((k) => ({ ...k, name: `${k.name} (replaced)` }));
          if (keys.length + retired.length > MAX_KEYS) retired = [];
        }
        return new KeySet(keys, this.#firstSeen, retired);
      },
      fingerprint: (set) => set.keys.map((k) => `${k.name}=${k.kid}`).join(','),
      onSwap: (set, previous) => {
        const kids = set.keys.map((k) => ({ file: k.name, kid: k.kid }));
        options.logger.info(
          { keys: kids, alg: options.alg },
          previous ? 'signing keys reloaded' : 'signing keys loaded',
        );
        for (const kid of [...this.#firstSeen.keys()])
          if (!set.keys.some((k) => k.kid === kid)) this.#firstSeen.delete(kid);
        options.onSwap?.(set);
      },
      onRefuse: () => options.onRefuse?.(),
    });
  }

  start(): Promise<KeySet> {
    return this.#reloading.start();
  }

  reload(reason = 'requested'): Promise<void> {
    return this.#reloading.reload(reason);
  }

  /** Every key to publish. */
  keySet(): KeySet | undefined {
    return this.#reloading.current();
  }

  /** The key that signs now. */
  signer(): SigningKey | undefined {
    const key = this.#reloading.current()?.signer(this.#o.clock.now(), this.#o.activationDelayMs);
    if (key && key.kid !== this.#lastSignerKid) {
      if (this.#lastSignerKid !== undefined)
        this.#o.logger.info(
          { file: key.name, kid: key.kid, previousKid: this.#lastSignerKid },
          'a new signing key signs from now on',
        );
      this.#lastSignerKid = key.kid;
    }
    return key;
  }

  lastRefusal(): string | undefined {
    return this.#reloading.lastRefusal();
  }

  close(): Promise<void> {
    return this.#reloading.close();
  }
}
