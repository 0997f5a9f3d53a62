// The Entra side of Azure: a JWT-SVID presented as a client assertion (workload identity federation) through
// @azure/identity's ClientAssertionCredential, one resource at a time (docs/azure.md#exchange).
//
// A fresh credential is built for every exchange, on purpose: msal-node keeps an access-token cache and a
// throttling cache (after a 429/5xx or a Retry-After it refuses identical requests for up to an hour without
// calling Entra, msal-common ThrottlingUtils). Our RefreshingCredential owns caching, refresh timing and
// backoff, so a refresh must really reach Entra with a new assertion, and an identity change must not be
// answered from msal's cache. The cost is one OIDC metadata GET per exchange, every half hour per resource.
import type { Agent as HttpsAgent } from 'node:https';
import type { AccessToken, ClientAssertionCredentialOptions, GetTokenOptions } from '@azure/identity';
import type { Clock } from '../../base/clock.ts';
import { ConnectorError, isConnectorError } from '../../base/errors.ts';
import { Secret } from '../../base/secret.ts';
import type { Logger } from '../../ops/logger.ts';
import type { Metrics } from '../../ops/metrics.ts';
import type { JwtSource } from '../../spiffe/source.ts';
import { type AzureAccessToken, scopeForResource } from './credential.ts';
import {
  ASSERTION_TIME_WINDOW,
  type AssertionFacts,
  type EntraFailure,
  entraError,
  isEntraErrorWire,
} from './upstream-errors.ts';

type HttpClient = NonNullable<ClientAssertionCredentialOptions['httpClient']>;
type PipelinePolicy = NonNullable<ClientAssertionCredentialOptions['additionalPolicies']>[number]['policy'];

export interface AssertionCredential {
  getToken(scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken | null>;
}

/** The part of @azure/identity we use; the module itself is imported only when Azure is configured. */
export interface AzureIdentitySdk {
  readonly ClientAssertionCredential: new (
    tenantId: string,
    clientId: string,
    getAssertion: () => Promise<string>,
    options?: ClientAssertionCredentialOptions,
  ) => AssertionCredential;
}

export interface EntraExchangeOptions {
  readonly tenantId: string;
  readonly clientId: string;
  /** https origin of the Entra authority, e.g. https://login.microsoftonline.com. */
  readonly authorityHost: string;
  /** Audience of the JWT-SVID presented to Entra (api://AzureADTokenExchange). */
  readonly audience: string;
  readonly jwt: JwtSource;
  readonly sdk: AzureIdentitySdk;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics?: Metrics | undefined;
  /**
   * The HTTPS agent for Entra when azure.caFile adds a CA (entraAgent()); without one, the SDK's own agent
   * trusts the default roots.
   */
  readonly agent?: HttpsAgent | undefined;
  /** Timeout of each HTTP request to Entra. Default 10 s. */
  readonly requestTimeoutMs?: number;
  /** The clock msal stamps `expiresOn` with (the real one); only tests replace it. */
  readonly sdkNow?: () => number;
  /**
   * One HTTP client for every credential this exchange builds: a credential per exchange keeps msal's cache
   * out of the way, but each would otherwise make its own HTTPS agent (with the default roots and caFile).
   */
  readonly httpClient?: HttpClient;
}

export class EntraExchange {
  readonly #o: EntraExchangeOptions;

  constructor(options: EntraExchangeOptions) {
    this.#o = options;
  }

  /** Exchanges a fresh JWT-SVID for an access token to `resource`. Throws ConnectorError. */
  async fetchToken(resource: string, signal: AbortSignal): Promise<AzureAccessToken> {
    try {
      return await this.#attempt(resource, signal);
    } catch (error) {
      if (!(isConnectorError(error) && error.upstreamCode === `AADSTS${ASSERTION_TIME_WINDOW}`) || signal.aborted)
        throw error;
      // The assertion was outside its time window: one more try at once with a freshly fetched JWT-SVID.
      this.#o.metrics?.immediateRetries.inc({ cloud: 'azure', retry: 'fresh-assertion' });
      this.#o.logger.warn(
        { cloud: 'azure', resource, retry: 'fresh-assertion', upstreamCode: error.upstreamCode },
        'Entra refused the assertion as outside its time window; retrying at once with a fresh JWT-SVID',
      );
      return this.#attempt(resource, signal);
    }
  }

  async #attempt(resource: string, signal: AbortSignal): Promise<AzureAccessToken> {
    const o = this.#o;
    let facts: AssertionFacts | undefined;
    let assertionError: unknown;
    let failure: EntraFailure | undefined;

