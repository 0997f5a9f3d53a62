// Process start to `/readyz` 200 against the local stand-ins (target under 1 s, README.md#measured): the AWS
// stand-in and an OIDC signer run here, the sidecar is spawned `rounds` times as production starts it
// (bin/spiffe-connector.js → the bundled dist/, with the image's NODE_OPTIONS; run `npm run build`
// first) and from src/ (type stripping). Run by hand: node bench/startup.ts [rounds]
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeAtomicDir } from '@spiffe-connector/dev/atomic-dir.ts';
import { FakeSts } from '@spiffe-connector/dev/fake-sts.ts';
import { DevOidcSigner } from '@spiffe-connector/dev/oidc-signer.ts';
import { freePort, imageEnv, imageNodeOptions, spawnNode } from './lib.ts';

const rounds = Number(process.argv[2] ?? 5);
const root = fileURLToPath(new URL('..', import.meta.url));
const imageOptions = await imageNodeOptions();
const entries: Array<[label: string, entry: string, nodeOptions: string]> = [
  ...(existsSync(join(root, 'dist/main.js'))
    ? [['image', join(root, 'bin/spiffe-connector.js'), imageOptions] as [string, string, string]]
    : []),
  ['src', join(root, 'src/main.ts'), ''],
];

const dir = await mkdtemp(join(tmpdir(), 'bench-startup-'));
const signer = await DevOidcSigner.start();
const sts = await FakeSts.start({
  allowLoopbackHttpIssuers: true,
  region: 'eu-west-1',
  providers: [{ issuer: signer.issuer, audiences: ['sts.amazonaws.com'] }],
  roles: [{ arn: 'arn:aws:iam::111122223333:role/app', issuer: signer.issuer, audience: 'sts.amazonaws.com' }],
});
await writeAtomicDir(join(dir, 'tokens'), [
  {
    name: 'jwt',
    content: await signer.sign({ sub: 'spiffe://example.org/ns/default/sa/app', aud: 'sts.amazonaws.com' }),
  },
]);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

for (const [label, entry, nodeOptions] of entries) {
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const [metadata, ops] = [await freePort(), await freePort()];
    const config = join(dir, `config-${label}-${i}.yaml`);
    await writeFile(
      config,
      `spiffe: { trustDomain: example.org, jwt: { file: ${join(dir, 'tokens', 'jwt')} } }
server: { metadataAddress: 127.0.0.1:${metadata}, opsAddress: 127.0.0.1:${ops}, stateDir: ${join(dir, `state-${i}`)}, drainSeconds: 0 }
log: { level: warn }
aws: { roleArn: "arn:aws:iam::111122223333:role/app", region: eu-west-1, stsEndpoint: ${sts.url} }
`,
    );
    const started = performance.now();
    const child = spawnNode([entry, 'run', '--config', config], {
      env: imageEnv(process.env, nodeOptions),
    });
    for (;;) {
      const status = await fetch(`http://127.0.0.1:${ops}/readyz`).then(
        (r) => r.status,
        () => 0,
      );
      if (status === 200) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    times.push(performance.now() - started);
    await child.stop();
  }
  console.log(
    `${label.padEnd(5)} start → /readyz 200: median ${median(times).toFixed(0)} ms (min ${Math.min(...times).toFixed(0)}, max ${Math.max(...times).toFixed(0)}, ${rounds} rounds; target < 1000 ms)`,
  );
}

await sts.close();
await signer.close();
await rm(dir, { recursive: true, force: true });
