// A trust domain's CA minted in memory, issuing X.509-SVIDs the way cert-manager csi-driver-spiffe
// does (see docs/ for the SPIFFE X.509-SVID rules), intermediates and HTTPS serving certificates: for `dev` mode and tests.
//
// API
//   DevCa.create({ trustDomain, keyType?, ttlSeconds?, now? })      → Promise<DevCa> (a self-signed root)
//   ca.trustDomain                                                  the trust domain name, e.g. "example.org"
//   ca.certPem                                                      the root certificate: what goes in ca.crt
//   ca.signingCertPem                                               the certificate this CA signs with (the root, or an intermediate)
//   ca.intermediatesPem                                             intermediates between the root and this CA, nearest first ("" for a root)
//   ca.issueX509Svid({ spiffeId, ttlSeconds?, keyType?, now?, keyFormat? })   → DevX509Svid
//   ca.issueIntermediate({ ttlSeconds?, keyType?, now?, pathLength?, override? }) → DevCa signing with a new intermediate
//   ca.issueServerCert({ dnsNames, ipAddresses?, ttlSeconds?, keyType?, now? }) → DevServerCert
//   ca.issueCertificate(spec)                                                   → IssuedCertificate: any profile, for refusal tests
// `now` defaults to the real time at each call; notBefore is `now`, notAfter `now + ttl`, both cut to the second.
// Default TTLs: root 30 days, intermediate 7 days, SVID 1 hour (csi-driver-spiffe's default), server cert 7 days.
// Key types 'ec-p256' (default), 'rsa-2048', 'ed25519'; key PEM 'pkcs8' (default), 'sec1' (EC), 'pkcs1' (RSA).
import { KeyObject, randomBytes, type webcrypto, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { parseSpiffeId, parseTrustDomain } from './spiffe-id.ts';
import { x509 } from './x509.ts';

export type DevKeyType = 'ec-p256' | 'rsa-2048' | 'ed25519';
export type DevKeyFormat = 'pkcs8' | 'sec1' | 'pkcs1';
export type KeyUsageName =
  | 'digitalSignature'
  | 'nonRepudiation'
  | 'keyEncipherment'
  | 'dataEncipherment'
  | 'keyAgreement'
  | 'keyCertSign'
  | 'cRLSign';
export type ExtKeyUsageName = 'serverAuth' | 'clientAuth';

/** Everything about a certificate to mint. Profiles that break the SPIFFE rules are allowed on purpose. */
export interface CertificateSpec {
  /** Subject DN such as "CN=x, O=y"; empty (the default) means an empty subject. */
  subject?: string;
  uris?: readonly string[];
  dnsNames?: readonly string[];
  ipAddresses?: readonly string[];
  /** Defaults to true when the subject is empty (RFC 5280 §4.2.1.6). */
  sanCritical?: boolean;
  /** null leaves the extension out. */
  basicConstraints: { ca: boolean; pathLength?: number } | null;
  /** null leaves the extension out; otherwise it is critical. */
  keyUsage: readonly KeyUsageName[] | null;
  extKeyUsage?: readonly ExtKeyUsageName[];
  notBefore: Date;
  notAfter: Date;
  keyType?: DevKeyType;
  /** PEM encoding of the returned private key; default pkcs8. */
  keyFormat?: DevKeyFormat;
  /** Tests only: more extensions, as given (an unknown critical one, for instance). */
  extraExtensions?: readonly { oid: string; critical: boolean; value: Uint8Array }[];
}

export interface IssuedCertificate {
  /** This certificate alone. */
  certPem: string;
  /** This certificate, then the intermediates up to (not including) the root. */
  chainPem: string;
  keyPem: string;
  certificate: X509Certificate;
  privateKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
}

export interface DevX509Svid {
  spiffeId: string;
  /** Leaf first, then intermediates if any: the csi-driver-spiffe tls.crt. */
  certPem: string;
  keyPem: string;
  notBefore: Date;
  notAfter: Date;
}

export interface DevServerCert {
  /** Leaf first, then intermediates if any. */
  certPem: string;
  keyPem: string;
  notAfter: Date;
}

interface KeyPair {
  readonly keys: webcrypto.CryptoKeyPair;
  readonly signingAlgorithm: webcrypto.Algorithm | webcrypto.EcdsaParams | webcrypto.RsaHashedImportParams;
}

const KEY_USAGE_BITS: Record<KeyUsageName, number> = {
  digitalSignature: x509.KeyUsageFlags.digitalSignature,
  nonRepudiation: x509.KeyUsageFlags.nonRepudiation,
  keyEncipherment: x509.KeyUsageFlags.keyEncipherment,
  dataEncipherment: x509.KeyUsageFlags.dataEncipherment,
  keyAgreement: x509.KeyUsageFlags.keyAgreement,
  keyCertSign: x509.KeyUsageFlags.keyCertSign,
  cRLSign: x509.KeyUsageFlags.cRLSign,
};

const EXT_KEY_USAGE_OIDS: Record<ExtKeyUsageName, string> = {
  serverAuth: x509.ExtendedKeyUsage.serverAuth,
  clientAuth: x509.ExtendedKeyUsage.clientAuth,
};

export class DevCa {
  readonly trustDomain: string;
  /** The root certificate (PEM): the trust bundle, what goes in ca.crt. */
  readonly certPem: string;
  /** The certificate this CA signs with: the root itself, or an intermediate. */
  readonly signingCertPem: string;
  /** PEM of the intermediates from this CA up to (not including) the root, nearest first; "" for a root. */
  readonly intermediatesPem: string;
  readonly keyType: DevKeyType;
  readonly notAfter: Date;
  readonly #cert: x509.X509Certificate;
  readonly #key: KeyPair;
  readonly #remainingPathLength: number | undefined;

  private constructor(
    trustDomain: string,
    rootPem: string,
    cert: x509.X509Certificate,
    key: KeyPair,
    keyType: DevKeyType,
    intermediatesPem: string,
    remainingPathLength: number | undefined,
  ) {
    this.trustDomain = trustDomain;
    this.certPem = rootPem;
    this.#cert = cert;
    this.#key = key;
    this.keyType = keyType;
    this.signingCertPem = pem(cert);
    this.intermediatesPem = intermediatesPem;
    this.notAfter = cert.notAfter;
    this.#remainingPathLength = remainingPathLength;
  }

  /** A self-signed root CA for the trust domain: cA=true, keyCertSign+cRLSign, URI SAN spiffe://<td>. */
  static async create(opts: {
    trustDomain: string;
    keyType?: DevKeyType;
    ttlSeconds?: number;
    now?: Date;
  }): Promise<DevCa> {
    const td = parseTrustDomain(opts.trustDomain);
    const keyType = opts.keyType ?? 'ec-p256';
    const key = await generateKey(keyType);
    const { notBefore, notAfter } = validity(opts.now, opts.ttlSeconds ?? 30 * 24 * 3600);
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serialNumber(),
      name: `CN=${td} root CA, O=spiffe-connector dev`,
      keys: key.keys,
      signingAlgorithm: key.signingAlgorithm,
      notBefore,
      notAfter,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${td}` }], false),
        await x509.SubjectKeyIdentifierExtension.create(key.keys.publicKey),
      ],
    });
    return new DevCa(td, pem(cert), cert, key, keyType, '', undefined);
  }

  /**
   * A new intermediate CA signed by this one (cA=true, keyCertSign+cRLSign, URI SAN spiffe://<td>),
   * returned as a DevCa that issues through it, so chains leaf → intermediate(s) → root can be built.
   */
  async issueIntermediate(
    opts: {
      ttlSeconds?: number;
      keyType?: DevKeyType;
      now?: Date;
      pathLength?: number;
      /** Tests only: replace the CA profile, to mint intermediates that break the rules. */
      override?: Partial<Pick<CertificateSpec, 'basicConstraints' | 'keyUsage'>>;
    } = {},
  ): Promise<DevCa> {
    if (this.#remainingPathLength === 0) {
      throw new Error(`CA "${this.#cert.subject}" has pathLenConstraint 0 and cannot issue an intermediate`);
    }
    const keyType = opts.keyType ?? this.keyType;
    const { notBefore, notAfter } = validity(opts.now, opts.ttlSeconds ?? 7 * 24 * 3600);
    const serial = serialNumber();
    const issued = await this.#issue(
      {
        subject: `CN=${this.trustDomain} intermediate CA ${serial.slice(0, 8)}, O=spiffe-connector dev`,
        uris: [`spiffe://${this.trustDomain}`],
        sanCritical: false,
        basicConstraints: opts.pathLength === undefined ? { ca: true } : { ca: true, pathLength: opts.pathLength },
        keyUsage: ['keyCertSign', 'cRLSign'],
        notBefore,
        notAfter,
        keyType,
        ...opts.override,
      },
      serial,
    );
    const below =
      opts.pathLength ?? (this.#remainingPathLength === undefined ? undefined : this.#remainingPathLength - 1);
    return new DevCa(this.trustDomain, this.certPem, issued.cert, issued.key, keyType, issued.chainPem, below);
  }

  /**
   * An X.509-SVID as csi-driver-spiffe makes it: empty subject, critical SAN with exactly one URI,
   * critical KU digitalSignature+keyEncipherment, EKU serverAuth+clientAuth, cA=false. ECDSA P-256
   * unless keyType says otherwise. `certPem` is leaf first, then this CA's intermediates.
   */
  async issueX509Svid(opts: {
    spiffeId: string;
    ttlSeconds?: number;
    keyType?: DevKeyType;
    now?: Date;
    keyFormat?: DevKeyFormat;
  }): Promise<DevX509Svid> {
    const id = parseSpiffeId(opts.spiffeId);
    if (id.path === '') {
      throw new Error(
        `"${opts.spiffeId}" has no path; X.509-SVID leaves need a workload path such as /ns/default/sa/app`,
      );
    }
    if (id.trustDomain !== this.trustDomain) {
      throw new Error(`"${opts.spiffeId}" is not in this CA's trust domain "${this.trustDomain}"`);
    }
    const { notBefore, notAfter } = validity(opts.now, opts.ttlSeconds ?? 3600);
    const issued = await this.issueCertificate({
      uris: [id.id],
      basicConstraints: { ca: false },
      keyUsage: ['digitalSignature', 'keyEncipherment'],
      extKeyUsage: ['serverAuth', 'clientAuth'],
      notBefore,
      notAfter,
      keyType: opts.keyType ?? 'ec-p256',
      keyFormat: opts.keyFormat ?? 'pkcs8',
    });
    return {
      spiffeId: id.id,
      certPem: issued.chainPem,
      keyPem: issued.keyPem,
      notBefore: issued.notBefore,
      notAfter: issued.notAfter,
    };
  }

  /** An HTTPS serving certificate (stand-ins, the issuer): DNS/IP SANs, EKU serverAuth, cA=false. */
  async issueServerCert(opts: {
    dnsNames: string[];
    ipAddresses?: string[];
    ttlSeconds?: number;
    keyType?: DevKeyType;
    now?: Date;
  }): Promise<DevServerCert> {
    const ips = opts.ipAddresses ?? [];
    if (opts.dnsNames.length === 0 && ips.length === 0) {
      throw new Error('a server certificate needs at least one DNS name or IP address');
    }
    const { notBefore, notAfter } = validity(opts.now, opts.ttlSeconds ?? 7 * 24 * 3600);
    const issued = await this.issueCertificate({
      subject: `CN=${opts.dnsNames[0] ?? ips[0] ?? ''}`,
      dnsNames: opts.dnsNames,
      ipAddresses: ips,
      basicConstraints: { ca: false },
      keyUsage: ['digitalSignature', 'keyEncipherment'],
      extKeyUsage: ['serverAuth'],
      notBefore,
      notAfter,
      keyType: opts.keyType ?? 'ec-p256',
    });
    return { certPem: issued.chainPem, keyPem: issued.keyPem, notAfter: issued.notAfter };
  }

  /** Mints any certificate profile under this CA; nothing is checked, so refusal tests can break every rule. */
  async issueCertificate(spec: CertificateSpec): Promise<IssuedCertificate> {
    const { cert: _cert, key: _key, ...issued } = await this.#issue(spec, serialNumber());
    return issued;
  }

  async #issue(
    spec: CertificateSpec,
    serial: string,
  ): Promise<IssuedCertificate & { cert: x509.X509Certificate; key: KeyPair }> {
    const keyType = spec.keyType ?? 'ec-p256';
    const key = await generateKey(keyType);
    const subject = spec.subject ?? '';
    const names: { type: 'url' | 'dns' | 'ip'; value: string }[] = [
      ...(spec.uris ?? []).map((value) => ({ type: 'url' as const, value })),
      ...(spec.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
      ...(spec.ipAddresses ?? []).map((value) => {
        if (isIP(value) === 0) throw new Error(`"${value}" is not an IP address`);
        return { type: 'ip' as const, value };
      }),
    ];
    const extensions: x509.Extension[] = [];
    if (spec.basicConstraints) {
      extensions.push(
        new x509.BasicConstraintsExtension(spec.basicConstraints.ca, spec.basicConstraints.pathLength, true),
      );
    }
    if (spec.keyUsage) {
      const bits = spec.keyUsage.reduce((acc, name) => acc | KEY_USAGE_BITS[name], 0);
      extensions.push(new x509.KeyUsagesExtension(bits, true));
    }
    if (spec.extKeyUsage && spec.extKeyUsage.length > 0) {
      extensions.push(
        new x509.ExtendedKeyUsageExtension(
          spec.extKeyUsage.map((u) => EXT_KEY_USAGE_OIDS[u]),
          false,
        ),
      );
    }
    if (names.length > 0) {
      extensions.push(new x509.SubjectAlternativeNameExtension(names, spec.sanCritical ?? subject === ''));
    }
    extensions.push(await x509.SubjectKeyIdentifierExtension.create(key.keys.publicKey));
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(this.#key.keys.publicKey));
    for (const e of spec.extraExtensions ?? []) extensions.push(new x509.Extension(e.oid, e.critical, e.value));
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial,
      subject,
      issuer: this.#cert.subjectName,
      publicKey: key.keys.publicKey,
      signingKey: this.#key.keys.privateKey,
      signingAlgorithm: this.#key.signingAlgorithm,
      notBefore: spec.notBefore,
      notAfter: spec.notAfter,
      extensions,
    });
    const privateKey = KeyObject.from(key.keys.privateKey);
    const certPem = pem(cert);
    return {
      cert,
      key,
      certPem,
      chainPem: certPem + this.intermediatesPem,
      keyPem: exportKey(privateKey, spec.keyFormat ?? 'pkcs8'),
      certificate: new X509Certificate(certPem),
      privateKey,
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
    };
  }
}

