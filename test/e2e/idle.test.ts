// An idle sidecar sleeps: once it holds credentials and nobody calls it, nothing in it (a metrics sampler,
// a poller, a watcher of a busy directory) keeps waking it up. A per-pod sidecar pays every wake-up once
// per pod. Counted as the voluntary context switches of all its threads (Linux /proc), over two seconds.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FakeSts } from '@spiffe-connector/dev/fake-sts.ts';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { freePort, startSidecar, waitFor200 } from '../helpers/sidecar.ts';

const ROLE = 'arn:aws:iam::111122223333:role/app';
const ID = 'spiffe://example.org/ns/default/sa/app';

/** Voluntary context switches summed over the process's threads: each is a thread that slept and was woken. */
async function wakeups(pid: number): Promise<number> {
  let total = 0;
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    const status = await readFile(`/proc/${pid}/task/${tid}/status`, 'utf8').catch(() => '');
    total += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  }
  return total;
}

test('an idle sidecar holding credentials is not woken up', {
  skip: existsSync('/proc/self/task') ? false : 'counts wake-ups in /proc (Linux only)',
}, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'e2e-idle-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const signer = await DevOidcSigner.start();
  t.after(() => signer.close());
  const sts = await FakeSts.start({
    allowLoopbackHttpIssuers: true,
    providers: [{ issuer: signer.issuer, audiences: ['sts.amazonaws.com'] }],
    roles: [{ arn: ROLE, issuer: signer.issuer, audience: 'sts.amazonaws.com' }],
  });
  t.after(() => sts.close());
  await mkdir(join(dir, 'tokens'));
  await writeFile(
    join(dir, 'tokens', 'jwt-svid'),
    await signer.sign({ sub: ID, aud: 'sts.amazonaws.com', ttlSeconds: 3600 }),
  );
  const [metadataPort, opsPort] = [await freePort(), await freePort()];
  const configFile = join(dir, 'config.yaml');
  await writeFile(
    configFile,
    `spiffe: { trustDomain: example.org, jwt: { file: ${join(dir, 'tokens', 'jwt-svid')} } }
server: { metadataAddress: "127.0.0.1:${metadataPort}", opsAddress: "127.0.0.1:${opsPort}", stateDir: ${join(dir, 'state')}, drainSeconds: 0 }
aws: { roleArn: "${ROLE}", region: eu-west-1, stsEndpoint: "${sts.url}" }
`,
  );
  const sidecar = await startSidecar(configFile);
  t.after(() => sidecar.stop());
  await waitFor200(`http://127.0.0.1:${opsPort}/readyz`);
  // Scraped once, as Prometheus would, so that the process metrics are set up and collected.
  assert.equal((await fetch(`http://127.0.0.1:${opsPort}/metrics`)).status, 200);
  const pid = sidecar.child.pid ?? 0;

  // Settle (the connections just used close, start-up work ends), then count over two quiet seconds.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const before = await wakeups(pid);
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  const woken = (await wakeups(pid)) - before;
  t.diagnostic(`${woken} wake-ups in two idle seconds`);
  // A sampler on a 10 ms timer alone makes ~200 here; an idle Node process makes none.
  assert.ok(woken < 30, `${woken} wake-ups in two idle seconds:\n${sidecar.logs()}`);
});
