// A SIGTERM that arrives right after a server logs that it listens, while it still starts the rest (the
// webhook's metrics listener), drains and exits 0: a Kubernetes rollout can stop a pod at any moment.
// A preloaded hook sends the signal from inside the process as its second listener starts, so the
// moment is the same on every run instead of a race a loaded machine sometimes loses.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DevCa } from '../helpers/pki.ts';
import { MAIN } from '../helpers/sidecar.ts';

const HOOK = `import net from 'node:net';
let n = 0;
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  n += 1;
  if (n === Number(process.env.SIGTERM_AT_LISTEN)) process.kill(process.pid, 'SIGTERM');
  return listen.apply(this, args);
};
`;

test('the webhook exits 0 on a SIGTERM between its "listening" line and the end of its start', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'signals-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const server = await ca.issueServerCert({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  await writeFile(join(dir, 'tls.crt'), server.certPem);
  await writeFile(join(dir, 'tls.key'), server.keyPem);
  await writeFile(join(dir, 'hook.mjs'), HOOK);
  await writeFile(
    join(dir, 'webhook.yaml'),
    `webhook: { address: "127.0.0.1:0", metricsAddress: "127.0.0.1:0", tls: { certFile: ${dir}/tls.crt, keyFile: ${dir}/tls.key }, drainSeconds: 0 }\nsidecar: { image: spiffe-connector:test }\ndefaults: { trustDomain: example.org }\n`,
  );
  const child = spawn(
    process.execPath,
    ['--import', join(dir, 'hook.mjs'), MAIN, 'webhook', '--config', join(dir, 'webhook.yaml')],
    {
      env: { PATH: process.env['PATH'] ?? '', SIGTERM_AT_LISTEN: '2' },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let log = '';
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const end = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  clearTimeout(timer);
  assert.match(log, /"msg":"webhook listening"/, log);
  assert.match(log, /received SIGTERM/, log);
  assert.deepEqual(end, { code: 0, signal: null }, log);
});