async function generateKey(keyType: DevKeyType): Promise<KeyPair> {
  switch (keyType) {
    case 'ec-p256': {
      const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
      return { keys: await crypto.subtle.generateKey(alg, true, ['sign', 'verify']), signingAlgorithm: alg };
    }
    case 'rsa-2048': {
      const alg = {
        name: 'RSASSA-PKCS1-v1_5',
        modulusLength: 2048,
        publicExponent: new Uint8Array([1, 0, 1]),
        hash: 'SHA-256',
      };
      return { keys: await crypto.subtle.generateKey(alg, true, ['sign', 'verify']), signingAlgorithm: alg };
    }
    case 'ed25519': {
      const alg = { name: 'Ed25519' };
      const keys = (await crypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
      return { keys, signingAlgorithm: alg };
    }
  }
}

function exportKey(key: KeyObject, format: DevKeyFormat): string {
  const type = key.asymmetricKeyType;
  if (format === 'sec1' && type !== 'ec') throw new Error(`SEC1 is an EC key format; this key is ${type}`);
  if (format === 'pkcs1' && type !== 'rsa') throw new Error(`PKCS#1 is an RSA key format; this key is ${type}`);
  return key.export({ type: format, format: 'pem' }) as string;
}

function validity(now: Date | undefined, ttlSeconds: number): { notBefore: Date; notAfter: Date } {
  const start = Math.floor((now ?? new Date()).getTime() / 1000) * 1000;
  return { notBefore: new Date(start), notAfter: new Date(start + ttlSeconds * 1000) };
}

/** 16 random bytes, positive and without a leading zero byte (RFC 5280 §4.1.2.2). */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x40;
  return bytes.toString('hex');
}

function pem(cert: x509.X509Certificate): string {
  return `${cert.toString('pem').trim()}\n`;
}
