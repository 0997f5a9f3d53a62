// The free-port helper (src/http/free-port.ts) that the dev issuer and the tests' sidecars use for a listener whose
// URL must be known before it starts: a port nobody holds, never from the kernel's ephemeral range, from which any
// other process's listen(0) or outgoing connection could take it before our listener binds it.

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { ephemeralRange, FREE_PORT_RANGE, freeLoopbackPort } from '../../src/http/free-port.ts';

function bind(port: number): Promise<() => Promise<void>> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(() => new Promise((done) => server.close(() => done()))));
  });
}

test('a free port is bindable at once, and lies outside the kernel ephemeral range', async (t) => {
  const ephemeral = ephemeralRange();
  if (ephemeral.first <= FREE_PORT_RANGE.first) {
    t.skip(`this machine's ephemeral range starts at ${ephemeral.first}: ports come from listen(0)`);
    return;
  }
  const seen = new Set<number>();
  for (let i = 0; i < 20; i++) {
    const port = await freeLoopbackPort();
    assert.ok(
      port >= FREE_PORT_RANGE.first && port < ephemeral.first,
      `port ${port} outside [20000, ${ephemeral.first})`,
    );
    const close = await bind(port);
    await close();
    seen.add(port);
  }
  assert.ok(seen.size > 10, `20 calls gave ${seen.size} different ports: drawn at random`);
});
