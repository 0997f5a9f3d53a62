// The container image as far as it can be tested without a container engine: the Dockerfile's shape, and
// its final stage's tree rebuilt here as the build stage makes it (scripts/build.ts bundles, then
// scripts/runtime-tree.ts writes /runtime) in a directory of its own, with no node_modules above it; the
// entry point starts each of the three programs from exactly that tree under the image's NODE_OPTIONS, a
// load hook records every file they load (all inside the tree, and every package the tree carries loaded),
// and each stops on SIGTERM.

import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { generateKeyPair, SignJWT } from 'jose';
import { treeSize } from '../../scripts/runtime-tree.ts';
import { freeLoopbackPort as freePort } from '../../src/http/free-port.ts';
import { DevCa } from '../helpers/pki.ts';

const run = promisify(execFile);
const ROOT = new URL('../../', import.meta.url).pathname;

test('the Dockerfile builds on a pinned Node 24, and its runtime stage is a pinned distroless base holding only the runtime tree', async () => {
  const text = await readFile(join(ROOT, 'Dockerfile'), 'utf8');
  const build = /^ARG BUILD_IMAGE=(\S+)$/m.exec(text)?.[1] ?? '';
  const runtime = /^ARG RUNTIME_IMAGE=(\S+)$/m.exec(text)?.[1] ?? '';
  assert.match(build, /^node:24[-\w.]*@sha256:[0-9a-f]{64}$/, 'the build stage is Node 24, pinned by digest');
  assert.match(
    runtime,
    /^gcr\.io\/distroless\/nodejs24-debian\d+(:[\w.-]+)?@sha256:[0-9a-f]{64}$/,
    'the runtime is distroless Node 24, pinned by digest',
  );
  assert.match(text, /imagetools inspect|crane digest/, 'the Dockerfile says how to update the pins');
  const stages = text.split(/^FROM\s+/m).slice(1);
  assert.equal(stages.length, 4, 'a build stage, the link-local init image (two stages) and the runtime, last');
  const [buildStage = '', toolsStage = '', initStage = '', runtimeStage = ''] = stages;
  // The link-local init image: the pinned build base's static busybox and the init script on an empty base.
  assert.match(toolsStage, /^\$\{BUILD_IMAGE\} AS link-local-tools$/m);
  assert.match(toolsStage, /busybox-static/);
  assert.match(toolsStage, /^COPY --chmod=0755 scripts\/link-local-init\.sh \/out\/usr\/local\/bin\/link-local-init$/m);
  assert.match(initStage, /^scratch AS link-local-init$/m);
  assert.deepEqual(
    [...initStage.matchAll(/^(COPY|ADD|RUN)\b.*$/gm)].map((m) => m[0]),
    ['COPY --from=link-local-tools /out /'],
  );
  assert.match(initStage, /^ENTRYPOINT \["\/usr\/local\/bin\/link-local-init"\]$/m);
  assert.match(buildStage, /^\$\{BUILD_IMAGE\} AS build$/m);
  assert.match(buildStage, /^COPY scripts \.\/scripts$/m, 'the build stage has the build scripts');
  assert.match(buildStage, /^RUN npm run build && node scripts\/runtime-tree\.ts \/runtime$/m);
  assert.match(runtimeStage, /^\$\{RUNTIME_IMAGE\}$/m);
  // The runtime stage copies the runtime tree and nothing else, and runs nothing (distroless has no shell).
  assert.deepEqual(
    [...runtimeStage.matchAll(/^(COPY|ADD|RUN)\b.*$/gm)].map((m) => m[0]),
    ['COPY --from=build /runtime /app'],
  );
  const users = [...text.matchAll(/^USER\s+(\S+)/gm)].map((m) => m[1]);
  assert.deepEqual(users, ['65532:65532'], 'the runtime stage runs as a non-root uid:gid');
  assert.match(runtimeStage, /^ENTRYPOINT \["\/nodejs\/bin\/node", "\/app\/bin\/spiffe-connector\.js"\]$/m);
  assert.match(
    runtimeStage,
    /^ENV NODE_OPTIONS=--max-semi-space-size=1$/m,
    "the runtime keeps V8's young generation small",
  );
  assert.match(
    runtimeStage,
    /^ENV GLIBC_TUNABLES=glibc\.malloc\.mmap_threshold=131072$/m,
    "the runtime fixes glibc's mmap threshold",
  );
  for (const label of ['title', 'description', 'licenses', 'version'])
    assert.match(runtimeStage, new RegExp(`org\\.opencontainers\\.image\\.${label}=`), `OCI label ${label}`);
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  assert.match(pkg.scripts['build'] ?? '', /node scripts\/build\.ts/, 'npm run build bundles with scripts/build.ts');
  const ignore = await readFile(join(ROOT, '.dockerignore'), 'utf8');
  for (const p of ['node_modules', 'dist', '.git', 'test'])
    assert.match(ignore, new RegExp(`^${p.replace('.', '\\.')}$`, 'm'));
});

