// A real SPIRE deployment for tests: spire-server (SQLite in a temp dir, its API on a Unix socket, the
// agent-facing port on 127.0.0.1) and spire-agent (join-token node attestation, the `unix` workload
// attestor, its Workload API on a Unix socket in the same temp dir), both built from the Go module proxy by
// scripts/install-tools.sh into .tools/bin. Every process started here is stopped by the test's t.after;
// every wait is bounded. Plus the OIDC side SPIRE's OIDC Discovery Provider plays in a cluster: a loopback
// HTTP server whose discovery document and JWKS carry the server's JWT keys, as `spire-server bundle show
// -format spiffe` prints them, so the cloud stand-ins verify SPIRE's JWT-SVIDs against SPIRE's own keys.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { access, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { freeLoopbackPort } from '../../src/http/free-port.ts';

const BIN = new URL('../../.tools/bin/', import.meta.url).pathname;
export const SPIRE_SERVER = join(BIN, 'spire-server');
export const SPIRE_AGENT = join(BIN, 'spire-agent');
export const GO_SPIFFE_CLIENT = join(BIN, 'go-spiffe-client');

const exists = (path: string): Promise<boolean> =>
  access(path).then(
    () => true,
    () => false,
  );

/** false when the binaries are there, else why the test skips. */
export async function spireSkip(): Promise<string | false> {
  if ((await exists(SPIRE_SERVER)) && (await exists(SPIRE_AGENT))) return false;
  return 'no spire-server/spire-agent in .tools/bin (bash scripts/install-tools.sh builds them from the Go module proxy; it needs Go and a C compiler)';
}

export async function agentSkip(): Promise<string | false> {
  return (await exists(SPIRE_AGENT))
    ? false
    : 'no spire-agent in .tools/bin (bash scripts/install-tools.sh builds it from the Go module proxy; it needs Go and a C compiler)';
}

