// The container image as far as it can be tested without a container engine: the Dockerfile's shape,
// and its layout rebuilt here (dist bundled by scripts/build.ts as `npm run build` does, production
// dependencies only, bin, proto, the image's NODE_OPTIONS) with the entry point starting each of the three
// programs and stopping on SIGTERM.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promisify } from 'node:util';
import { DevCa } from '../helpers/pki.ts';

const run = promisify(execFile);
const ROOT = new URL('../../', import.meta.url).pathname;

test('the Dockerfile builds with npm run build, installs production dependencies only and runs non-root', async () => {
  const text = await readFile(join(ROOT, 'Dockerfile'), 'utf8');
  const froms = [...text.matchAll(/^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/gim)].map((m) => m[1]);
  assert.ok(froms.length >= 2, 'multi-stage');
  assert.match(text, /^ARG NODE_IMAGE=node:24[-\w.]*$/m, 'every stage is Node 24');
  // biome-ignore lint/suspicious/noTemplateCurlyInString: the Dockerfile's own text, not a template literal
  assert.ok(froms.every((f) => f === '${NODE_IMAGE}'));
  assert.match(text, /^RUN .*npm run build/m);
  assert.match(text, /^COPY scripts \.\/scripts$/m, 'the build stage has the build script');
  assert.match(text, /^RUN npm ci --omit=dev\b/m);
  const users = [...text.matchAll(/^USER\s+(\S+)/gm)].map((m) => m[1]);
  assert.deepEqual(users, ['65532:65532'], 'the runtime stage runs as a non-root uid:gid');
  assert.match(text, /^ENTRYPOINT \["spiffe-connector"\]$/m);
  assert.match(text, /^ENV NODE_OPTIONS=--max-semi-space-size=1$/m, 'the runtime keeps V8\'s young generation small');
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  assert.match(pkg.scripts['build'] ?? '', /node scripts\/build\.ts/, 'npm run build bundles with scripts/build.ts');
  const ignore = await readFile(join(ROOT, '.dockerignore'), 'utf8');
  for (const p of ['node_modules', 'dist', '.git', 'test']) assert.match(ignore, new RegExp(`^${p.replace('.', '\\.')}$`, 'm'));
});

