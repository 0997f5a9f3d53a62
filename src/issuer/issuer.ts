// The issuer: the mTLS token endpoint, the discovery listener and the ops listener over one key store,
// one trust bundle and one serving certificate, each reloaded on change (issuer.example.yaml documents every key).
import { constants } from 'node:crypto';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Clock } from '../base/clock.ts';
import { ConnectorError } from '../base/errors.ts';
import { parseHostPort } from '../config/common.ts';
import type { IssuerConfig } from '../config/issuer.ts';
import type { Logger } from '../ops/logger.ts';
import { TrustDomain } from '../spiffe/spiffe-id.ts';
import { ClientVerifier } from './client-auth.ts';
import { discoveryHandler, discoveryPaths } from './discovery.ts';
import { watchBundle, watchServingCert } from './files.ts';
import { KeyStore } from './key-store.ts';
import { IssuerMetrics } from './metrics.ts';
import { createOpsServer, type Readiness } from './ops.ts';
import { tokenHandler } from './token-endpoint.ts';

export interface IssuerDeps {
  readonly logger: Logger;
  readonly clock: Clock;
  readonly metrics?: IssuerMetrics;
  /** Fallback poll interval of the watched files; default 30 s. */
  readonly pollMs?: number;
}

export interface RunningIssuer {
  /** https://host:port/token */
  readonly tokenUrl: string;
  /** http://host:port<path>/.well-known/openid-configuration on the discovery listener. */
  readonly discoveryUrl: string;
  /** http://host:port of /healthz, /readyz, /metrics. */
  readonly opsUrl: string;
  readonly metrics: IssuerMetrics;
  /** Re-reads keys, bundle and serving certificate now (they are also watched). */
  reload(): Promise<void>;
  readiness(): Readiness;
  /** Starts draining: /readyz answers 503 and token answers close their connections. */
  beginDrain(): void;
  /** Stops accepting, lets in-flight requests finish (up to 5 s), closes everything. */
  close(): Promise<void>;
}

