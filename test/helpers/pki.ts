// Test PKI: the dev CA, plus X.509-SVIDs that break one rule each of docs/spiffe.md#x509-svid-validation (and the
// go-spiffe load checks), so every refusal path can be tested with certificates minted at test time.
//
//   const ca = await DevCa.create({ trustDomain: 'example.org' });
//   const bad = await mintBad(ca, 'leaf-is-ca');      // { kind, certPem, keyPem, bundlePem, refusedAt, ... }
//   for (const kind of BAD_SVID_KINDS) { ... }

import type { CertificateSpec, DevKeyType, KeyUsageName } from '@spiffe-connector/dev/dev-ca.ts';
import { DevCa } from '@spiffe-connector/dev/dev-ca.ts';

export type {
  CertificateSpec,
  DevKeyFormat,
  DevKeyType,
  DevServerCert,
  DevX509Svid,
  IssuedCertificate,
} from '@spiffe-connector/dev/dev-ca.ts';
export { DevCa };

export const BAD_SVID_KINDS = [
  'leaf-is-ca',
  'leaf-key-cert-sign',
  'leaf-crl-sign',
  'leaf-no-digital-signature',
  'leaf-no-key-usage',
  'no-uri-san',
  'two-uri-sans',
  'uri-san-not-spiffe',
  'uri-san-invalid-spiffe-id',
  'root-path-id',
  'expired',
  'not-yet-valid',
  'foreign-ca',
  'other-trust-domain',
  'intermediate-not-ca',
  'intermediate-no-key-cert-sign',
  'key-mismatch',
  'truncated-pem',
  'unknown-critical-extension',
] as const;

export type BadSvidKind = (typeof BAD_SVID_KINDS)[number];

export interface BadSvid {
  kind: BadSvidKind;
  /** Leaf first, then intermediates (as in tls.crt). */
  certPem: string;
  /** PKCS#8 PEM. */
  keyPem: string;
  /** The bundle to verify against: the root of the CA passed to mintBad. */
  bundlePem: string;
  /** Where a SPIFFE validator must refuse it: at load (parse) or at chain verification. */
  refusedAt: 'parse' | 'verify';
  /** The SPIFFE ID in the URI SAN, when there is exactly one. */
  spiffeId: string | undefined;
}

export interface MintBadOptions {
  /** The time the certificate is minted for; `expired`/`not-yet-valid` are relative to it. Default: now. */
  now?: Date;
  keyType?: DevKeyType;
  /** Path of the SPIFFE ID for the leaf; default /ns/default/sa/app. */
  path?: string;
}

const HOUR = 3600_000;

/** An extension OID no X.509-SVID verifier processes (a private arc), marked critical by `unknown-critical-extension`. */
export const UNKNOWN_CRITICAL_OID = '1.3.6.1.4.1.99999.1.2.3';