/** The packages (name as under node_modules, scoped ones with their scope) in a node_modules tree. */
async function carriedPackages(modules: string): Promise<string[]> {
  const names: string[] = [];
  for (const entry of await readdir(modules)) {
    if (entry.startsWith('@'))
      for (const scoped of await readdir(join(modules, entry))) names.push(`${entry}/${scoped}`);
    else if (!entry.startsWith('.')) names.push(entry);
  }
  return names.sort();
}

interface Started {
  readonly child: ChildProcess;
  readonly log: () => string;
}

/** The runtime stage's `ENV name=...` (NODE_OPTIONS, GLIBC_TUNABLES), given to every program started from the layout. */
async function imageVariable(name: string): Promise<string> {
  const m = new RegExp(`^ENV ${name}=(\\S+)$`, 'm').exec(await readFile(join(ROOT, 'Dockerfile'), 'utf8'));
  return m?.[1] ?? '';
}

/**
 * Preloaded (--require, itself CommonJS) into every program: at exit, appends to $LOADS_FILE the file of each
 * module it loaded and whether it loaded Node's ES module loader, without which it can have loaded no ES module (a
 * process that loads that loader is ~3 MB bigger, scripts/bundle-options.ts). Not through module hooks:
 * registering one loads that loader.
 */
const RECORDER = `const { appendFileSync } = require('node:fs');
process.on('exit', () => appendFileSync(process.env.LOADS_FILE, [...Object.keys(require.cache), 'esm-loader ' + process.moduleLoadList.includes('NativeModule internal/modules/esm/loader')].join('\\n') + '\\n'));
`;

/** The environment the image gives a program: PATH, the image's NODE_OPTIONS and GLIBC_TUNABLES, plus the load recorder. */
async function imageEnv(recorder: string, loads: string, env: Record<string, string>): Promise<Record<string, string>> {
  return {
    PATH: process.env['PATH'] ?? '',
    NODE_OPTIONS: `${await imageVariable('NODE_OPTIONS')} --require=${recorder}`,
    GLIBC_TUNABLES: await imageVariable('GLIBC_TUNABLES'),
    LOADS_FILE: loads,
    ...env,
  };
}

