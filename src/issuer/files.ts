// The issuer's other watched files: the trust bundle client SVIDs must chain to, and the HTTPS serving
// certificate of the token endpoint (both usually Kubernetes mounts). A bad new file is refused, the old kept.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createSecureContext as tlsContext } from 'node:tls';
import type { Clock } from '../base/clock.ts';
import { ConnectorError } from '../base/errors.ts';
import { Secret } from '../base/secret.ts';
import { Reloading } from '../files/reloading.ts';
import type { Logger } from '../ops/logger.ts';
import { X509Bundle } from '../spiffe/bundle.ts';
import type { TrustDomain } from '../spiffe/spiffe-id.ts';
import type { BundleSnapshot } from './client-auth.ts';

interface WatchOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly pollMs?: number;
  readonly watch?: boolean;
  readonly onSwap?: () => void;
  readonly onRefuse?: () => void;
}

async function readText(file: string, what: string): Promise<string> {
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

/** The trust bundle file, reloaded on change; `version` goes up with every accepted change. */
export function watchBundle(file: string, trustDomain: TrustDomain, o: WatchOptions): Reloading<BundleSnapshot> {
  let version = 0;
  return new Reloading<BundleSnapshot>({
    what: 'trust bundle',
    watchDirs: [dirname(file)],
    clock: o.clock,
    logger: o.logger,
    ...(o.pollMs === undefined ? {} : { pollMs: o.pollMs }),
    ...(o.watch === undefined ? {} : { watch: o.watch }),
    load: async () => ({
      bundle: X509Bundle.parsePem(trustDomain, await readText(file, 'trust bundle')),
      version: version + 1,
    }),
    fingerprint: (s) =>
      s.bundle.authorities
        .map((a) => a.fingerprint256)
        .sort()
        .join(','),
    onSwap: (s, previous) => {
      version = s.version;
      o.logger.info(
        {
          file,
          authorities: s.bundle.authorities.map((a) => ({
            subject: a.subject.replace(/\n/g, ', '),
            notAfter: a.validToDate.toISOString(),
          })),
        },
        previous ? 'trust bundle reloaded' : 'trust bundle loaded',
      );
      o.onSwap?.();
    },
    ...(o.onRefuse ? { onRefuse: o.onRefuse } : {}),
  });
}

export interface ServingCert {
  readonly certPem: string;
  readonly keyPem: Secret;
  readonly notAfter: Date;
}

/** The token endpoint's serving certificate and key, reloaded on change (cert-manager renews them). */
export function watchServingCert(
  certFile: string,
  keyFile: string,
  o: WatchOptions & { onChange: (cert: ServingCert) => void },
): Reloading<ServingCert> {
  return new Reloading<ServingCert>({
    what: 'serving certificate',
    watchDirs: [dirname(certFile), dirname(keyFile)],
    clock: o.clock,
    logger: o.logger,
    ...(o.pollMs === undefined ? {} : { pollMs: o.pollMs }),
    ...(o.watch === undefined ? {} : { watch: o.watch }),
    load: async () => {
      const certPem = await readText(certFile, 'serving certificate');
      const keyPem = new Secret(await readText(keyFile, 'serving key'));
      let leaf: X509Certificate;
      try {
        leaf = new X509Certificate(certPem);
      } catch (cause) {
        throw new ConnectorError('config_invalid', `serving certificate ${certFile} is not a PEM certificate`, {
          cause,
        });
      }
      try {
        tlsContext({ cert: certPem, key: keyPem.reveal() });
      } catch {
        throw new ConnectorError(
          'config_invalid',
          `serving certificate ${certFile} and key ${keyFile} do not form a usable pair (mismatched or unreadable key)`,
        );
      }
      return { certPem, keyPem, notAfter: leaf.validToDate };
    },
    fingerprint: (c) => c.certPem,
    onSwap: (c, previous) => {
      o.logger.info(
        { certFile, notAfter: c.notAfter.toISOString() },
        previous ? 'serving certificate reloaded' : 'serving certificate loaded',
      );
      if (previous) o.onChange(c);
      o.onSwap?.();
    },
    ...(o.onRefuse ? { onRefuse: o.onRefuse } : {}),
  });
}
