// Black box: MSAL bundled as the production build bundles it (scripts/bundle-options.ts), where jsonwebtoken is
// loaded only on first use. The sidecar never takes that path (it hands MSAL its JWT-SVID), but the bundled MSAL
// must still sign a certificate assertion when asked: the JWT it prints is verified here with jose.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
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

test('bundled as the product is, MSAL still signs a certificate client assertion with jsonwebtoken', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'spiffe-connector-bundle-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const outfile = join(dir, `bundle.${BUNDLE_OPTIONS.format === 'cjs' ? 'cjs' : 'mjs'}`);
  await build({
    ...BUNDLE_OPTIONS,
    absWorkingDir: ROOT,
    // MSAL as @azure/identity resolves it.
    stdin: { contents: PROGRAM, resolveDir: IDENTITY_DIR, sourcefile: 'probe.mjs', loader: 'js' },
    outfile,
    logLevel: 'error',
  });

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