/** Starts the entry point and waits for a log line (bounded by a count of checks, never by a timing assertion). */
async function start(app: string, args: string[], env: Record<string, string>, ready: RegExp): Promise<Started> {
  const child = spawn(process.execPath, [join(app, 'bin', 'spiffe-connector.js'), ...args], {
    cwd: '/',
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
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

test('the runtime tree alone starts the webhook, the issuer and the sidecar from the entry point', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'image-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const app = join(dir, 'app');

  // Build stage: the bundle `npm run build` makes (after its typecheck, which `npm test` runs already), then
  // the runtime tree from it, as the Dockerfile's `node scripts/runtime-tree.ts /runtime` writes it.
  await run(process.execPath, [join(ROOT, 'scripts', 'build.ts'), join(dir, 'dist')], { cwd: ROOT });
  await run(process.execPath, [join(ROOT, 'scripts', 'runtime-tree.ts'), app, join(dir, 'dist')], { cwd: ROOT });
  assert.deepEqual((await readdir(app)).sort(), ['bin', 'dist', 'node_modules', 'package.json', 'proto']);
  const packages = await carriedPackages(join(app, 'node_modules'));
  for (const tool of ['npm', 'corepack', 'typescript', 'esbuild'])
    assert.ok(!packages.includes(tool), `no ${tool} in the tree`);
  assert.ok(!(await readdir(join(app, 'dist', 'chunks'))).some((f) => f.endsWith('.map')), 'no source maps');
  // No stand-in and no dev mode in the image: src/ never imports packages/dev (the workspace @spiffe-connector/dev).
  assert.ok(!packages.some((p) => p.startsWith('@spiffe-connector/')), 'no workspace package in the tree');
  const built = await readdir(join(dir, 'dist', 'chunks'));
  for (const file of ['main.js', ...built.filter((f) => f.endsWith('.js')).map((f) => join('chunks', f))]) {
    // Class names survive minification (keepNames), and the source maps list every bundled file.
    const code = await readFile(join(dir, 'dist', file), 'utf8');
    for (const name of ['FakeSts', 'FakeGcp', 'FakeEntra', 'DevCa', 'DevOidcSigner', 'runDev'])
      assert.ok(!code.includes(name), `dist/${file} holds ${name} from packages/dev`);
    const map = JSON.parse(await readFile(join(dir, 'dist', `${file}.map`), 'utf8')) as { sources: string[] };
    assert.ok(
      !map.sources.some((source) => source.includes('packages/dev')),
      `dist/${file} bundles a source of packages/dev`,
    );
  }
  const size = await treeSize(app);
  const modules = await treeSize(join(app, 'node_modules'));
  t.diagnostic(
    `runtime tree: ${size.files} files, ${(size.bytes / 1e6).toFixed(1)} MB (node_modules ${(modules.bytes / 1e6).toFixed(1)} MB: ${packages.join(', ')})`,
  );

  const recorder = join(dir, 'record-loads.cjs');
  await writeFile(recorder, RECORDER);
  const loads = join(dir, 'loads.txt');
  const env = (extra: Record<string, string> = {}): Promise<Record<string, string>> => imageEnv(recorder, loads, extra);

  // ENTRYPOINT ["/nodejs/bin/node", "/app/bin/spiffe-connector.js"], run from anywhere.
  const help = await run(process.execPath, [join(app, 'bin', 'spiffe-connector.js'), '--help'], {
    cwd: '/',
    env: await env(),
  });
  for (const command of ['run', 'issuer', 'webhook']) assert.match(help.stdout, new RegExp(`\\n\\s+${command}\\b`));
  const dev = await run(process.execPath, [join(app, 'bin', 'spiffe-connector.js'), 'dev'], {
    cwd: '/',
    env: await env(),
  }).then(
    () => assert.fail('`spiffe-connector dev` succeeded from the runtime tree'),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(dev.code, 2);
  assert.match(
    dev.stderr,
    /^dev mode is not part of the installed program: in a clone of the repository, run `npm ci && npm start`\n$/,
  );

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
  const webhook = await start(
    app,
    ['webhook', '--config', join(dir, 'webhook.yaml')],
    await env(),
    /"msg":"webhook listening"/,
  );
  assert.equal(await stop(webhook), 0);

  // The issuer.
  await mkdir(join(dir, 'keys'));
  await writeFile(
    join(dir, 'keys', 'key-1.pem'),
    generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  );
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
  const issuer = await start(
    app,
    ['issuer', '--config', join(dir, 'issuer.yaml')],
    await env(),
    /"msg":"issuer started"/,
  );
  assert.equal(await stop(issuer), 0);

  // The sidecar, configured the way the webhook configures it (SPIFFE_CONNECTOR_CONFIG, no file), with
  // all three clouds so that each one's chunks load: its ops listener answers while the (unreachable,
  // loopback) clouds keep it unready.
  const svid = await ca.issueX509Svid({ spiffeId: 'spiffe://example.org/ns/default/sa/app' });
  await mkdir(join(dir, 'svid'));
  await mkdir(join(dir, 'state'));
  await writeFile(join(dir, 'svid', 'tls.crt'), svid.certPem);
  await writeFile(join(dir, 'svid', 'tls.key'), svid.keyPem);
  await writeFile(join(dir, 'svid', 'ca.crt'), ca.certPem);
  const jwtKey = await generateKeyPair('ES256');
  const jwt = await new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setIssuer('https://oidc.example.org')
    .setSubject('spiffe://example.org/ns/default/sa/app')
    .setAudience(['sts.amazonaws.com', 'api://AzureADTokenExchange'])
    .setExpirationTime('1h')
    .sign(jwtKey.privateKey);
  await mkdir(join(dir, 'jwt'));
  await writeFile(join(dir, 'jwt', 'token'), jwt);
  const [metadataPort, opsPort, deadPort] = [await freePort(), await freePort(), await freePort()];
  const config = `spiffe: { trustDomain: example.org, x509: { dir: ${dir}/svid }, jwt: { file: ${dir}/jwt/token } }
server: { metadataAddress: "127.0.0.1:${metadataPort}", opsAddress: "127.0.0.1:${opsPort}", stateDir: ${dir}/state, drainSeconds: 0, workloadApiSocket: ${dir}/state/agent.sock }
gcp:
  projectId: my-project
  projectNumber: "1"
  workloadIdentityProvider: projects/1/locations/global/workloadIdentityPools/pool/providers/prov
  stsEndpoint: http://127.0.0.1:${deadPort}
  iamCredentialsEndpoint: http://127.0.0.1:${deadPort}
aws: { roleArn: "arn:aws:iam::111122223333:role/app", region: eu-west-1, stsEndpoint: "http://127.0.0.1:${deadPort}" }
azure: { tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47, clientId: 11111111-2222-3333-4444-555555555555, authorityHost: "http://127.0.0.1:${deadPort}" }
`;
  const sidecar = spawn(process.execPath, [join(app, 'bin', 'spiffe-connector.js'), 'run'], {
    cwd: '/',
    env: await env({ SPIFFE_CONNECTOR_CONFIG: config }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  sidecar.stderr.on('data', (d: Buffer) => (out += d.toString()));
  let health = 0;
  for (let i = 0; i < 600 && health !== 200 && sidecar.exitCode === null; i++) {
    health = await fetch(`http://127.0.0.1:${opsPort}/healthz`).then(
      (r) => r.status,
      () => 0,
    );
    if (health !== 200) await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(health, 200, `the sidecar did not start:\n${out}`);
  assert.equal((await fetch(`http://127.0.0.1:${opsPort}/readyz`)).status, 503, 'not ready without credentials');
  // The Workload API server loads proto/workload.proto from the bundle's chunks directory.
  let listening = false;
  for (let i = 0; i < 600 && !listening && sidecar.exitCode === null; i++) {
    listening = await stat(join(dir, 'state', 'agent.sock')).then(
      (s) => s.isSocket(),
      () => false,
    );
    if (!listening) await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(listening, `the Workload API socket did not appear:\n${out}`);
  // A path no surface claims gets express's 404, which names its type through mime-types (loaded on first use).
  const missing = await fetch(`http://127.0.0.1:${metadataPort}/no/such/path`);
  assert.equal(missing.status, 404);
  assert.equal(missing.headers.get('content-type'), 'text/plain; charset=utf-8');
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    sidecar.once('exit', (code, signal) => resolve({ code, signal })),
  );
  sidecar.kill('SIGTERM');
  // Still fetching its first credentials, it exits 0: the handler is installed before anything starts.
  assert.deepEqual(await exited, { code: 0, signal: null });

  // Every module the three programs loaded came from the tree, and every package the tree carries was
  // loaded by one of them: the tree is what they need, and no more.
  const lines = (await readFile(loads, 'utf8')).split('\n');
  const loaded = [...new Set(lines.filter((l) => l.startsWith('/')))].filter((f) => f !== recorder);
  const esmLoader = lines.filter((l) => l.startsWith('esm-loader '));
  assert.ok(esmLoader.length >= 5, `each program reported at exit: ${esmLoader.join(', ')}`);
  assert.deepEqual([...new Set(esmLoader)], ['esm-loader false'], "a program loaded Node's ES module loader");
  const outside = loaded.filter((f) => !f.startsWith(`${app}/`));
  assert.deepEqual(outside, [], 'loaded from outside the runtime tree');
  const used = new Set(
    loaded.map((f) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(f)?.[1]).filter((p) => p !== undefined),
  );
  assert.deepEqual(
    packages.filter((p) => !used.has(p)),
    [],
    'packages in the tree that no program loaded',
  );
});
