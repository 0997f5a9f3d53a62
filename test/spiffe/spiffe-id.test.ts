// SPIFFE ID and trust domain parsing: go-spiffe's spiffeid test vectors (id_test.go,
// trustdomain_test.go), including every byte 0–255 in trust-domain and path position.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConnectorError } from '../../src/base/errors.ts';
import { MAX_SPIFFE_ID_BYTES, MAX_TRUST_DOMAIN_BYTES, SpiffeId, TrustDomain } from '../../src/spiffe/spiffe-id.ts';

const BAD_TD_CHAR = 'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores';
const BAD_PATH_CHAR = 'path segment characters are limited to letters, numbers, dots, dashes, and underscores';

const TD_CHARS = new Set('abcdefghijklmnopqrstuvwxyz0123456789.-_');
const PATH_CHARS = new Set('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_');

/** Go's string(rune(i)): the UTF-8 encoding of code point i. JS strings hold it as one UTF-16 unit. */
const char = (i: number): string => String.fromCodePoint(i);

function assertOk(input: string, td: string, path: string): void {
  const id = SpiffeId.parse(input);
  assert.equal(id.trustDomain.name, td);
  assert.equal(id.path, path);
  assert.equal(id.toString(), input);
}

function assertFail(input: string, problem: string): void {
  assert.throws(
    () => SpiffeId.parse(input),
    (err: unknown) => {
      assert.ok(err instanceof ConnectorError);
      assert.equal(err.code, 'spiffe_id_invalid');
      assert.ok(err.message.includes(problem), `"${err.message}" should mention "${problem}"`);
      return true;
    },
  );
}

function assertTdFail(input: string, problem: string): void {
  assert.throws(
    () => TrustDomain.parse(input),
    (err: unknown) =>
      err instanceof ConnectorError && err.code === 'spiffe_id_invalid' && err.message.includes(problem),
  );
}

test('SpiffeId.parse: empty and path-less', () => {
  assertFail('', 'cannot be empty');
  assertOk('spiffe://trustdomain', 'trustdomain', '');
  assert.equal(SpiffeId.parse('spiffe://trustdomain').isTrustDomainId(), true);
  assert.equal(SpiffeId.parse('spiffe://trustdomain/p').isTrustDomainId(), false);
});

test('SpiffeId.parse: every byte 0-255 in trust domain and path position', () => {
  for (let i = 0; i < 256; i++) {
    if (i === 0x2f) continue; // '/' separates segments
    const s = char(i);
    const hex = i.toString(16).toUpperCase();
    if (TD_CHARS.has(s)) {
      assertOk(`spiffe://trustdomain${s}/path`, `trustdomain${s}`, '/path');
    } else {
      assert.doesNotThrow(() => assertFail(`spiffe://trustdomain${s}/path`, BAD_TD_CHAR), `td char ${hex}`);
    }
    if (PATH_CHARS.has(s)) {
      assertOk(`spiffe://trustdomain/path${s}`, 'trustdomain', `/path${s}`);
    } else {
      assert.doesNotThrow(() => assertFail(`spiffe://trustdomain/path${s}`, BAD_PATH_CHAR), `path char ${hex}`);
    }
  }
});

test('SpiffeId.parse: UTF-8 written as raw bytes is refused too', () => {
  // What a Latin-1 decode of UTF-8 input would look like: every byte above 0x7f on its own.
  assertFail('spiffe://trustdomain\u00c3\u00a9/path', BAD_TD_CHAR);
  assertFail('spiffe://trustdomain/path\u00c3\u00a9', BAD_PATH_CHAR);
  assertFail('spiffe://trustdomain/\u{1f92f}', BAD_PATH_CHAR);
});

