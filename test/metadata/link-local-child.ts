// Run by link-local.test.ts as root inside a network namespace (and mount namespace) of its own: link-local mode
// end to end. Before anything is sent it proves lo is the namespace's only interface, and aborts otherwise.
// Then: stand-ins for AWS STS, Google STS/IAM and Entra and the dev issuer on 127.0.0.1; `check` before the
// addresses exist (it must say what is missing); the init script (scripts/link-local-init.sh) as root with only
// CAP_NET_ADMIN; the pod sysctl for port 80; `check` again; `env`; the real sidecar (`run`) as uid 65534 without
// capabilities; then real clients with no override variable, and curl. Prints one JSON line.

import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chown, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeAtomicDir } from '@spiffe-connector/dev/atomic-dir.ts';
import { DevCa } from '@spiffe-connector/dev/dev-ca.ts';
import { startDevIssuer } from '@spiffe-connector/dev/dev-issuer.ts';
import { ENTRA_FEDERATION_AUDIENCE, FakeEntra } from '@spiffe-connector/dev/fake-entra.ts';
import { FakeGcp } from '@spiffe-connector/dev/fake-gcp.ts';
import { FakeSts } from '@spiffe-connector/dev/fake-sts.ts';
import { abortUnlessIsolated } from '../helpers/netns.ts';
import { parseEnvLines } from '../helpers/sidecar.ts';
import { until } from '../helpers/until.ts';

const interfaces = abortUnlessIsolated();

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = join(ROOT, 'src/main.ts');
const CLIENTS = fileURLToPath(new URL('./link-local-clients.ts', import.meta.url));
const INIT = join(ROOT, 'scripts/link-local-init.sh');
const TD = 'example.org';
const ID = `spiffe://${TD}/ns/default/sa/app`;
const ROLE = 'arn:aws:iam::111122223333:role/app';
const NUMBER = '123456789012';
const POOL = `projects/${NUMBER}/locations/global/workloadIdentityPools/pool`;
const PROVIDER = `${POOL}/providers/spiffe`;
const ACCOUNT = 'app@my-project.iam.gserviceaccount.com';
const TENANT = '72f988bf-0000-4000-8000-000000000001';
const CLIENT_ID = '11111111-2222-4333-8444-555555555555';
const NOBODY = 65534;

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function run(file: string, args: readonly string[], env: Record<string, string>, timeout = 60_000): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(file, [...args], { env, timeout, cwd: ROOT }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

/** As uid/gid 65534 with no capability at all, like the injected sidecar. */
const asNobody = (command: readonly string[]): string[] => [
  `--reuid=${NOBODY}`,
  `--regid=${NOBODY}`,
  '--clear-groups',
  '--inh-caps=-all',
  '--bounding-set=-all',
  ...command,
];
const BASE_ENV = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: '/nonexistent' };

async function chownTree(dir: string): Promise<void> {
  await chown(dir, NOBODY, NOBODY);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(path);
    else await chown(path, NOBODY, NOBODY);
  }
}

