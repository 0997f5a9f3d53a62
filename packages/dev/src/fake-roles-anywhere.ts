// A local stand-in for IAM Roles Anywhere on loopback, for tests and the dev mode: CreateSession
// verified the way AWS documents it — the SigV4-X509 signature with the leaf's key and the algorithm of
// its key type, the date within 5 minutes, the chain to the trust anchor's CA, validity, the trust
// anchor, profile and role, the duration limits — answering AWS's JSON error shapes with the
// x-amzn-ErrorType header. Its verification is its own (node:crypto, @peculiar/x509): it imports
// nothing from the product, so a signing bug there cannot hide behind a shared helper.
import { createHash, randomBytes, randomUUID, verify as verifySignature, X509Certificate } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import 'reflect-metadata'; // tsyringe, under @peculiar/x509, refuses to load without it
import * as x509 from '@peculiar/x509';

export interface FakeTrustAnchor {
  readonly arn: string;
  /** PEM of the CA certificate(s) the anchor trusts (the csi-driver-spiffe CA). */
  readonly caPem: string;
  readonly enabled?: boolean;
}

export interface FakeProfile {
  readonly arn: string;
  readonly roleArns: readonly string[];
  /** The profile's session duration cap, default 3600 as in AWS. */
  readonly durationSeconds?: number;
  readonly enabled?: boolean;
}

/** A role whose trust policy allows rolesanywhere.amazonaws.com, with optional conditions. */
export interface FakeRolesAnywhereRole {
  readonly arn: string;
  /** `aws:SourceArn` condition: the trust anchors allowed (default: any). */
  readonly trustAnchorArns?: readonly string[];
  /** `StringLike` pattern for `aws:PrincipalTag/x509SAN/URI` (`*` and `?`), e.g. spiffe://example.org/ns/default/*. */
  readonly sanUri?: string;
}

export type RolesAnywhereFault = { readonly status: number; readonly code: string; readonly message?: string };

export interface FakeRolesAnywhereOptions {
  /** The region this endpoint serves; ARNs of other regions are not found. */
  readonly region: string;
  readonly trustAnchors?: readonly FakeTrustAnchor[];
  readonly profiles?: readonly FakeProfile[];
  readonly roles?: readonly FakeRolesAnywhereRole[];
  /** Milliseconds since the epoch; default Date.now. */
  readonly now?: () => number;
  readonly port?: number;
  /** Largest accepted difference between X-Amz-Date and now, default 5 min as AWS. */
  readonly maxSkewMs?: number;
}

export interface RolesAnywhereSession {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken: string;
  /** Epoch ms, whole seconds. */
  readonly expiration: number;
  readonly assumedRoleArn: string;
  readonly roleArn: string;
  readonly trustAnchorArn: string;
  readonly profileArn: string;
  readonly durationSeconds: number;
  readonly algorithm: string;
  /** The leaf's serial number, decimal (as in the credential scope). */
  readonly serial: string;
  /** SHA-256 of the leaf's DER, hex. */
  readonly leafFingerprint: string;
  /** The principal tags AWS derives from the certificate (default attribute mapping). */
  readonly principalTags: Readonly<Record<string, string>>;
  readonly sourceIdentity: string | undefined;
}

export interface FakeRolesAnywhereStats {
  requests: number;
  sessions: number;
  faultsServed: number;
  /** Error types answered, by type. */
  errors: Record<string, number>;
  /** The message of the last refusal. */
  lastError: string | undefined;
}

class RaError extends Error {
  readonly status: number;
  readonly type: string;

  constructor(status: number, type: string, message: string) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

const denied = (message: string): RaError => new RaError(403, 'AccessDeniedException', message);
const invalid = (message: string): RaError => new RaError(400, 'ValidationException', message);
const notFound = (message: string): RaError => new RaError(404, 'ResourceNotFoundException', message);

const MAX_BODY = 64 * 1024;
const MAX_CHAIN = 5;
const AUTH =
  /^(AWS4-X509-(?:RSA|ECDSA)-SHA256) Credential=([^,\s]+),\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]+)$/;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
const RA_ARN = /^arn:aws[a-z-]*:rolesanywhere:([a-z0-9-]+):(\d{12}):(trust-anchor|profile)\/[0-9A-Za-z-]+$/;
const ROLE_ARN = /^arn:aws[a-z-]*:iam::(\d{12}):role\/(?:[\w+=,.@-]+\/)*([\w+=,.@-]{1,64})$/;
const WEAK_HASHES = new Set(['SHA-1', 'MD5', 'MD2']);

