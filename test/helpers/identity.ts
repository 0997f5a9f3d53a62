// Identity sources for tests: a JwtSource that signs fresh JWT-SVIDs with a DevOidcSigner, and an
// X509Source holding DevCa-minted SVIDs, both able to "rotate" and tell their subscribers.

import { DevCa } from '@spiffe-connector/dev/dev-ca.ts';
import type { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { X509Bundle } from '../../src/spiffe/bundle.ts';
import { type JwtSvid, parseJwtSvidInsecure } from '../../src/spiffe/jwt-svid.ts';
import { type JwtSource, Listeners, type Unsubscribe, type X509Source } from '../../src/spiffe/source.ts';
import { parseX509Svid, type X509Svid } from '../../src/spiffe/x509-svid.ts';

export interface TestJwtSource extends JwtSource {
  /** Audiences asked for, in order (one per fetchJwtSvid call, failed ones too). */
  readonly requested: string[];
  /** How many times fetchJwtSvid was called. */
  readonly fetches: number;
  /**
   * When set, handed out instead of a freshly signed token, parsed without the validity and audience
   * checks (to see what the sidecar does with an expired or wrong SVID from its source).
   */
  fixedToken: string | undefined;
  /** Changes the identity (new sub if given) and tells subscribers. */
  rotate(spiffeId?: string): void;
  /** Makes fetchJwtSvid fail with `error` until called with undefined. */
  failWith(error: Error | undefined): void;
}

/**
 * A JwtSource that signs a fresh JWT-SVID with `signer` on every call, issued at `now()` (default: the
 * real time; give a ManualClock's when the stand-ins check validity against one).
 */
export function signerJwtSource(options: {
  signer: DevOidcSigner;
  spiffeId: string;
  ttlSeconds?: number;
  now?: () => number;
}): TestJwtSource {
  const listeners = new Listeners<[]>();
  let spiffeId = options.spiffeId;
  let failure: Error | undefined;
  const requested: string[] = [];
  const source: TestJwtSource = {
    requested,
    get fetches() {
      return requested.length;
    },
    fixedToken: undefined,
    async fetchJwtSvid(audience: string): Promise<JwtSvid> {
      requested.push(audience);
      if (failure) throw failure;
      const now = options.now ? options.now() : Date.now();
      if (source.fixedToken !== undefined)
        return parseJwtSvidInsecure(source.fixedToken, { now: new Date(now), leewaySeconds: 1e9 });
      const token = await options.signer.sign({
        sub: spiffeId,
        aud: audience,
        ttlSeconds: options.ttlSeconds ?? 3600,
        iat: Math.floor(now / 1000),
      });
      return parseJwtSvidInsecure(token, { now: new Date(now), audience });
    },
    subscribe: (listener) => listeners.add(listener),
    rotate(next?: string) {
      if (next) spiffeId = next;
      listeners.emit();
    },
    failWith(error) {
      failure = error;
    },
    close: async () => {},
  };
  return source;
}

/** An X509Source holding the SVID it is given, and swapping in the next one when told (as a rotation does). */
export class SettableX509Source implements X509Source {
  readonly ca: DevCa;
  #bundle: X509Bundle;
  readonly #listeners = new Listeners<[X509Svid]>();
  #svid: X509Svid;

  constructor(ca: DevCa, svid: X509Svid) {
    this.ca = ca;
    this.#svid = svid;
    this.#bundle = X509Bundle.parsePem(ca.trustDomain, ca.certPem);
  }

  current(): X509Svid | undefined {
    return this.#svid;
  }

  bundle(): X509Bundle | undefined {
    return this.#bundle;
  }

  subscribe(listener: (svid: X509Svid) => void): Unsubscribe {
    return this.#listeners.add(listener);
  }

  async whenReady(): Promise<void> {}

  async close(): Promise<void> {}

  /** Swaps in another bundle (a root added ahead of a rotation), the SVID unchanged, and tells the subscribers. */
  setBundle(bundle: X509Bundle): void {
    this.#bundle = bundle;
    this.#listeners.emit(this.#svid);
  }

  /** Swaps in `svid` and tells the subscribers. */
  set(svid: X509Svid): X509Svid {
    this.#svid = svid;
    this.#listeners.emit(svid);
    return svid;
  }
}

export interface TestX509Source extends X509Source {
  readonly ca: DevCa;
  /** Issues a fresh SVID (same ID unless given) and tells subscribers. */
  rotate(spiffeId?: string): Promise<X509Svid>;
}

/**
 * `now` (default: the real time) is when each SVID is minted: give the clock of a world whose fakes
 * check validity against a ManualClock, or a new SVID may start after that clock's "now".
 */
export async function devX509Source(
  options: { trustDomain?: string; spiffeId?: string; ttlSeconds?: number; ca?: DevCa; now?: () => number } = {},
): Promise<TestX509Source> {
  const trustDomain = options.trustDomain ?? 'example.org';
  const ca = options.ca ?? (await DevCa.create({ trustDomain }));
  let spiffeId = options.spiffeId ?? `spiffe://${trustDomain}/ns/default/sa/app`;
  const issue = async (): Promise<X509Svid> => {
    const minted = await ca.issueX509Svid({
      spiffeId,
      ttlSeconds: options.ttlSeconds ?? 3600,
      ...(options.now ? { now: new Date(options.now()) } : {}),
    });
    return parseX509Svid(minted.certPem, minted.keyPem);
  };
  const source = new SettableX509Source(ca, await issue());
  return Object.assign(source, {
    async rotate(next?: string) {
      if (next) spiffeId = next;
      return source.set(await issue());
    },
  });
}
