// SigV4-X509 signing against vectors derived outside this code: the canonical request and string to
// sign written out from AWS's published format, hashes and signatures made or checked by the openssl CLI
// over a certificate and key openssl minted (fixed serial, fixed date).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  amzDate,
  canonicalHeaders,
  canonicalQuery,
  credentialScope,
  serialDecimal,
  signingAlgorithmFor,
  signX509Request,
  uriEncode,
} from '../../src/providers/aws/roles-anywhere-sign.ts';

function run(cmd: string, args: string[], input?: Buffer): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { encoding: 'buffer', timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({
        code: error ? (typeof error.code === 'number' ? error.code : 1) : 0,
        stdout,
        stderr: stderr.toString(),
      });
    });
    // A command that does not read its input may exit first: that is not the test's failure.
    child.stdin?.on('error', () => {});
    child.stdin?.end(input ?? Buffer.alloc(0));
  });
}

const hasOpenssl = (await run('openssl', ['version'])).code === 0;
const DATE = new Date('2026-12-01T09:30:05.123Z');
const TRUST_ANCHOR = 'arn:aws:rolesanywhere:eu-west-1:111122223333:trust-anchor/0f0e0d0c-0b0a-4909-8807-060504030201';
const PROFILE = 'arn:aws:rolesanywhere:eu-west-1:111122223333:profile/01020304-0506-4708-8900-0a0b0c0d0e0f';
const ROLE = 'arn:aws:iam::111122223333:role/app';

/** A self-signed certificate with serial 0x0123ABCDEF and its key, both made by openssl. */
async function opensslCert(
  dir: string,
  keyArgs: string[],
): Promise<{ cert: X509Certificate; keyPath: string; keyPem: string; pubPath: string }> {
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  const pubPath = join(dir, 'pub.pem');
  const made = await run('openssl', [
    'req',
    '-x509',
    '-new',
    ...keyArgs,
    '-nodes',
    '-keyout',
    keyPath,
    '-out',
    certPath,
    '-subj',
    '/CN=app/O=example',
    '-days',
    '1',
    '-set_serial',
    '0x0123ABCDEF',
    '-sha256',
  ]);
  assert.equal(made.code, 0, made.stderr);
  assert.equal((await run('openssl', ['pkey', '-in', keyPath, '-pubout', '-out', pubPath])).code, 0);
  return {
    cert: new X509Certificate(await readFile(certPath)),
    keyPath,
    keyPem: await readFile(keyPath, 'utf8'),
    pubPath,
  };
}

function sessionUrl(): URL {
  const url = new URL('https://rolesanywhere.eu-west-1.amazonaws.com/sessions');
  url.searchParams.set('profileArn', PROFILE);
  url.searchParams.set('roleArn', ROLE);
  url.searchParams.set('trustAnchorArn', TRUST_ANCHOR);
  return url;
}

test('the pieces: X-Amz-Date, the decimal serial, RFC 3986 encoding, sorted query, trimmed headers', () => {
  assert.equal(amzDate(DATE), '20261201T093005Z');
  assert.equal(credentialScope(DATE, 'eu-west-1'), '20261201/eu-west-1/rolesanywhere/aws4_request');
  assert.equal(uriEncode("a b/c:d~e_f.g-h!'()*"), 'a%20b%2Fc%3Ad~e_f.g-h%21%27%28%29%2A');
  const q = new URLSearchParams([
    ['trustAnchorArn', 'x y'],
    ['profileArn', 'arn:a/b'],
    ['b', '2'],
    ['b', '1'],
  ]);
  assert.equal(canonicalQuery(q), 'b=1&b=2&profileArn=arn%3Aa%2Fb&trustAnchorArn=x%20y');
  const h = canonicalHeaders({
    'X-Amz-Date': ' 20261201T093005Z ',
    Host: 'h',
    'Content-Type': 'application/json;  charset=utf-8',
    'User-Agent': 'x',
    Authorization: 'y',
  });
  assert.equal(h.canonical, 'content-type:application/json; charset=utf-8\nhost:h\nx-amz-date:20261201T093005Z\n');
  assert.equal(h.signedHeaders, 'content-type;host;x-amz-date');
});

test('the algorithm follows the key type; keys Roles Anywhere cannot use are refused with a reason', () => {
  assert.equal(
    signingAlgorithmFor(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey),
    'AWS4-X509-ECDSA-SHA256',
  );
  assert.equal(
    signingAlgorithmFor(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey),
    'AWS4-X509-RSA-SHA256',
  );
  assert.throws(
    () => signingAlgorithmFor(generateKeyPairSync('ed25519').privateKey),
    /RSA or EC keys; this one has a ed25519 key/,
  );
});

