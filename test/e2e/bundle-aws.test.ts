// The built sidecar (the bundle scripts/build.ts makes, started from the image's runtime tree) serves AWS credentials
// to an unmodified app (the real AWS SDK's default chain, only the `env` lines). The bundle differs from the sources
// where scripts/bundle-options.ts says so: there, what express requires for middleware and response helpers the
// sidecar does not call (body-parser's parsers, serve-static and send, mime-types and its database) loads on first
// use. This test holds that the bundle still serves, that those stay unloaded while it does, and that express's own
// answer to a path no surface claims, which names its type through mime-types, still comes out whole.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startAwsJwtWorld } from '../helpers/aws-jwt-world.ts';
import { buildRuntimeTree, runNodeScript, stopChild } from '../helpers/built-tree.ts';
import { parseEnvLines, runNode, waitFor200 } from '../helpers/sidecar.ts';
import { until } from '../helpers/until.ts';

const CLIENT = fileURLToPath(new URL('./clients/aws-sdk-client.mjs', import.meta.url));
/** Packages the runtime tree carries that only express's unused helpers load (scripts/runtime-packages.ts). */
const ON_FIRST_USE = ['mime-types', 'mime-db', 'iconv-lite'];

/** The packages of node_modules among the loaded files of a recorder's list (test/helpers/built-tree.ts). */
function packagesIn(list: string): Set<string> {
  const names = list.split('\n').map((f) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(f)?.[1]);
  return new Set(names.filter((n) => n !== undefined));
}

test('the built sidecar serves AWS credentials without loading what express loads for helpers it never calls', async (t) => {
  const { dir, configFile, metadataPort, opsPort, sts } = await startAwsJwtWorld(t, 'bundle-aws-');
  const tree = await buildRuntimeTree(dir);
  const modulesFile = join(dir, 'modules.txt');
  const { child: sidecar, logs } = tree.startSidecar(configFile, modulesFile);
  t.after(() => stopChild(sidecar));
  await waitFor200(`http://127.0.0.1:${opsPort}/readyz`).catch((e: Error) =>
    assert.fail(`${e.message}; the sidecar logged:\n${logs()}`),
  );

  // An unmodified app, through the SDK's default chain: the container-credentials endpoint, then STS signed with them.
  const appEnv = parseEnvLines(await runNodeScript([tree.bin, 'env', '--config', configFile]));
  const app = await runNode([CLIENT, sts.url], { ...appEnv, PATH: process.env['PATH'] ?? '' });
  assert.equal(app.code, 0, app.stderr);
  assert.equal((JSON.parse(app.stdout) as { account: string }).account, '111122223333');
  assert.ok(sts.stats.signaturesVerified >= 1, 'STS verified a request signed with the issued secret');

  // What the serving sidecar has loaded: none of express's first-use packages.
  sidecar.kill('SIGUSR2');
  const now = await until(
    () =>
      readFile(`${modulesFile}.now`, 'utf8').then(
        (text) => text || undefined,
        () => undefined,
      ),
    'the list of what it loaded, which the sidecar writes on SIGUSR2',
  ).catch((error: Error) => assert.fail(`${error.message}\n${logs()}`));
  assert.ok(now.includes('NativeModule https'), `the sidecar wrote what it loaded on SIGUSR2:\n${logs()}`);
  const serving = packagesIn(now);
  assert.ok(
    now.split('\n').some((f) => f.endsWith('/dist/main.js')),
    'the list names the files loaded, the bundle among them',
  );
  assert.deepEqual(
    ON_FIRST_USE.filter((p) => serving.has(p)),
    [],
    'loaded while serving credentials',
  );

  // A path no surface claims: express's own 404, whose Content-Type gets its charset from mime-types' database.
  const missing = await fetch(`http://127.0.0.1:${metadataPort}/no/such/path`);
  assert.equal(missing.status, 404);
  assert.equal(missing.headers.get('content-type'), 'text/plain; charset=utf-8');
  assert.equal(await missing.text(), 'not found\n');

  await stopChild(sidecar);
  const atExit = packagesIn(await readFile(modulesFile, 'utf8'));
  assert.ok(atExit.has('mime-types') && atExit.has('mime-db'), 'mime-types and its database loaded for the 404');
});
