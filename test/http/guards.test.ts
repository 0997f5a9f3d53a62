// The request guards as functions: which Host headers count as loopback (DNS rebinding: a browser
// sends the attacker's name) and that a secret is matched exactly. The metadata listener's use of
// them is tested in test/metadata/pipeline.test.ts; these are the edges a request rarely reaches.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hostIsLoopback, secretEquals, secretMatcher } from '../../src/http/guards.ts';

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
