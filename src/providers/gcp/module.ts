// The Google Cloud module: the exchange (google-auth-library, imported only here) wrapped by three
// credential caches (access tokens by scope set, the federated token, ID tokens by audience) and the
// emulated metadata server. On the X.509 path the verified SVID is written to files the SDK reads,
// and every credential is fetched anew after each rotation.
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { ConnectorError } from '../../base/errors.ts';
import { CredentialCache, SINGLE } from '../../cache/credential-cache.ts';
import { TOKEN_POLICY } from '../../cache/refresh-policy.ts';
import type { X509Svid } from '../../spiffe/x509-svid.ts';
import type { CloudModule, CloudProvider, ProviderContext, Readiness } from '../contract.ts';
import { CertificateFiles } from './certificate-files.ts';
import { type GcpToken, scopeKey } from './credential.ts';
import { MAX_AUDIENCE, metadataSurface } from './endpoints.ts';
import { federatedAccountName } from './env.ts';
import { CLOUD_PLATFORM, GcpExchange, type SubjectSource } from './exchange.ts';
import { instanceIdFor, type MetadataFacts } from './metadata-tree.ts';

/** Scopes of a token request without `scopes=`: what GKE's metadata server grants by default. */
export const DEFAULT_SCOPES = [CLOUD_PLATFORM, 'https://www.googleapis.com/auth/userinfo.email'] as const;

export const NO_IDENTITY_TEXT =
  'spiffe-connector has no gcp.serviceAccount configured, which is a requirement for retrieving Identity Tokens with workload identity federation. ' +
  'Set gcp.serviceAccount to a Google service account this workload may impersonate (roles/iam.serviceAccountOpenIdTokenCreator).\n';

export const gcpModule: CloudModule = {
  cloud: 'gcp',
  create: (ctx) => createGcpProvider(ctx),
};

/** Knobs the config does not carry (tests, benchmarks). */
export interface GcpProviderOptions {
  /** Per-request timeout towards Google. Default 10 s. */
  readonly requestTimeoutMs?: number;
  /** Most scope sets kept fresh besides the default one. Default 16. */
  readonly maxScopeSets?: number;
  /** Most ID-token audiences kept fresh. Default 32. */
  readonly maxAudiences?: number;
  /** How long a request for a new scope set or audience waits for its first exchange. Default 10 s. */
  readonly firstFetchWaitMs?: number;
  readonly random?: () => number;
  /** The instance name served (default: this host's name). */
  readonly hostname?: string;
}

