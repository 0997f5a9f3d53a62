// The issuer tests' X509Source: the shared settable source (test/helpers/identity.ts), rotated to SVIDs a
// test minted itself.
import { parseX509Svid, type X509Svid } from '../../src/spiffe/x509-svid.ts';
import { SettableX509Source } from '../helpers/identity.ts';
import type { DevCa, DevX509Svid } from '../helpers/pki.ts';

export class TestX509Source extends SettableX509Source {
  constructor(ca: DevCa, svid: DevX509Svid) {
    super(ca, parseX509Svid(svid.certPem, svid.keyPem));
  }

  /** Swaps in a new SVID and tells the subscribers, as a file or Workload API rotation does. */
  rotate(svid: DevX509Svid): X509Svid {
    return this.set(parseX509Svid(svid.certPem, svid.keyPem));
  }
}
