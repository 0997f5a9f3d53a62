// What every sidecar benchmark stands on: the local OIDC signer with the AWS, Google and Entra stand-ins
// trusting it, one JWT-SVID file carrying every cloud's audience, and `spiffe-connector run` started with
// any set of clouds and waited for until /readyz answers 200. Run by hand, never in `npm test`.
// Entra's stand-in is HTTPS (azure.caFile trusts its CA); STS and Google are plain HTTP unless `tls` is asked for:
// then the sidecar reaches every cloud over TLS, as it reaches the real ones, with no caFile: STS through an HTTPS
// front, Google on its HTTPS listener, all three trusted through NODE_EXTRA_CA_CERTS, which adds to Node's default
// CA list as the system's roots would be that list in production.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DevCa } from '@spiffe-connector/dev/dev-ca.ts';
import { ENTRA_FEDERATION_AUDIENCE, FakeEntra } from '@spiffe-connector/dev/fake-entra.ts';
import { FakeGcp } from '@spiffe-connector/dev/fake-gcp.ts';
import { FakeSts } from '@spiffe-connector/dev/fake-sts.ts';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { type ChildNode, formEnv, freePort, type SidecarForm, spawnNode, waitFor } from './lib.ts';

export type BenchCloud = 'aws' | 'gcp' | 'azure';

export const SPIFFE_ID = 'spiffe://example.org/ns/bench/sa/app';
const ROLE_ARN = 'arn:aws:iam::111122223333:role/app';
const AWS_AUDIENCE = 'sts.amazonaws.com';
const POOL = 'projects/123456789012/locations/global/workloadIdentityPools/spiffe-pool';
const PROVIDER = `${POOL}/providers/spiffe`;
const SERVICE_ACCOUNT = 'app@my-project.iam.gserviceaccount.com';
const TENANT_ID = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const CLIENT_ID = '11111111-2222-3333-4444-555555555555';
/** The Azure resource fetched at start (warm), so its token endpoint answers from the cache. */
export const AZURE_RESOURCE = 'https://storage.azure.com';
const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Variables of the bench's own shell that would point a cloud SDK elsewhere; the sidecar gets none of them. */
const CLOUD_ENV = /^(AWS_|GCE_|GOOGLE_|AZURE_|IDENTITY_|MSI_)/;

export interface Launch {
  /** Node's arguments before `run` (flags, then the entry script). */
  readonly args: readonly string[];
  /** The sidecar's environment (cloud variables are removed from it). */
  readonly env: NodeJS.ProcessEnv;
}

export interface BenchSidecar {
  readonly node: ChildNode & { output(): string };
  readonly metadataPort: number;
  readonly opsPort: number;
  readonly stateDir: string;
  /** Milliseconds from spawn to the first /readyz 200. */
  readonly readyMs: number;
  /** The container-credentials token (AWS configured). */
  awsToken(): Promise<string>;
  /** The App Service X-IDENTITY-HEADER (Azure configured). */
  azureIdentityHeader(): Promise<string>;
}

export interface BenchWorld {
  /** The Entra stand-in, whose counters show that load never reaches a cloud. */
  readonly entra: FakeEntra;
  /** The Google and STS stand-ins, for their counters. */
  readonly google: FakeGcp;
  readonly sts: FakeSts;
  startSidecar(name: string, clouds: readonly BenchCloud[], launch: Launch): Promise<BenchSidecar>;
  close(): Promise<void>;
}

export interface BenchWorldOptions {
  /** STS and Google over TLS as well (Entra's stand-in always is). */
  readonly tls?: boolean;
}