export async function createGcpProvider(
  ctx: ProviderContext,
  options: GcpProviderOptions = {},
): Promise<CloudProvider> {
  const gcp = ctx.config.gcp;
  if (!gcp) throw new ConnectorError('config_invalid', 'the gcp section is not configured');
  // module.exports of the CommonJS package: what Node's import() gives as `default`, and the only export a
  // bundled chunk of it has (esbuild gives no named exports to a dynamically imported CommonJS module).
  const sdk = (await import('google-auth-library')).default;
  const caPem = gcp.caFile ? await readFile(gcp.caFile, 'utf8') : undefined;
  const { jwt, x509 } = ctx.identity;

  let files: CertificateFiles | undefined;
  let written: X509Svid | undefined;
  let subject: SubjectSource;
  if (jwt) {
    subject = { kind: 'jwt', jwt };
  } else if (x509) {
    files = new CertificateFiles(ctx.stateDir);
    subject = { kind: 'x509', files, currentSubject: () => written?.id.toString() };
  } else {
    throw new ConnectorError('config_invalid', 'Google federation needs a JWT-SVID or an X.509-SVID source');
  }

  const maxScopeSets = options.maxScopeSets ?? 16;
  const exchange = new GcpExchange({
    sdk,
    gcp,
    subject,
    clock: ctx.clock,
    logger: ctx.logger,
    metrics: ctx.metrics,
    caPem,
    maxClients: maxScopeSets + 2 + gcp.extraServiceAccounts.length * 2,
    ...(options.requestTimeoutMs === undefined ? {} : { timeoutMs: options.requestTimeoutMs }),
  });
  const common = {
    cloud: 'gcp',
    audit: (t: GcpToken) => ({ principal: t.principal ?? federatedAccountName(gcp), spiffeId: t.spiffeId }),
    expiresAt: (t: GcpToken) => t.expiresAt,
    policy: TOKEN_POLICY,
    clock: ctx.clock,
    logger: ctx.logger,
    metrics: ctx.metrics,
    ...(options.firstFetchWaitMs === undefined ? {} : { firstFetchWaitMs: options.firstFetchWaitMs }),
    ...(options.random ? { random: options.random } : {}),
  };
  const defaultKey = scopeKey(DEFAULT_SCOPES);
  const accessTokens = new CredentialCache<GcpToken>({
    ...common,
    name: 'access-token',
    exchange: (key, signal) => exchange.accessToken(key.split(','), signal),
    pinned: [defaultKey],
    maxKeys: maxScopeSets,
    maxKeyLength: 4096,
  });
  // Each extra service account: its own access tokens by scope set, the default set pinned.
  const extraAccounts = new Map(
    gcp.extraServiceAccounts.map((email) => [
      email,
      new CredentialCache<GcpToken>({
        ...common,
        name: 'access-token',
        exchange: (key, signal) => exchange.accessToken(key.split(','), signal, email),
        pinned: [defaultKey],
        maxKeys: 4,
        maxKeyLength: 4096,
      }),
    ]),
  );
  // The federated principal's own token authorises generateIdToken; fetched when the first ID token is.
  const federated = new CredentialCache<GcpToken>({
    ...common,
    name: 'federated-token',
    exchange: (_key, signal) => exchange.federatedToken(signal),
    pinned: [SINGLE],
  });
  const idTokens =
    gcp.serviceAccount === undefined
      ? undefined
      : new CredentialCache<GcpToken>({
          ...common,
          name: 'id-token',
          allow: gcp.allowedAudiences ? (audience) => (gcp.allowedAudiences as string[]).includes(audience) : undefined,
          maxKeys: options.maxAudiences ?? 32,
          maxKeyLength: MAX_AUDIENCE,
          exchange: async (audience, signal) => {
            const token = await federated.get(SINGLE, signal);
            if (!token.ok) throw token.error;
            return exchange.idToken(audience, token.value.token, signal);
          },
        });
  const caches = [accessTokens, federated, ...(idTokens ? [idTokens] : []), ...extraAccounts.values()];
  const startTokens = (): void => {
    accessTokens.start();
    for (const c of extraAccounts.values()) c.start();
  };
  const refreshAll = async (reason: string): Promise<void> => {
    await Promise.all([
      accessTokens.refreshAll(reason),
      ...[...extraAccounts.values()].map((c) => c.refreshAll(reason)),
      (async () => {
        await federated.refreshAll(reason);
        await idTokens?.refreshAll(reason);
      })(),
    ]);
  };

  const host = options.hostname ?? hostname();
  const facts: MetadataFacts = {
    projectId: gcp.projectId,
    numericProjectId: gcp.projectNumber,
    zone: `projects/${gcp.projectNumber}/zones/${gcp.zone}`,
    instanceId: instanceIdFor(gcp.projectNumber, host),
    name: host,
    hostname: host,
    universeDomain: 'googleapis.com',
    email: gcp.serviceAccount ?? federatedAccountName(gcp),
    extraEmails: gcp.extraServiceAccounts,
    scopes: DEFAULT_SCOPES,
  };
  const surface = metadataSurface({
    facts,
    accessTokens,
    extraAccounts,
    defaultScopes: DEFAULT_SCOPES,
    idTokens,
    clock: ctx.clock,
    noIdentityText: NO_IDENTITY_TEXT,
  });

  const unsubscribes: Array<() => void> = [];
  let started = false;
  // X.509 path: files are written from the source's verified SVID, one write at a time, then every
  // credential is fetched anew (the SDK re-reads the files on each refresh).
  let writes: Promise<void> = Promise.resolve();
  const install = (svid: X509Svid, reason: string): Promise<void> => {
    writes = writes
      .then(async () => {
        if (!files) return;
        await files.write(svid);
        const first = written === undefined;
        written = svid;
        if (!started) return;
        if (first) startTokens();
        else await refreshAll(reason);
      })
      .catch((error: unknown) =>
        ctx.logger.error({ err: (error as Error).message }, 'could not write the X.509-SVID files for Google'),
      );
    return writes;
  };

  return {
    cloud: 'gcp',
    surfaces: [surface],
    async start() {
      if (jwt) {
        unsubscribes.push(jwt.subscribe(() => void refreshAll('JWT-SVID identity changed')));
        started = true;
        startTokens();
        return;
      }
      const source = x509;
      if (!source) return;
      unsubscribes.push(source.subscribe((svid) => void install(svid, 'X.509-SVID rotated')));
      const current = source.current();
      if (current) await install(current, 'start');
      started = true;
      // With no SVID yet, the first one the source verifies starts the credentials.
      if (written) startTokens();
    },
    readiness(): Readiness {
      if (!started || (files && !written)) return { ready: false, reason: 'waiting for the first SVID' };
      const lookup = accessTokens.peek(defaultKey);
      if (!lookup.ok) return { ready: false, reason: lookup.error.message };
      for (const [email, tokens] of extraAccounts) {
        const extra = tokens.peek(defaultKey);
        if (!extra.ok) return { ready: false, reason: `${email}: ${extra.error.message}` };
      }
      return { ready: true };
    },
    async stop() {
      for (const u of unsubscribes.splice(0)) u();
      for (const c of caches) c.stop();
      exchange.close();
      await writes;
      await files?.remove();
    },
  };
}