test('SpiffeId.parse: scheme', () => {
  assertFail('s', 'scheme is missing or invalid');
  assertFail('spiffe:/', 'scheme is missing or invalid');
  assertFail('Spiffe://', 'scheme is missing or invalid');
  assertFail('SPIFFE://trustdomain/path', 'scheme is missing or invalid');
  assertFail('http://trustdomain/path', 'scheme is missing or invalid');
  assertFail('spiffe:path/element', 'scheme is missing or invalid');
});

test('SpiffeId.parse: missing trust domain', () => {
  assertFail('spiffe://', 'trust domain is missing');
  assertFail('spiffe:///', 'trust domain is missing');
  assertFail('spiffe:///path', 'trust domain is missing');
});

test('SpiffeId.parse: empty segments and trailing slash', () => {
  assertFail('spiffe://trustdomain/', 'path cannot have a trailing slash');
  assertFail('spiffe://trustdomain//', 'path cannot contain empty segments');
  assertFail('spiffe://trustdomain//path', 'path cannot contain empty segments');
  assertFail('spiffe://trustdomain/path/', 'path cannot have a trailing slash');
  assertFail('spiffe://trustdomain/path//other', 'path cannot contain empty segments');
});

test('SpiffeId.parse: dot segments', () => {
  for (const path of ['/.', '/./path', '/path/./other', '/path/..', '/..', '/../path', '/path/../other']) {
    assertFail(`spiffe://trustdomain${path}`, 'path cannot contain dot segments');
  }
  // Segments containing dots that are not exactly "." or ".." are fine.
  assertOk('spiffe://trustdomain/.path', 'trustdomain', '/.path');
  assertOk('spiffe://trustdomain/..path', 'trustdomain', '/..path');
  assertOk('spiffe://trustdomain/...', 'trustdomain', '/...');
});

test('SpiffeId.parse: percent-encoding, query, fragment, port, userinfo', () => {
  assertFail('spiffe://%F0%9F%A4%AF/path', BAD_TD_CHAR);
  assertFail('spiffe://trustdomain/%F0%9F%A4%AF', BAD_PATH_CHAR);
  assertFail('spiffe://%62%61%64/path', BAD_TD_CHAR);
  assertFail('spiffe://trustdomain/%62%61%64', BAD_PATH_CHAR);
  assertFail('spiffe://trust$domain', BAD_TD_CHAR);
  assertFail('spiffe://trustdomain/path$', BAD_PATH_CHAR);
  assertFail('spiffe://trustdomain/path?query=1', BAD_PATH_CHAR);
  assertFail('spiffe://trustdomain/path#fragment', BAD_PATH_CHAR);
  assertFail('spiffe://trustdomain:8080/path', BAD_TD_CHAR);
  assertFail('spiffe://user:password@trustdomain/path', BAD_TD_CHAR);
  assertFail('spiffe://trustdomain/pa:th', BAD_PATH_CHAR);
  assertFail('spiffe://trustdomain/pa@th', BAD_PATH_CHAR);
  assertFail('spiffe://TrustDomain/path', BAD_TD_CHAR);
});

test('SpiffeId.parse: length limits (SPIFFE-ID.md §2.3)', () => {
  const tdMax = 'a'.repeat(MAX_TRUST_DOMAIN_BYTES);
  assertOk(`spiffe://${tdMax}/p`, tdMax, '/p');
  assertFail(`spiffe://${tdMax}a/p`, `trust domains are at most ${MAX_TRUST_DOMAIN_BYTES}`);

  const prefix = 'spiffe://td/';
  const longest = prefix + 'x'.repeat(MAX_SPIFFE_ID_BYTES - prefix.length);
  assert.equal(longest.length, MAX_SPIFFE_ID_BYTES);
  assertOk(longest, 'td', longest.slice('spiffe://td'.length));
  assertFail(`${longest}x`, `SPIFFE IDs are at most ${MAX_SPIFFE_ID_BYTES}`);
});

