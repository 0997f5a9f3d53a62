// The built sidecar (the bundle scripts/build.ts makes, started from the image's runtime tree) serves Azure tokens
// to an unmodified app (real @azure/identity, only the `env` lines), exchanged with the Entra stand-in through
// azure.caFile. The other Azure tests run the sources; the bundle differs from them where scripts/bundle-options.ts
// says so: there, MSAL's jsonwebtoken is loaded only on first use, and the HTTP pipeline asks a request body whether
// it is a FormData before reading the global, whose first read would load Node's internal undici (with node:http2).
// This test holds both: the bundle still works, and that copy stays unloaded (test/azure/bundle.test.ts takes the
// paths the sidecar does not).

import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeAtomicDir } from '@spiffe-connector/dev/atomic-dir.ts';
import { ENTRA_FEDERATION_AUDIENCE } from '@spiffe-connector/dev/fake-entra.ts';
import { CLIENT_ID, OBJECT_ID, SPIFFE_ID, startWorld, TENANT_ID } from '../azure/fixtures.ts';
import { runSdk } from '../azure/sdk.ts';
import { freePort, parseEnvLines, waitFor200 } from '../helpers/sidecar.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const STORAGE = 'https://storage.azure.com';
const INTERNAL_UNDICI = 'NativeModule internal/deps/undici/undici';

/** Preloaded into the sidecar: writes the built-in modules it loaded to $MODULES_FILE when it exits. */
const RECORDER = `const { writeFileSync } = require('node:fs');
process.on('exit', () => writeFileSync(process.env.MODULES_FILE, process.moduleLoadList.join('\\n')));
`;

/** Runs a Node script to completion (at most two minutes) and resolves with what it printed. */
function run(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      args,
      { cwd: ROOT, env: { PATH: process.env['PATH'] ?? '' }, timeout: 120_000 },
      (e, out, err) => (e ? reject(new Error(`${args.join(' ')}: ${e.message}\n${err}`)) : resolve(out)),
    );
  });
}

/** Stops the child with SIGTERM; a SIGKILL if it has not exited within 30 s. */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

test('the built sidecar serves Azure tokens exchanged with Entra through caFile, without loading Node’s internal undici', async (t) => {
  const world = await startWorld(t);
  const app = join(world.dir, 'app');
  await run([join(ROOT, 'scripts', 'build.ts'), join(world.dir, 'dist')]);
  await run([join(ROOT, 'scripts', 'runtime-tree.ts'), app, join(world.dir, 'dist')]);
  const bin = join(app, 'bin', 'spiffe-connector.js');
  const recorder = join(world.dir, 'recorder.cjs');
  await writeFile(recorder, RECORDER);
  const modulesFile = join(world.dir, 'modules.txt');
  await writeAtomicDir(join(world.dir, 'jwt'), [
    {
      name: 'jwt-svid',
      content: await world.signer.sign({ sub: SPIFFE_ID, aud: ENTRA_FEDERATION_AUDIENCE, ttlSeconds: 3600 }),
    },
  ]);

  const [metadataPort, opsPort] = [await freePort(), await freePort()];
  const stateDir = join(world.dir, 'state');
  await mkdir(stateDir);
  const configFile = join(world.dir, 'sidecar.yaml');
  await writeFile(
    configFile,
    `spiffe: { trustDomain: example.org, jwt: { file: ${world.dir}/jwt/jwt-svid } }
server: { metadataAddress: "127.0.0.1:${metadataPort}", opsAddress: "127.0.0.1:${opsPort}", stateDir: ${stateDir}, drainSeconds: 0 }
azure:
  tenantId: ${TENANT_ID}
  clientId: ${CLIENT_ID}
  objectId: ${OBJECT_ID}
  authorityHost: "${world.entra.authorityHost}"
  caFile: ${world.caFile}
  warmResources: [${STORAGE}]
`,
  );
  const sidecar = spawn(process.execPath, [bin, 'run', '--config', configFile], {
    cwd: '/',
    env: { PATH: process.env['PATH'] ?? '', NODE_OPTIONS: `--require=${recorder}`, MODULES_FILE: modulesFile },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let logs = '';
  sidecar.stderr?.on('data', (d: Buffer) => (logs += d.toString()));
  t.after(() => stop(sidecar));

  // Ready only once the warm resource's token came from Entra.
  await waitFor200(`http://127.0.0.1:${opsPort}/readyz`).catch((e: Error) =>
    assert.fail(`${e.message}; the sidecar logged:\n${logs}`),
  );
  const env = parseEnvLines(await run([bin, 'env', '--config', configFile]));
  const answer = await runSdk({ credential: 'managed-identity', scopes: [`${STORAGE}/.default`] }, env);
  assert.equal(answer.ok, true, JSON.stringify(answer));
  if (!answer.ok) return;
  const claims = await world.entra.verifyAccessToken(answer.tokens[0]?.token ?? '', STORAGE);
  assert.equal(claims.tid, TENANT_ID);
  assert.equal(claims.appid, CLIENT_ID);
  // What Entra saw: our SPIFFE ID's JWT-SVID as the federated assertion.
  const issued = world.entra.seen.filter((s) => s.outcome === 'issued');
  assert.ok(issued.length >= 1);
  for (const s of issued)
    assert.deepEqual(s.assertion, { iss: world.signer.issuer, sub: SPIFFE_ID, aud: ENTRA_FEDERATION_AUDIENCE });

  await stop(sidecar);
  const modules = (await readFile(modulesFile, 'utf8')).split('\n');
  assert.ok(modules.includes('NativeModule https'), 'the list is the one the sidecar wrote');
  assert.ok(!modules.includes(INTERNAL_UNDICI), "the sidecar loaded Node's internal undici");
});
