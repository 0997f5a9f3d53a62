// An X509Source for tests: holds an SVID minted by a DevCa and rotates it on demand.
import { X509Bundle } from '../../src/spiffe/bundle.ts';
import { Listeners, type Unsubscribe, type X509Source } from '../../src/spiffe/source.ts';
import { parseX509Svid, type X509Svid } from '../../src/spiffe/x509-svid.ts';
import type { DevCa, DevX509Svid } from '../helpers/pki.ts';

export class TestX509Source implements X509Source {
  readonly #listeners = new Listeners<[X509Svid]>();
  readonly #bundle: X509Bundle;
  #svid: X509Svid;

  constructor(ca: DevCa, svid: DevX509Svid) {
    this.#bundle = X509Bundle.parsePem(ca.trustDomain, ca.certPem);
    this.#svid = parseX509Svid(svid.certPem, svid.keyPem);
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

  whenReady(): Promise<void> {
    return Promise.resolve();
  }

  async close(): Promise<void> {}

  /** Swaps in a new SVID and tells the subscribers, as a file or Workload API rotation does. */
  rotate(svid: DevX509Svid): X509Svid {
    this.#svid = parseX509Svid(svid.certPem, svid.keyPem);
    this.#listeners.emit(this.#svid);
    return this.#svid;
  }
}
