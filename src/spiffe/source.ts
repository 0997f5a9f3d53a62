// The identity the sidecar holds, behind two small consumer-side interfaces (go-spiffe's
// x509svid.Source / jwtsvid.Source), so files, the issuer exchange and the Workload API are interchangeable.

import type { X509Bundle } from './bundle.ts';
import type { JwtSvid } from './jwt-svid.ts';
import type { X509Svid } from './x509-svid.ts';

export type Unsubscribe = () => void;

export interface X509Source {
  /** The current verified X.509-SVID, or undefined before the first good one. */
  current(): X509Svid | undefined;
  /** The trust bundle of our trust domain, or undefined before it is known. */
  bundle(): X509Bundle | undefined;
  /** Called after a new SVID (or bundle) has been verified and swapped in. */
  subscribe(listener: (svid: X509Svid) => void): Unsubscribe;
  /** Resolves once the first good SVID is held (or the source is closed). */
  whenReady(): Promise<void>;
  close(): Promise<void>;
}

export interface JwtSource {
  /**
   * A JWT-SVID for `audience`, valid for at least a little while. May be served from a cache;
   * may call the issuer or the Workload API. Throws ConnectorError (code jwt_svid_invalid,
   * identity_unavailable or upstream_*) with `retryable` set.
   */
  fetchJwtSvid(audience: string, signal: AbortSignal): Promise<JwtSvid>;
  /** Called when the identity behind future JWT-SVIDs changed (new file, new X.509-SVID, rotation). */
  subscribe(listener: () => void): Unsubscribe;
  close(): Promise<void>;
}

/** What a provider gets: whichever sources the config enables. */
export interface Identity {
  readonly x509: X509Source | undefined;
  readonly jwt: JwtSource | undefined;
}

/** A tiny listener set shared by the sources. */
export class Listeners<A extends unknown[]> {
  readonly #set = new Set<(...args: A) => void>();

  add(listener: (...args: A) => void): Unsubscribe {
    this.#set.add(listener);
    return () => this.#set.delete(listener);
  }

  emit(...args: A): void {
    for (const l of [...this.#set]) {
      try {
        l(...args);
      } catch {
        // A listener's failure is its own; the source keeps going.
      }
    }
  }
}