/** node_modules as `npm ci --omit=dev` lays it out: the lockfile's non-dev top-level packages (linked from this install). */
async function productionModules(app: string): Promise<string[]> {
  const lock = JSON.parse(await readFile(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; devOptional?: boolean; optional?: boolean }> };
  const names: string[] = [];
  for (const [path, meta] of Object.entries(lock.packages)) {
    const m = /^node_modules\/((?:@[^/]+\/)?[^/]+)$/.exec(path);
    if (!m?.[1] || meta.dev || meta.devOptional) continue;
    const target = join(ROOT, 'node_modules', m[1]);
    await mkdir(join(app, 'node_modules', m[1], '..'), { recursive: true });
    await symlink(target, join(app, 'node_modules', m[1]), 'dir');
    names.push(m[1]);
  }
  return names;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

interface Started {
  readonly child: ChildProcess;
  readonly log: () => string;
}

/** The runtime stage's `ENV NODE_OPTIONS=...`, given to every program started from the layout. */
async function imageNodeOptions(): Promise<string> {
  const m = /^ENV NODE_OPTIONS=(\S+)$/m.exec(await readFile(join(ROOT, 'Dockerfile'), 'utf8'));
  return m?.[1] ?? '';
}

/** Starts the entry point and waits for a log line (bounded by a count of checks, never by a timing assertion). */
async function start(app: string, args: string[], env: Record<string, string>, ready: RegExp): Promise<Started> {
  const child = spawn(process.execPath, [join(app, 'bin', 'spiffe-connector.js'), ...args], { cwd: app, env: { PATH: process.env['PATH'] ?? '', NODE_OPTIONS: await imageNodeOptions(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 600 && !ready.test(out); i++) {
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.match(out, ready, `spiffe-connector ${args[0]} did not start:\n${out}`);
  return { child, log: () => out };
}

async function stop(s: Started): Promise<number | null> {
  const exited = new Promise<number | null>((resolve) => s.child.once('exit', (code) => resolve(code)));
  s.child.kill('SIGTERM');
  return exited;
}

test('the image layout starts the webhook, the issuer and the sidecar from the entry point', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'image-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const app = join(dir, 'app');
  await mkdir(app);

  // Build stage: the bundle `npm run build` makes (after its typecheck, which `npm test` runs already) into
  // the image's dist/: main.js and the lazily loaded chunks, with source maps.
  await run(process.execPath, [join(ROOT, 'scripts', 'build.ts'), join(app, 'dist')], { cwd: ROOT });
  const built = await readdir(join(app, 'dist', 'chunks'));
  assert.ok(built.some((f) => f.endsWith('.js')) && built.some((f) => f.endsWith('.js.map')), 'chunks with source maps');
  // Runtime stage: production node_modules, package.json, bin, proto.
  const prod = await productionModules(app);
  assert.ok(!prod.includes('typescript') && !prod.includes('fast-json-patch'), 'no devDependency is in the production tree');
  for (const f of ['package.json', 'config.example.yaml']) await cp(join(ROOT, f), join(app, f));
  for (const d of ['bin', 'proto']) await cp(join(ROOT, d), join(app, d), { recursive: true });

  // ENTRYPOINT ["spiffe-connector"]: a symlink on PATH to bin/spiffe-connector.js, run from anywhere.
  await mkdir(join(dir, 'usr-local-bin'));
  await symlink(join(app, 'bin', 'spiffe-connector.js'), join(dir, 'usr-local-bin', 'spiffe-connector'));
  const help = await run(process.execPath, [join(dir, 'usr-local-bin', 'spiffe-connector'), '--help'], { cwd: '/' });
  for (const command of ['run', 'issuer', 'webhook']) assert.match(help.stdout, new RegExp(`\\n\\s+${command}\\b`));

  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const server = await ca.issueServerCert({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  await mkdir(join(dir, 'tls'));
  await writeFile(join(dir, 'tls', 'tls.crt'), server.certPem);
  await writeFile(join(dir, 'tls', 'tls.key'), server.keyPem);

  // The webhook.
  await writeFile(
    join(dir, 'webhook.yaml'),
    `webhook: { address: "127.0.0.1:0", tls: { certFile: ${dir}/tls/tls.crt, keyFile: ${dir}/tls/tls.key }, drainSeconds: 0 }\nsidecar: { image: spiffe-connector:test }\ndefaults: { trustDomain: example.org }\n`,
  );
  const webhook = await start(app, ['webhook', '--config', join(dir, 'webhook.yaml')], {}, /"msg":"webhook listening"/);
  assert.equal(await stop(webhook), 0);

  // The issuer.
  await mkdir(join(dir, 'keys'));
  await writeFile(join(dir, 'keys', 'key-1.pem'), generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  await writeFile(join(dir, 'bundle.pem'), ca.certPem);
  await writeFile(
    join(dir, 'issuer.yaml'),
    `issuer:
  url: https://oidc.example.org/spiffe
  trustDomain: example.org
  bundleFile: ${dir}/bundle.pem
  tokenAddress: "127.0.0.1:0"
  discoveryAddress: "127.0.0.1:0"
  opsAddress: "127.0.0.1:0"
  tls: { certFile: ${dir}/tls/tls.crt, keyFile: ${dir}/tls/tls.key }
  keysDir: ${dir}/keys
  audiences: [sts.amazonaws.com]
  drainSeconds: 0
`,
  );
  const issuer = await start(app, ['issuer', '--config', join(dir, 'issuer.yaml')], {}, /"msg":"issuer started"/);
  assert.equal(await stop(issuer), 0);

  // The sidecar, configured the way the webhook configures it (SPIFFE_CONNECTOR_CONFIG, no file):
  // its ops listener answers while the (unreachable, loopback) cloud keeps it unready.
  const svid = await ca.issueX509Svid({ spiffeId: 'spiffe://example.org/ns/default/sa/app' });
  await mkdir(join(dir, 'svid'));
  await mkdir(join(dir, 'state'));
  await writeFile(join(dir, 'svid', 'tls.crt'), svid.certPem);
  await writeFile(join(dir, 'svid', 'tls.key'), svid.keyPem);
  await writeFile(join(dir, 'svid', 'ca.crt'), ca.certPem);
  const [metadataPort, opsPort, deadPort] = [await freePort(), await freePort(), await freePort()];
  const config = `spiffe: { trustDomain: example.org, x509: { dir: ${dir}/svid } }
server: { metadataAddress: "127.0.0.1:${metadataPort}", opsAddress: "127.0.0.1:${opsPort}", stateDir: ${dir}/state, drainSeconds: 0, workloadApiSocket: ${dir}/state/agent.sock }
gcp:
  projectId: my-project
  projectNumber: "1"
  workloadIdentityProvider: projects/1/locations/global/workloadIdentityPools/pool/providers/prov
  stsEndpoint: http://127.0.0.1:${deadPort}
  iamCredentialsEndpoint: http://127.0.0.1:${deadPort}
`;
  const sidecar = spawn(process.execPath, [join(app, 'bin', 'spiffe-connector.js'), 'run'], { cwd: app, env: { PATH: process.env['PATH'] ?? '', NODE_OPTIONS: await imageNodeOptions(), SPIFFE_CONNECTOR_CONFIG: config }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  sidecar.stderr.on('data', (d: Buffer) => (out += d.toString()));
  let health = 0;
  for (let i = 0; i < 600 && health !== 200 && sidecar.exitCode === null; i++) {
    health = await fetch(`http://127.0.0.1:${opsPort}/healthz`).then((r) => r.status, () => 0);
    if (health !== 200) await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(health, 200, `the sidecar did not start:\n${out}`);
  assert.equal((await fetch(`http://127.0.0.1:${opsPort}/readyz`)).status, 503, 'not ready without credentials');
  // The Workload API server loads proto/workload.proto from the bundle's chunks directory.
  let listening = false;
  for (let i = 0; i < 600 && !listening && sidecar.exitCode === null; i++) {
    listening = await stat(join(dir, 'state', 'agent.sock')).then((s) => s.isSocket(), () => false);
    if (!listening) await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(listening, `the Workload API socket did not appear:\n${out}`);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => sidecar.once('exit', (code, signal) => resolve({ code, signal })));
  sidecar.kill('SIGTERM');
  // It stops; while still fetching its first credentials it may not have installed the drain handler yet.
  const end = await exited;
  assert.ok(end.code === 0 || end.signal === 'SIGTERM', JSON.stringify(end));
});
