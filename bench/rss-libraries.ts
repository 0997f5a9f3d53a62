// What the libraries weigh on their own: idle RSS of small programs that each load one library (or two), use it
// once as the sidecar does, then serve on node:http like the sidecar, bundled exactly as the product is bundled
// (scripts/bundle-options.ts), run with the image's NODE_OPTIONS and without TurboFan or Maglev (as the sidecar starts), each
// giving back its start-up heap once serving, as the sidecar does once ready. Each beside the same program using no
// library, and beside the bare node:http server bench/rss.ts measures against; rounds interleaved, medians. The
// libraries the design requires are the floor under the sidecar's idle-RSS targets (README "Measured"); the others
// say what each choice costs (with the built-ins it loads, which the sidecar shares with its other libraries).
// Every call goes to a port on 127.0.0.1 that nothing listens on: a refused connection, no traffic elsewhere.
// Usage: node bench/rss-libraries.ts [rounds, default 3] [--settle MS]
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { BUNDLE_OPTIONS } from '../scripts/bundle-options.ts';
import { bareServerRss, freePort, imageEnv, imageNodeOptions, mb, median, sleep, spawnNode, waitFor } from './lib.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values, positionals } = parseArgs({ allowPositionals: true, options: { settle: { type: 'string' } } });
const rounds = Number(positionals[0] ?? 3);
const settleMs = Number(values.settle ?? 3_000);
// Inside the checkout, so that the bundles' external packages resolve from its node_modules.
const dir = join(root, '.bench-out', 'rss-libraries');
const closedPort = await freePort();
const nowhere = `127.0.0.1:${closedPort}`;

/** Each probe: imports, then the body of `use()`, run once before the server answers its first request. */
const PROBES: Record<string, { imports: string; use: string }> = {
  'no library': { imports: '', use: '' },
  'AWS STS client': {
    imports: `import { STSClient, AssumeRoleWithWebIdentityCommand } from '@aws-sdk/client-sts';`,
    use: `const sts = new STSClient({ region: 'us-east-1', endpoint: 'http://${nowhere}', maxAttempts: 1 });
  await sts.send(new AssumeRoleWithWebIdentityCommand({ RoleArn: 'arn:aws:iam::123456789012:role/r', RoleSessionName: 's', WebIdentityToken: 't' })).catch(() => {});`,
  },
  express: {
    imports: `import express from 'express';`,
    use: `const app = express();
  app.get('/', (_req, res) => res.send('x'));
  await new Promise((resolve) => { const s = app.listen(0, '127.0.0.1', () => http.get(\`http://127.0.0.1:\${s.address().port}/\`, (r) => { r.resume(); r.on('end', resolve); })); });`,
  },
  'google-auth-library': {
    imports: `import { IdentityPoolClient } from 'google-auth-library';`,
    use: `const client = new IdentityPoolClient({ type: 'external_account', audience: '//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q', subject_token_type: 'urn:ietf:params:oauth:token-type:jwt', token_url: 'http://${nowhere}/v1/token', credential_source: { file: process.argv[1] } });
  await client.getAccessToken().catch(() => {});`,
  },
  '@azure/identity': {
    imports: `import { ClientAssertionCredential } from '@azure/identity';`,
    use: `const credential = new ClientAssertionCredential('00000000-0000-0000-0000-000000000000', '00000000-0000-0000-0000-000000000001', async () => 'a.b.c', { authorityHost: 'https://${nowhere}', disableInstanceDiscovery: true, retryOptions: { maxRetries: 0 } });
  await credential.getToken('https://storage.azure.com/.default').catch(() => {});`,
  },
};
// The libraries that are a choice, each used as the sidecar uses it.
PROBES['yaml'] = {
  imports: `import { parseDocument } from 'yaml';`,
  use: `parseDocument('aws:\\n  roleArn: arn:aws:iam::123456789012:role/r\\n  region: us-east-1\\nlog: { level: info }\\n', { prettyErrors: true, uniqueKeys: true }).toJS();`,
};
PROBES['zod/mini'] = {
  imports: `import * as z from 'zod/mini';`,
  use: `z.strictObject({ a: z.optional(z.string().check(z.minLength(1))), b: z._default(z.number(), 1) }).safeParse({ a: 'x' });`,
};
PROBES['commander'] = {
  imports: `import { Command } from 'commander';`,
  use: `const program = new Command().name('p').exitOverride();
  for (const name of ['run', 'check', 'env', 'issuer', 'webhook']) program.command(name).option('-c, --config <file>').action(() => {});
  await program.parseAsync(['node', 'p', 'run', '-c', 'x']);`,
};
PROBES['pino'] = {
  imports: `import pino from 'pino';`,
  use: `const log = pino({ redact: { paths: ['token', '*.token'], censor: '[redacted]' }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 2, sync: false }));
  log.info({ token: 'x' }, 'ready');`,
};
PROBES['prom-client'] = {
  imports: `import { Counter, Registry } from 'prom-client';`,
  use: `const registry = new Registry();
  new Counter({ name: 'c', help: 'c', labelNames: ['a'], registers: [registry] }).inc({ a: 'b' });
  await registry.metrics();`,
};
PROBES['chokidar'] = {
  imports: `import { watch } from 'chokidar';`,
  use: `const watcher = watch(process.argv[1].replace(/[^/]+$/, ''), { depth: 0 });
  await new Promise((resolve) => watcher.once('ready', resolve));`,
};
PROBES['jose'] = {
  imports: `import { SignJWT, generateKeyPair, jwtVerify } from 'jose';`,
  use: `const { publicKey, privateKey } = await generateKeyPair('ES256');
  await jwtVerify(await new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setAudience('a').sign(privateKey), publicKey, { audience: 'a' });`,
};
PROBES['AWS STS client + express'] = {
  imports: `${PROBES['AWS STS client']?.imports}\n${PROBES['express']?.imports}`,
  use: `${PROBES['AWS STS client']?.use}\n  ${PROBES['express']?.use}`,
};

