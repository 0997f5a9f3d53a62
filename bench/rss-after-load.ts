// RSS after load: does the sidecar give memory back once a burst of requests ends? The sidecar (AWS
// configured, as production runs it: bin/spiffe-connector.js → dist/, the image's NODE_OPTIONS) and a bare
// node:http server serving the same bytes are each measured idle, loaded for `load` seconds (autocannon, 32
// connections), then measured again `after` seconds after their load ended. The gap is sidecar minus bare;
// target: the gap after load within 5 MB of the idle gap. A fresh sidecar and bare server every round.
// Run `npm run build` first. Usage: node bench/rss-after-load.ts [rounds, default 3] [--load S] [--after S]
import { parseArgs } from 'node:util';
import { mb, median, runLoad, sidecarForm, sleep, startBareServer } from './lib.ts';
import { formLaunch, startBenchWorld } from './world.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { load: { type: 'string' }, after: { type: 'string' } },
});
const rounds = Number(positionals[0] ?? 3);
const loadSeconds = Number(values.load ?? 10);
const afterSeconds = Number(values.after ?? 20);
const form = await sidecarForm();

interface Round {
  readonly idleGap: number;
  readonly loadedGap: number;
  readonly afterGap: number;
  readonly sidecarIdle: number;
  readonly sidecarAfter: number;
  readonly bareIdle: number;
  readonly bareAfter: number;
}

const world = await startBenchWorld();
const out: Round[] = [];
try {
  for (let round = 0; round < rounds; round++) {
    const sidecar = await world.startSidecar(`load-${round}`, ['aws'], formLaunch(form));
    const token = await sidecar.awsToken();
    const url = `http://127.0.0.1:${sidecar.metadataPort}/v1/credentials`;
    const sample = await fetch(url, { headers: { authorization: token } });
    const body = Buffer.from(await sample.arrayBuffer());
    if (sample.status !== 200) throw new Error(`the endpoint answered ${sample.status}: ${body.toString()}`);
    const bare = await startBareServer(body, { 'content-type': 'application/json' });
    try {
      // One request answered by each before the idle reading, as the sidecar has answered the sample above.
      await (await fetch(bare.url)).arrayBuffer();
      await sleep(3_000);
      const [sidecarIdle, bareIdle] = [await sidecar.node.rss(), await bare.rss()];
      // Bare first, then the sidecar; each is read `afterSeconds` after its own load ended.
      await runLoad({ label: 'bare', url: bare.url, durationSeconds: loadSeconds });
      const bareEnded = performance.now();
      const bareLoaded = await bare.rss();
      await runLoad({ label: 'sidecar', url, headers: { authorization: token }, durationSeconds: loadSeconds });
      const sidecarEnded = performance.now();
      const sidecarLoaded = await sidecar.node.rss();
      await sleep(Math.max(0, bareEnded + afterSeconds * 1000 - performance.now()));
      const bareAfter = await bare.rss();
      await sleep(Math.max(0, sidecarEnded + afterSeconds * 1000 - performance.now()));
      const sidecarAfter = await sidecar.node.rss();
      out.push({
        idleGap: sidecarIdle - bareIdle,
        loadedGap: sidecarLoaded - bareLoaded,
        afterGap: sidecarAfter - bareAfter,
        sidecarIdle,
        sidecarAfter,
        bareIdle,
        bareAfter,
      });
    } finally {
      await bare.stop();
      await sidecar.node.stop();
    }
  }
  const col = (f: (r: Round) => number): string =>
    `${mb(median(out.map(f)))}${out.length > 1 ? ` [${mb(Math.min(...out.map(f)))}–${mb(Math.max(...out.map(f)))}]` : ''}`;
  console.log(
    `\nRSS after a ${loadSeconds} s load (32 connections), read ${afterSeconds} s after it ended; AWS sidecar beside bare node:http; ${rounds} round(s), medians [min–max], Node ${process.version}`,
  );
  console.log(`sidecar: ${form.label}`);
  console.table([
    {
      figure: 'sidecar RSS',
      idle: col((r) => r.sidecarIdle),
      [`${afterSeconds} s after load`]: col((r) => r.sidecarAfter),
    },
    { figure: 'bare RSS', idle: col((r) => r.bareIdle), [`${afterSeconds} s after load`]: col((r) => r.bareAfter) },
    {
      figure: 'gap (sidecar − bare)',
      idle: col((r) => r.idleGap),
      [`${afterSeconds} s after load`]: col((r) => r.afterGap),
    },
  ]);
  console.log(`gap at the end of the load: ${col((r) => r.loadedGap)}`);
  const growth = median(out.map((r) => r.afterGap - r.idleGap));
  console.log(
    `after-load gap minus idle gap: ${mb(growth)} (target ≤ 5 MB: ${growth <= 5 * 1024 * 1024 ? 'met' : 'not met'})`,
  );
} finally {
  await world.close();
}
