// The JWT-SVID file source: re-read before expiry and on change, refusals keep the last good token
// while it is valid, and a token for the wrong audience is an error that says what to fix.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { generateKeyPair, SignJWT } from 'jose';
import { ManualClock, systemClock } from '../../src/base/clock.ts';
import type { ConnectorError } from '../../src/base/errors.ts';
import { createLogger } from '../../src/ops/logger.ts';
import { JwtFileSource } from '../../src/sources/jwt-file.ts';
import { countedFiles } from '../helpers/counted-files.ts';
import { until } from '../helpers/until.ts';

const ID = 'spiffe://example.org/ns/default/sa/app';

/** Signs JWT-SVIDs with a key of its own, the way SPIRE would (jose, not the product's code). */
async function testSigner(alg: 'RS256' | 'PS256' | 'ES256' | 'ES384' | 'ES512') {
  const { privateKey } = await generateKeyPair(alg);
  return {
    sign: (o: { sub: string; aud: string[]; ttlSeconds: number; iat: number }) =>
      new SignJWT({
        sub: o.sub,
        aud: o.aud,
        jti: randomUUID(),
        iss: 'https://oidc.example.org',
        iat: o.iat,
        exp: o.iat + o.ttlSeconds,
      })
        .setProtectedHeader({ alg, kid: `key-${alg}`, typ: 'JWT' })
        .sign(privateKey),
  };
}

const AUDIENCES = ['sts.amazonaws.com', 'api://AzureADTokenExchange'];

async function setup(
  t: import('node:test').TestContext,
  options: { alg?: 'RS256' | 'ES256' | 'ES384' | 'ES512' | 'PS256'; requiredAudiences?: string[] } = {},
) {
  const clock = new ManualClock(Date.now());
  const signer = await testSigner(options.alg ?? 'RS256');
  let content = '';
  let reads = 0;
  const logs: Array<Record<string, unknown>> = [];
  const sign = (sub = ID, ttlSeconds = 600, aud: string[] = AUDIENCES) =>
    signer.sign({ sub, aud, ttlSeconds, iat: Math.floor(clock.now() / 1000) });
  content = await sign();
  const source = new JwtFileSource({
    file: '/tokens/jwt-svid',
    trustDomain: 'example.org',
    clock,
    logger: createLogger({
      level: 'debug',
      destination: { write: (line: string) => void logs.push(JSON.parse(line)) },
    }),
    ...(options.requiredAudiences ? { requiredAudiences: options.requiredAudiences } : {}),
    watch: false,
    pollIntervalMs: 30_000,
    readFile: async () => {
      reads += 1;
      return `${content}\n`;
    },
  });
  t.after(() => source.close());
  await source.start();
  return { clock, source, sign, logs, set: (c: string) => (content = c), reads: () => reads };
}

test('serves the file token for each of its audiences; another audience says what to fix', async (t) => {
  const { source } = await setup(t);
  const svid = await source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(1000));
  assert.equal(svid.id.toString(), ID);
  await source.fetchJwtSvid('api://AzureADTokenExchange', AbortSignal.timeout(1000));
  await assert.rejects(
    source.fetchJwtSvid('//iam.googleapis.com/projects/1/x', AbortSignal.timeout(1000)),
    (e: ConnectorError) => {
      assert.equal(e.code, 'jwt_svid_invalid');
      assert.match(
        e.message,
        /is for audience sts\.amazonaws\.com, api:\/\/AzureADTokenExchange, not \/\/iam\.googleapis\.com/,
      );
      return true;
    },
  );
});

test('re-reads on its own before expiry and tells subscribers of a new token', async (t) => {
  const h = await setup(t);
  let changes = 0;
  h.source.subscribe(() => changes++);
  const first = await h.source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(1000));
  h.set(await h.sign());
  const readsBefore = h.reads();
  await h.clock.advance(31_000);
  assert.ok(h.reads() > readsBefore, 'polled');
  const second = await h.source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(1000));
  assert.notEqual(second.token.reveal(), first.token.reveal());
  assert.equal(changes, 1);
});

test('a bad token is refused and the last good one served until it expires, never after', async (t) => {
  const h = await setup(t);
  h.set('not a jwt');
  await h.source.reload('test');
  assert.ok(await h.source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(1000)), 'last good kept');
  h.set(await h.sign('spiffe://other.org/ns/default/sa/app'));
  await h.source.reload('test');
  assert.equal((await h.source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(1000))).id.toString(), ID);
  await h.clock.advance(601_000);
  await assert.rejects(
    h.source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(1000)),
    (e: ConnectorError) => e.code === 'identity_unavailable' && /no valid JWT-SVID/.test(e.message),
  );
});

/** The token served now for the first audience. */
async function served(source: JwtFileSource): Promise<string> {
  return (await source.fetchJwtSvid('sts.amazonaws.com', AbortSignal.timeout(1000))).token.reveal();
}

for (const alg of ['RS256', 'PS256', 'ES256', 'ES384', 'ES512'] as const) {
  test(`${alg}: a file cut inside the signature is refused and the previous token kept`, async (t) => {
    const h = await setup(t, { alg });
    const good = await served(h.source);
    const next = await h.sign();
    // A writer caught half way: the cut lands inside the signature, at several places.
    for (const keep of [1, 8, 43]) {
      h.set(next.slice(0, next.length - keep));
      await h.source.reload('file changed');
      assert.equal(await served(h.source), good, `cut ${keep} characters short`);
    }
    const refusals = h.logs.filter((l) => l['msg'] === 'refused the JWT-SVID file');
    assert.ok(refusals.length >= 1);
    for (const r of refusals) assert.match(String(r['err']), /signature .*cut short/);
    assert.ok(!h.logs.some((l) => l['msg'] === 'JWT-SVID rotated'), 'no rotation logged');
    assert.ok(!JSON.stringify(h.logs).includes(next.split('.')[2]?.slice(0, 20) ?? 'x'), 'no signature in the log');
    // The whole token, once written, is taken.
    h.set(next);
    await h.source.reload('file changed');
    assert.equal(await served(h.source), next);
  });
}