export async function startIssuer(config: IssuerConfig, deps: IssuerDeps): Promise<RunningIssuer> {
  const { logger, clock } = deps;
  const metrics = deps.metrics ?? new IssuerMetrics();
  const td = TrustDomain.parse(config.trustDomain);
  const watchOpts = { clock, logger, ...(deps.pollMs === undefined ? {} : { pollMs: deps.pollMs }) };
  let draining = false;

  const keys = new KeyStore({
    dir: config.keysDir,
    alg: config.algorithm,
    activationDelayMs: config.keyActivationDelaySeconds * 1000,
    retainReplaced: config.retainReplacedKey === true,
    ...watchOpts,
    onRefuse: () => metrics.reloads.inc({ what: 'keys', outcome: 'refused' }),
    onSwap: (set) => {
      metrics.signingKeys.set(set.keys.length);
      metrics.reloads.inc({ what: 'keys', outcome: 'accepted' });
    },
  });
  const bundle = watchBundle(config.bundleFile, td, {
    ...watchOpts,
    onSwap: () => metrics.reloads.inc({ what: 'bundle', outcome: 'accepted' }),
    onRefuse: () => metrics.reloads.inc({ what: 'bundle', outcome: 'refused' }),
  });
  let tokenServer: ReturnType<typeof createHttpsServer> | undefined;
  const serving = watchServingCert(config.tls.certFile, config.tls.keyFile, {
    ...watchOpts,
    onChange: (c) => tokenServer?.setSecureContext({ cert: c.certPem, key: c.keyPem.reveal() }),
    onSwap: () => metrics.reloads.inc({ what: 'serving_cert', outcome: 'accepted' }),
    onRefuse: () => metrics.reloads.inc({ what: 'serving_cert', outcome: 'refused' }),
  });

  const started: Array<{ close(): Promise<void> }> = [];
  const closeAll = async (): Promise<void> => {
    for (const s of started.splice(0).reverse()) await s.close().catch(() => undefined);
  };
  try {
    await keys.start();
    started.push(keys);
    await bundle.start();
    started.push(bundle);
    const cert = await serving.start();
    started.push(serving);

    const verifier = new ClientVerifier(td, () => bundle.current());
    tokenServer = createHttpsServer(
      {
        cert: cert.certPem,
        key: cert.keyPem.reveal(),
        minVersion: 'TLSv1.2',
        // Ask for a certificate but let every handshake finish: the handler verifies the chain against
        // the current bundle and answers an OAuth error body, which a TLS alert could not carry.
        requestCert: true,
        rejectUnauthorized: false,
        // No session resumption: a resumed session carries the client's leaf but not its intermediates,
        // and each connection's chain is verified against the bundle of the moment anyway.
        secureOptions: constants.SSL_OP_NO_TICKET,
      },
      tokenHandler({
        issuerUrl: config.url,
        audiences: config.audiences,
        lifetimeSeconds: config.tokenLifetimeSeconds,
        alg: config.algorithm,
        aws: config.aws,
        rateLimit: config.rateLimit,
        verifier,
        signer: () => keys.signer(),
        clock,
        logger,
        metrics,
        draining: () => draining,
      }),
    );
    tokenServer.requestTimeout = 10_000;
    tokenServer.headersTimeout = 5_000;
    tokenServer.keepAliveTimeout = 60_000;
    tokenServer.on('tlsClientError', (error) => logger.debug({ err: error.message }, 'TLS handshake failed'));
    const tokenAddr = await listen(tokenServer, config.tokenAddress, 'tokenAddress');
    started.push(closer(tokenServer));

    const discoveryServer = createHttpServer(
      discoveryHandler({
        issuerUrl: config.url,
        alg: config.algorithm,
        maxAgeSeconds: config.discoveryMaxAgeSeconds,
        jwks: () => keys.keySet()?.jwks(),
        observe: (document, status) => metrics.discoveryRequests.inc({ document, status: String(status) }),
      }),
    );
    discoveryServer.keepAliveTimeout = 5_000;
    const discoveryAddr = await listen(discoveryServer, config.discoveryAddress, 'discoveryAddress');
    started.push(closer(discoveryServer));

    const readiness = (): Readiness => {
      const reasons: string[] = [];
      if (draining) reasons.push('shutting down');
      if (!keys.signer()) reasons.push('no signing key');
      if (!bundle.current()) reasons.push('no trust bundle');
      return { ready: reasons.length === 0, reasons };
    };
    const opsServer = createOpsServer(metrics, readiness);
    const opsAddr = await listen(opsServer, config.opsAddress, 'opsAddress');
    started.push(closer(opsServer));

    const paths = discoveryPaths(config.url);
    const running: RunningIssuer = {
      tokenUrl: `https://${tokenAddr}/token`,
      discoveryUrl: `http://${discoveryAddr}${paths.discovery}`,
      opsUrl: `http://${opsAddr}`,
      metrics,
      reload: async () => {
        await Promise.all([keys.reload('requested'), bundle.reload('requested'), serving.reload('requested')]);
      },
      readiness,
      beginDrain: () => {
        draining = true;
      },
      close: async () => {
        draining = true;
        await closeAll();
      },
    };
    logger.info(
      {
        issuer: config.url,
        trustDomain: td.name,
        alg: config.algorithm,
        audiences: config.audiences,
        tokenUrl: running.tokenUrl,
        discoveryUrl: running.discoveryUrl,
        opsUrl: running.opsUrl,
      },
      'issuer started',
    );
    return running;
  } catch (error) {
    await closeAll();
    throw error;
  }
}

async function listen(server: Server, address: string, key: string): Promise<string> {
  const hp = parseHostPort(address);
  if (!hp) throw new ConnectorError('config_invalid', `issuer.${key}: ${address} is not HOST:PORT`);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(hp.port, hp.host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((error: NodeJS.ErrnoException) => {
    throw new ConnectorError(
      'config_invalid',
      `issuer.${key}: cannot listen on ${address} (${error.code ?? error.message})`,
      { cause: error },
    );
  });
  const a = server.address() as AddressInfo;
  const host =
    a.address === '0.0.0.0'
      ? '127.0.0.1'
      : a.address === '::'
        ? '[::1]'
        : a.family === 'IPv6'
          ? `[${a.address}]`
          : a.address;
  return `${host}:${a.port}`;
}

/** Stops accepting, closes idle keep-alive connections, gives in-flight requests 5 s, then cuts the rest. */
function closer(server: Server): { close(): Promise<void> } {
  return {
    close: () =>
      new Promise<void>((resolve) => {
        const force = setTimeout(() => server.closeAllConnections(), 5_000);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        server.closeIdleConnections();
      }),
  };
}
