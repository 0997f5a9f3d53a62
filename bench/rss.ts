// Idle RSS of the sidecar as production runs it (bin/spiffe-connector.js → the built dist/, with the
// image's NODE_OPTIONS and GLIBC_TUNABLES; BENCH_GLIBC_TUNABLES="" for glibc's defaults) for AWS only, AWS + Google and all three clouds, each beside a bare node:http server
// that has answered one request (as the sidecar has answered its readiness probe), measured in the same
// round; rounds interleaved, medians reported. Targets: ≤15 / ≤20 / ≤25 MB above that server (the README's
// "Measured" table). A bare Node process running no server is measured too, for comparison with figures
// taken against it before. Run `npm run build` first.
// Usage: node bench/rss.ts [rounds, default 3] [--entry FILE]... [--node-options "FLAGS"]... [--settle MS] [--detail]
//   --entry         what to start (default bin/spiffe-connector.js; src/main.ts runs the sources)
//   --node-options  NODE_OPTIONS for the sidecar (default: the Dockerfile's ENV NODE_OPTIONS; "" for none)
//   --glibc-tunables  GLIBC_TUNABLES for the sidecar (default: the Dockerfile's ENV GLIBC_TUNABLES; "" for none)
//   All three repeat: every entry × NODE_OPTIONS × GLIBC_TUNABLES is a variant, measured in the same interleaved rounds.
//   --detail        also print V8 heap figures of each sidecar (read through a preloaded module)
//   --tls           STS and Google over TLS as well, as the real clouds are (Entra's stand-in always is; bench/world.ts)
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  bareNodeRss,
  bareServerRss,
  GLIBC_TUNABLES,
  imageEnv,
  imageNodeOptions,
  mb,
  median,
  sleep,
  waitFor,
} from './lib.ts';
import { type BenchCloud, startBenchWorld } from './world.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    entry: { type: 'string', multiple: true },
    'node-options': { type: 'string', multiple: true },
    'glibc-tunables': { type: 'string', multiple: true },
    settle: { type: 'string' },
    detail: { type: 'boolean' },
    tls: { type: 'boolean' },
  },
});
const rounds = Number(positionals[0] ?? 3);
const settleMs = Number(values.settle ?? 3_000);
const entries = values.entry ?? ['bin/spiffe-connector.js'];
const nodeOptionSets = values['node-options'] ?? [await imageNodeOptions()];
const tunableSets = values['glibc-tunables'] ?? [GLIBC_TUNABLES];
const variants = entries.flatMap((entry) =>
  nodeOptionSets.flatMap((nodeOptions) =>
    tunableSets.map((glibcTunables) => ({
      entry,
      nodeOptions,
      glibcTunables,
      label: `${entry} ${JSON.stringify(nodeOptions)}${tunableSets.length > 1 ? ` ${JSON.stringify(glibcTunables)}` : ''}`,
    })),
  ),
);
type Variant = (typeof variants)[number];
if (entries.includes('bin/spiffe-connector.js') && !existsSync(join(root, 'dist/main.js')))
  throw new Error('no dist/main.js: run `npm run build` first');

/** Preloaded with --detail: on SIGUSR2 print process.memoryUsage() and V8's heap spaces as one line. */
const PROBE = `
const v8 = require('node:v8');
process.on('SIGUSR2', () => {
  const m = process.memoryUsage();
  const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, s.physical_space_size]));
  const code = v8.getHeapCodeStatistics();
  const out = {
    'heap used': m.heapUsed,
    'heap committed': v8.getHeapStatistics().total_physical_size,
    'young gen': spaces.new_space + spaces.new_large_object_space,
    'old gen': spaces.old_space + spaces.large_object_space,
    'code+trusted': spaces.code_space + spaces.code_large_object_space + spaces.trusted_space + spaces.trusted_large_object_space,
    'bytecode+code': code.code_and_metadata_size + code.bytecode_and_metadata_size,
    'source text': code.external_script_source_size,
    external: m.external,
    'V8 malloc': v8.getHeapStatistics().malloced_memory,
  };
  process.stderr.write('PROBE ' + JSON.stringify(out) + '\\n');
});
`;

const world = await startBenchWorld({ tls: values.tls === true });
const probe = join(await mkdtemp(join(tmpdir(), 'spiffe-connector-rss-')), 'probe.cjs');
await writeFile(probe, PROBE);

