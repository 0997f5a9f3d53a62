// The files google-auth-library's X.509 path reads on every refresh (docs/gcp.md#x509-federation): the
// current VERIFIED X.509-SVID (chain leaf first, PKCS#8 key) and a certificate_config.json pointing
// at them, in a private directory (0700, files 0600), each replaced by an atomic rename.

import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { X509Svid } from '../../spiffe/x509-svid.ts';

export interface CertificateFilePaths {
  /** certificate_config.json: what `credential_source.certificate.certificate_config_location` names. */
  readonly configPath: string;
  /** The chain, leaf first: cert_path and trust_chain_path (so intermediates go into the subject token). */
  readonly chainPath: string;
  readonly keyPath: string;
}

export class CertificateFiles implements CertificateFilePaths {
  readonly dir: string;
  readonly configPath: string;
  readonly chainPath: string;
  readonly keyPath: string;

  /** `stateDir/gcp-x509/`; nothing is written until write(). */
  constructor(stateDir: string) {
    this.dir = join(stateDir, 'gcp-x509');
    this.configPath = join(this.dir, 'certificate_config.json');
    this.chainPath = join(this.dir, 'tls.crt');
    this.keyPath = join(this.dir, 'tls.key');
  }

  /** Writes `svid` (already verified by its source) and the config that names it. */
  async write(svid: X509Svid): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
    // Key before chain: the SDK reads the chain first, so a read racing a rotation sees the old
    // chain with the new key at worst, fails the TLS handshake and is retried after the refresh
    // that follows every rotation.
    await atomicWrite(this.keyPath, svid.keyPkcs8Pem().reveal());
    await atomicWrite(this.chainPath, svid.chainPem());
    const config = { cert_configs: { workload: { cert_path: this.chainPath, key_path: this.keyPath } } };
    await atomicWrite(this.configPath, `${JSON.stringify(config, null, 2)}\n`);
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

async function atomicWrite(path: string, content: string): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, content, { mode: 0o600, flag: 'wx' });
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}