const result: Record<string, unknown> = { interfaces };
const closers: Array<() => Promise<unknown>> = [];
try {
  const base = await mkdtemp(join(tmpdir(), 'sc-link-local-'));
  const ca = await DevCa.create({ trustDomain: TD });
  const svid = await ca.issueX509Svid({ spiffeId: ID });
  await writeAtomicDir(join(base, 'svid'), [
    { name: 'tls.crt', content: svid.certPem },
    { name: 'tls.key', content: svid.keyPem, mode: 0o600 },
    { name: 'ca.crt', content: ca.certPem },
  ]);
  const caFile = join(base, 'ca.crt');
  await writeFile(caFile, ca.certPem);
  const gcpAudience = `//iam.googleapis.com/${PROVIDER}`;
  const issuer = await startDevIssuer({
    ca,
    trustDomain: TD,
    audiences: ['sts.amazonaws.com', gcpAudience, ENTRA_FEDERATION_AUDIENCE],
  });
  closers.push(() => issuer.close());
  const sts = await FakeSts.start({
    allowLoopbackHttpIssuers: true,
    providers: [{ issuer: issuer.issuerUrl, audiences: ['sts.amazonaws.com'] }],
    roles: [{ arn: ROLE, issuer: issuer.issuerUrl, audience: 'sts.amazonaws.com', subject: `spiffe://${TD}/*` }],
  });
  closers.push(() => sts.close());
  const gcp = await FakeGcp.start({
    allowLoopbackHttpIssuers: true,
    providers: [{ name: PROVIDER, issuer: issuer.issuerUrl }],
    serviceAccounts: [{ email: ACCOUNT, impersonators: [`principalSet://iam.googleapis.com/${POOL}/*`] }],
  });
  closers.push(() => gcp.close());
  const entra = await FakeEntra.start({
    allowLoopbackHttpIssuers: true,
    tenantId: TENANT,
    ca,
    applications: [
      { clientId: CLIENT_ID, federatedCredentials: [{ name: 'app', issuer: issuer.issuerUrl, subject: ID }] },
    ],
  });
  closers.push(() => entra.close());

  const relativeUri = `/v2/credentials/${randomBytes(32).toString('base64url')}`;
  const configFile = join(base, 'config.yaml');
  await writeFile(
    configFile,
    `spiffe:
  trustDomain: ${TD}
  x509: { dir: ${join(base, 'svid')} }
  jwt: { exchange: { url: "${issuer.tokenUrl}", caFile: ${caFile} } }
server:
  metadataAddress: 127.0.0.1:8181
  opsAddress: 127.0.0.1:9090
  stateDir: ${join(base, 'state')}
  drainSeconds: 0
  linkLocal: true
log: { level: warn }
aws:
  roleArn: ${ROLE}
  region: us-east-1
  stsEndpoint: "${sts.url}"
  imds: true
  containerRelativeUri: ${relativeUri}
gcp:
  projectId: my-project
  projectNumber: "${NUMBER}"
  workloadIdentityProvider: ${PROVIDER}
  serviceAccount: ${ACCOUNT}
  stsEndpoint: "${gcp.url}"
  iamCredentialsEndpoint: "${gcp.url}"
azure:
  tenantId: ${TENANT}
  clientId: ${CLIENT_ID}
  authorityHost: "${entra.authorityHost}"
  caFile: ${caFile}
  imds: true
`,
  );
  await chownTree(base);

  // Before the addresses and the sysctl: check names both things the mode needs.
  const before = await run('setpriv', asNobody([process.execPath, MAIN, 'check', '--config', configFile]), BASE_ENV);
  result['checkBefore'] = { code: before.code, out: before.stdout + before.stderr };
  // And the sidecar refuses to start, saying why (port 80 is allowed here, as root would be: the address is missing).
  await run('sysctl', ['-q', '-w', 'net.ipv4.ip_unprivileged_port_start=80'], BASE_ENV);
  const early = await run('setpriv', asNobody([process.execPath, MAIN, 'run', '--config', configFile]), BASE_ENV);
  result['runBefore'] = { code: early.code, out: early.stdout + early.stderr };
  await run('sysctl', ['-q', '-w', 'net.ipv4.ip_unprivileged_port_start=1024'], BASE_ENV);

  // The init script as the init container runs it: root with CAP_NET_ADMIN only; twice (a restarted init container).
  const initAs = ['--bounding-set=-all,+net_admin', '--inh-caps=-all', 'sh', INIT];
  result['init'] = [await run('setpriv', initAs, BASE_ENV), await run('setpriv', initAs, BASE_ENV)];
  result['sysctl'] = await run('sysctl', ['-q', '-w', 'net.ipv4.ip_unprivileged_port_start=80'], BASE_ENV);
  result['lo'] = (await run('ip', ['-o', '-f', 'inet', 'addr', 'show', 'dev', 'lo'], BASE_ENV)).stdout;

  const after = await run('setpriv', asNobody([process.execPath, MAIN, 'check', '--config', configFile]), BASE_ENV);
  result['checkAfter'] = { code: after.code, out: after.stdout + after.stderr };
  const printed = await run('setpriv', asNobody([process.execPath, MAIN, 'env', '--config', configFile]), BASE_ENV);
  const env = parseEnvLines(printed.stdout);
  result['env'] = env;

  // The sidecar as the webhook runs it: non-root, no capabilities, port 80 through the sysctl alone.
  const sidecar = spawn('setpriv', asNobody([process.execPath, MAIN, 'run', '--config', configFile]), {
    env: BASE_ENV,
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let sidecarLog = '';
  sidecar.stderr.on('data', (d: Buffer) => (sidecarLog += d.toString()));
  closers.push(async () => {
    sidecar.kill('SIGKILL');
  });
  try {
    await until(
      async () => {
        if (sidecar.exitCode !== null) throw new Error(`the sidecar exited: ${sidecarLog.slice(-2000)}`);
        return (await fetch('http://127.0.0.1:9090/readyz').catch(() => undefined))?.status === 200;
      },
      'the sidecar to be ready',
      { timeoutMs: 60_000, intervalMs: 100 },
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${sidecarLog.slice(-2000)}`);
  }

  const client = async (which: string, vars: Record<string, string>): Promise<unknown> => {
    const home = await mkdtemp(join(tmpdir(), 'sc-link-local-home-'));
    const out = await run(
      process.execPath,
      [CLIENTS, which, JSON.stringify({ stsUrl: sts.url, clientId: CLIENT_ID })],
      { PATH: BASE_ENV.PATH, HOME: home, ...vars },
    );
    try {
      return JSON.parse(out.stdout.trim().split('\n').at(-1) ?? '');
    } catch {
      return { ok: false, error: `no answer (exit ${out.code}): ${out.stderr.slice(-1500)}` };
    }
  };
  const relative = env['AWS_CONTAINER_CREDENTIALS_RELATIVE_URI'] ?? '';
  result['clients'] = {
    awsChain: await client('aws-chain', { AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: relative }),
    awsContainerMetadata: await client('aws-container-metadata', { AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: relative }),
    awsImds: await client('aws-imds', {}),
    gcp: await client('gcp', {}),
    azure: await client('azure', {}),
  };
  // The Python clients scripts/install-peers.sh installs, when present: the last botocore before the token file,
  // with only RELATIVE_URI; google-auth with no variable (it pings 169.254.169.254, then asks metadata.google.internal).
  const peers = join(ROOT, '.tools', 'peers');
  const python = async (venv: string, script: string, args: string[], vars: Record<string, string>) => {
    const bin = join(peers, `py-${venv}`, 'bin', 'python');
    if (!(await stat(bin).catch(() => undefined))) return 'absent';
    const home = await mkdtemp(join(tmpdir(), 'sc-link-local-home-'));
    const out = await run(bin, [join(ROOT, 'test/peers', script), ...args], {
      PATH: BASE_ENV.PATH,
      HOME: home,
      ...vars,
    });
    try {
      return JSON.parse(out.stdout.trim().split('\n').at(-1) ?? '');
    } catch {
      return { ok: false, error: `no answer (exit ${out.code}): ${out.stderr.slice(-1500)}` };
    }
  };
  result['python'] = {
    botocoreOld: await python('boto3-old', 'aws_client.py', [sts.url], {
      AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: relative,
      AWS_DEFAULT_REGION: 'us-east-1',
    }),
    googleAuth: await python('google-auth', 'gcp_client.py', [], {}),
  };
  // The Go clients scripts/install-peers.sh builds, when present: aws-sdk-go-v2 config v1.22.0 (before the token
  // file) with only RELATIVE_URI, and cloud.google.com/go/compute/metadata with no variable.
  const go = async (name: string, args: string[], vars: Record<string, string>) => {
    const bin = join(peers, 'bin', `go-${name}`);
    if (!(await stat(bin).catch(() => undefined))) return 'absent';
    const home = await mkdtemp(join(tmpdir(), 'sc-link-local-home-'));
    const out = await run(bin, args, { PATH: BASE_ENV.PATH, HOME: home, ...vars });
    try {
      return JSON.parse(out.stdout.trim().split('\n').at(-1) ?? '');
    } catch {
      return { ok: false, error: `no answer (exit ${out.code}): ${out.stderr.slice(-1500)}` };
    }
  };
  result['go'] = {
    awsOld: await go('aws-old', [sts.url], {
      AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: relative,
      AWS_REGION: 'us-east-1',
    }),
    gcp: await go('gcp', [], {}),
  };
  // The Java clients scripts/install-peers.sh builds, when present: the AWS SDK for Java v2 default chain with only
  // RELATIVE_URI, and google-auth-library-java ADC with no variable.
  const javaClient = async (name: string, args: string[], vars: Record<string, string>) => {
    const dir = join(peers, `java-${name}`);
    if (!(await stat(join(dir, '.stamp')).catch(() => undefined))) return 'absent';
    if ((await run('sh', ['-c', 'command -v java'], BASE_ENV)).code !== 0) return 'absent';
    const home = await mkdtemp(join(tmpdir(), 'sc-link-local-home-'));
    const classpath = `${join(dir, 'classes')}:${(await readFile(join(dir, 'classpath'), 'utf8')).trim()}`;
    const jvm = [`-Duser.home=${home}`, '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-cp', classpath, 'Main'];
    const out = await run('java', [...jvm, ...args], { PATH: BASE_ENV.PATH, HOME: home, ...vars }, 120_000);
    try {
      return JSON.parse(out.stdout.trim().split('\n').at(-1) ?? '');
    } catch {
      return { ok: false, error: `no answer (exit ${out.code}): ${out.stderr.slice(-1500)}` };
    }
  };
  result['java'] = {
    aws: await javaClient('aws', [sts.url], {
      AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: relative,
      AWS_REGION: 'us-east-1',
    }),
    gcp: await javaClient('gcp', [], {}),
  };
  // Ruby's aws-sdk-core 3.168.1 (Debian 12's ruby-aws-sdk-core), when installed: it knows only RELATIVE_URI.
  result['ruby'] = await (async () => {
    if ((await run('sh', ['-c', 'command -v ruby'], BASE_ENV)).code !== 0) return 'absent';
    const home = await mkdtemp(join(tmpdir(), 'sc-link-local-home-'));
    const out = await run('ruby', [join(ROOT, 'test/peers/aws_client.rb'), sts.url], {
      PATH: BASE_ENV.PATH,
      HOME: home,
      AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: relative,
      AWS_REGION: 'us-east-1',
    });
    try {
      return JSON.parse(out.stdout.trim().split('\n').at(-1) ?? '');
    } catch {
      return out.stderr.includes('aws-sdk-core') && out.stderr.includes('LoadError')
        ? 'absent'
        : { ok: false, error: `no answer (exit ${out.code}): ${out.stderr.slice(-1500)}` };
    }
  })();
  result['sessionName'] = sts.stats.lastSessionName;
  result['signatures'] = sts.stats.signaturesVerified;

  // What the same sidecar answers on its loopback listener: the link-local answers must be the same credentials.
  const loopbackGoogle = await fetch(
    'http://127.0.0.1:8181/computeMetadata/v1/instance/service-accounts/default/token',
    { headers: { 'Metadata-Flavor': 'Google' } },
  );
  result['loopbackGoogleToken'] = ((await loopbackGoogle.json()) as { access_token: string }).access_token;
  const loopbackAzure = await fetch(
    'http://127.0.0.1:8181/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com',
    { headers: { Metadata: 'true' } },
  );
  result['loopbackAzureToken'] = ((await loopbackAzure.json()) as { access_token: string }).access_token;

  // curl, as shell scripts use it: the addresses and the name, with no port; and what the Host check refuses.
  const curlPresent = (await run('sh', ['-c', 'command -v curl'], BASE_ENV)).code === 0;
  if (curlPresent) {
    const curl = async (args: readonly string[]): Promise<{ status: string; body: string }> => {
      const out = await run('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_code}', ...args], BASE_ENV, 20_000);
      const i = out.stdout.lastIndexOf('\n');
      return { status: out.stdout.slice(i + 1), body: out.code === 0 ? out.stdout.slice(0, i) : out.stderr };
    };
    const token = await curl([
      '-X',
      'PUT',
      '-H',
      'X-aws-ec2-metadata-token-ttl-seconds: 60',
      'http://169.254.169.254/latest/api/token',
    ]);
    result['curl'] = {
      imdsRole: await curl([
        '-H',
        `X-aws-ec2-metadata-token: ${token.body}`,
        'http://169.254.169.254/latest/meta-data/iam/security-credentials/',
      ]),
      ecs: await curl([`http://169.254.170.2${relative}`]),
      ecsWrongPath: await curl([`http://169.254.170.2/v2/credentials/${'x'.repeat(43)}`]),
      googleByName: await curl([
        '-H',
        'Metadata-Flavor: Google',
        'http://metadata.google.internal/computeMetadata/v1/project/project-id',
      ]),
      googleByIp: await curl([
        '-H',
        'Metadata-Flavor: Google',
        'http://169.254.169.254/computeMetadata/v1/project/numeric-project-id',
      ]),
      azure: await curl([
        '-H',
        'Metadata: true',
        'http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com',
      ]),
      foreignHost: await curl([
        '-H',
        'Host: attacker.example',
        'http://169.254.169.254/computeMetadata/v1/project/project-id',
        '-H',
        'Metadata-Flavor: Google',
      ]),
      loopbackHostOnLinkLocal: await curl([
        '-H',
        'Host: 127.0.0.1:8181',
        'http://169.254.169.254/computeMetadata/v1/project/project-id',
        '-H',
        'Metadata-Flavor: Google',
      ]),
      otherAddressAsHost: await curl([
        '-H',
        'Host: 169.254.170.2',
        'http://169.254.169.254/computeMetadata/v1/project/project-id',
        '-H',
        'Metadata-Flavor: Google',
      ]),
      port8080AsHost: await curl([
        '-H',
        'Host: 169.254.169.254:8080',
        'http://169.254.169.254/computeMetadata/v1/project/project-id',
        '-H',
        'Metadata-Flavor: Google',
      ]),
    };
  } else result['curl'] = 'absent';
  result['stateDirOwner'] = (await stat(join(base, 'state'))).uid;
  result['ok'] = true;
} catch (error) {
  result['ok'] = false;
  result['error'] = (error as Error).stack ?? String(error);
} finally {
  for (const close of closers.reverse()) await close().catch(() => {});
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}