export class FakeRolesAnywhere {
  readonly url: string;
  readonly region: string;
  readonly stats: FakeRolesAnywhereStats = {
    requests: 0,
    sessions: 0,
    faultsServed: 0,
    errors: {},
    lastError: undefined,
  };
  readonly #server: Server;
  readonly #now: () => number;
  readonly #maxSkewMs: number;
  readonly #anchors = new Map<string, { anchor: FakeTrustAnchor; cas: X509Certificate[] }>();
  readonly #profiles = new Map<string, FakeProfile>();
  readonly #roles = new Map<string, FakeRolesAnywhereRole>();
  readonly #sessions: RolesAnywhereSession[] = [];
  #faults: RolesAnywhereFault[] = [];

  private constructor(server: Server, url: string, options: FakeRolesAnywhereOptions) {
    this.#server = server;
    this.url = url;
    this.region = options.region;
    this.#now = options.now ?? Date.now;
    this.#maxSkewMs = options.maxSkewMs ?? 5 * 60_000;
    for (const a of options.trustAnchors ?? []) this.addTrustAnchor(a);
    for (const p of options.profiles ?? []) this.addProfile(p);
    for (const r of options.roles ?? []) this.addRole(r);
  }

  static async start(options: FakeRolesAnywhereOptions): Promise<FakeRolesAnywhere> {
    let fake: FakeRolesAnywhere | undefined;
    const server = createServer((req, res) => void fake?.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
    });
    const port = (server.address() as AddressInfo).port;
    fake = new FakeRolesAnywhere(server, `http://127.0.0.1:${port}`, options);
    return fake;
  }

  addTrustAnchor(anchor: FakeTrustAnchor): void {
    this.#anchors.set(anchor.arn, { anchor, cas: splitPem(anchor.caPem).map((der) => new X509Certificate(der)) });
  }

  addProfile(profile: FakeProfile): void {
    this.#profiles.set(profile.arn, profile);
  }

  addRole(role: FakeRolesAnywhereRole): void {
    this.#roles.set(role.arn, role);
  }

  /** The next requests are answered with these errors, in order (after their signature verified). */
  injectFaults(faults: readonly RolesAnywhereFault[]): void {
    this.#faults.push(...faults);
  }

  /** Every session issued, oldest first. */
  sessions(): readonly RolesAnywhereSession[] {
    return [...this.#sessions];
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomUUID();
    this.stats.requests += 1;
    try {
      const body = await readBody(req);
      const url = new URL(req.url ?? '/', 'http://placeholder');
      if (req.method !== 'POST' || url.pathname !== '/sessions')
        throw new RaError(404, 'UnknownOperationException', `no operation at ${req.method ?? ''} ${url.pathname}`);
      if (body === undefined) throw invalid('request body too large');
      const session = this.#createSession(req, url, body);
      const fault = this.#faults.shift();
      if (fault) {
        this.stats.faultsServed += 1;
        throw new RaError(fault.status, fault.code, fault.message ?? fault.code);
      }
      this.#sessions.push(session);
      this.stats.sessions += 1;
      respond(res, 201, requestId, {
        credentialSet: [
          {
            assumedRoleUser: {
              arn: session.assumedRoleArn,
              assumedRoleId: `AROA${randomBytes(8).toString('hex').toUpperCase()}:${session.assumedRoleArn.split('/').pop() ?? ''}`,
            },
            credentials: {
              accessKeyId: session.accessKeyId,
              secretAccessKey: session.secretAccessKey,
              sessionToken: session.sessionToken,
              expiration: new Date(session.expiration).toISOString().replace(/\.\d{3}Z$/, 'Z'),
            },
            packedPolicySize: Math.min(99, Object.keys(session.principalTags).length * 3),
            roleArn: session.roleArn,
            ...(session.sourceIdentity ? { sourceIdentity: session.sourceIdentity } : {}),
          },
        ],
        subjectArn: `arn:aws:rolesanywhere:${this.region}:${session.roleArn.split(':')[4] ?? ''}:subject/${randomUUID()}`,
      });
    } catch (error) {
      const e =
        error instanceof RaError
          ? error
          : new RaError(500, 'InternalServerException', `internal error: ${(error as Error).message}`);
      this.stats.errors[e.type] = (this.stats.errors[e.type] ?? 0) + 1;
      this.stats.lastError = e.message;
      respond(res, e.status, requestId, { message: e.message }, e.type);
    }
  }

  #createSession(req: IncomingMessage, url: URL, body: Buffer): RolesAnywhereSession {
    const now = this.#now();
    // 1. The signature: Authorization, date, scope, certificate, algorithm, signed headers, signature.
    const auth = AUTH.exec(headerValue(req, 'authorization') ?? '');
    if (!auth)
      throw denied(
        'Missing or malformed Authorization header (expected AWS4-X509-RSA-SHA256 or AWS4-X509-ECDSA-SHA256)',
      );
    const [, algorithm = '', credential = '', signedHeaderList = '', signatureHex = ''] = auth;
    const amzDate = headerValue(req, 'x-amz-date') ?? '';
    const date = parseAmzDate(amzDate);
    if (date === undefined) throw denied('Missing or malformed X-Amz-Date header');
    if (Math.abs(date - now) > this.#maxSkewMs)
      throw denied(`Signature expired: ${amzDate} is not within 5 minutes of the server time`);
    const [serial, scopeDate, scopeRegion, scopeService, terminator, ...rest] = credential.split('/');
    if (rest.length > 0 || terminator !== 'aws4_request' || scopeService !== 'rolesanywhere')
      throw denied(`Credential scope must be <serial>/<date>/<region>/rolesanywhere/aws4_request, got ${credential}`);
    if (scopeDate !== amzDate.slice(0, 8)) throw denied('Credential scope date does not match X-Amz-Date');
    if (scopeRegion !== this.region)
      throw denied(
        `Credential should be scoped to a valid region: this endpoint is ${this.region}, not ${scopeRegion ?? ''}`,
      );
    const leaf = parseCertificateHeader(headerValue(req, 'x-amz-x509'), 'X-Amz-X509');
    if (!leaf) throw denied('Missing or malformed X-Amz-X509 header (base64 DER of the end-entity certificate)');
    const chainHeader = headerValue(req, 'x-amz-x509-chain');
    const intermediates =
      chainHeader === undefined
        ? []
        : chainHeader.split(',').map((part) => parseCertificateHeader(part.trim(), 'X-Amz-X509-Chain'));
    if (intermediates.some((c) => c === undefined) || intermediates.length > MAX_CHAIN)
      throw denied('Malformed X-Amz-X509-Chain header');
    if (serial !== BigInt(`0x${leaf.serialNumber}`).toString(10))
      throw denied('Credential does not name the serial number (decimal) of the certificate in X-Amz-X509');
    const keyType = leaf.publicKey.asymmetricKeyType;
    const expected =
      keyType === 'ec' ? 'AWS4-X509-ECDSA-SHA256' : keyType === 'rsa' ? 'AWS4-X509-RSA-SHA256' : undefined;
    if (expected === undefined)
      throw denied(`Unsupported certificate key type ${keyType ?? 'unknown'}: RSA or EC keys only`);
    if (algorithm !== expected)
      throw denied(`Signing algorithm ${algorithm} does not match the certificate's ${keyType} key (${expected})`);
    const signedHeaders = signedHeaderList.split(';');
    for (const required of [
      'host',
      'x-amz-date',
      'x-amz-x509',
      ...(chainHeader === undefined ? [] : ['x-amz-x509-chain']),
    ]) {
      if (!signedHeaders.includes(required)) throw denied(`SignedHeaders must include ${required}`);
    }
    const canonical = canonicalRequest(req, url, signedHeaders, body);
    if (canonical === undefined) throw denied('A header listed in SignedHeaders is missing');
    const toSign = [
      algorithm,
      amzDate,
      `${scopeDate}/${scopeRegion}/rolesanywhere/aws4_request`,
      sha256Hex(canonical),
    ].join('\n');
    if (!verifySignature('sha256', Buffer.from(toSign), leaf.publicKey, Buffer.from(signatureHex, 'hex'))) {
      throw denied('Signature validation failed: the request signature does not match the certificate in X-Amz-X509');
    }

    // 2. The request: the three ARNs and the duration.
    const trustAnchorArn = url.searchParams.get('trustAnchorArn');
    const profileArn = url.searchParams.get('profileArn');
    const roleArn = url.searchParams.get('roleArn');
    if (!trustAnchorArn || !profileArn || !roleArn)
      throw invalid('trustAnchorArn, profileArn and roleArn are required query parameters');
    let input: unknown;
    try {
      input = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
    } catch {
      throw invalid('The request body is not JSON');
    }
    if (input === null || typeof input !== 'object' || Array.isArray(input))
      throw invalid('The request body must be a JSON object');
    const fields = input as Record<string, unknown>;
    const durationSeconds = fields['durationSeconds'] ?? 3600;
    if (
      typeof durationSeconds !== 'number' ||
      !Number.isInteger(durationSeconds) ||
      durationSeconds < 900 ||
      durationSeconds > 43200
    ) {
      throw invalid(
        "1 validation error detected: Value at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200",
      );
    }
    if (fields['roleSessionName'] !== undefined) throw invalid('roleSessionName is not accepted by this profile');

    // 3. The trust anchor and the certificate path to its CA.
    const held = this.#anchors.get(trustAnchorArn);
    if (!held || RA_ARN.exec(trustAnchorArn)?.[1] !== this.region) throw notFound('Trust anchor not found');
    if (held.anchor.enabled === false) throw denied('Trust anchor is disabled');
    verifyPath(leaf, intermediates as X509Certificate[], held.cas, now);
    if (!(leaf.subject as string | undefined)?.trim())
      throw denied('Untrusted certificate. Certificates with an empty subject are not supported');

    // 4. The profile, the role and its trust policy.
    const profile = this.#profiles.get(profileArn);
    if (!profile || RA_ARN.exec(profileArn)?.[1] !== this.region) throw notFound('Profile not found');
    if (profile.enabled === false) throw denied('Profile is disabled');
    if (!profile.roleArns.includes(roleArn)) throw denied(`Role ${roleArn} is not in the profile's roleArns`);
    if (durationSeconds > (profile.durationSeconds ?? 3600))
      throw invalid(
        `durationSeconds ${durationSeconds} exceeds the profile's durationSeconds (${profile.durationSeconds ?? 3600})`,
      );
    const roleMatch = ROLE_ARN.exec(roleArn);
    const role = this.#roles.get(roleArn);
    const tags = principalTags(leaf);
    if (!roleMatch || !role)
      throw denied(`Unable to assume role for ${roleArn}: the role does not trust rolesanywhere.amazonaws.com`);
    if (role.trustAnchorArns && !role.trustAnchorArns.includes(trustAnchorArn))
      throw denied(`Unable to assume role for ${roleArn}: aws:SourceArn does not match the role's trust policy`);
    if (role.sanUri !== undefined && !stringLike(role.sanUri, tags['x509SAN/URI'] ?? '')) {
      throw denied(
        `Unable to assume role for ${roleArn}: aws:PrincipalTag/x509SAN/URI does not match the role's trust policy`,
      );
    }

    const sessionName = leaf.serialNumber.toLowerCase();
    return {
      accessKeyId: `ASIA${randomBytes(8).toString('hex').toUpperCase()}`,
      secretAccessKey: randomBytes(30).toString('base64'),
      sessionToken: randomBytes(96).toString('base64'),
      expiration: Math.floor(now / 1000) * 1000 + durationSeconds * 1000,
      assumedRoleArn: `arn:aws:sts::${roleMatch[1] ?? ''}:assumed-role/${roleMatch[2] ?? ''}/${sessionName}`,
      roleArn,
      trustAnchorArn,
      profileArn,
      durationSeconds,
      algorithm,
      serial: serial ?? '',
      leafFingerprint: createHash('sha256').update(leaf.raw).digest('hex'),
      principalTags: tags,
      sourceIdentity: tags['x509Subject/CN'],
    };
  }
}

