// A running issuer on loopback with PKI minted at test time: a DevCa trust domain, a keys directory,
// a bundle file and a serving certificate in a temp dir; and an mTLS client (undici) for any SVID.
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Agent, request } from 'undici';
import { type Clock, systemClock } from '../../src/base/clock.ts';
import type { IssuerConfig } from '../../src/config/issuer.ts';
import { type RunningIssuer, startIssuer } from '../../src/issuer/issuer.ts';
import { type Logger, silentLogger } from '../../src/ops/logger.ts';
import { DevCa } from '../helpers/pki.ts';

export const TRUST_DOMAIN = 'example.org';
export const AUDIENCES = ['sts.amazonaws.com', 'api://AzureADTokenExchange'];
export const FORM = {
  grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
  subject_token_type: 'urn:ietf:params:oauth:token-type:tls-client-auth',
};

export interface Fixture {
  readonly ca: DevCa;
  readonly dir: string;
  readonly keysDir: string;
  readonly bundleFile: string;
  readonly config: IssuerConfig;
  readonly issuer: RunningIssuer;
}

export interface FixtureOptions {
  readonly alg?: 'RS256' | 'ES256';
  readonly issuerPath?: string;
  readonly tokenLifetimeSeconds?: number;
  readonly keyActivationDelaySeconds?: number;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Key files to write before start; default one fresh key named 2026-01.pem. */
  readonly keys?: Record<string, string>;
  /** Lay the keys out as a Kubernetes Secret volume (`..data` symlink); see writeSecret. */
  readonly secretLayout?: boolean;
  /** The issuer's retainReplacedKey (a key rotated in place). */
  readonly retainReplacedKey?: boolean;
  /** The issuer's rateLimit (token buckets per client and overall). */
  readonly rateLimit?: IssuerConfig['rateLimit'];
  /** AWS session tags and source identity (issuer.aws). */
  readonly aws?: IssuerConfig['aws'];
}

let generation = 0;

/** Writes `files` into `dir` the way the kubelet updates a Secret volume: a new timestamped dir, `..data` swapped atomically, visible names symlinked through it. */
export async function writeSecret(dir: string, files: Record<string, string>): Promise<void> {
  generation += 1;
  const stamp = `..2026_01_01_00_00_${String(generation).padStart(4, '0')}`;
  await mkdir(join(dir, stamp));
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, stamp, name), text);
  await symlink(stamp, join(dir, '..data_tmp'));
  await rename(join(dir, '..data_tmp'), join(dir, '..data'));
  const visible = (await readdir(dir)).filter((n) => !n.startsWith('.'));
  for (const name of visible) if (!(name in files)) await rm(join(dir, name));
  for (const name of Object.keys(files))
    if (!visible.includes(name)) await symlink(join('..data', name), join(dir, name));
  for (const old of (await readdir(dir)).filter((n) => n.startsWith('..20') && n !== stamp))
    await rm(join(dir, old), { recursive: true });
}

export function rsaKeyPem(bits = 2048): string {
  return generateKeyPairSync('rsa', { modulusLength: bits }).privateKey.export({
    type: 'pkcs8',
    format: 'pem',
  }) as string;
}

export function ecKeyPem(curve = 'P-256'): string {
  return generateKeyPairSync('ec', { namedCurve: curve }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
}

export async function startFixture(t: TestContext, options: FixtureOptions = {}): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'issuer-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // The issuer checks client chains, root included, at its clock's time: with a ManualClock (which
  // stays behind the real time) the root is minted a minute before that clock's start, like the SVIDs.
  const clock = options.clock;
  const ca = await DevCa.create({
    trustDomain: TRUST_DOMAIN,
    ...(clock ? { now: new Date(clock.now() - 60_000) } : {}),
  });
  const keysDir = join(dir, 'keys');
  await mkdir(keysDir);
  const alg = options.alg ?? 'RS256';
  const keys = options.keys ?? { '2026-01.pem': alg === 'RS256' ? rsaKeyPem() : ecKeyPem() };
  if (options.secretLayout) await writeSecret(keysDir, keys);
  else for (const [name, pem] of Object.entries(keys)) await writeFile(join(keysDir, name), pem);
  const bundleFile = join(dir, 'bundle.pem');
  await writeFile(bundleFile, ca.certPem);
  const serving = await ca.issueServerCert({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  await writeFile(join(dir, 'tls.crt'), serving.certPem);
  await writeFile(join(dir, 'tls.key'), serving.keyPem);
  const config: IssuerConfig = {
    url: `https://oidc.example.org${options.issuerPath ?? '/spiffe'}`,
    trustDomain: TRUST_DOMAIN,
    bundleFile,
    tokenAddress: '127.0.0.1:0',
    tls: { certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') },
    discoveryAddress: '127.0.0.1:0',
    opsAddress: '127.0.0.1:0',
    keysDir,
    audiences: AUDIENCES,
    tokenLifetimeSeconds: options.tokenLifetimeSeconds ?? 3600,
    algorithm: alg,
    keyActivationDelaySeconds: options.keyActivationDelaySeconds ?? 0,
    ...(options.retainReplacedKey === undefined ? {} : { retainReplacedKey: options.retainReplacedKey }),
    ...(options.rateLimit === undefined ? {} : { rateLimit: options.rateLimit }),
    discoveryMaxAgeSeconds: 300,
    drainSeconds: 0,
    ...(options.aws ? { aws: options.aws } : {}),
  };
  const issuer = await startIssuer(config, {
    logger: options.logger ?? silentLogger(),
    clock: options.clock ?? systemClock,
  });
  t.after(() => issuer.close());
  return { ca, dir, keysDir, bundleFile, config, issuer };
}

export interface TokenAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Record<string, unknown>;
}

/** POSTs a form to the token endpoint with the given client certificate (or none). */
export async function postToken(
  fx: Fixture,
  client: { certPem: string; keyPem: string } | undefined,
  form: Record<string, string | string[]> = { ...FORM, audience: AUDIENCES[0] ?? '' },
  options: { contentType?: string; method?: string } = {},
): Promise<TokenAnswer> {
  const agent = new Agent({
    connect: { ca: fx.ca.certPem, ...(client ? { cert: client.certPem, key: client.keyPem } : {}) },
  });
  try {
    const body = new URLSearchParams();
    for (const [k, v] of Object.entries(form)) for (const one of Array.isArray(v) ? v : [v]) body.append(k, one);
    const res = await request(fx.issuer.tokenUrl, {
      method: (options.method ?? 'POST') as 'POST',
      dispatcher: agent,
      headers: { 'content-type': options.contentType ?? 'application/x-www-form-urlencoded' },
      ...(options.method === 'GET' ? {} : { body: body.toString() }),
    });
    const parsed: unknown = await res.body.json();
    return { status: res.statusCode, headers: res.headers, body: parsed as Record<string, unknown> };
  } finally {
    await agent.close();
  }
}
