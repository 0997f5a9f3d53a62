// The sidecar starts without TurboFan or Maglev (src/ops/startup-tiering.ts: one start-up TurboFan compilation
// alone leaves ~6 MB resident, Maglev's code ~1.4 MB) and optimizes again once it is ready: a sidecar that stayed
// without them would answer every request at a fraction of its throughput. Once ready it also gives back the heap
// start-up left (src/ops/heap-release.ts), once, after its first credentials. Watched through V8's own --trace-opt
// lines. Started as users start it, through bin/spiffe-connector.js, which sets the flags before loading anything
// (in a clone without a build it runs the sources: Node's loader reading their ~400 modules would otherwise make
// its own functions hot enough for Maglev before main.ts is evaluated).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Agent, get } from 'node:http';
import { test } from 'node:test';
import { startAwsJwtWorld } from '../helpers/aws-jwt-world.ts';
import { waitFor200 } from '../helpers/sidecar.ts';
import { until } from '../helpers/until.ts';

const BIN = new URL('../../bin/spiffe-connector.js', import.meta.url).pathname;

const TURBOFAN = /target TURBOFAN/;
const MAGLEV = /target MAGLEV/;
/** How long STS holds the first answer. */
const HOLD_MS = 5_000;

const RELEASED = '"reason":"start-up"';

test('the sidecar starts without TurboFan or Maglev and optimizes its request paths once ready', async (t) => {
  const { configFile, metadataPort, opsPort, sts } = await startAwsJwtWorld(
    t,
    'e2e-tiering-',
    'log: { level: debug }\n',
  );
  // STS holds its first answer: the trace is read while the sidecar, its start-up done, waits for it, so strictly
  // before it is ready (ready, it lets the compilers in at once).
  sts.injectFaults([{ delayMs: HOLD_MS }]);
  const child = spawn(process.execPath, ['--trace-opt', BIN, 'run', '--config', configFile], {
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

  await until(() => sts.pendingFaults() === 0, 'the sidecar to ask STS for its first credentials');
  // What V8 printed before that request has reached this process well within this wait (V8 writes each trace line
  // as it goes: the lines after ready below arrive while the requests run).
  await new Promise((resolve) => setTimeout(resolve, HOLD_MS / 10));
  const whileStarting = trace;
  assert.equal(sts.issued().length, 0, 'the trace was read before STS answered');
  assert.doesNotMatch(whileStarting, TURBOFAN, 'nothing is compiled with TurboFan before the sidecar is ready');
  assert.doesNotMatch(whileStarting, MAGLEV, 'nor with Maglev');

  await waitFor200(`http://127.0.0.1:${opsPort}/readyz`);
  const atReady = trace;

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
  // TurboFan (which also shows the trace works); bounded by a count of requests, never by time.
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
  while (!(TURBOFAN.test(trace.slice(atReady.length)) && MAGLEV.test(trace.slice(atReady.length))) && sent < 40_000) {
    const statuses = await Promise.all(Array.from({ length: 64 }, request));
    assert.deepEqual(new Set(statuses), new Set([404]));
    sent += statuses.length;
  }
  t.diagnostic(`TurboFan optimized after ${sent} requests`);
  assert.match(trace.slice(atReady.length), TURBOFAN, `no TurboFan compilation after ${sent} requests:\n${logs}`);
  assert.match(trace.slice(atReady.length), MAGLEV, `no Maglev compilation after ${sent} requests`);
});
