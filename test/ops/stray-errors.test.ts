// An exception nothing caught ends the process with one log line and exit code 70, so that the
// kubelet restarts the sidecar instead of it running on in an unknown state.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EXIT_INTERNAL } from '../../src/ops/stray-errors.ts';
import { runNode } from '../helpers/sidecar.ts';

const MODULE = fileURLToPath(new URL('../../src/ops/stray-errors.ts', import.meta.url));

for (const [what, fault] of [
  ['uncaught exception', "setTimeout(() => { throw new Error('boom') }, 5)"],
  ['unhandled rejection', "setTimeout(() => { Promise.reject(new Error('boom')) }, 5)"],
] as const) {
  test(`an ${what} exits ${EXIT_INTERNAL} with one fatal log line, not kept running`, { timeout: 20_000 }, async () => {
    // The interval would keep a process that survived the fault alive until the test's timeout.
    const script = `import { exitOnStrayErrors } from ${JSON.stringify(MODULE)}; exitOnStrayErrors(); setInterval(() => {}, 1000); ${fault};`;
    const result = await runNode(['--input-type=module', '-e', script]);
    assert.equal(result.code, EXIT_INTERNAL, result.stderr);
    const lines = result.stderr
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('{'));
    assert.equal(lines.length, 1, result.stderr);
    const line = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>;
    assert.equal(line['level'], 'fatal');
    assert.match(String(line['msg']), new RegExp(`^${what}; exiting`));
    assert.match(String(line['err']), /boom/);
  });
}
