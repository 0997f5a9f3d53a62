// Google workload identity federation through google-auth-library (docs/gcp.md "STS token exchange",
// "IAM Credentials", "X.509 federation"): STS with a JWT-SVID (subject token supplier) or an X.509-SVID (mTLS, certificate_config.json),
// impersonation through IAM Credentials generateAccessToken, ID tokens through generateIdToken. One SDK
// client per (scope set, impersonation); no caching here: the credential caches in module.ts decide when to call.
import { decodeJwt } from 'jose';
import type { Clock } from '../../base/clock.ts';
import { ConnectorError } from '../../base/errors.ts';
import { Secret } from '../../base/secret.ts';
import type { GcpConfig } from '../../config/gcp.ts';
import type { Logger } from '../../ops/logger.ts';
import type { Metrics } from '../../ops/metrics.ts';
import type { JwtSource } from '../../spiffe/source.ts';
import type { CertificateFilePaths } from './certificate-files.ts';
import { type GcpToken, scopeKey } from './credential.ts';
import { federatedPrincipal, MAX_GOOGLE_SUBJECT_BYTES, providerAudience, stsTokenUrl } from './env.ts';
import { type GoogleAuthSdk, type RefreshResult, type SpiffeClient, spiffeClientFactory } from './sdk-client.ts';
import {
  isIamAccessTokenResponse,
  isIamIdTokenResponse,
  isStsTokenResponse,
  upstreamError,
} from './upstream-errors.ts';

export const CLOUD_PLATFORM = 'https://www.googleapis.com/auth/cloud-platform';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const MTLS_TYPE = 'urn:ietf:params:oauth:token-type:mtls';

/** Where the subject token comes from: JWT-SVIDs, or the X.509-SVID files kept by CertificateFiles. */
export type SubjectSource =
  | { readonly kind: 'jwt'; readonly jwt: JwtSource }
  | { readonly kind: 'x509'; readonly files: CertificateFilePaths; readonly currentSubject: () => string | undefined };

export interface GcpExchangeOptions {
  readonly sdk: GoogleAuthSdk;
  readonly gcp: GcpConfig;
  readonly subject: SubjectSource;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics?: Metrics | undefined;
  /** Extra PEM CA for the Google endpoints (gcp.caFile). */
  readonly caPem?: string | undefined;
  /** Per-request timeout. Default 10 s. */
  readonly timeoutMs?: number;
  /** Most SDK clients kept (one per scope set and impersonation); least recently used dropped. */
  readonly maxClients: number;
}

export class GcpExchange {
  readonly #o: GcpExchangeOptions;
  readonly #newClient: ReturnType<typeof spiffeClientFactory>;
  readonly #clients = new Map<string, SpiffeClient>();
  /** The SPIFFE ID of the JWT-SVID last handed to the SDK (the audit event names it). */
  #lastJwtSubject: string | undefined;

