// server.metadataPort80 without privilege: in a network namespace this test makes (unshare -n; it holds only
// lo, which the child checks before sending anything), the sysctl net.ipv4.ip_unprivileged_port_start=80 that
// the webhook sets on the pod lets an unprivileged sidecar (uid 65534, no capabilities) listen on 127.0.0.1:80
// beside its configured port, and an IMDS client that drops the port gets credentials there. Without the
// sysctl the sidecar refuses to start and says what it needs. Needs root (CI is) to make the namespace.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';

const ROOT = new URL('../../', import.meta.url).pathname;
const CHILD = new URL('./port80-child.ts', import.meta.url).pathname;

function inNamespace(sysctl: boolean): Promise<{ code: number; stdout: string; stderr: string }> {
  const script = [
    'set -e',
    'ip link set lo up',
    sysctl
      ? 'sysctl -q -w net.ipv4.ip_unprivileged_port_start=80'
      : 'sysctl -q -w net.ipv4.ip_unprivileged_port_start=1024',
    `exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all "$0" "$1"`,
  ].join('\n');
  return new Promise((resolve) => {
    execFile(
      'unshare',
      ['-n', '--', 'sh', '-c', script, process.execPath, CHILD],
      { cwd: ROOT, timeout: 60_000, env: { PATH: process.env['PATH'] ?? '', HOME: '/tmp' } },
      (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

const probe = await new Promise<string | false>((resolve) => {
  if (process.getuid?.() !== 0) return resolve('needs root to create a network namespace (unshare -n)');
  execFile(
    'unshare',
    ['-n', '--', 'sh', '-c', 'ip link set lo up && command -v setpriv >/dev/null'],
    { timeout: 10_000 },
    (error) =>
      resolve(
        error ? `cannot create a network namespace with ip and setpriv (${error.message.split('\n')[0]})` : false,
      ),
  );
});

function answer(out: { stdout: string; stderr: string }): Record<string, unknown> {
  const line = out.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new Error(`the child printed no answer: ${out.stderr.slice(-2000)}`);
  }
}

test('with the pod sysctl, an unprivileged sidecar also serves 127.0.0.1:80, and an IMDS client without a port gets credentials', {
  skip: probe,
}, async () => {
  const out = answer(await inNamespace(true));
  assert.equal(out['ok'], true, String(out['error']));
  assert.deepEqual(out['interfaces'], ['lo']);
  assert.equal(out['uid'], 65534);
  assert.equal(out['arn'], 'arn:aws:sts::111122223333:assumed-role/app/ns.default.sa.app');
  assert.equal(out['signatures'], 1);
  assert.equal(out['rightHost'], 200);
  assert.equal(out['wrongHost'], 403);
});

test('without the sysctl the unprivileged sidecar cannot listen on port 80 and says what the pod needs', {
  skip: probe,
}, async () => {
  const out = answer(await inNamespace(false));
  assert.equal(out['ok'], false);
  assert.match(
    String(out['error']),
    /cannot listen on 127\.0\.0\.1:80 \(EACCES\): the pod needs the sysctl net\.ipv4\.ip_unprivileged_port_start=80/,
  );
});

test('check says what server.metadataPort80 needs', async () => {
  const { checkConfig } = await import('../../src/commands/check.ts');
  const { sidecarSchema } = await import('../../src/config/schema.ts');
  const config = sidecarSchema.parse({
    spiffe: { trustDomain: 'example.org', workloadApi: { socket: 'unix:///tmp/none.sock' } },
    server: { metadataAddress: '127.0.0.1:8181', metadataPort80: true },
    aws: { roleArn: 'arn:aws:iam::111122223333:role/app', region: 'eu-west-1' },
  });
  const report = await checkConfig(config, new Date());
  assert.ok(
    report.lines.includes(
      'metadata: also on 127.0.0.1:80 (server.metadataPort80), for clients that drop the port; needs the pod sysctl net.ipv4.ip_unprivileged_port_start=80 (the webhook sets it) or NET_BIND_SERVICE, and no other container on port 80',
    ),
    report.lines.join('\n'),
  );
});
