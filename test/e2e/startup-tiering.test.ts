// The sidecar starts without TurboFan (src/ops/startup-tiering.ts: one start-up compilation alone leaves ~6 MB
// resident) and optimizes again once it is ready: a sidecar that stayed without it would answer every request
// at a fraction of its throughput. Once ready it also gives back the heap start-up left (src/ops/heap-release.ts),
// once, after its first credentials. Watched through V8's own --trace-opt lines. The module is preloaded, as
// bin/spiffe-connector.js sets the flag before loading anything: run from the sources, Node's own loader would
// otherwise reach TurboFan reading the ~400 modules before main.ts is evaluated.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Agent, get } from 'node:http';
import { test } from 'node:test';
import { startAwsJwtWorld } from '../helpers/aws-jwt-world.ts';
import { MAIN, waitFor200 } from '../helpers/sidecar.ts';
import { until } from '../helpers/until.ts';

const TIERING = new URL('../../src/ops/startup-tiering.ts', import.meta.url).href;

const TURBOFAN = /target TURBOFAN/;

const RELEASED = '"reason":"start-up"';

test('the sidecar starts without TurboFan and optimizes its request paths once ready', async (t) => {
  const { configFile, metadataPort, opsPort } = await startAwsJwtWorld(t, 'e2e-tiering-', 'log: { level: debug }\n');
  const child = spawn(process.execPath, ['--trace-opt', `--import=${TIERING}`, MAIN, 'run', '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let trace = '';
  let logs = '';
  child.stdout.on('data', (d: Buffer) => (trace += d.toString()));
  child.stderr.on('data', (d: Buffer) => (logs += d.toString()));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  t.after(async () => {
    child.kill('SIGTERM');
    await exited;
  });

  await waitFor200(`http://127.0.0.1:${opsPort}/readyz`);
  const atReady = trace;
  assert.match(atReady, /completed compiling/, 'V8 traces its compilations (Maglev ones at least) while starting');
  assert.doesNotMatch(atReady, TURBOFAN, 'nothing is compiled with TurboFan before the sidecar is ready');

  // Start-up's heap given back once, after the first credentials, and the heap smaller for it.
  const releaseLines = (): Array<{ heapBeforeBytes: number; heapAfterBytes: number }> =>
    logs
      .split('\n')
      .filter((l) => l.includes(RELEASED))
      .map((l) => JSON.parse(l) as { heapBeforeBytes: number; heapAfterBytes: number });
  await until(() => releaseLines().length > 0, 'the sidecar to log that it released start-up memory');
  const released = releaseLines();
  assert.equal(released.length, 1, 'released once');
  const [line] = released;
  assert.ok(
    line && line.heapAfterBytes < line.heapBeforeBytes,
    `heap ${line?.heapBeforeBytes} → ${line?.heapAfterBytes}`,
  );
  assert.ok(
    logs.indexOf('"credential issued"') !== -1 && logs.indexOf('"credential issued"') < logs.indexOf(RELEASED),
    'released after the first credential was issued',
  );

  // Requests through the metadata listener (its 404: express and the pipeline) until V8 optimizes something with
  // TurboFan; bounded by a count of requests, never by time.
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  t.after(() => agent.destroy());
  const request = (): Promise<number> =>
    new Promise((resolve, reject) => {
      get({ host: '127.0.0.1', port: metadataPort, path: '/none', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      }).on('error', reject);
    });
  let sent = 0;
  while (!TURBOFAN.test(trace.slice(atReady.length)) && sent < 40_000) {
    const statuses = await Promise.all(Array.from({ length: 64 }, request));
    assert.deepEqual(new Set(statuses), new Set([404]));
    sent += statuses.length;
  }
  t.diagnostic(`TurboFan optimized after ${sent} requests`);
  assert.match(trace.slice(atReady.length), TURBOFAN, `no TurboFan compilation after ${sent} requests:\n${logs}`);
});