  constructor(options: GcpExchangeOptions) {
    this.#o = options;
    this.#newClient = spiffeClientFactory(options.sdk, {
      timeoutMs: options.timeoutMs ?? 10_000,
      caPem: options.caPem,
    });
  }

  /**
   * An access token for `scopes`: impersonating `serviceAccount` (one of gcp.extraServiceAccounts) when
   * given, else gcp.serviceAccount when set, else the federated token itself.
   */
  accessToken(scopes: readonly string[], signal: AbortSignal, serviceAccount?: string): Promise<GcpToken> {
    return this.#exchange(scopes, serviceAccount ?? this.#o.gcp.serviceAccount, signal);
  }

  /** The federated principal's own cloud-platform token: what calls generateIdToken. */
  federatedToken(signal: AbortSignal): Promise<GcpToken> {
    return this.#exchange([CLOUD_PLATFORM], undefined, signal);
  }

  /** An ID token for `audience` from IAM Credentials generateIdToken, authorised by the federated token. */
  async idToken(audience: string, federated: Secret, signal: AbortSignal): Promise<GcpToken> {
    const sa = this.#requireServiceAccount();
    const url = `${this.#iamBase()}/v1/projects/-/serviceAccounts/${encodeURIComponent(sa)}:generateIdToken`;
    const client = this.#client([CLOUD_PLATFORM], undefined);
    let body: unknown;
    try {
      body = await client.postJson(url, federated.reveal(), { audience, includeEmail: true }, signal);
    } catch (thrown) {
      throw this.#failed(thrown, 'Google IAM Credentials (generateIdToken)', signal);
    }
    if (!isIamIdTokenResponse(body)) throw malformed('generateIdToken');
    let exp: unknown;
    try {
      exp = decodeJwt(body.token).exp;
    } catch {
      throw malformed('generateIdToken');
    }
    if (typeof exp !== 'number') throw malformed('generateIdToken');
    return {
      token: new Secret(body.token),
      expiresAt: new Date(exp * 1000),
      principal: sa,
      spiffeId: this.#o.subject.kind === 'x509' ? this.#o.subject.currentSubject() : this.#lastJwtSubject,
    };
  }

  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
  }

  async #exchange(scopes: readonly string[], impersonate: string | undefined, signal: AbortSignal): Promise<GcpToken> {
    if (this.#o.subject.kind === 'x509') checkSubject(this.#o.subject.currentSubject());
    const client = this.#client(scopes, impersonate);
    const started = this.#o.clock.now();
    const what = impersonate ? 'Google STS or IAM Credentials (generateAccessToken)' : 'Google STS';
    let result: RefreshResult;
    try {
      result = await client.refresh(signal);
    } catch (thrown) {
      throw this.#failed(thrown, what, signal);
    }
    const body = result.body;
    const spiffeId = this.#o.subject.kind === 'x509' ? this.#o.subject.currentSubject() : this.#lastJwtSubject;
    if (impersonate) {
      if (!isIamAccessTokenResponse(body)) throw malformed('generateAccessToken');
      return {
        token: new Secret(body.accessToken),
        expiresAt: new Date(Date.parse(body.expireTime)),
        principal: impersonate,
        spiffeId,
      };
    }
    if (!isStsTokenResponse(body)) throw malformed('STS token exchange');
    const principal = spiffeId === undefined ? undefined : federatedPrincipal(this.#o.gcp, spiffeId);
    return {
      token: new Secret(body.access_token),
      expiresAt: new Date(started + body.expires_in * 1000),
      principal,
      spiffeId,
    };
  }

  #failed(thrown: unknown, what: string, signal: AbortSignal): ConnectorError {
    const error = upstreamError(thrown, what, signal);
    if (error.upstreamCode !== undefined)
      this.#o.metrics?.upstreamErrors.inc({ cloud: 'gcp', code: error.upstreamCode });
    return error;
  }

  /** The SDK client for `scopes`, impersonating the `impersonate` service account when given. */
  #client(scopes: readonly string[], impersonate: string | undefined): SpiffeClient {
    const key = `${impersonate ?? 'federated'}|${scopeKey(scopes)}`;
    const existing = this.#clients.get(key);
    if (existing) {
      this.#clients.delete(key);
      this.#clients.set(key, existing);
      return existing;
    }
    while (this.#clients.size >= this.#o.maxClients) {
      const oldest = this.#clients.keys().next().value as string;
      this.#clients.get(oldest)?.close();
      this.#clients.delete(oldest);
    }
    const gcp = this.#o.gcp;
    const subject = this.#o.subject;
    const audience = providerAudience(gcp);
    const source =
      subject.kind === 'jwt'
        ? { subject_token_type: JWT_TYPE }
        : {
            subject_token_type: MTLS_TYPE,
            credential_source: {
              certificate: {
                certificate_config_location: subject.files.configPath,
                trust_chain_path: subject.files.chainPath,
              },
            },
          };
    const client = this.#newClient(
      {
        type: 'external_account',
        audience,
        token_url: stsTokenUrl(gcp, subject.kind === 'x509'),
        scopes: [...scopes],
        ...source,
        ...(impersonate !== undefined
          ? {
              service_account_impersonation_url: `${this.#iamBase()}/v1/projects/-/serviceAccounts/${encodeURIComponent(impersonate)}:generateAccessToken`,
              service_account_impersonation: { token_lifetime_seconds: 3600 },
            }
          : {}),
      },
      subject.kind === 'jwt'
        ? (signal) => jwtSubjectToken(subject.jwt, audience, signal, (id) => (this.#lastJwtSubject = id))
        : undefined,
    );
    this.#clients.set(key, client);
    return client;
  }

  #iamBase(): string {
    return this.#o.gcp.iamCredentialsEndpoint.replace(/\/+$/, '');
  }

  #requireServiceAccount(): string {
    const sa = this.#o.gcp.serviceAccount;
    if (sa === undefined) throw new ConnectorError('internal', 'no gcp.serviceAccount is configured');
    return sa;
  }
}

/** The JWT-SVID for the provider's audience, checked the way Google will check it. */
async function jwtSubjectToken(
  jwt: JwtSource,
  audience: string,
  signal: AbortSignal,
  presented: (spiffeId: string) => void,
): Promise<string> {
  const svid = await jwt.fetchJwtSvid(audience, signal);
  presented(svid.id.toString());
  if (!svid.audience.includes(audience)) {
    throw new ConnectorError(
      'jwt_svid_invalid',
      `the JWT-SVID's audience (${svid.audience.join(', ')}) does not include ${audience}, which Google STS requires`,
      { retryable: false },
    );
  }
  checkSubject(svid.id.toString());
  return svid.token.reveal();
}

function checkSubject(subject: string | undefined): void {
  if (subject === undefined) throw new ConnectorError('identity_unavailable', 'no X.509-SVID yet', { retryable: true });
  const bytes = Buffer.byteLength(subject);
  if (bytes > MAX_GOOGLE_SUBJECT_BYTES) {
    throw new ConnectorError(
      'svid_invalid',
      `the SPIFFE ID ${subject} is ${bytes} bytes; Google limits google.subject to ${MAX_GOOGLE_SUBJECT_BYTES} bytes, so STS would refuse it`,
      { retryable: false },
    );
  }
}

function malformed(what: string): ConnectorError {
  return new ConnectorError('upstream_malformed', `Google answered ${what} with a body we could not read`, {
    retryable: true,
  });
}
