// examples/systemd: the unit and its config are what they say. The config validates and `env` prints what
// the host's apps need; the unit's paths agree with the config; systemd-analyze (when installed) finds
// nothing to complain about in the unit.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadSidecarConfig } from '../../src/config/load.ts';
import { cli, parseEnvLines } from '../helpers/sidecar.ts';

const DIR = fileURLToPath(new URL('../../examples/systemd/', import.meta.url));
const UNIT = join(DIR, 'spiffe-connector.service');
const CONFIG = join(DIR, 'config.yaml');

/** `Key=Value` lines of a unit file, by section. */
function parseUnit(text: string): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  let section = '';
  for (const line of text.split('\n')) {
    const s = /^\[(\w+)\]$/.exec(line);
    if (s?.[1]) {
      section = s[1];
      out[section] = {};
    }
    const kv = /^(\w+)=(.*)$/.exec(line);
    if (kv?.[1] && section) (out[section] as Record<string, string>)[kv[1]] = kv[2] ?? '';
  }
  return out;
}

test('the example config validates, and env tells the host apps the loopback endpoint and the token file', async () => {
  const config = await loadSidecarConfig(CONFIG, {});
  assert.equal(config.spiffe.workloadApi?.socket, 'unix:///run/spire/agent/public/api.sock');
  assert.equal(config.aws?.imds, false);
  const printed = await cli(['env', '--config', CONFIG]);
  assert.equal(printed.code, 0, printed.stderr);
  const env = parseEnvLines(printed.stdout);
  assert.equal(env['AWS_CONTAINER_CREDENTIALS_FULL_URI'], 'http://127.0.0.1:8181/v1/credentials');
  assert.equal(env['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'], '/var/lib/spiffe-connector/aws-container-token');
  assert.equal(env['AWS_EC2_METADATA_SERVICE_ENDPOINT'], undefined);
});

test("the unit runs the sidecar with that config, its state in the config's stateDir, stopped by SIGTERM", async () => {
  const unit = parseUnit(await readFile(UNIT, 'utf8'));
  const config = await loadSidecarConfig(CONFIG, {});
  const service = unit['Service'] ?? {};
  assert.equal(service['ExecStart'], '/usr/bin/spiffe-connector run --config /etc/spiffe-connector/config.yaml');
  assert.equal(`/var/lib/${service['StateDirectory']}`, config.server.stateDir);
  assert.equal(service['Group'], 'spiffe-connector', 'the token files are group-readable: apps join this group');
  assert.equal(service['KillSignal'], 'SIGTERM');
  assert.equal(service['MemoryDenyWriteExecute'], 'no', "V8's JIT needs writable, executable memory");
  assert.match(unit['Unit']?.['After'] ?? '', /spire-agent\.service/);
});

const hasAnalyze = await new Promise<boolean>((resolve) =>
  execFile('systemd-analyze', ['--version'], (error) => resolve(!error)),
);

test('systemd-analyze verify has no complaint about the unit', {
  skip: hasAnalyze ? false : 'systemd-analyze is not installed',
}, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'systemd-unit-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // verify insists the command exists: any executable stands in for the installed program.
  const unit = (await readFile(UNIT, 'utf8')).replace('/usr/bin/spiffe-connector', process.execPath);
  await writeFile(join(dir, 'spiffe-connector.service'), unit);
  const out = await new Promise<{ code: number; stderr: string }>((resolve) =>
    execFile(
      'systemd-analyze',
      ['verify', join(dir, 'spiffe-connector.service')],
      { timeout: 30_000 },
      (error, _stdout, stderr) => resolve({ code: error ? 1 : 0, stderr }),
    ),
  );
  assert.equal(out.code, 0, out.stderr);
  assert.equal(out.stderr.trim(), '', 'systemd-analyze warned');
});