/** Mints an X.509-SVID under `ca` that breaks exactly the rule its kind names. */
export async function mintBad(ca: DevCa, kind: BadSvidKind, opts: MintBadOptions = {}): Promise<BadSvid> {
  const now = opts.now ?? new Date();
  const id = `spiffe://${ca.trustDomain}${opts.path ?? '/ns/default/sa/app'}`;
  const good = (over: Partial<CertificateSpec> = {}): CertificateSpec => ({
    uris: [id],
    basicConstraints: { ca: false },
    keyUsage: ['digitalSignature', 'keyEncipherment'],
    extKeyUsage: ['serverAuth', 'clientAuth'],
    notBefore: new Date(now.getTime() - HOUR),
    notAfter: new Date(now.getTime() + HOUR),
    ...(opts.keyType ? { keyType: opts.keyType } : {}),
    ...over,
  });
  const result = (
    issued: { chainPem: string; keyPem: string },
    refusedAt: 'parse' | 'verify',
    spiffeId: string | undefined = id,
  ): BadSvid => ({ kind, certPem: issued.chainPem, keyPem: issued.keyPem, bundlePem: ca.certPem, refusedAt, spiffeId });
  const withUsage = (keyUsage: KeyUsageName[] | null) => ca.issueCertificate(good({ keyUsage }));

  switch (kind) {
    case 'leaf-is-ca':
      return result(await ca.issueCertificate(good({ basicConstraints: { ca: true } })), 'parse');
    case 'leaf-key-cert-sign':
      return result(await withUsage(['digitalSignature', 'keyCertSign']), 'parse');
    case 'leaf-crl-sign':
      return result(await withUsage(['digitalSignature', 'cRLSign']), 'parse');
    case 'leaf-no-digital-signature':
      return result(await withUsage(['keyEncipherment']), 'parse');
    case 'leaf-no-key-usage':
      return result(await withUsage(null), 'parse');
    case 'no-uri-san':
      return result(await ca.issueCertificate(good({ uris: [], dnsNames: ['app.example.org'] })), 'parse', undefined);
    case 'two-uri-sans':
      return result(
        await ca.issueCertificate(good({ uris: [id, `spiffe://${ca.trustDomain}/ns/default/sa/other`] })),
        'parse',
        undefined,
      );
    case 'uri-san-not-spiffe':
      return result(await ca.issueCertificate(good({ uris: [`https://${ca.trustDomain}/app`] })), 'parse', undefined);
    case 'uri-san-invalid-spiffe-id':
      return result(
        await ca.issueCertificate(good({ uris: [`spiffe://${ca.trustDomain}/ns/../sa/app`] })),
        'parse',
        undefined,
      );
    case 'root-path-id': {
      const root = `spiffe://${ca.trustDomain}`;
      return result(await ca.issueCertificate(good({ uris: [root] })), 'parse', root);
    }
    case 'expired':
      return result(
        await ca.issueCertificate(
          good({ notBefore: new Date(now.getTime() - 2 * HOUR), notAfter: new Date(now.getTime() - HOUR) }),
        ),
        'verify',
      );
    case 'not-yet-valid':
      return result(
        await ca.issueCertificate(
          good({ notBefore: new Date(now.getTime() + HOUR), notAfter: new Date(now.getTime() + 2 * HOUR) }),
        ),
        'verify',
      );
    case 'foreign-ca': {
      // Claims this trust domain, but chains to a CA the bundle does not hold.
      const foreign = await DevCa.create({
        trustDomain: `foreign.${ca.trustDomain}`,
        now: new Date(now.getTime() - HOUR),
      });
      return result(await foreign.issueCertificate(good()), 'verify');
    }
    case 'other-trust-domain': {
      // A well-formed SVID of another trust domain, signed by that trust domain's CA.
      const otherTd = `other.${ca.trustDomain}`;
      const other = await DevCa.create({ trustDomain: otherTd, now: new Date(now.getTime() - HOUR) });
      const otherId = `spiffe://${otherTd}/ns/default/sa/app`;
      return result(await other.issueCertificate(good({ uris: [otherId] })), 'verify', otherId);
    }
    case 'intermediate-not-ca':
    case 'intermediate-no-key-cert-sign': {
      const notCa = kind === 'intermediate-not-ca';
      const intermediate = await ca.issueIntermediate({
        now: new Date(now.getTime() - HOUR),
        ttlSeconds: 3 * 3600,
        override: notCa
          ? { basicConstraints: { ca: false }, keyUsage: ['keyCertSign', 'cRLSign'] }
          : { keyUsage: ['digitalSignature', 'cRLSign'] },
      });
      return result(await intermediate.issueCertificate(good()), 'parse');
    }
    case 'key-mismatch': {
      const a = await ca.issueCertificate(good());
      const b = await ca.issueCertificate(good());
      return result({ chainPem: a.chainPem, keyPem: b.keyPem }, 'parse');
    }
    case 'unknown-critical-extension':
      // RFC 5280 §4.2: a certificate with a critical extension the verifier does not process is refused.
      return result(
        await ca.issueCertificate(
          good({
            extraExtensions: [{ oid: UNKNOWN_CRITICAL_OID, critical: true, value: new Uint8Array([0x05, 0x00]) }],
          }),
        ),
        'verify',
      );
    case 'truncated-pem': {
      const a = await ca.issueCertificate(good());
      return result(
        { chainPem: a.certPem.slice(0, Math.floor(a.certPem.length / 2)), keyPem: a.keyPem },
        'parse',
        undefined,
      );
    }
  }
}