const HEAP_RELEASE = join(root, 'src', 'ops', 'heap-release.ts');
// Each program, as the sidecar once ready, gives back the heap its start left (src/ops/heap-release.ts).
const program = ({ imports, use }: { imports: string; use: string }): string => `${imports}
import http from 'node:http';
import { releaseHeap } from ${JSON.stringify(HEAP_RELEASE)};
// No top-level await: the bundle is CommonJS, as the product's is.
(async () => {
${use ? `${use}\n` : ''}const server = http.createServer((_req, res) => res.end('x'));
server.listen(0, '127.0.0.1', () =>
  http.get(\`http://127.0.0.1:\${server.address().port}/\`, (r) => { r.resume(); r.on('end', () => { releaseHeap(); process.stdout.write('READY\\n'); }); }),
);
})();
setInterval(() => {}, 1 << 30);
`;

await rm(dir, { recursive: true, force: true });
await mkdir(dir, { recursive: true });
const names = Object.keys(PROBES);
const files = new Map<string, string>();
for (const [i, name] of names.entries()) {
  const entry = join(dir, `probe-${i}.mjs`);
  await writeFile(entry, program(PROBES[name] as { imports: string; use: string }));
  const outfile = join(dir, `bundle-${i}.cjs`);
  await build({ ...BUNDLE_OPTIONS, absWorkingDir: root, entryPoints: [entry], outfile });
  files.set(name, outfile);
}
const nodeOptions = await imageNodeOptions();
const env = imageEnv(process.env, nodeOptions);

async function probeRss(file: string): Promise<number> {
  // The Google probe reads its subject token from the file named by argv[1]: the bundle itself will do.
  const node = spawnNode(['--turbo-filter=-*', '--maglev-filter=-*', file], { env });
  try {
    await waitFor(() => (node.output().includes('READY') ? true : undefined), `${file} to serve`, 30_000).catch(
      (error) => {
        throw new Error(`${error.message}; it printed: ${node.output().slice(0, 2_000)}`);
      },
    );
    await sleep(settleMs);
    return await node.rss();
  } finally {
    await node.stop();
  }
}

const samples = new Map<string, number[]>();
const bare: number[] = [];
try {
  for (let round = 0; round < rounds; round++) {
    bare.push(await bareServerRss(settleMs));
    for (const name of names) samples.set(name, [...(samples.get(name) ?? []), await probeRss(files.get(name) ?? '')]);
  }
  const none = median(samples.get('no library') ?? []);
  const bareMedian = median(bare);
  console.log(
    `\nIdle RSS of one library in use, bundled as the product is, ${rounds} interleaved rounds (medians), ${settleMs} ms after serving, NODE_OPTIONS ${JSON.stringify(nodeOptions)} and --turbo-filter=-* --maglev-filter=-*, Node ${process.version}`,
  );
  console.log(`bare node:http server (bench/rss.ts's baseline): ${mb(bareMedian)}`);
  console.table(
    names.map((name) => {
      const rss = median(samples.get(name) ?? []);
      return { program: name, RSS: mb(rss), 'above no library': mb(rss - none), 'above bare': mb(rss - bareMedian) };
    }),
  );
} finally {
  if (!process.env.KEEP) await rm(dir, { recursive: true, force: true });
}