const SETS: ReadonlyArray<{ label: string; clouds: readonly BenchCloud[]; targetMb: number }> = [
  { label: 'AWS', clouds: ['aws'], targetMb: 15 },
  { label: 'AWS + Google', clouds: ['aws', 'gcp'], targetMb: 20 },
  { label: 'AWS + Google + Azure', clouds: ['aws', 'gcp', 'azure'], targetMb: 25 },
];

interface Sample {
  readonly rss: number;
  readonly detail?: Record<string, number>;
}

/** Starts the sidecar with these clouds, waits for /readyz 200 and `settleMs`, reads its RSS, stops it. */
async function sidecarRss(variant: Variant, name: string, clouds: readonly BenchCloud[]): Promise<Sample> {
  const options = [variant.nodeOptions, values.detail ? `--require=${probe}` : ''].filter(Boolean).join(' ');
  const env = imageEnv(process.env, options, variant.glibcTunables);
  const { node } = await world.startSidecar(name, clouds, { args: [join(root, variant.entry)], env });
  try {
    await sleep(settleMs);
    const rss = await node.rss();
    if (!values.detail) return { rss };
    const before = node.output().length;
    node.child.kill('SIGUSR2');
    const line = await waitFor(() => /PROBE (\{.*\})\n/.exec(node.output().slice(before))?.[1], 'the probe');
    return { rss, detail: JSON.parse(line) as Record<string, number> };
  } finally {
    await node.stop();
  }
}

const bare: number[] = [];
const bareProcess: number[] = [];
const samples = new Map<string, Sample[]>();
const key = (variant: Variant, set: (typeof SETS)[number]): string => `${variant.label}\u0000${set.label}`;
const range = (xs: number[]): string => `[${mb(Math.min(...xs))}–${mb(Math.max(...xs))}]`;
try {
  for (let round = 0; round < rounds; round++) {
    bare.push(await bareServerRss(settleMs));
    bareProcess.push(await bareNodeRss(settleMs));
    for (const variant of variants) {
      for (const [i, set] of SETS.entries()) {
        const sample = await sidecarRss(variant, `${round}-${variants.indexOf(variant)}-${i}`, set.clouds);
        samples.set(key(variant, set), [...(samples.get(key(variant, set)) ?? []), sample]);
      }
    }
  }
  const bareMedian = median(bare);
  console.log(
    `\nIdle RSS, ${rounds} interleaved rounds (medians; min–max in brackets), ${settleMs} ms after /readyz 200, Node ${process.version}, ${values.tls ? 'every stand-in over TLS' : 'STS and Google over plain HTTP, Entra over TLS'}`,
  );
  console.log(`bare node:http server, one request answered: ${mb(bareMedian)} ${range(bare)}`);
  console.log(
    `bare Node process, no server (node -e 'setInterval(...)'): ${mb(median(bareProcess))} ${range(bareProcess)}`,
  );
  console.table(
    variants.flatMap((variant) =>
      SETS.map((set) => {
        const rss = (samples.get(key(variant, set)) ?? []).map((s) => s.rss);
        const above = median(rss) - bareMedian;
        return {
          ...(variants.length > 1 ? { variant: variant.label } : {}),
          clouds: set.label,
          RSS: `${mb(median(rss))} ${range(rss)}`,
          'above bare': mb(above),
          'above bare process': mb(median(rss) - median(bareProcess)),
          target: `≤ ${set.targetMb} MB`,
          met: above <= set.targetMb * 1024 * 1024 ? 'yes' : 'no',
        };
      }),
    ),
  );
  if (variants.length === 1)
    console.log(
      `entry ${variants[0]?.entry}, NODE_OPTIONS ${JSON.stringify(variants[0]?.nodeOptions)}, GLIBC_TUNABLES ${JSON.stringify(variants[0]?.glibcTunables)}`,
    );
  if (values.detail) {
    const first = samples.values().next().value?.[0]?.detail ?? {};
    console.table(
      variants.flatMap((variant) =>
        SETS.map((set) => ({
          ...(variants.length > 1 ? { variant: variant.label } : {}),
          clouds: set.label,
          ...Object.fromEntries(
            Object.keys(first).map((k) => [
              k,
              mb(median((samples.get(key(variant, set)) ?? []).map((s) => s.detail?.[k] ?? 0))),
            ]),
          ),
        })),
      ),
    );
  }
} finally {
  await world.close();
  await rm(dirname(probe), { recursive: true, force: true });
}
