// The built sidecar (the bundle scripts/build.ts makes, started from the image's runtime tree) serves Google
// credentials through the JWT-SVID and the X.509-SVID paths to an unmodified app (real google-auth-library, only
// the `env` lines), and the Google stand-in accepts what it sent. The other Google tests run the sources; the
// bundle differs from them where scripts/bundle-options.ts says so: there, google-auth-library and gaxios get
// node-fetch's Headers and FormData instead of Node's globals, so that Node's internal undici (with node:http2)
// is never loaded for Google. This test holds both: the bundle still works, and that copy stays unloaded.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeAtomicDir } from '@spiffe-connector/dev/atomic-dir.ts';
import {
  AUDIENCE,
  FLAVOR,
  PROJECT_ID,
  runAdcClient,
  SERVICE_ACCOUNT,
  SPIFFE_ID,
  startGoogleWorld,
  until,
} from '../gcp/support.ts';
import { buildRuntimeTree, INTERNAL_UNDICI, runNodeScript, stopChild } from '../helpers/built-tree.ts';
import { freePort, parseEnvLines, waitFor200 } from '../helpers/sidecar.ts';

test('the built sidecar serves Google tokens through both paths without loading Node’s internal undici', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'e2e-bundle-gcp-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const tree = await buildRuntimeTree(dir);

  const world = await startGoogleWorld();
  t.after(() => world.close());
  await writeAtomicDir(join(dir, 'jwt'), [
    { name: 'jwt-svid', content: await world.signer.sign({ sub: SPIFFE_ID, aud: AUDIENCE, ttlSeconds: 3600 }) },
  ]);
  const svid = await world.ca.issueX509Svid({ spiffeId: SPIFFE_ID });
  await writeAtomicDir(join(dir, 'svid'), [
    { name: 'tls.crt', content: svid.certPem },
    { name: 'tls.key', content: svid.keyPem, mode: 0o600 },
    { name: 'ca.crt', content: world.ca.certPem },
  ]);

  /** Starts the built sidecar on the `path` identity, impersonating `serviceAccount`; `use` runs while it serves. */
  const withSidecar = async (
    name: string,
    path: 'jwt' | 'x509',
    serviceAccount: string,
    use: (ports: { metadataPort: number; opsPort: number; configFile: string; logs: () => string }) => Promise<void>,
  ): Promise<string[]> => {
    const [metadataPort, opsPort] = [await freePort(), await freePort()];
    const stateDir = join(dir, `state-${name}`);
    await mkdir(stateDir);
    const endpoint = path === 'jwt' ? world.fake.url : (world.fake.httpsUrl as string);
    const configFile = join(dir, `${name}.yaml`);
    await writeFile(
      configFile,
      `spiffe: { trustDomain: example.org, ${path === 'jwt' ? `jwt: { file: ${dir}/jwt/jwt-svid }` : `x509: { dir: ${dir}/svid }`} }
server: { metadataAddress: "127.0.0.1:${metadataPort}", opsAddress: "127.0.0.1:${opsPort}", stateDir: ${stateDir}, drainSeconds: 0 }
gcp:
  projectId: ${PROJECT_ID}
  projectNumber: "123456789012"
  workloadIdentityProvider: ${AUDIENCE.replace('//iam.googleapis.com/', '')}
  serviceAccount: ${serviceAccount}
  stsEndpoint: "${endpoint}"
  iamCredentialsEndpoint: "${endpoint}"
  caFile: ${world.caFile}
`,
    );
    const modulesFile = join(dir, `modules-${name}.txt`);
    const { child: sidecar, logs } = tree.startSidecar(configFile, modulesFile);
    try {
      await use({ metadataPort, opsPort, configFile, logs });
    } finally {
      await stopChild(sidecar);
    }
    const modules = (await readFile(modulesFile, 'utf8')).split('\n');
    assert.ok(modules.includes('NativeModule http'), 'the list is the one the sidecar wrote');
    return modules;
  };

  for (const path of ['jwt', 'x509'] as const) {
    await t.test(`the ${path} path`, async () => {
      const modules = await withSidecar(path, path, SERVICE_ACCOUNT, async ({ opsPort, configFile, logs }) => {
        await waitFor200(`http://127.0.0.1:${opsPort}/readyz`).catch((e: Error) =>
          assert.fail(`${e.message}; the sidecar logged:\n${logs()}`),
        );
        const env = parseEnvLines(await runNodeScript([tree.bin, 'env', '--config', configFile]));
        const r = await runAdcClient(env);
        assert.deepEqual(r.errors, {});
        assert.equal(r.projectId, PROJECT_ID);
        assert.equal(r.email, SERVICE_ACCOUNT);
        // What the app got is a token the stand-in issued to the service account, federated the way configured.
        const info = world.fake.tokenInfo(r.accessToken as string);
        assert.equal(info?.kind, 'service-account');
        assert.equal(info?.email, SERVICE_ACCOUNT);
        assert.equal(world.fake.stats.lastSts?.subject, SPIFFE_ID);
        assert.ok((world.fake.stats.stsByType[path === 'jwt' ? 'jwt' : 'mtls'] ?? 0) >= 1);
      });
      assert.ok(!modules.includes(INTERNAL_UNDICI), `the sidecar loaded Node's internal undici (${path} path)`);
    });
  }

  // A refusal goes through gaxios's error path (its error redactor rewrites the request's headers): the app is
  // told what Google answered, and the sidecar keeps serving.
  await t.test('a refusal from Google', async () => {
    const stranger = 'stranger@my-project.iam.gserviceaccount.com';
    await withSidecar('refused', 'jwt', stranger, async ({ metadataPort, logs }) => {
      const url = `http://127.0.0.1:${metadataPort}/computeMetadata/v1/instance/service-accounts/default/token`;
      await until(() => logs().includes('"code":"upstream_rejected"'), 'the sidecar to log the refusal');
      const answer = await fetch(url, { headers: FLAVOR });
      const text = await answer.text();
      assert.equal(answer.status, 403, `${text}\n${logs()}`);
      assert.match(text, /answered HTTP 403 PERMISSION_DENIED/);
      assert.equal((await fetch(url.replace('/token', '/email'), { headers: FLAVOR })).status, 200);
    });
  });
});