test('SpiffeId: memberOf, equals, toString, JSON', () => {
  const td = TrustDomain.parse('trustdomain');
  const id = SpiffeId.parse('spiffe://trustdomain/path/element');
  assert.equal(id.memberOf(td), true);
  assert.equal(SpiffeId.parse('spiffe://trustdomain').memberOf(td), true);
  assert.equal(SpiffeId.parse('spiffe://domain2.test/path/element').memberOf(td), false);
  assert.equal(id.equals(SpiffeId.parse('spiffe://trustdomain/path/element')), true);
  assert.equal(id.equals(SpiffeId.parse('spiffe://trustdomain/path/Element')), false);
  assert.equal(JSON.stringify({ id }), '{"id":"spiffe://trustdomain/path/element"}');
  assert.equal(`${id}`, 'spiffe://trustdomain/path/element');
});

test('TrustDomain.parse: names and IDs', () => {
  assertTdFail('', 'trust domain is missing');
  for (const input of ['trustdomain', 'spiffe://trustdomain', 'spiffe://trustdomain/path']) {
    const td = TrustDomain.parse(input);
    assert.equal(td.name, 'trustdomain');
    assert.equal(td.idString(), 'spiffe://trustdomain');
    assert.equal(td.toString(), 'trustdomain');
    assert.equal(td.equals(TrustDomain.parse('trustdomain')), true);
  }
  assert.equal(TrustDomain.parse('a').equals(TrustDomain.parse('b')), false);
  assert.equal(JSON.stringify(TrustDomain.parse('example.org')), '"example.org"');
});

test('TrustDomain.parse: bad IDs', () => {
  assertTdFail('spiffe:/trustdomain/path', 'scheme is missing or invalid');
  assertTdFail('spiffe://', 'trust domain is missing');
  assertTdFail('spiffe:///path', 'trust domain is missing');
  assertTdFail('spiffe://trustdomain/', 'path cannot have a trailing slash');
  assertTdFail('spiffe://trustdomain/path/', 'path cannot have a trailing slash');
  assertTdFail('spiffe://%F0%9F%A4%AF/path', BAD_TD_CHAR);
  assertTdFail('spiffe://trustdomain/%F0%9F%A4%AF', BAD_PATH_CHAR);
  assertTdFail('Example.org', BAD_TD_CHAR);
  assertTdFail('a'.repeat(MAX_TRUST_DOMAIN_BYTES + 1), `trust domains are at most ${MAX_TRUST_DOMAIN_BYTES}`);
});

test('TrustDomain.parse: every byte 0-255 after a name, bare and as an ID', () => {
  for (let i = 0; i < 256; i++) {
    const s = char(i);
    if (TD_CHARS.has(s)) {
      assert.equal(TrustDomain.parse(`trustdomain${s}`).name, `trustdomain${s}`);
      assert.equal(TrustDomain.parse(`spiffe://trustdomain${s}`).name, `trustdomain${s}`);
    } else {
      assertTdFail(`trustdomain${s}`, BAD_TD_CHAR);
    }
  }
});

test('errors quote the input but cut very long ones', () => {
  assert.throws(
    () => SpiffeId.parse(`spiffe://td/${'x'.repeat(5000)}`),
    (err: unknown) => err instanceof ConnectorError && err.message.length < 400,
  );
  // Up to 120 characters the input is quoted whole, so the operator sees exactly what was refused.
  const whole = `spiffe://td/${'x'.repeat(120 - 'spiffe://td/'.length - 1)}/`;
  assert.equal(whole.length, 120);
  assertFail(whole, `SPIFFE ID ${JSON.stringify(whole)} is invalid`);
  const short = 'spiffe://td/a/';
  assertFail(short, `SPIFFE ID "${short}" is invalid`);
  // Longer, it is cut to its first 117 characters and "...".
  const cut = `${whole.slice(0, -1)}x/`;
  assertFail(cut, `SPIFFE ID ${JSON.stringify(`${cut.slice(0, 117)}...`)} is invalid`);
});
