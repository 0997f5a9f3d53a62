// The built sidecar (the bundle scripts/build.ts makes, started from the image's runtime tree) serves Azure tokens
// to an unmodified app (real @azure/identity, only the `env` lines), exchanged with the Entra stand-in through
// azure.caFile. The other Azure tests run the sources; the bundle differs from them where scripts/bundle-options.ts
// says so: there, MSAL's jsonwebtoken is loaded only on first use, and the HTTP pipeline asks a request body whether
// it is a FormData before reading the global, whose first read would load Node's internal undici (with node:http2).
// This test holds both: the bundle still works, and that copy stays unloaded (test/azure/bundle.test.ts takes the
// paths the sidecar does not).

import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeAtomicDir } from '@spiffe-connector/dev/atomic-dir.ts';
import { ENTRA_FEDERATION_AUDIENCE } from '@spiffe-connector/dev/fake-entra.ts';
import { CLIENT_ID, OBJECT_ID, SPIFFE_ID, startWorld, TENANT_ID } from '../azure/fixtures.ts';
import { runSdk } from '../azure/sdk.ts';
import { buildRuntimeTree, INTERNAL_UNDICI, runNodeScript, stopChild } from '../helpers/built-tree.ts';
import { freePort, parseEnvLines, waitFor200 } from '../helpers/sidecar.ts';

const STORAGE = 'https://storage.azure.com';
test('the built sidecar serves Azure tokens exchanged with Entra through caFile, without loading Node’s internal undici', async (t) => {
  const world = await startWorld(t);
  const tree = await buildRuntimeTree(world.dir);
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
  const { child: sidecar, logs } = tree.startSidecar(configFile, modulesFile);
  t.after(() => stopChild(sidecar));

  // Ready only once the warm resource's token came from Entra.
  await waitFor200(`http://127.0.0.1:${opsPort}/readyz`).catch((e: Error) =>
    assert.fail(`${e.message}; the sidecar logged:\n${logs()}`),
  );
  const env = parseEnvLines(await runNodeScript([tree.bin, 'env', '--config', configFile]));
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

  await stopChild(sidecar);
  const modules = (await readFile(modulesFile, 'utf8')).split('\n');
  assert.ok(modules.includes('NativeModule https'), 'the list is the one the sidecar wrote');
  assert.ok(!modules.includes(INTERNAL_UNDICI), "the sidecar loaded Node's internal undici");
});