function respond(res: ServerResponse, status: number, requestId: string, body: unknown, errorType?: string): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-amzn-requestid': requestId,
    ...(errorType ? { 'x-amzn-errortype': errorType } : {}),
  });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) over = true;
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(over ? undefined : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function parseAmzDate(value: string): number | undefined {
  const m = AMZ_DATE.exec(value);
  if (!m) return undefined;
  const t = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  return Number.isNaN(t) ? undefined : t;
}

function parseCertificateHeader(value: string | undefined, _what: string): X509Certificate | undefined {
  if (!value || !/^[A-Za-z0-9+/]+={0,2}$/.test(value)) return undefined;
  try {
    return new X509Certificate(Buffer.from(value, 'base64'));
  } catch {
    return undefined;
  }
}

function splitPem(pem: string): Buffer[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)].map((m) =>
    Buffer.from((m[1] ?? '').replace(/\s+/g, ''), 'base64'),
  );
}

function sha256Hex(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex');
}

/** RFC 3986 encoding (SigV4 UriEncode). */
function encode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The canonical request from what arrived, or undefined when a signed header is absent. */
function canonicalRequest(
  req: IncomingMessage,
  url: URL,
  signedHeaders: readonly string[],
  body: Buffer,
): string | undefined {
  const query = [...url.searchParams.entries()]
    .map(([k, v]) => `${encode(k)}=${encode(v)}`)
    .sort()
    .join('&');
  const lines: string[] = [];
  for (const name of signedHeaders) {
    const value = headerValue(req, name);
    if (value === undefined) return undefined;
    lines.push(`${name}:${value.trim().replace(/ {2,}/g, ' ')}\n`);
  }
  const path = url.pathname
    .split('/')
    .map((s) => encode(decodeURIComponent(s)))
    .join('/');
  return [req.method ?? 'POST', path, query, lines.join(''), signedHeaders.join(';'), sha256Hex(body)].join('\n');
}