export async function goSpiffeSkip(): Promise<string | false> {
  return (await exists(GO_SPIFFE_CLIENT))
    ? false
    : 'no go-spiffe-client in .tools/bin (bash scripts/install-tools.sh builds it from test/peers/go-spiffe-client; it needs Go)';
}

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a binary to completion, at most `timeoutMs`. */
export function run(
  file: string,
  args: readonly string[],
  timeoutMs = 30_000,
  env: Record<string, string> = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      [...args],
      { timeout: timeoutMs, killSignal: 'SIGKILL', env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env } },
      (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

/** Polls `probe` every `intervalMs` until it returns a value, at most `timeoutMs`. */
export async function poll<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 60_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (thrown) {
      last = thrown;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`gave up after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export interface Daemon {
  readonly child: ChildProcess;
  /** The last 256 KiB it wrote (stdout and stderr). */
  logs(): string;
  stop(): Promise<void>;
}

/** Starts a long-running process with PATH and `env` only; stop() sends SIGTERM, then SIGKILL after 5 s. */
export function daemon(file: string, args: readonly string[], env: Record<string, string> = {}): Daemon {
  const child = spawn(file, [...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env },
  });
  let logs = '';
  const keep = (d: Buffer): void => {
    logs = (logs + d.toString()).slice(-256 * 1024);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  child.on('error', (e) => keep(Buffer.from(`spawn error: ${e.message}\n`)));
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  return {
    child,
    logs: () => logs,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

export const TRUST_DOMAIN = 'example.org';
export const NODE_ID = `spiffe://${TRUST_DOMAIN}/node/test`;

export interface Spire {
  readonly dir: string;
  /** unix:///… of the agent's Workload API. */
  readonly agentAddress: string;
  readonly agentSocket: string;
  readonly serverSocket: string;
  /** The `jwt_issuer` of SPIRE's JWT-SVIDs: the loopback OIDC server below. */
  readonly issuer: string;
  readonly server: Daemon;
  agent: Daemon;
  /** `spire-server ARGS -socketPath …` */
  serverCli(args: readonly string[]): Promise<CliResult>;
  /** Creates a registration entry; returns its ID. */
  createEntry(
    spiffeId: string,
    selectors: readonly string[],
    options?: { x509SvidTtl?: number; jwtSvidTtl?: number },
  ): Promise<string>;
  deleteEntry(id: string): Promise<void>;
  /** The trust bundle as the server prints it in SPIFFE format (JWKS with x509-svid and jwt-svid keys). */
  spiffeBundle(): Promise<{ keys: Array<Record<string, unknown>> }>;
  /** Stops the agent and starts it again on the same data dir and socket (it keeps its node SVID). */
  restartAgent(): Promise<void>;
  /** Every log line so far, for a failing assertion's message. */
  logs(): string;
}

/** Starts the OIDC stand-in, the server, the agent; waits until both are healthy. */
export async function startSpire(t: TestContext, options: { defaultX509SvidTtl?: number } = {}): Promise<Spire> {
  // Short: Unix socket paths must fit in 107 bytes.
  const dir = await mkdtemp(join(tmpdir(), 'spire-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const serverSocket = join(dir, 'server.sock');
  const agentSocket = join(dir, 'agent.sock');
  await mkdir(join(dir, 'server-data'));
  await mkdir(join(dir, 'agent-data'));
  const serverCli = (args: readonly string[]): Promise<CliResult> =>
    run(SPIRE_SERVER, [...args, '-socketPath', serverSocket]);

  let bundleCache: { at: number; doc: { keys: Array<Record<string, unknown>> } } | undefined;
  const spiffeBundle = async (): Promise<{ keys: Array<Record<string, unknown>> }> => {
    const r = await serverCli(['bundle', 'show', '-format', 'spiffe']);
    if (r.code !== 0) throw new Error(`spire-server bundle show failed (${r.code}): ${r.stderr}`);
    const doc = JSON.parse(r.stdout) as { keys: Array<Record<string, unknown>> };
    bundleCache = { at: Date.now(), doc };
    return doc;
  };
  // What SPIRE's OIDC Discovery Provider serves: the JWT-SVID keys of the bundle, each `use: sig`.
  const oidc = createServer((req, res) => {
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.url === '/.well-known/openid-configuration') {
      return send(200, {
        issuer,
        jwks_uri: `${issuer}/keys`,
        authorization_endpoint: '',
        response_types_supported: ['id_token'],
        subject_types_supported: [],
        id_token_signing_alg_values_supported: ['RS256', 'ES256'],
      });
    }
    if (req.url === '/keys') {
      const fresh =
        bundleCache && Date.now() - bundleCache.at < 1_000 ? Promise.resolve(bundleCache.doc) : spiffeBundle();
      fresh.then(
        (doc) =>
          send(200, { keys: doc.keys.filter((k) => k['use'] === 'jwt-svid').map((k) => ({ ...k, use: 'sig' })) }),
        (e: Error) => send(503, { error: e.message }),
      );
      return;
    }
    send(404, { error: 'not found' });
  });
  await new Promise<void>((resolve) => oidc.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => oidc.close(() => resolve())));
  oidc.unref();
  const issuer = `http://127.0.0.1:${(oidc.address() as AddressInfo).port}`;

  const serverPort = await freeLoopbackPort();
  const serverConf = join(dir, 'server.conf');
  await writeFile(
    serverConf,
    `server {
  bind_address = "127.0.0.1"
  bind_port = "${serverPort}"
  socket_path = "${serverSocket}"
  trust_domain = "${TRUST_DOMAIN}"
  data_dir = "${join(dir, 'server-data')}"
  log_level = "DEBUG"
  ca_ttl = "2h"
  default_x509_svid_ttl = "${options.defaultX509SvidTtl ?? 3600}s"
  default_jwt_svid_ttl = "5m"
  jwt_issuer = "${issuer}"
  ca_key_type = "ec-p256"
  # Entra takes RS256 only.
  jwt_key_type = "rsa-2048"
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "${join(dir, 'server-data', 'datastore.sqlite3')}"
    }
  }
  KeyManager "memory" {
    plugin_data {}
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
}
`,
  );
  const server = daemon(SPIRE_SERVER, ['run', '-config', serverConf]);
  t.after(() => server.stop());
  const agents: Daemon[] = [];
  t.after(async () => {
    for (const a of agents) await a.stop();
  });
  const logs = (): string =>
    `--- spire-server ---\n${server.logs().slice(-20_000)}\n--- spire-agent ---\n${agents
      .map((a) => a.logs())
      .join('\n--- spire-agent (restarted) ---\n')
      .slice(-20_000)}`;

  await poll('spire-server to be healthy', async () => {
    if (server.child.exitCode !== null)
      throw new Error(`spire-server exited (${server.child.exitCode}):\n${server.logs()}`);
    return (await serverCli(['healthcheck'])).code === 0 ? true : undefined;
  });

  const bundlePem = await serverCli(['bundle', 'show']);
  if (bundlePem.code !== 0) throw new Error(`spire-server bundle show failed: ${bundlePem.stderr}`);
  const bundleFile = join(dir, 'bootstrap-bundle.pem');
  await writeFile(bundleFile, bundlePem.stdout);
  const token = await serverCli(['token', 'generate', '-spiffeID', NODE_ID, '-ttl', '600']);
  const joinToken = /Token:\s*(\S+)/.exec(token.stdout)?.[1];
  if (!joinToken) throw new Error(`spire-server token generate printed no token: ${token.stdout}${token.stderr}`);

  const agentConf = join(dir, 'agent.conf');
  await writeFile(
    agentConf,
    `agent {
  data_dir = "${join(dir, 'agent-data')}"
  log_level = "DEBUG"
  server_address = "127.0.0.1"
  server_port = "${serverPort}"
  socket_path = "${agentSocket}"
  trust_bundle_path = "${bundleFile}"
  trust_domain = "${TRUST_DOMAIN}"
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "disk" {
    plugin_data {
      directory = "${join(dir, 'agent-data')}"
    }
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`,
  );
  const startAgent = async (first: boolean): Promise<Daemon> => {
    // The join token is single-use: a restarted agent authenticates with the node SVID it kept on disk.
    const agent = daemon(SPIRE_AGENT, ['run', '-config', agentConf, ...(first ? ['-joinToken', joinToken] : [])]);
    agents.push(agent);
    await poll('spire-agent to be healthy', async () => {
      if (agent.child.exitCode !== null)
        throw new Error(`spire-agent exited (${agent.child.exitCode}):\n${agent.logs()}`);
      return (await run(SPIRE_AGENT, ['healthcheck', '-socketPath', agentSocket])).code === 0 ? true : undefined;
    });
    return agent;
  };

  const spire: Spire = {
    dir,
    agentAddress: `unix://${agentSocket}`,
    agentSocket,
    serverSocket,
    issuer,
    server,
    agent: await startAgent(true),
    serverCli,
    createEntry: async (spiffeId, selectors, o = {}) => {
      const args = [
        'entry',
        'create',
        '-parentID',
        NODE_ID,
        '-spiffeID',
        spiffeId,
        ...selectors.flatMap((s) => ['-selector', s]),
      ];
      if (o.x509SvidTtl !== undefined) args.push('-x509SVIDTTL', String(o.x509SvidTtl));
      if (o.jwtSvidTtl !== undefined) args.push('-jwtSVIDTTL', String(o.jwtSvidTtl));
      const r = await serverCli(args);
      const id = /Entry ID\s*:\s*(\S+)/.exec(r.stdout)?.[1];
      if (r.code !== 0 || !id) throw new Error(`spire-server entry create failed (${r.code}): ${r.stdout}${r.stderr}`);
      return id;
    },
    deleteEntry: async (id) => {
      const r = await serverCli(['entry', 'delete', '-entryID', id]);
      if (r.code !== 0) throw new Error(`spire-server entry delete failed (${r.code}): ${r.stdout}${r.stderr}`);
    },
    spiffeBundle,
    restartAgent: async () => {
      await spire.agent.stop();
      spire.agent = await startAgent(false);
    },
    logs,
  };
  return spire;
}
