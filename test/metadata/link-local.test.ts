// Link-local mode (server.linkLocal, annotation link-local) end to end, in network namespaces this test makes
// itself with `unshare -n` (root, as CI runs): each child proves lo is its only interface before it sends
// anything, and nothing here ever sends to a link-local address from the machine's own namespace. Without root,
// unshare, ip or setpriv, the namespace tests skip saying why. Also the init script alone, and `check`'s wording.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHILD = fileURLToPath(new URL('./link-local-child.ts', import.meta.url));
const INIT = join(ROOT, 'scripts/link-local-init.sh');
const ENV = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: '/tmp' };

/** In a new network namespace: refuses (exit 99) unless lo is its only interface, then brings lo up. */
const ISOLATED =
  '[ "$(ip -o link show | wc -l)" -eq 1 ] && ip -o link show | grep -q "^1: lo:" || exit 99\nip link set lo up';

function sh(
  script: string,
  args: readonly string[] = [],
  unshare: readonly string[] = ['-n'],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'unshare',
      [...unshare, '--', 'sh', '-c', script, 'sh', ...args],
      { cwd: ROOT, timeout: 240_000, env: ENV, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

const probe = await new Promise<string | false>((resolve) => {
  if (process.getuid?.() !== 0) return resolve('needs root to create a network namespace (unshare -n)');
  execFile(
    'unshare',
    ['-n', '-m', '--', 'sh', '-c', `${ISOLATED}\ncommand -v setpriv >/dev/null && command -v sysctl >/dev/null`],
    { timeout: 10_000, env: ENV },
    (error) =>
      resolve(
        error
          ? `cannot create network and mount namespaces with ip, setpriv and sysctl (${error.message.split('\n')[0]})`
          : false,
      ),
  );
});

test('the init script adds both addresses to lo with CAP_NET_ADMIN alone, idempotently, and refuses without it', {
  skip: probe,
}, async (t) => {
  const script = `${ISOLATED}
mark() { echo "== $1 $2"; }
as_init() { setpriv --bounding-set=-all,+net_admin --inh-caps=-all "$@"; }
as_user() { setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all,+net_admin "$@"; }
as_user sh "$1"; mark user-no-effective-cap $?
as_init sh "$1"; mark first $?
as_init sh "$1"; mark second $?
ip -o -f inet addr show dev lo | sed 's/^/lo: /'
as_init sh "$1" 10.0.0.1; mark not-link-local $?
for ip_bin in /bin/busybox /usr/bin/busybox; do
  if [ -x "$ip_bin" ]; then
    dir=$(mktemp -d); for a in ip grep sh; do ln -s "$ip_bin" "$dir/$a"; done
    as_init env PATH="$dir" "$dir/sh" "$1" 169.254.1.1; mark busybox $?
    as_init env PATH="$dir" "$dir/sh" "$1" 169.254.1.1; mark busybox-again $?
    break
  fi
done
`;
  const out = await sh(script, [INIT]);
  assert.notEqual(out.code, 99, 'the namespace had only lo');
  const marks = Object.fromEntries([...out.stdout.matchAll(/^== (\S+) (\d+)$/gm)].map((m) => [m[1], Number(m[2])]));
  // A non-root user whose capabilities are only in the bounding set (what capabilities.add gives a non-root
  // container: Kubernetes sets no ambient capabilities) cannot: the init container has to be uid 0.
  assert.equal(marks['user-no-effective-cap'], 1, out.stdout + out.stderr);
  assert.match(
    out.stderr,
    /link-local-init: cannot add 169\.254\.169\.254\/32 to lo \(the container needs the capability NET_ADMIN\)/,
  );
  assert.equal(marks['first'], 0, out.stderr);
  assert.match(out.stdout, /added 169\.254\.169\.254\/32 to lo\nlink-local-init: added 169\.254\.170\.2\/32 to lo/);
  assert.equal(marks['second'], 0, out.stderr);
  assert.match(
    out.stdout,
    /169\.254\.169\.254\/32 is already on lo\nlink-local-init: 169\.254\.170\.2\/32 is already on lo/,
  );
  const lo = out.stdout.split('\n').filter((l) => l.startsWith('lo: '));
  assert.equal(lo.filter((l) => l.includes(' inet 169.254.169.254/32 ')).length, 1, lo.join('\n'));
  assert.equal(lo.filter((l) => l.includes(' inet 169.254.170.2/32 ')).length, 1, lo.join('\n'));
  assert.equal(marks['not-link-local'], 2);
  assert.match(out.stderr, /10\.0\.0\.1 is not a link-local IPv4 address/);
  // The image's ip and sh (busybox), when this machine has busybox.
  if (marks['busybox'] === undefined) t.diagnostic("busybox is not installed: the image's ip (busybox) was not tried");
  else {
    assert.equal(marks['busybox'], 0, out.stderr);
    assert.equal(marks['busybox-again'], 0, out.stderr);
  }
});

test('link-local mode: real clients with no override variable reach the sidecar at 169.254.169.254:80 and 169.254.170.2:80', {
  skip: probe,
  timeout: 240_000,
}, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sc-link-local-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // What the webhook's hostAliases write into the pod's /etc/hosts, bind-mounted in the child's mount namespace only.
  const hosts = join(dir, 'hosts');
  await writeFile(hosts, '127.0.0.1 localhost\n::1 localhost\n169.254.169.254 metadata.google.internal\n');
  const out = await sh(
    `${ISOLATED}\nmount --bind "$1" /etc/hosts || exit 98\nexec "$2" "$3"`,
    [hosts, process.execPath, CHILD],
    ['-n', '-m'],
  );
  assert.notEqual(out.code, 99, 'the namespace had only lo');
  assert.notEqual(out.code, 98, `cannot bind-mount the pod's hosts file: ${out.stderr}`);
  let r: any;
  try {
    r = JSON.parse(out.stdout.trim().split('\n').at(-1) ?? '');
  } catch {
    assert.fail(`the child printed no answer (exit ${out.code}): ${out.stderr.slice(-3000)}`);
  }
  assert.equal(r.ok, true, r.error);
  assert.deepEqual(r.interfaces, ['lo']);

  // check, before: both addresses missing and port 80 not bindable, each said plainly; exit 1.
  assert.equal(r.checkBefore.code, 1, r.checkBefore.out);
  assert.match(
    r.checkBefore.out,
    /server\.linkLocal: 169\.254\.169\.254 and 169\.254\.170\.2 are not on lo \(the webhook's link-local init container adds the addresses with NET_ADMIN/,
  );
  assert.match(
    r.checkBefore.out,
    /server\.linkLocal: port 80 is not bindable: net\.ipv4\.ip_unprivileged_port_start is 1024/,
  );
  assert.notEqual(r.runBefore.code, 0);
  assert.match(
    r.runBefore.out,
    /cannot listen on 169\.254\.169\.254:80 \(EADDRNOTAVAIL\): 169\.254\.169\.254 is not on this pod's lo \(server\.linkLocal: the webhook's link-local init container adds it\)/,
  );
  assert.deepEqual(
    r.init.map((i: { code: number }) => i.code),
    [0, 0],
    JSON.stringify(r.init),
  );
  assert.equal(r.sysctl.code, 0, r.sysctl.stderr);
  assert.match(r.lo, / inet 169\.254\.169\.254\/32 /);
  assert.match(r.lo, / inet 169\.254\.170\.2\/32 /);
  // check, after: nothing missing; it says what the mode is.
  assert.equal(r.checkAfter.code, 0, r.checkAfter.out);
  assert.match(
    r.checkAfter.out,
    /metadata: link-local mode \(server\.linkLocal\): also on 169\.254\.169\.254:80 and 169\.254\.170\.2:80/,
  );
  assert.doesNotMatch(r.checkAfter.out, /\/v2\/credentials\/[A-Za-z0-9_-]{20}/, 'check never prints the relative URI');
  assert.match(r.checkAfter.out, /AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=\[redacted/);

  // env: the variables that point at the link-local addresses.
  assert.match(r.env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, /^\/v2\/credentials\/[A-Za-z0-9_-]{43}$/);
  assert.equal(r.env.AWS_CONTAINER_CREDENTIALS_FULL_URI, undefined);
  assert.equal(r.env.AWS_EC2_METADATA_SERVICE_ENDPOINT, 'http://169.254.169.254');
  assert.equal(r.env.GCE_METADATA_HOST, '169.254.169.254');
  assert.equal(r.env.GCE_METADATA_IP, '169.254.169.254');
  assert.equal(r.env.AZURE_POD_IDENTITY_AUTHORITY_HOST, undefined);
  assert.match(r.env.NO_PROXY, /169\.254\.169\.254,169\.254\.170\.2,metadata\.google\.internal/);

  // Each client got credentials from the sidecar's exchanges.
  const arn = `arn:aws:sts::111122223333:assumed-role/app/${r.sessionName}`;
  for (const name of ['awsChain', 'awsContainerMetadata', 'awsImds']) {
    assert.equal(r.clients[name].ok, true, `${name}: ${r.clients[name].error}`);
    assert.equal(r.clients[name].arn, arn, name);
  }
  assert.equal(r.clients.awsChain.accessKeyId, r.clients.awsImds.accessKeyId, 'one credential, two surfaces');
  assert.ok(r.signatures >= 3, 'STS verified each GetCallerIdentity with the served secret');
  assert.equal(r.clients.gcp.ok, true, r.clients.gcp.error);
  assert.equal(r.clients.gcp.available, true);
  assert.equal(r.clients.gcp.projectId, 'my-project');
  assert.equal(r.clients.gcp.accessToken, r.loopbackGoogleToken);
  assert.equal(r.clients.azure.ok, true, r.clients.azure.error);
  assert.equal(r.clients.azure.token, r.loopbackAzureToken);

  // Python: the last botocore before the token file, and google-auth, when scripts/install-peers.sh installed them.
  if (r.python.botocoreOld === 'absent')
    t.diagnostic('.tools/peers/py-boto3-old is not installed (scripts/install-peers.sh)');
  else {
    assert.equal(r.python.botocoreOld.ok, true, r.python.botocoreOld.error);
    assert.equal(r.python.botocoreOld.botocore, '1.31.85');
    assert.equal(r.python.botocoreOld.method, 'container-role');
    assert.equal(r.python.botocoreOld.arn, arn);
  }
  if (r.python.googleAuth === 'absent')
    t.diagnostic('.tools/peers/py-google-auth is not installed (scripts/install-peers.sh)');
  else {
    assert.equal(r.python.googleAuth.ok, true, r.python.googleAuth.error);
    assert.equal(r.python.googleAuth.version, '2.62.2');
    assert.equal(r.python.googleAuth.project, 'my-project');
    assert.equal(r.python.googleAuth.kind, 'google.auth.compute_engine.credentials.Credentials');
    // It asks for the cloud-platform scope explicitly: its own key in the sidecar's cache, from the same exchange.
    assert.match(r.python.googleAuth.token, /^ya29\.fake-/);
  }

  // Go: aws-sdk-go-v2 config v1.22.0 with only the relative URI, and Google's metadata package with no variable.
  if (r.go.awsOld === 'absent') t.diagnostic('.tools/peers/bin/go-aws-old is not built (scripts/install-peers.sh)');
  else {
    assert.equal(r.go.awsOld.ok, true, r.go.awsOld.error);
    assert.equal(r.go.awsOld.arn, arn);
  }
  if (r.go.gcp === 'absent') t.diagnostic('.tools/peers/bin/go-gcp is not built (scripts/install-peers.sh)');
  else {
    assert.equal(r.go.gcp.ok, true, r.go.gcp.error);
    assert.equal(r.go.gcp.onGCE, true);
    assert.equal(r.go.gcp.project, 'my-project');
    assert.match(r.go.gcp.token, /^ya29\.fake-/);
  }

  // Java: the AWS SDK for Java v2 chain with only the relative URI, and google-auth-library-java ADC with no variable
  // (its default is http://metadata.google.internal: the pod's hosts file).
  if (r.java.aws === 'absent') t.diagnostic('.tools/peers/java-aws is not built (scripts/install-peers.sh)');
  else {
    assert.equal(r.java.aws.ok, true, r.java.aws.error);
    assert.equal(r.java.aws.arn, arn);
  }
  if (r.java.gcp === 'absent') t.diagnostic('.tools/peers/java-gcp is not built (scripts/install-peers.sh)');
  else {
    assert.equal(r.java.gcp.ok, true, r.java.gcp.error);
    assert.equal(r.java.gcp.kind, 'ComputeEngineCredentials');
    assert.match(r.java.gcp.token, /^ya29\.fake-/);
  }

  // Ruby: aws-sdk-core 3.168.1 reads no AWS_CONTAINER_CREDENTIALS_FULL_URI at all; the relative URI is its only way.
  if (r.ruby === 'absent') t.diagnostic('ruby with aws-sdk-core is not installed (Debian: ruby-aws-sdk-core)');
  else {
    assert.equal(r.ruby.ok, true, r.ruby.error);
    assert.equal(r.ruby.version, '3.168.1');
    assert.equal(r.ruby.provider, 'Aws::ECSCredentials');
    assert.equal(r.ruby.arn, arn);
  }

  if (r.curl === 'absent') {
    t.diagnostic('curl is not installed: the shell-script checks were skipped');
    return;
  }
  assert.equal(r.curl.imdsRole.status, '200');
  assert.equal(r.curl.imdsRole.body, 'app');
  assert.equal(r.curl.ecs.status, '200');
  assert.match(r.curl.ecs.body, /"AccessKeyId":"/);
  assert.equal(r.curl.ecsWrongPath.status, '404', 'another path under /v2/credentials/ gets nothing');
  assert.equal(r.curl.googleByName.status, '200', 'metadata.google.internal through the pod hosts file');
  assert.equal(r.curl.googleByName.body, 'my-project');
  assert.equal(r.curl.googleByIp.status, '200');
  assert.equal(r.curl.googleByIp.body, '123456789012');
  assert.equal(r.curl.azure.status, '200');
  // The Host check on the link-local listeners: that address (port 80 or none), or the Google name; nothing else.
  for (const name of ['foreignHost', 'loopbackHostOnLinkLocal', 'otherAddressAsHost', 'port8080AsHost'])
    assert.equal(r.curl[name].status, '403', name);
  assert.equal(
    r.curl.foreignHost.body,
    'Forbidden: the Host header (or the request target) must name this metadata server.\n',
  );
  assert.equal(r.stateDirOwner, 65534, 'the sidecar ran as 65534');
});

test('the config refuses a relative URI without link-local mode, or one that is guessable', async () => {
  const { sidecarSchema } = await import('../../src/config/schema.ts');
  const base = {
    spiffe: { trustDomain: 'example.org', workloadApi: { socket: 'unix:///tmp/none.sock' } },
    aws: { roleArn: 'arn:aws:iam::111122223333:role/app', region: 'eu-west-1' },
  };
  const issues = (value: unknown): string[] => {
    const r = sidecarSchema.safeParse(value);
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };
  const uri = `/v2/credentials/${'a'.repeat(32)}`;
  assert.deepEqual(issues({ ...base, aws: { ...base.aws, containerRelativeUri: uri } }), [
    'aws.containerRelativeUri: is served at 169.254.170.2, which only link-local mode listens on: set server.linkLocal: true',
  ]);
  assert.deepEqual(
    issues({ ...base, server: { linkLocal: true }, aws: { ...base.aws, containerRelativeUri: uri } }),
    [],
  );
  for (const bad of [
    '/v2/credentials/short',
    `/v1/credentials/${'a'.repeat(32)}`,
    `/v2/credentials/${'a'.repeat(31)}/`,
    `/v2/credentials/${'a'.repeat(32)}?x`,
  ])
    assert.deepEqual(
      issues({ ...base, server: { linkLocal: true }, aws: { ...base.aws, containerRelativeUri: bad } }),
      ['aws.containerRelativeUri: must be /v2/credentials/ followed by 32-128 unguessable characters (A-Za-z0-9._~-)'],
      bad,
    );
});

test('check names what link-local mode lacks, and nothing when the namespace has it', async () => {
  const { linkLocalProblems } = await import('../../src/commands/check.ts');
  assert.deepEqual(
    linkLocalProblems({
      loAddresses: ['127.0.0.1', '169.254.169.254', '169.254.170.2'],
      unprivilegedPortStart: 80,
      canBindPrivileged: false,
    }),
    [],
  );
  assert.deepEqual(
    linkLocalProblems({ loAddresses: ['127.0.0.1'], unprivilegedPortStart: 1024, canBindPrivileged: true }),
    [
      "server.linkLocal: 169.254.169.254 and 169.254.170.2 are not on lo (the webhook's link-local init container adds the addresses with NET_ADMIN: ip addr add 169.254.169.254/32 dev lo); the sidecar cannot listen there",
    ],
    'NET_BIND_SERVICE makes the sysctl unnecessary',
  );
  assert.deepEqual(
    linkLocalProblems({
      loAddresses: ['127.0.0.1', '169.254.169.254'],
      unprivilegedPortStart: 1024,
      canBindPrivileged: false,
    }),
    [
      "server.linkLocal: 169.254.170.2 is not on lo (the webhook's link-local init container adds the addresses with NET_ADMIN: ip addr add 169.254.170.2/32 dev lo); the sidecar cannot listen there",
      'server.linkLocal: port 80 is not bindable: net.ipv4.ip_unprivileged_port_start is 1024 (the pod needs the sysctl at 80, which the webhook sets, or NET_BIND_SERVICE)',
    ],
  );
  assert.deepEqual(
    linkLocalProblems({
      loAddresses: ['169.254.169.254', '169.254.170.2'],
      unprivilegedPortStart: undefined,
      canBindPrivileged: false,
    }),
    ['server.linkLocal: cannot read net.ipv4.ip_unprivileged_port_start, so cannot tell whether port 80 is bindable'],
  );
});

test('check says when link-local mode serves no relative URI, and never prints the one it serves', async () => {
  const { checkConfig } = await import('../../src/commands/check.ts');
  const { sidecarSchema } = await import('../../src/config/schema.ts');
  const present = async () => ({
    loAddresses: ['127.0.0.1', '169.254.169.254', '169.254.170.2'],
    unprivilegedPortStart: 80,
    canBindPrivileged: false,
  });
  const config = (aws: Record<string, unknown>) =>
    sidecarSchema.parse({
      spiffe: { trustDomain: 'example.org', workloadApi: { socket: 'unix:///tmp/none.sock' } },
      server: { linkLocal: true },
      aws: { roleArn: 'arn:aws:iam::111122223333:role/app', region: 'eu-west-1', ...aws },
    });
  const without = await checkConfig(config({}), new Date(), present);
  assert.equal(without.ok, true, without.problems.join('\n'));
  assert.ok(
    without.lines.includes(
      'aws: AWS container credentials at http://169.254.170.2: not served (set aws.containerRelativeUri for clients that know only AWS_CONTAINER_CREDENTIALS_RELATIVE_URI; the webhook sets one per pod)',
    ),
    without.lines.join('\n'),
  );
  assert.ok(
    without.lines.includes('  AWS_EC2_METADATA_SERVICE_ENDPOINT=http://169.254.169.254'),
    without.lines.join('\n'),
  );
  const uri = `/v2/credentials/${'s'.repeat(40)}`;
  const served = await checkConfig(config({ containerRelativeUri: uri }), new Date(), present);
  assert.ok(!served.lines.join('\n').includes(uri), 'the relative URI is a secret');
  assert.ok(served.lines.includes('  AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=[redacted: see `spiffe-connector env`]'));
});