test('RS256: a replacement signed by the same key but with a signature of another length is refused', async (t) => {
  const h = await setup(t, { alg: 'RS256' });
  const good = await served(h.source);
  const next = await h.sign();
  const [head, payload, signature = ''] = next.split('.');
  // 256 bytes of a 2048-bit signature cut to 224: a length an RSA key could have, not this key.
  const cut = Buffer.from(signature, 'base64url').subarray(0, 224).toString('base64url');
  h.set(`${head}.${payload}.${cut}`);
  await h.source.reload('file changed');
  assert.equal(await served(h.source), good);
});

test('a token lacking an audience a configured cloud needs does not replace the good one', async (t) => {
  const gcp = '//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/spiffe';
  const h = await setup(t, { requiredAudiences: ['sts.amazonaws.com', gcp] });
  h.set(await h.sign(ID, 600, ['sts.amazonaws.com', gcp]));
  await h.source.reload('file changed');
  const good = await served(h.source);
  h.set(await h.sign(ID, 600, ['sts.amazonaws.com']));
  await h.source.reload('file changed');
  assert.equal(await served(h.source), good, 'the previous token kept');
  const refusal = h.logs.find((l) => l['msg'] === 'refused the JWT-SVID file');
  assert.ok(refusal, 'refusal logged');
  assert.match(String(refusal['err']), /lacks the audience .*iam\.googleapis\.com/);
  assert.ok(!h.logs.some((l) => l['msg'] === 'JWT-SVID rotated'));
});

test('the token directory removed and created again is still watched (no wait for the poll)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'jwt-svid-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'jwt-svid');
  const signer = await testSigner('ES256');
  const sign = () => signer.sign({ sub: ID, aud: AUDIENCES, ttlSeconds: 600, iat: Math.floor(Date.now() / 1000) });
  await writeFile(file, await sign());
  const source = new JwtFileSource({
    file,
    trustDomain: 'example.org',
    clock: systemClock,
    logger: createLogger({ level: 'silent' }),
    pollIntervalMs: 600_000,
    debounceMs: 50,
  });
  t.after(() => source.close());
  await source.start();
  for (let round = 0; round < 2; round++) {
    const changed = new Promise<void>((resolve) => {
      const stop = source.subscribe(() => {
        stop();
        resolve();
      });
    });
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir);
    const next = await sign();
    await writeFile(file, next);
    const seen = await Promise.race([
      changed.then(() => true),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), 10_000).unref()),
    ]);
    assert.ok(seen, `round ${round}: the new token was not seen within 10 s`);
    assert.equal(await served(source), next);
  }
});

/** A token file on disk, read and stat'ed through countedFiles(agoMs). */
async function onDisk(t: import('node:test').TestContext, agoMs: number) {
  const dir = await mkdtemp(join(tmpdir(), 'jwt-svid-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'jwt-svid');
  const signer = await testSigner('ES256');
  const clock = new ManualClock(Date.now());
  const sign = () => signer.sign({ sub: ID, aud: AUDIENCES, ttlSeconds: 3600, iat: Math.floor(clock.now() / 1000) });
  await writeFile(file, await sign());
  const disk = countedFiles(agoMs);
  const source = new JwtFileSource({
    file,
    trustDomain: 'example.org',
    clock,
    logger: createLogger({ level: 'silent' }),
    watch: false,
    pollIntervalMs: 30_000,
    readFile: disk.readFile,
    stat: disk.stat,
  });
  t.after(() => source.close());
  await source.start();
  /** Advances past the next poll and waits until it has looked at the file. */
  const poll = async (): Promise<void> => {
    const before = disk.stats();
    await clock.advance(30_000);
    await until(() => disk.stats() > before, 'the poll to stat the token file');
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { source, file, sign, poll, reads: disk.reads };
}

test('a poll reads the token file again only when it was replaced or written', async (t) => {
  const h = await onDisk(t, 10_000);
  const first = await served(h.source);
  assert.equal(h.reads(), 1);
  await h.poll();
  await h.poll();
  assert.equal(h.reads(), 1, 'an unchanged file is not read again');
  const next = await h.sign();
  await writeFile(h.file, next);
  await h.poll();
  await until(() => h.reads() === 2, 'the written file to be read');
  await until(async () => (await served(h.source)) === next, 'the new token to be served');
  assert.notEqual(next, first);
  // Replaced (a new file under the name, as a `..data` swap makes): read again too.
  await writeFile(`${h.file}.new`, await h.sign());
  await rename(`${h.file}.new`, h.file);
  await h.poll();
  await until(() => h.reads() === 3, 'the replaced file to be read');
});

test('a token file written within the last second is read again at the next poll', async (t) => {
  // Its times could stay the same through a second write in the same kernel tick, so they prove nothing yet.
  const h = await onDisk(t, 0);
  await h.poll();
  await until(() => h.reads() === 2, 'the fresh file to be read again');
});
