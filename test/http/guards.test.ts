// The request guards as functions: which Host headers count as loopback (DNS rebinding: a browser
// sends the attacker's name) and that a secret is matched exactly. The metadata listener's use of
// them is tested in test/metadata/pipeline.test.ts; these are the edges a request rarely reaches.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hostIsLinkLocal, hostIsLoopback, secretEquals, secretMatcher } from '../../src/http/guards.ts';

test('loopback Host headers on the listener port are accepted', () => {
  for (const host of [
    '127.0.0.1:8080',
    '127.1.2.3:8080',
    'localhost:8080',
    'LOCALHOST:8080',
    '[::1]:8080',
    ' 127.0.0.1:8080 ',
  ]) {
    assert.equal(hostIsLoopback(host, 8080), true, host);
  }
  // No port means the scheme's default, 80.
  for (const host of ['127.0.0.1', 'localhost', '[::1]']) assert.equal(hostIsLoopback(host, 80), true, host);
  assert.equal(hostIsLoopback('127.0.0.1', 8080), false, 'no port is port 80, not the listener port');
});

test('names that only contain or resemble loopback are refused, and nothing throws', () => {
  const refused = [
    undefined,
    '',
    '127.0.0.1.attacker.example:8080',
    'attacker.example:8080',
    'evil.example:127.0.0.1:8080',
    '127.0.0.1:8080:evil',
    '127.0.0.1:8080/',
    '127.0.0.1:9090',
    '[::2]:8080',
    '[::ffff:127.0.0.1]:8080',
    '[zz]:8080',
    'a:b:c',
    '0x7f.1:8080',
    '::1:8080',
  ];
  for (const host of refused) assert.equal(hostIsLoopback(host, 8080), false, String(host));
});

test('secrets match only exactly', () => {
  const matches = secretMatcher('s3cret-token');
  assert.equal(matches('s3cret-token'), true);
  for (const other of [undefined, '', 's3cret-tokeN', 's3cret-toke', 's3cret-token ', 'x3cret-token']) {
    assert.equal(matches(other), false, String(other));
    assert.equal(secretEquals(other, 's3cret-token'), false, String(other));
  }
  assert.equal(secretEquals('s3cret-token', 's3cret-token'), true);
});

test('on a link-local listener the Host names that address at port 80 (or none), or on 169.254.169.254 the Google name', () => {
  for (const host of [
    '169.254.169.254',
    '169.254.169.254:80',
    'metadata.google.internal',
    'metadata.google.internal.',
    'Metadata.Google.Internal:80',
  ])
    assert.equal(hostIsLinkLocal(host, '169.254.169.254'), true, host);
  for (const host of ['169.254.170.2', '169.254.170.2:80'])
    assert.equal(hostIsLinkLocal(host, '169.254.170.2'), true, host);
  const refused: Array<[string | undefined, string]> = [
    [undefined, '169.254.169.254'],
    ['', '169.254.169.254'],
    ['169.254.169.254:8080', '169.254.169.254'],
    ['169.254.170.2', '169.254.169.254'],
    ['169.254.169.254', '169.254.170.2'],
    ['metadata.google.internal', '169.254.170.2'],
    ['127.0.0.1', '169.254.169.254'],
    ['localhost:80', '169.254.169.254'],
    ['169.254.169.254.attacker.example', '169.254.169.254'],
    ['metadata.google.internal.attacker.example', '169.254.169.254'],
    ['metadata.google.internal..', '169.254.169.254'],
    ['metadata', '169.254.169.254'],
    ['169.254.169.254', '127.0.0.1'],
    ['169.254.169.253', '169.254.169.253'],
  ];
  for (const [host, local] of refused) assert.equal(hostIsLinkLocal(host, local), false, `${host} on ${local}`);
});