/** The path leaf → intermediates → one of the anchor's CAs, each valid now, issuers CAs, no weak hashes. */
function verifyPath(
  leaf: X509Certificate,
  intermediates: readonly X509Certificate[],
  cas: readonly X509Certificate[],
  now: number,
): void {
  const untrusted = (why: string): RaError => denied(`Untrusted certificate. ${why}`);
  const checkTime = (c: X509Certificate, what: string): void => {
    if (now < c.validFromDate.getTime()) throw untrusted(`The ${what} is not yet valid`);
    if (now > c.validToDate.getTime()) throw untrusted(`The ${what} has expired`);
  };
  const peculiarLeaf = new x509.X509Certificate(leaf.raw);
  if (peculiarLeaf.getExtension(x509.BasicConstraintsExtension)?.ca)
    throw untrusted('The end-entity certificate is a CA');
  const ku = peculiarLeaf.getExtension(x509.KeyUsagesExtension);
  if (ku && (ku.usages & x509.KeyUsageFlags.digitalSignature) === 0)
    throw untrusted('The end-entity certificate lacks the digitalSignature key usage');
  checkTime(leaf, 'end-entity certificate');
  const all = [leaf, ...intermediates];
  for (const c of all) {
    const hash = (new x509.X509Certificate(c.raw).signatureAlgorithm as { hash?: { name?: string } }).hash?.name;
    if (hash && WEAK_HASHES.has(hash))
      throw untrusted(`A certificate is signed with ${hash}; SHA-256 or stronger is required`);
  }
  let current = leaf;
  const pool = [...intermediates];
  for (let depth = 0; depth <= MAX_CHAIN; depth++) {
    const anchor = cas.find((ca) => current.checkIssued(ca) && current.verify(ca.publicKey));
    if (anchor) {
      checkTime(anchor, 'trust anchor certificate');
      return;
    }
    const next = pool.findIndex((c) => current.checkIssued(c) && current.verify(c.publicKey));
    if (next < 0) throw untrusted('The certificate does not chain to the trust anchor');
    const issuer = pool.splice(next, 1)[0] as X509Certificate;
    if (!issuer.ca) throw untrusted('An intermediate certificate is not a CA');
    checkTime(issuer, 'intermediate certificate');
    current = issuer;
  }
  throw untrusted('The certificate chain is too long');
}

