// The first minutes in a clone: `npm start` (packages/dev/src/main.ts) shows the banner first with one
// command per cloud and a quiet log, exchanges once per cloud at start, reports a busy port in one line;
// the CLI runs from the sources with --version; every log line has the same shape.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runDev } from '@spiffe-connector/dev/dev-mode.ts';
import { createLogger } from '../../src/ops/logger.ts';

const DEV_MAIN = fileURLToPath(new URL('../../packages/dev/src/main.ts', import.meta.url));
const BIN = fileURLToPath(new URL('../../bin/spiffe-connector.js', import.meta.url));
const PACKAGE = fileURLToPath(new URL('../../package.json', import.meta.url));

interface Child {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves once `pattern` is in the output, or rejects saying what was awaited when the process ends first. */
  waitFor(stream: 'stdout' | 'stderr', pattern: RegExp): Promise<void>;
  exited: Promise<number | null>;
}

function start(t: TestContext, args: string[]): Child {
  const child = spawn(process.execPath, args, {
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = { stdout: '', stderr: '' };
  const waiters: Array<() => void> = [];
  child.stdout.on('data', (d: Buffer) => {
    out.stdout += d.toString();
    for (const w of [...waiters]) w();
  });
  child.stderr.on('data', (d: Buffer) => {
    out.stderr += d.toString();
    for (const w of [...waiters]) w();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  return {
    child,
    stdout: () => out.stdout,
    stderr: () => out.stderr,
    exited,
    waitFor: (stream, pattern) =>
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (pattern.test(out[stream])) {
            waiters.splice(waiters.indexOf(check), 1);
            resolve();
          }
        };
        waiters.push(check);
        check();
        void exited.then((code) => {
          if (!pattern.test(out[stream]))
            reject(new Error(`exited (${code}) before ${stream} showed ${pattern}:\n${out.stdout}\n${out.stderr}`));
        });
      }),
  };
}

/** Runs `command` in bash with only PATH and `env`. */
function shell(
  command: string,
  env: Record<string, string | undefined>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', command], {
      env: { PATH: process.env['PATH'] ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('npm start: the banner comes first with the exports and one command per cloud, then a quiet log; a second start on the busy port says so in one line', async (t) => {
  const dev = start(t, [DEV_MAIN, '--port', '0']);
  await dev.waitFor('stdout', /Ctrl-C stops everything\.\n/);
  const banner = dev.stdout();
  assert.match(banner, /^\nspiffe-connector dev is ready/);
  assert.equal(dev.stderr(), '', 'nothing logged before or with the banner at the default verbosity');
  const exports = Object.fromEntries(
    [...banner.matchAll(/^export ([A-Z_a-z]+)=(.*)$/gm)].map((m) => [m[1], (m[2] ?? '').replace(/^'(.*)'$/, '$1')]),
  );
  for (const name of [
    'AWS_CONTAINER_CREDENTIALS_FULL_URI',
    'GCE_METADATA_HOST',
    'IDENTITY_ENDPOINT',
    'IDENTITY_HEADER',
  ])
    assert.ok(exports[name], `export ${name}`);
  const guard = (name: string) => `"\\$\\{${name}:\\?paste the export lines above first\\}`;
  assert.match(
    banner,
    new RegExp(
      `^ {2}aws sts get-caller-identity --endpoint-url http://127\\.0\\.0\\.1:\\d+ --region ${guard('AWS_REGION')}"$`,
      'm',
    ),
  );
  assert.match(
    banner,
    new RegExp(
      `^ {2}CLOUDSDK_CONFIG=\\$\\(mktemp -d\\) GCE_METADATA_HOST=${guard('GCE_METADATA_HOST')}" gcloud auth print-access-token$`,
      'm',
    ),
  );
  assert.match(
    banner,
    new RegExp(
      `^ {2}curl -sS --fail-with-body -H "X-IDENTITY-HEADER: \\$IDENTITY_HEADER" ${guard('IDENTITY_ENDPOINT')}\\?resource=https://storage\\.azure\\.com&api-version=2019-08-01"$`,
      'm',
    ),
  );
  // Each command, run by a shell without the exports, stops before any client starts, saying why.
  const commands = [...banner.matchAll(/^ {2}((?:aws |CLOUDSDK_CONFIG=|curl ).*)$/gm)].map((m) => m[1] ?? '');
  const needingExports = commands.filter((c) => c.includes(':?paste the export lines above first'));
  assert.equal(needingExports.length, 3, 'AWS, Google and Azure commands read the exports');
  for (const command of needingExports) {
    const bare = await shell(command, {});
    assert.notEqual(bare.code, 0, command);
    assert.match(bare.stderr, /paste the export lines above first/, command);
  }
  // The Azure command as printed, with the exports: the token comes back (curl is on almost every machine).
  const curl = needingExports.find((c) => c.startsWith('curl ')) ?? '';
  const withExports = await shell(curl, exports);
  if (withExports.code === 127) t.diagnostic('curl is not installed: the Azure command was not run');
  else
    assert.equal(
      typeof (JSON.parse(withExports.stdout) as { access_token?: unknown }).access_token,
      'string',
      withExports.stderr,
    );

  const port = new URL(exports['AWS_CONTAINER_CREDENTIALS_FULL_URI'] ?? '').port;
  const second = start(t, [DEV_MAIN, '--port', port]);
  assert.equal(await second.exited, 1);
  assert.equal(
    second.stderr(),
    `port ${port} on 127.0.0.1 is in use (another npm start?): pick another with \`npm start -- --port ${Number(port) + 1}\`, or \`npm start -- --port 0\` for any free one\n`,
  );
  assert.equal(second.stdout(), '');

  dev.child.kill('SIGINT');
  assert.equal(await dev.exited, 0);
  assert.equal(dev.stderr(), '', 'nothing logged on a clean stop');
});

test('dev mode exchanges once per cloud at start', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level: 'info',
    destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) },
  });
  const dev = await runDev({ metadataPort: 0, rotateSeconds: 300, logger, print: () => {} });
  t.after(() => dev.close());
  const origin = dev.app.metadataOrigin;
  const env = Object.fromEntries(dev.env);
  // One request per cloud, as the banner's commands make them.
  const token = await readFile(env['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'] ?? '', 'utf8');
  assert.equal((await fetch(`${origin}/v1/credentials`, { headers: { authorization: token.trim() } })).status, 200);
  assert.equal(
    (
      await fetch(`${origin}/computeMetadata/v1/instance/service-accounts/default/token`, {
        headers: { 'Metadata-Flavor': 'Google' },
      })
    ).status,
    200,
  );
  assert.equal(
    (
      await fetch(`${env['IDENTITY_ENDPOINT']}?resource=https://management.azure.com&api-version=2019-08-01`, {
        headers: { 'X-IDENTITY-HEADER': env['IDENTITY_HEADER'] ?? '' },
      })
    ).status,
    200,
  );
  assert.equal(dev.sts.stats.assumeRoleRequests, 1, 'one AssumeRoleWithWebIdentity');
  assert.equal(dev.gcp.stats.stsRequests, 1, 'one Google STS exchange');
  // The main sidecar's lines (the Roles Anywhere sidecar logs with sidecar: roles-anywhere and is counted apart).
  const refreshed = lines
    .filter((l) => l['msg'] === 'credentials refreshed' && l['cloud'] === 'aws' && l['sidecar'] === undefined)
    .map((l) => l['reason']);
  assert.deepEqual(
    lines
      .filter((l) => l['msg'] === 'credentials refreshed' && l['sidecar'] === 'roles-anywhere')
      .map((l) => l['reason']),
    ['start'],
    'the Roles Anywhere sidecar signed one session, at start',
  );
  assert.equal(dev.rolesAnywhere.fake.stats.sessions, 1, 'one CreateSession');
  assert.deepEqual(refreshed, ['start'], 'AWS refreshed once, at start (not again for a JWT-SVID "change" at start)');
});