/** An HTTPS front on 127.0.0.1 for a plain-HTTP stand-in: each request passed on as it came. */
async function httpsFront(
  target: string,
  certPem: string,
  keyPem: string,
): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer({ cert: certPem, key: keyPem }, (req, res) => {
    const upstream = request(new URL(req.url ?? '/', target), { method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export async function startBenchWorld(options: BenchWorldOptions = {}): Promise<BenchWorld> {
  const signer = await DevOidcSigner.start();
  const tlsCa = options.tls ? await DevCa.create({ trustDomain: 'tls.bench' }) : undefined;
  const tlsCert = await tlsCa?.issueServerCert({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const sts = await FakeSts.start({
    allowLoopbackHttpIssuers: true,
    region: 'eu-west-1',
    providers: [{ issuer: signer.issuer, audiences: [AWS_AUDIENCE] }],
    roles: [{ arn: ROLE_ARN, issuer: signer.issuer, audience: AWS_AUDIENCE, maxSessionDurationSeconds: 43200 }],
  });
  const google = await FakeGcp.start({
    allowLoopbackHttpIssuers: true,
    ...(tlsCert ? { tls: { certPem: tlsCert.certPem, keyPem: tlsCert.keyPem } } : {}),
    providers: [{ name: PROVIDER, issuer: signer.issuer }],
    serviceAccounts: [{ email: SERVICE_ACCOUNT, impersonators: [`principalSet://iam.googleapis.com/${POOL}/*`] }],
  });
  const entra = await FakeEntra.start({
    allowLoopbackHttpIssuers: true,
    tenantId: TENANT_ID,
    ca: await DevCa.create({ trustDomain: 'entra.bench' }),
    applications: [{ clientId: CLIENT_ID, federatedCredentials: [{ issuer: signer.issuer, subject: SPIFFE_ID }] }],
  });
  const dir = await mkdtemp(join(tmpdir(), 'spiffe-connector-bench-'));
  await writeFile(join(dir, 'entra-ca.pem'), entra.caPem);
  const stsFront = tlsCert ? await httpsFront(sts.url, tlsCert.certPem, tlsCert.keyPem) : undefined;
  const tlsCaFile = join(dir, 'tls-ca.pem');
  if (tlsCa) await writeFile(tlsCaFile, `${tlsCa.certPem}\n${entra.caPem}`);
  const stsUrl = stsFront?.url ?? sts.url;
  const googleUrl = (tlsCert ? google.httpsUrl : undefined) ?? google.url;
  const entraCa = tlsCa ? '' : `, caFile: ${join(dir, 'entra-ca.pem')}`;
  // The JWT-SVID in a directory of its own, as a mounted volume is: the sidecar watches that directory and,
  // for the directory's own entry, its parent (the bench's directory, quiet once the sidecars started).
  await mkdir(join(dir, 'svid'));
  await writeFile(
    join(dir, 'svid', 'jwt-svid'),
    await signer.sign({
      sub: SPIFFE_ID,
      aud: [AWS_AUDIENCE, `//iam.googleapis.com/${PROVIDER}`, ENTRA_FEDERATION_AUDIENCE],
      ttlSeconds: 4 * 3600,
    }),
  );

  const sections: Record<BenchCloud, string> = {
    aws: `aws: { roleArn: "${ROLE_ARN}", region: eu-west-1, stsEndpoint: "${stsUrl}" }\n`,
    gcp: `gcp: { projectId: my-project, projectNumber: "123456789012", workloadIdentityProvider: ${PROVIDER}, serviceAccount: ${SERVICE_ACCOUNT}, stsEndpoint: "${googleUrl}", iamCredentialsEndpoint: "${googleUrl}" }\n`,
    azure: `azure: { tenantId: ${TENANT_ID}, clientId: ${CLIENT_ID}, authorityHost: "${entra.authorityHost}"${entraCa}, warmResources: [${AZURE_RESOURCE}] }\n`,
  };

  return {
    entra,
    google,
    sts,
    async startSidecar(name, clouds, launch) {
      const [metadataPort, opsPort] = [await freePort(), await freePort()];
      const stateDir = join(dir, `state-${name}`);
      await mkdir(stateDir, { recursive: true });
      const config = join(dir, `${name}.yaml`);
      await writeFile(
        config,
        `spiffe: { trustDomain: example.org, jwt: { file: ${join(dir, 'svid', 'jwt-svid')} } }
server: { metadataAddress: "127.0.0.1:${metadataPort}", opsAddress: "127.0.0.1:${opsPort}", stateDir: ${stateDir}, drainSeconds: 0 }
log: { level: warn }
${clouds.map((c) => sections[c]).join('')}`,
      );
      const env = Object.fromEntries(Object.entries(launch.env).filter(([k]) => !CLOUD_ENV.test(k)));
      if (tlsCa) env['NODE_EXTRA_CA_CERTS'] = tlsCaFile;
      const started = performance.now();
      const node = spawnNode([...launch.args, 'run', '--config', config], { env, cwd: ROOT });
      try {
        await waitFor(async () => {
          if (node.child.exitCode !== null) throw new Error(`the sidecar exited: ${node.output()}`);
          const res = await fetch(`http://127.0.0.1:${opsPort}/readyz`).catch(() => undefined);
          return res?.status === 200 ? true : undefined;
        }, `/readyz 200 (${name})`);
      } catch (error) {
        await node.stop();
        throw error;
      }
      const readyMs = performance.now() - started;
      return {
        node,
        metadataPort,
        opsPort,
        stateDir,
        readyMs,
        awsToken: () => readFile(join(stateDir, 'aws-container-token'), 'utf8'),
        azureIdentityHeader: async () => (await readFile(join(stateDir, 'azure-identity-header'), 'utf8')).trim(),
      };
    },
    async close() {
      await Promise.all([sts.close(), google.close(), entra.close(), stsFront?.close()]);
      await signer.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** How a bench starts the sidecar in the form sidecarForm() chose (entry, node flags, NODE_OPTIONS). */
export function formLaunch(form: SidecarForm): Launch {
  return { args: [...form.nodeArgs, form.entry], env: formEnv(form, process.env) };
}