const SUBJECT_ATTRIBUTES: Record<string, string> = {
  '2.5.4.3': 'CN',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.5': 'serialNumber',
  '0.9.2342.19200300.100.1.25': 'DC',
};

/** The default attribute mapping: every subject and issuer RDN, and the first DNS and URI SAN. */
function principalTags(leaf: X509Certificate): Record<string, string> {
  const cert = new x509.X509Certificate(leaf.raw);
  const tags: Record<string, string> = {};
  const names = (name: x509.Name, field: string): void => {
    for (const rdn of name.toJSON()) {
      for (const [oid, values] of Object.entries(rdn)) {
        const short = SUBJECT_ATTRIBUTES[oid] ?? (Object.values(SUBJECT_ATTRIBUTES).includes(oid) ? oid : undefined);
        const value = values[0];
        if (short && value !== undefined && tags[`${field}/${short}`] === undefined) tags[`${field}/${short}`] = value;
      }
    }
  };
  names(new x509.Name(cert.subjectName.toString()), 'x509Subject');
  names(new x509.Name(cert.issuerName.toString()), 'x509Issuer');
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const uri = san?.names.items.find((n) => n.type === 'url')?.value;
  const dns = san?.names.items.find((n) => n.type === 'dns')?.value;
  if (uri) tags['x509SAN/URI'] = uri;
  if (dns) tags['x509SAN/DNS'] = dns;
  return tags;
}

/** IAM `StringLike`: `*` any run, `?` one character. */
function stringLike(pattern: string, value: string): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
  return re.test(value);
}
