// The webhook's serving certificate and key files (cert-manager's Secret mount), reloaded when they
// change; a pair that does not load (half-written, mismatched) is refused and the last good one stays.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createSecureContext } from 'node:tls';
import type { Clock } from '../base/clock.ts';
import { ConnectorError } from '../base/errors.ts';
import { Secret } from '../base/secret.ts';
import { Reloading } from '../files/reloading.ts';
import type { Logger } from '../ops/logger.ts';

export interface ServingPair {
  readonly certPem: string;
  readonly keyPem: Secret;
  readonly notAfter: Date;
}

export interface ServingCertOptions {
  readonly certFile: string;
  readonly keyFile: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly pollMs: number;
  readonly watch?: boolean;
  /** A new pair was accepted (not called for the first one). */
  readonly onChange: (pair: ServingPair) => void;
  readonly onSwap?: (pair: ServingPair) => void;
  readonly onRefuse?: () => void;
}

async function read(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new ConnectorError(
      'config_invalid',
      `cannot read the ${what} ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      { cause: error },
    );
  }
}

export function watchServingPair(o: ServingCertOptions): Reloading<ServingPair> {
  return new Reloading<ServingPair>({
    what: 'serving certificate',
    watchDirs: [dirname(o.certFile), dirname(o.keyFile)],
    clock: o.clock,
    logger: o.logger,
    pollMs: o.pollMs,
    ...(o.watch === undefined ? {} : { watch: o.watch }),
    load: async () => {
      const certPem = await read(o.certFile, 'serving certificate');
      const keyPem = new Secret(await read(o.keyFile, 'serving key'));
      let notAfter: Date;
      try {
        notAfter = new X509Certificate(certPem).validToDate;
      } catch (cause) {
        throw new ConnectorError('config_invalid', `serving certificate ${o.certFile} is not a PEM certificate`, {
          cause,
        });
      }
      try {
        createSecureContext({ cert: certPem, key: keyPem.reveal() });
      } catch {
        throw new ConnectorError(
          'config_invalid',
          `serving certificate ${o.certFile} and key ${o.keyFile} do not form a usable pair`,
        );
      }
      return { certPem, keyPem, notAfter };
    },
    fingerprint: (p) => p.certPem,
    onSwap: (p, previous) => {
      o.logger.info(
        { certFile: o.certFile, notAfter: p.notAfter.toISOString() },
        previous ? 'serving certificate reloaded' : 'serving certificate loaded',
      );
      if (previous) o.onChange(p);
      o.onSwap?.(p);
    },
    ...(o.onRefuse ? { onRefuse: o.onRefuse } : {}),
  });
}