test('RSA: the canonical request and string to sign as AWS documents them, the signature byte-for-byte what openssl makes', {
  skip: hasOpenssl ? false : 'openssl is not installed',
}, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sigv4x509-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { cert, keyPath, keyPem } = await opensslCert(dir, ['-newkey', 'rsa:2048']);
  assert.equal(serialDecimal(cert), '4893429231');
  const body = '{"durationSeconds":3600}';
  const signed = signX509Request({
    method: 'POST',
    url: sessionUrl(),
    headers: { 'Content-Type': 'application/json' },
    body,
    date: DATE,
    region: 'eu-west-1',
    certificates: [cert],
    privateKey: createPrivateKey(keyPem),
  });
  const leafB64 = Buffer.from(cert.raw).toString('base64');
  const bodyHash = (await run('openssl', ['dgst', '-sha256', '-r'], Buffer.from(body))).stdout.toString().split(' ')[0];
  const expectedCanonical = [
    'POST',
    '/sessions',
    `profileArn=${encodeURIComponent(PROFILE)}&roleArn=${encodeURIComponent(ROLE)}&trustAnchorArn=${encodeURIComponent(TRUST_ANCHOR)}`,
    `content-type:application/json\nhost:rolesanywhere.eu-west-1.amazonaws.com\nx-amz-date:20261201T093005Z\nx-amz-x509:${leafB64}\n`,
    'content-type;host;x-amz-date;x-amz-x509',
    bodyHash,
  ].join('\n');
  assert.equal(signed.canonicalRequest, expectedCanonical);
  const canonicalHash = (await run('openssl', ['dgst', '-sha256', '-r'], Buffer.from(expectedCanonical))).stdout
    .toString()
    .split(' ')[0];
  assert.equal(
    signed.stringToSign,
    `AWS4-X509-RSA-SHA256\n20261201T093005Z\n20261201/eu-west-1/rolesanywhere/aws4_request\n${canonicalHash}`,
  );
  // PKCS#1 v1.5 is deterministic: openssl's signature over the same string must be the same bytes.
  const stsPath = join(dir, 'sts.txt');
  await writeFile(stsPath, signed.stringToSign);
  const opensslSig = await run('openssl', ['dgst', '-sha256', '-sign', keyPath, stsPath]);
  assert.equal(opensslSig.code, 0, opensslSig.stderr);
  assert.equal(signed.signature, opensslSig.stdout.toString('hex'));
  assert.equal(
    signed.headers['authorization'],
    `AWS4-X509-RSA-SHA256 Credential=4893429231/20261201/eu-west-1/rolesanywhere/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-x509, Signature=${signed.signature}`,
  );
  assert.equal(signed.headers['x-amz-x509'], leafB64);
  assert.equal(signed.headers['x-amz-x509-chain'], undefined, 'no chain header without intermediates');
});

test('ECDSA with intermediates: X-Amz-X509-Chain signed, DER signature that openssl verifies with the leaf key', {
  skip: hasOpenssl ? false : 'openssl is not installed',
}, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sigv4x509-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { cert, keyPem, pubPath } = await opensslCert(dir, ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
  const other = await opensslCert(await mkdtemp(join(dir, 'b-')), [
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
  ]);
  const url = sessionUrl();
  url.host = '127.0.0.1:8443';
  const signed = signX509Request({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/json' },
    body: '{}',
    date: DATE,
    region: 'eu-west-1',
    certificates: [cert, other.cert, other.cert],
    privateKey: createPrivateKey(keyPem),
  });
  const b64 = Buffer.from(other.cert.raw).toString('base64');
  assert.equal(signed.headers['x-amz-x509-chain'], `${b64},${b64}`);
  assert.equal(signed.headers['host'], '127.0.0.1:8443');
  assert.match(
    signed.canonicalRequest,
    new RegExp(`\nhost:127\\.0\\.0\\.1:8443\n.*\nx-amz-x509-chain:${b64.replace(/[+/]/g, '\\$&')},`, 's'),
  );
  assert.match(
    signed.headers['authorization'] ?? '',
    /^AWS4-X509-ECDSA-SHA256 Credential=4893429231\/20261201\/eu-west-1\/rolesanywhere\/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-x509;x-amz-x509-chain, Signature=30[0-9a-f]+$/,
  );
  const stsPath = join(dir, 'sts.txt');
  const sigPath = join(dir, 'sig.der');
  await writeFile(stsPath, signed.stringToSign);
  await writeFile(sigPath, Buffer.from(signed.signature, 'hex'));
  const verified = await run('openssl', ['dgst', '-sha256', '-verify', pubPath, '-signature', sigPath, stsPath]);
  assert.equal(verified.code, 0, `openssl: ${verified.stdout.toString()} ${verified.stderr}`);
  await writeFile(stsPath, `${signed.stringToSign} `);
  assert.notEqual(
    (await run('openssl', ['dgst', '-sha256', '-verify', pubPath, '-signature', sigPath, stsPath])).code,
    0,
    'a changed string does not verify',
  );
});
