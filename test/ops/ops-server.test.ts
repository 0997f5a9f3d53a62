// The sidecar's ops listener answers every request, whatever its target, and holds no socket open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Metrics } from '../../src/ops/metrics.ts';
import { startOpsServer } from '../../src/ops/ops-server.ts';
import { MALFORMED_TARGETS, raw, sendTarget } from '../helpers/http.ts';

async function ops(t: import('node:test').TestContext, ready = true) {
  const server = await startOpsServer({ host: '127.0.0.1', port: 0, metrics: new Metrics(), readiness: () => ({ ready, reasons: ready ? [] : ['aws: no valid credentials'], details: ['aws: STS said: caller text'] }) });
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
  const probes = await startOpsServer({ host: '127.0.0.1', port: 0, readiness: () => ({ ready: false, reasons: ['aws: no valid credentials'], details: ['aws: STS said: caller text'] }) });
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
