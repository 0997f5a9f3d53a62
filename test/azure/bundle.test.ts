// Black box: Azure's SDK bundled as the production build bundles it (scripts/bundle-options.ts), where MSAL's
// jsonwebtoken is loaded only on first use and the HTTP pipeline asks a body whether it is a FormData before reading
// the global. The sidecar takes neither path (it hands MSAL its JWT-SVID, and sends no FormData), but the bundled
// SDK must still take them when asked: MSAL signs a certificate assertion (verified here with jose), and the
// pipeline sends a FormData body as multipart/form-data (read here by a server of the test's own).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import { BUNDLE_OPTIONS } from '../../scripts/bundle-options.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const IDENTITY_DIR = dirname(createRequire(join(ROOT, 'package.json')).resolve('@azure/identity/package.json'));
const CLIENT_ID = '11111111-2222-3333-4444-555555555555';
const TOKEN_URL = 'https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token';

const PROGRAM = `import { ClientAssertion, CryptoProvider } from '@azure/msal-node';
const { thumbprint, privateKey, clientId, audience } = JSON.parse(process.env.PROBE_INPUT);
const assertion = ClientAssertion.fromCertificateWithSha256Thumbprint(thumbprint, privateKey);
process.stdout.write(assertion.getJwt(new CryptoProvider(), clientId, audience));
`;

/** Bundles `program` (resolving packages from `resolveDir`) with the production options; the bundle's path. */
async function bundle(dir: string, program: string, resolveDir: string): Promise<string> {
  const outfile = join(dir, `bundle.${BUNDLE_OPTIONS.format === 'cjs' ? 'cjs' : 'mjs'}`);
  await build({
    ...BUNDLE_OPTIONS,
    absWorkingDir: ROOT,
    stdin: { contents: program, resolveDir, sourcefile: 'probe.mjs', loader: 'js' },
    outfile,
    logLevel: 'error',
  });
  return outfile;
}

test('bundled as the product is, MSAL still signs a certificate client assertion with jsonwebtoken', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'spiffe-connector-bundle-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // MSAL as @azure/identity resolves it.
  const outfile = await bundle(dir, PROGRAM, IDENTITY_DIR);

  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const thumbprint = createHash('sha256').update('a certificate').digest('hex');
  const input = {
    thumbprint,
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    clientId: CLIENT_ID,
    audience: TOKEN_URL,
  };
  const { stdout } = await promisify(execFile)(process.execPath, [outfile], {
    env: { ...process.env, PROBE_INPUT: JSON.stringify(input) },
    timeout: 30_000,
  });

  const header = decodeProtectedHeader(stdout);
  assert.equal(header.alg, 'PS256');
  assert.equal(header['x5t#S256'], Buffer.from(thumbprint, 'hex').toString('base64url'));
  const { payload } = await jwtVerify(stdout, publicKey, {
    algorithms: ['PS256'],
    issuer: CLIENT_ID,
    subject: CLIENT_ID,
    audience: TOKEN_URL,
    // MSAL rounds its nbf, jsonwebtoken floors its iat: nbf can be a second ahead (Entra allows skew).
    clockTolerance: 5,
  });
  assert.ok(typeof payload.jti === 'string' && payload.jti.length > 0);
  assert.ok(typeof payload.exp === 'number' && payload.exp > Date.now() / 1000);
});

const FORM_PROGRAM = `import { createDefaultHttpClient, createPipelineFromOptions, createPipelineRequest } from '@azure/core-rest-pipeline';
(async () => {
  const body = new FormData();
  body.append('resource', 'https://storage.azure.com');
  const request = createPipelineRequest({ url: process.env.PROBE_URL, method: 'POST', body, allowInsecureConnection: true });
  const response = await createPipelineFromOptions({ retryOptions: { maxRetries: 0 } }).sendRequest(createDefaultHttpClient(), request);
  process.stdout.write(String(response.status));
})();
`;

test('bundled as the product is, the Azure pipeline still sends a FormData body as multipart/form-data', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'spiffe-connector-bundle-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const outfile = await bundle(dir, FORM_PROGRAM, ROOT);

  const received: Array<{ contentType: string; body: string }> = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ contentType: req.headers['content-type'] ?? '', body: Buffer.concat(chunks).toString('utf8') });
      res.end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;

  const { stdout } = await promisify(execFile)(process.execPath, [outfile], {
    env: { ...process.env, PROBE_URL: url },
    timeout: 30_000,
  });
  assert.equal(stdout, '200');
  assert.equal(received.length, 1);
  const [{ contentType, body } = { contentType: '', body: '' }] = received;
  const boundary = /^multipart\/form-data; boundary=(.+)$/.exec(contentType)?.[1];
  assert.ok(boundary, `content-type ${contentType}`);
  // One part between the first boundary and the closing one: the field, by name, with its value.
  const parts = body.split(`--${boundary}`);
  assert.equal(parts.at(-1)?.trim(), '--');
  const fields = parts.slice(1, -1).map((part) => {
    const [head = '', value = ''] = part.split('\r\n\r\n');
    return { name: /name="([^"]+)"/.exec(head)?.[1], value: value.replace(/\r\n$/, '') };
  });
  assert.deepEqual(fields, [{ name: 'resource', value: 'https://storage.azure.com' }]);
});
