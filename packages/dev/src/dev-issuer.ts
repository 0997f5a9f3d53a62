// The issuer for `spiffe-connector dev` and tests: on loopback, with a fresh signing key in a temp
// directory, the dev CA's root as the trust bundle and a serving certificate from the same CA.
// Its issuer URL is the discovery listener's own http://127.0.0.1:<port>, so stand-ins can find the JWKS.
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Clock, systemClock } from '../../../src/base/clock.ts';
import type { IssuerConfig, SigningAlgorithm } from '../../../src/config/issuer.ts';
import { freeLoopbackPort } from '../../../src/http/free-port.ts';
import { type RunningIssuer, startIssuer } from '../../../src/issuer/issuer.ts';
import { type Logger, silentLogger } from '../../../src/ops/logger.ts';
import type { DevCa } from './dev-ca.ts';

export interface DevIssuerOptions {
  readonly ca: DevCa;
  readonly trustDomain: string;
  readonly audiences: readonly string[];
  readonly alg?: SigningAlgorithm;
  readonly tokenLifetimeSeconds?: number;
  /** AWS session tags and source identity in the tokens for AWS (issuer.aws). */
  readonly aws?: IssuerConfig['aws'];
  readonly logger?: Logger;
  readonly clock?: Clock;
}

export interface DevIssuer {
  /** The `iss` of its tokens, also where discovery lives: http://127.0.0.1:<port>. */
  readonly issuerUrl: string;
  /** https://127.0.0.1:<port>/token (mTLS). */
  readonly tokenUrl: string;
  readonly discoveryUrl: string;
  /** The CA to trust for the token endpoint's serving certificate (the dev CA's root). */
  readonly caPem: string;
  /** The temp directory holding keys/, bundle.pem, tls.crt and tls.key (removed on close). */
  readonly dir: string;
  readonly issuer: RunningIssuer;
  close(): Promise<void>;
}

export async function startDevIssuer(options: DevIssuerOptions): Promise<DevIssuer> {
  const dir = await mkdtemp(join(tmpdir(), 'spiffe-connector-dev-issuer-'));
  try {
    const alg = options.alg ?? 'RS256';
    const keysDir = join(dir, 'keys');
    await mkdir(keysDir, { mode: 0o700 });
    const pair =
      alg === 'RS256'
        ? generateKeyPairSync('rsa', { modulusLength: 2048 })
        : generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await writeFile(join(keysDir, 'dev-1.pem'), pair.privateKey.export({ type: 'pkcs8', format: 'pem' }), {
      mode: 0o600,
    });
    await writeFile(join(dir, 'bundle.pem'), options.ca.certPem);
    const serving = await options.ca.issueServerCert({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    await writeFile(join(dir, 'tls.crt'), serving.certPem);
    await writeFile(join(dir, 'tls.key'), serving.keyPem, { mode: 0o600 });
    // The issuer URL must be known before start (it is the iss claim) and name the discovery listener:
    // take a free loopback port, and try again should another process grab it in between.
    for (let attempt = 1; ; attempt++) {
      const port = await freeLoopbackPort();
      const config: IssuerConfig = {
        url: `http://127.0.0.1:${port}`,
        trustDomain: options.trustDomain,
        bundleFile: join(dir, 'bundle.pem'),
        tokenAddress: '127.0.0.1:0',
        tls: { certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') },
        discoveryAddress: `127.0.0.1:${port}`,
        opsAddress: '127.0.0.1:0',
        keysDir,
        audiences: [...options.audiences],
        tokenLifetimeSeconds: options.tokenLifetimeSeconds ?? 3600,
        algorithm: alg,
        keyActivationDelaySeconds: 0,
        discoveryMaxAgeSeconds: 60,
        drainSeconds: 0,
        ...(options.aws ? { aws: options.aws } : {}),
      };
      let issuer: RunningIssuer;
      try {
        issuer = await startIssuer(config, {
          logger: options.logger ?? silentLogger(),
          clock: options.clock ?? systemClock,
        });
      } catch (error) {
        if (attempt < 3 && /EADDRINUSE/.test((error as Error).message)) continue;
        throw error;
      }
      return {
        issuerUrl: config.url,
        tokenUrl: issuer.tokenUrl,
        discoveryUrl: issuer.discoveryUrl,
        caPem: options.ca.certPem,
        dir,
        issuer,
        close: async () => {
          await issuer.close();
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