test('in a clone the CLI runs from the sources: --version, and `dev` points at npm start', async (t) => {
  const { version } = JSON.parse(await readFile(PACKAGE, 'utf8')) as { version: string };
  const v = start(t, [BIN, '--version']);
  assert.equal(await v.exited, 0);
  assert.equal(v.stdout(), `${version}\n`);
  const dev = start(t, [BIN, 'dev']);
  assert.equal(await dev.exited, 2);
  assert.equal(
    dev.stderr(),
    'dev mode is not part of the installed program: in a clone of the repository, run `npm ci && npm start`\n',
  );
});

test('every log line has the same shape: the signal line too carries level, time and name', async (t) => {
  const state = await mkdtemp(join(tmpdir(), 'sc-shape-'));
  t.after(() => rm(state, { recursive: true, force: true }));
  // Google at a port nothing listens on: the sidecar runs, unready, until the signal.
  const config = `spiffe: { trustDomain: example.org, x509: { dir: ${state}/svid } }
server: { metadataAddress: "127.0.0.1:0", opsAddress: "127.0.0.1:0", metricsAddress: "127.0.0.1:0", stateDir: ${state}, drainSeconds: 0 }
gcp: { projectId: my-project, projectNumber: "1", workloadIdentityProvider: projects/1/locations/global/workloadIdentityPools/pool/providers/prov, stsEndpoint: "http://127.0.0.1:9", iamCredentialsEndpoint: "http://127.0.0.1:9" }
`;
  const sidecar = spawn(process.execPath, [BIN, 'run'], {
    env: { PATH: process.env['PATH'] ?? '', SPIFFE_CONNECTOR_CONFIG: config },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  const listening = new Promise<void>((resolve, reject) => {
    sidecar.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('"msg":"spiffe-connector is listening"')) resolve();
    });
    sidecar.once('exit', (code) => reject(new Error(`the sidecar exited (${code}) before listening:\n${err}`)));
  });
  const exited = new Promise<number | null>((resolve) => sidecar.once('exit', (code) => resolve(code)));
  t.after(async () => {
    if (sidecar.exitCode === null) sidecar.kill('SIGKILL');
    await exited;
  });
  await listening;
  sidecar.kill('SIGINT');
  assert.equal(await exited, 0);
  const lines = err
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.ok(
    lines.some((l) => l['msg'] === 'received SIGINT'),
    err,
  );
  for (const line of lines) {
    assert.deepEqual(Object.keys(line).slice(0, 3), ['level', 'time', 'name'], JSON.stringify(line));
    assert.equal(line['name'], 'spiffe-connector');
    assert.ok(typeof line['msg'] === 'string');
  }
});