    // msal asks for the assertion more than once per token request (the app config and the request both
    // carry the callback): one JWT-SVID per attempt, shared; a retry builds a new attempt and gets a new one.
    let assertion: Promise<string> | undefined;
    const getAssertion = (): Promise<string> =>
      (assertion ??= o.jwt.fetchJwtSvid(o.audience, signal).then(
        (svid) => {
          facts = {
            tenantId: o.tenantId,
            clientId: o.clientId,
            issuer: svid.issuer ?? '(the JWT-SVID has no iss claim; Entra needs one)',
            subject: svid.id.toString(),
            audience: o.audience,
          };
          return svid.token.reveal();
        },
        (error: unknown) => {
          assertionError = error;
          throw error;
        },
      ));

    const timeoutMs = o.requestTimeoutMs ?? 10_000;
    const agent = o.agent;
    let requestId: string | undefined;
    const policy: PipelinePolicy = {
      name: 'spiffe-connector-entra',
      async sendRequest(request, next) {
        request.abortSignal = request.abortSignal
          ? AbortSignal.any([request.abortSignal as AbortSignal, signal])
          : signal;
        request.timeout = timeoutMs;
        // An agent already set is an HTTPS proxy's (the SDK's proxy policy runs first), which wins, as it
        // would over TLS settings.
        if (agent) request.agent ??= agent;
        const response = await next(request);
        if (response.status >= 400) failure = { status: response.status, wire: parseErrorBody(response.bodyAsText) };
        else requestId = response.headers.get('x-ms-request-id') ?? requestId;
        return response;
      },
    };

    const credential = new o.sdk.ClientAssertionCredential(o.tenantId, o.clientId, getAssertion, {
      authorityHost: o.authorityHost,
      disableInstanceDiscovery: true,
      // Our cache owns retries (named, counted, backed off); the SDK's own would hide failures and delay.
      retryOptions: { maxRetries: 0 },
      ...(o.httpClient ? { httpClient: o.httpClient } : {}),
      additionalPolicies: [{ policy, position: 'perCall' }],
    });

    const sdkNow = o.sdkNow ?? Date.now;
    const obtainedAt = o.clock.now();
    let token: AccessToken | null;
    try {
      token = await untilAborted(credential.getToken(scopeForResource(resource), { abortSignal: signal }), signal);
    } catch (thrown) {
      throw this.#classify(thrown, { failure, facts, assertionError, signal });
    }
    if (!token?.token || !Number.isFinite(token.expiresOnTimestamp)) {
      throw new ConnectorError('upstream_malformed', 'Entra answered without an access token or expiry', {
        retryable: true,
      });
    }
    // msal stamps expiry on the real clock; carry the remaining lifetime over to ours.
    const expiresAt = o.clock.now() + (token.expiresOnTimestamp - sdkNow());
    return {
      accessToken: new Secret(token.token),
      resource,
      obtainedAt: new Date(obtainedAt),
      expiresAt: new Date(expiresAt),
      spiffeId: facts?.subject,
      requestId,
    };
  }

  #classify(
    thrown: unknown,
    seen: {
      failure: EntraFailure | undefined;
      facts: AssertionFacts | undefined;
      assertionError: unknown;
      signal: AbortSignal;
    },
  ): ConnectorError {
    if (seen.assertionError !== undefined) {
      const e = seen.assertionError;
      return isConnectorError(e)
        ? e
        : new ConnectorError('identity_unavailable', `no JWT-SVID for ${this.#o.audience}: ${(e as Error).message}`, {
            cause: e,
            retryable: true,
          });
    }
    if (seen.failure) {
      const error = entraError(seen.failure, seen.facts);
      this.#o.metrics?.upstreamErrors.inc({ cloud: 'azure', code: error.upstreamCode ?? `HTTP${seen.failure.status}` });
      return error;
    }
    if (seen.signal.aborted)
      return new ConnectorError('timeout', 'Entra did not answer in time', { cause: thrown, retryable: true });
    const name = thrown instanceof Error ? thrown.name : '';
    if (name === 'ClientConfigurationError') {
      return new ConnectorError(
        'upstream_rejected',
        `the Entra client is misconfigured: ${(thrown as Error).message}`,
        { cause: thrown, retryable: false },
      );
    }
    this.#o.metrics?.upstreamErrors.inc({ cloud: 'azure', code: 'network' });
    return new ConnectorError(
      'upstream_unavailable',
      `could not reach Entra at ${this.#o.authorityHost}: ${thrown instanceof Error ? thrown.message.split('\n')[0] : String(thrown)}`,
      { cause: thrown, retryable: true },
    );
  }
}

function parseErrorBody(text: string | null | undefined): EntraFailure['wire'] {
  if (!text) return undefined;
  try {
    const body: unknown = JSON.parse(text);
    return isEntraErrorWire(body) ? body : undefined;
  } catch {
    return undefined;
  }
}

/** Settles with `promise`, or rejects as soon as `signal` aborts (msal does not take a signal). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
