// The sidecar's ops listener answers every request, whatever its target, and holds no socket open.

import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import { Gauge } from 'prom-client';
import { Metrics } from '../../src/ops/metrics.ts';
import { startOpsServer } from '../../src/ops/ops-server.ts';
import { MALFORMED_TARGETS, raw, sendTarget } from '../helpers/http.ts';

async function ops(t: import('node:test').TestContext, ready = true) {
  const server = await startOpsServer({
    host: '127.0.0.1',
    port: 0,
    metrics: new Metrics(),
    readiness: () => ({
      ready,
      reasons: ready ? [] : ['aws: no valid credentials'],
      details: ['aws: STS said: caller text'],
    }),
  });
  t.after(() => server.close());
  return { server, port: Number(new URL(server.url).port) };
}

test('malformed request targets get an answer and the connection is closed', async (t) => {
  const { port } = await ops(t);
  const uncaught: unknown[] = [];
  const onUncaught = (e: unknown): void => void uncaught.push(e);
  process.on('uncaughtException', onUncaught);
  t.after(() => process.off('uncaughtException', onUncaught));
  for (const target of MALFORMED_TARGETS) {
    const answer = await sendTarget(port, target);
    assert.match(answer.statusLine ?? 'no answer', /^HTTP\/1\.1 (400|404) /, `GET ${target}`);
    assert.ok(answer.closed, `GET ${target}: connection closed`);
  }
  assert.deepEqual(uncaught, [], 'no exception escaped the handler');
  // And the listener still serves its probes.
  assert.equal((await raw(port, 'GET', '/healthz')).status, 200);
});

test('a hundred malformed requests leave no connection open', async (t) => {
  const { port } = await ops(t);
  // Each was asked to close: `closed` means the server closed it, not the client giving up.
  const answers = await Promise.all(Array.from({ length: 100 }, () => sendTarget(port, '//a:99999/x')));
  assert.equal(answers.filter((a) => a.statusLine !== undefined && a.closed).length, 100);
});

test('the probes listener has no /metrics, and its /readyz says what is not ready without the causes', async (t) => {
  const probes = await startOpsServer({
    host: '127.0.0.1',
    port: 0,
    readiness: () => ({
      ready: false,
      reasons: ['aws: no valid credentials'],
      details: ['aws: STS said: caller text'],
    }),
  });
  t.after(() => probes.close());
  const port = Number(new URL(probes.url).port);
  assert.equal((await raw(port, 'GET', '/metrics')).status, 404);
  assert.equal((await raw(port, 'GET', '/healthz')).status, 200);
  const ready = await raw(port, 'GET', '/readyz');
  assert.equal(ready.status, 503);
  assert.equal(ready.body, 'not ready:\n- aws: no valid credentials\n');
});

test('the metrics listener serves /metrics only, with a detailed /readyz when it is also the probes listener on loopback', async (t) => {
  const metrics = new Metrics();
  const only = await startOpsServer({ host: '127.0.0.1', port: 0, metrics });
  t.after(() => only.close());
  const onlyPort = Number(new URL(only.url).port);
  assert.equal((await raw(onlyPort, 'GET', '/metrics')).status, 200);
  assert.equal((await raw(onlyPort, 'GET', '/healthz')).status, 404);
  const { port } = await ops(t, false);
  const ready = await raw(port, 'GET', '/readyz');
  assert.equal(ready.status, 503);
  assert.match(ready.body, /STS said/);
});

test('close lets a scrape in flight finish, closes idle connections at once, and ends a stuck one after the grace', async () => {
  const metrics = new Metrics();
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let collecting!: () => void;
  const started = new Promise<void>((resolve) => (collecting = resolve));
  new Gauge({
    name: 'slow_collect',
    help: 'a gauge whose collection waits',
    registers: [metrics.registry],
    async collect() {
      collecting();
      await gate;
      this.set(1);
    },
  });
  const server = await startOpsServer({ host: '127.0.0.1', port: 0, metrics });
  const port = Number(new URL(server.url).port);
  const inFlight = raw(port, 'GET', '/metrics');
  await started;
  let closed = false;
  const closing = server.close(10_000).then(() => (closed = true));
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(closed, false, 'close waits for the answer in flight');
  release();
  const answer = await inFlight;
  assert.equal(answer.status, 200);
  assert.match(answer.body, /slow_collect 1/);
  await closing;

  // An idle keep-alive connection does not hold close up.
  const idle = await startOpsServer({ host: '127.0.0.1', port: 0, metrics });
  const socket = connect(Number(new URL(idle.url).port), '127.0.0.1');
  const socketClosed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  await new Promise<void>((resolve) => {
    socket.once('data', () => resolve());
    socket.write('GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  });
  const t1 = Date.now();
  await idle.close(10_000);
  await socketClosed;
  assert.ok(Date.now() - t1 < 2_000, `an idle connection held close for ${Date.now() - t1} ms`);

  // A request that never completes is ended by the grace bound, not waited for forever.
  const stuck = await startOpsServer({
    host: '127.0.0.1',
    port: 0,
    metrics: (() => {
      const m = new Metrics();
      new Gauge({
        name: 'never',
        help: 'never collected',
        registers: [m.registry],
        collect: () => new Promise<void>(() => {}),
      });
      return m;
    })(),
  });
  const stuckPort = Number(new URL(stuck.url).port);
  const hanging = raw(stuckPort, 'GET', '/metrics').then(
    () => 'answered',
    () => 'reset',
  );
  await new Promise((resolve) => setTimeout(resolve, 50));
  const t0 = Date.now();
  await stuck.close(200);
  assert.ok(Date.now() - t0 < 5_000, 'closed within the grace bound');
  assert.equal(await hanging, 'reset');
});
