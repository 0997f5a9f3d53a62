// File mode: a JWT-SVID for the Entra audience kept fresh at AZURE_FEDERATED_TOKEN_FILE, so SDKs that speak
// workload identity natively exchange it themselves (docs/azure.md#token-file).
//
// Timing: the JS WorkloadIdentityCredential caches the file's contents for 5 minutes, and Entra must still
// accept the assertion when the SDK presents it. So the file is rewritten at half the SVID's life and never
// later than FILE_MARGIN before expiry: whatever an SDK read, even 5 minutes ago, stays valid for 10 more.
import type { Clock } from '../../base/clock.ts';
import { CredentialCache, SINGLE } from '../../cache/credential-cache.ts';
import { type RefreshPolicy, TOKEN_POLICY } from '../../cache/refresh-policy.ts';
import { writeSecretFile } from '../../files/secret-file.ts';
import type { Logger } from '../../ops/logger.ts';
import type { Metrics } from '../../ops/metrics.ts';
import type { JwtSource } from '../../spiffe/source.ts';

/** Rewrite no later than this before the SVID expires: the SDK's 5-minute file cache plus 10 minutes. */
export const FILE_MARGIN_MS = 15 * 60_000;
export const FILE_POLICY: RefreshPolicy = { ...TOKEN_POLICY, marginMs: FILE_MARGIN_MS };

export interface AzureTokenFileOptions {
  readonly path: string;
  readonly audience: string;
  readonly jwt: JwtSource;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics?: Metrics | undefined;
}

interface Written {
  readonly expiresAt: Date;
}

export class AzureTokenFile {
  readonly #o: AzureTokenFileOptions;
  readonly #credential: CredentialCache<Written>;

  constructor(options: AzureTokenFileOptions) {
    this.#o = options;
    this.#credential = new CredentialCache<Written>({
      cloud: 'azure',
      name: 'federated-token-file',
      exchange: (_key, signal) => this.#write(signal),
      pinned: [SINGLE],
      expiresAt: (w) => w.expiresAt,
      policy: FILE_POLICY,
      clock: options.clock,
      logger: options.logger,
      metrics: options.metrics,
    });
  }

  start(): void {
    this.#credential.start();
  }

  /** Rewrites the file now (the identity changed). */
  refreshNow(reason: string): Promise<void> {
    return this.#credential.refreshAll(reason);
  }

  whenReady(): Promise<void> {
    return this.#credential.whenReady();
  }

  /** Whether the file holds a JWT-SVID that is still valid, and if not, why. */
  status(): { valid: true } | { valid: false; reason: string } {
    const lookup = this.#credential.peek(SINGLE);
    return lookup.ok ? { valid: true } : { valid: false, reason: lookup.error.message };
  }

  stop(): void {
    this.#credential.stop();
  }

  async #write(signal: AbortSignal): Promise<Written> {
    const { path, audience, jwt, clock, logger } = this.#o;
    const svid = await jwt.fetchJwtSvid(audience, signal);
    const remainingMs = svid.expiresAt.getTime() - clock.now();
    if (remainingMs < 2 * FILE_MARGIN_MS) {
      logger.warn(
        { cloud: 'azure', path, remainingSeconds: Math.round(remainingMs / 1000) },
        'the JWT-SVID for the token file lives less than 30 minutes; SDKs cache the file for 5 minutes, so the file is rewritten often and may be read close to expiry',
      );
    }
    await writeSecretFile(path, svid.token, 'federated token file', signal);
    logger.info({ cloud: 'azure', path, expiresAt: svid.expiresAt.toISOString() }, 'wrote the federated token file');
    return { expiresAt: svid.expiresAt };
  }
}
