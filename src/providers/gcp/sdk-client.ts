// google-auth-library's IdentityPoolClient (docs/gcp.md#google-auth-library), adapted to run behind our cache:
// every refresh is forced (our cache decides when), carries our AbortSignal and timeout, and its HTTP
// goes through a transport without the SDK's hidden retries (our RefreshingCredential retries, named
// and counted). X.509 path: the SDK's mTLS agent, plus an extra CA when one is configured.

import { type AgentOptions, Agent as HttpsAgent } from 'node:https';
import { rootCertificates } from 'node:tls';
import type { gaxios, IdentityPoolClient, IdentityPoolClientOptions } from 'google-auth-library';

export type GoogleAuthSdk = typeof import('google-auth-library');
type Gaxios = gaxios.Gaxios;

/** What the client returns from a forced refresh: the token and the raw upstream body it came in. */
export interface RefreshResult {
  readonly accessToken: string | undefined;
  readonly body: unknown;
}

export interface SpiffeClient {
  /** Exchanges anew (STS, then generateAccessToken when impersonating), ignoring the SDK's own token cache. */
  refresh(signal: AbortSignal): Promise<RefreshResult>;
  /** POSTs JSON with this client's transport (the mTLS agent on the X.509 path), bounded by `signal`. */
  postJson(url: string, bearer: string, body: Record<string, unknown>, signal: AbortSignal): Promise<unknown>;
  close(): void;
}

export interface TransportOptions {
  readonly timeoutMs: number;
  /** Extra PEM CA trusted besides the system roots (gcp.caFile). */
  readonly caPem: string | undefined;
}

/** Builds clients of one SDK instance (the SDK is imported only when the provider is created). */
/** Subject tokens for the programmatic supplier, given the signal of the refresh that asked. */
export type SubjectTokenFn = (signal: AbortSignal) => Promise<string>;

export function spiffeClientFactory(
  sdk: GoogleAuthSdk,
  transport: TransportOptions,
): (options: IdentityPoolClientOptions, subjectToken?: SubjectTokenFn) => SpiffeClient {
  class SpiffeIdentityPoolClient extends sdk.IdentityPoolClient {
    readonly #state: RefreshState;
    #agent: HttpsAgent | undefined;

    constructor(options: IdentityPoolClientOptions, state: RefreshState) {
      super({ ...options, transporter: makeTransport(sdk, transport, state, undefined) });
      this.#state = state;
      setStsTransport(this, makeTransport(sdk, transport, state, undefined));
    }

    override async retrieveSubjectToken(): Promise<string> {
      const token = await super.retrieveSubjectToken();
      // On the certificate path the SDK just installed fresh Gaxios instances with its mTLS agent
      // (cert and key re-read from the files); keep that agent, drop the SDK's retries, add our CA.
      const sdkAgent = (this.transporter.defaults.agent ?? undefined) as HttpsAgent | undefined;
      if (sdkAgent instanceof HttpsAgent) {
        const agent = transport.caPem
          ? new HttpsAgent({ ...(sdkAgent.options as AgentOptions), ca: [...rootCertificates, transport.caPem] })
          : sdkAgent;
        if (agent !== sdkAgent) sdkAgent.destroy();
        this.#agent?.destroy();
        this.#agent = agent;
        this.transporter = makeTransport(sdk, transport, this.#state, agent);
        setStsTransport(this, makeTransport(sdk, transport, this.#state, agent));
      }
      return token;
    }

    async forceRefresh(signal: AbortSignal): Promise<RefreshResult> {
      this.#state.signal = signal;
      try {
        const result = await this.refreshAccessTokenAsync();
        return { accessToken: result.access_token ?? undefined, body: result.res?.data };
      } finally {
        this.#state.signal = undefined;
      }
    }

    destroyAgent(): void {
      this.#agent?.destroy();
      this.#agent = undefined;
    }
  }

  return (options, subjectToken) => {
    const state: RefreshState = { signal: undefined };
    const withSupplier: IdentityPoolClientOptions = subjectToken
      ? {
          ...options,
          subject_token_supplier: {
            getSubjectToken: () => subjectToken(state.signal ?? AbortSignal.timeout(transport.timeoutMs)),
          },
        }
      : options;
    const client = new SpiffeIdentityPoolClient(withSupplier, state);
    return {
      refresh: (signal) => client.forceRefresh(signal),
      postJson: async (url, bearer, body, signal) => {
        const response = await client.transporter.request({
          url,
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` },
          data: body,
          responseType: 'json',
          signal,
        });
        return response.data;
      },
      close: () => client.destroyAgent(),
    };
  };
}

/** The signal of the refresh in flight (one at a time per client: the SDK and our cache both single-flight). */
interface RefreshState {
  signal: AbortSignal | undefined;
}

/** The StsCredentials transport is protected inside the SDK; this is the one place we replace it. */
function setStsTransport(client: IdentityPoolClient, transport: Gaxios): void {
  const sts = (client as unknown as { stsCredential: { transporter: Gaxios } }).stsCredential;
  sts.transporter = transport;
}

/**
 * A Gaxios with a timeout and our AbortSignal on every request and no retries of its own. An agent
 * is set only for mTLS or an extra CA, so HTTPS_PROXY keeps working otherwise.
 */
function makeTransport(
  sdk: GoogleAuthSdk,
  o: TransportOptions,
  state: RefreshState,
  mtlsAgent: HttpsAgent | undefined,
): Gaxios {
  let agent: HttpsAgent | undefined = mtlsAgent;
  if (!agent && o.caPem) agent = new HttpsAgent({ ca: [...rootCertificates, o.caPem], keepAlive: true });
  const g = new sdk.gaxios.Gaxios({
    retry: false,
    retryConfig: { retry: 0, noResponseRetries: 0, shouldRetry: async () => false },
    ...(agent
      ? { agent: (url: URL) => (url.protocol === 'https:' ? agent : (undefined as unknown as HttpsAgent)) }
      : {}),
  });
  g.interceptors.request.add({
    resolved: async (opts) => {
      const signals = [AbortSignal.timeout(o.timeoutMs)];
      const own = opts.signal ?? state.signal;
      if (own) signals.push(own);
      opts.signal = AbortSignal.any(signals);
      opts.retry = false;
      return opts;
    },
  });
  return g;
}
