// What 10,000 made-up keys per keyed surface cost the sidecar as production runs it (all three clouds,
// the bundled dist/ with the image's NODE_OPTIONS): RSS before and after each flood, and the upstream
// calls each one caused (at most the new-key bucket's burst plus its refill). Run `npm run build` first.
// Usage: node bench/keys.ts [keys per surface, default 10000]
import { mb, rssOf, sidecarForm, sleep } from './lib.ts';
import { AZURE_RESOURCE, formLaunch, startBenchWorld } from './world.ts';

const KEYS = Number(process.argv[2] ?? 10_000);
const WIDTH = 50;
const form = await sidecarForm();
const world = await startBenchWorld();
const sidecar = await world.startSidecar('keys', ['aws', 'gcp', 'azure'], formLaunch(form));
const origin = `http://127.0.0.1:${sidecar.metadataPort}`;
const pid = sidecar.node.child.pid as number;

async function flood(what: string, one: (i: number) => Promise<number>, upstream: () => number): Promise<void> {
  const rssBefore = await rssOf(pid);
  const callsBefore = upstream();
  const statuses = new Map<number, number>();
  const started = performance.now();
  for (let i = 0; i < KEYS; i += WIDTH) {
    const batch = await Promise.all(Array.from({ length: Math.min(WIDTH, KEYS - i) }, (_, j) => one(i + j)));
    for (const s of batch) statuses.set(s, (statuses.get(s) ?? 0) + 1);
  }
  const seconds = (performance.now() - started) / 1000;
  await sleep(2_000);
  const rssAfter = await rssOf(pid);
  // Past the sidecar's quiet window (10 s without a request), when it gives back the heap a burst left.
  await sleep(13_000);
  const rssQuiet = await rssOf(pid);
  const delta = (to: number): string => `${to - rssBefore >= 0 ? '+' : ''}${((to - rssBefore) / 1e6).toFixed(1)} MB`;
  console.log(
    `${what.padEnd(26)} ${KEYS} keys in ${seconds.toFixed(1)} s  statuses ${JSON.stringify(Object.fromEntries(statuses))}  upstream calls ${upstream() - callsBefore}  RSS ${mb(rssBefore)} → ${mb(rssAfter)} 2 s after (${delta(rssAfter)}) → ${mb(rssQuiet)} 15 s after (${delta(rssQuiet)})`,
  );
}

const flavor = { 'Metadata-Flavor': 'Google' };
const status = async (url: string, init: RequestInit = {}): Promise<number> => {
  const r = await fetch(url, init);
  await r.arrayBuffer();
  return r.status;
};
try {
  await sleep(3_000);
  console.log(`idle RSS ${mb(await rssOf(pid))}`);
  await flood(
    'GCE scope sets',
    (i) =>
      status(
        `${origin}/computeMetadata/v1/instance/service-accounts/default/token?scopes=https://www.googleapis.com/auth/made-up-${i}`,
        { headers: flavor },
      ),
    () => world.google.stats.generateAccessToken + world.google.stats.stsRequests,
  );
  await flood(
    'GCE ID-token audiences',
    (i) =>
      status(
        `${origin}/computeMetadata/v1/instance/service-accounts/default/identity?audience=https://made-up-${i}.example`,
        { headers: flavor },
      ),
    () => world.google.stats.generateIdToken,
  );
  await flood(
    'Azure resources',
    (i) =>
      status(`${origin}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://made-up-${i}`, {
        headers: { Metadata: 'true' },
      }),
    () => world.entra.counters.token,
  );
  await flood(
    'IMDSv2 token PUTs',
    () =>
      status(`${origin}/latest/api/token`, {
        method: 'PUT',
        headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '21600' },
      }),
    () => world.sts.stats.assumeRoleRequests,
  );
  const warm = await status(
    `${origin}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(AZURE_RESOURCE)}`,
    { headers: { Metadata: 'true' } },
  );
  const gce = await status(`${origin}/computeMetadata/v1/instance/service-accounts/default/token`, { headers: flavor });
  console.log(`after the floods: warm Azure resource ${warm}, default GCE token ${gce}, RSS ${mb(await rssOf(pid))}`);
} finally {
  await sidecar.node.stop();
  await world.close();
}
