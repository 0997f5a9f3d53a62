// The STS stand-in's session-tag and source-identity rules, one broken at a time: what AWS refuses in a
// web identity token's https://aws.amazon.com/tags and source_identity claims, the stand-in refuses.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkWebIdentityTags, SOURCE_IDENTITY_CLAIM, TAGS_CLAIM } from '@spiffe-connector/dev/fake-sts-tags.ts';

const tags = (principal: unknown, transitive?: unknown) => ({
  [TAGS_CLAIM]: { principal_tags: principal, ...(transitive === undefined ? {} : { transitive_tag_keys: transitive }) },
});

function refusedWith(payload: Record<string, unknown>, code: string, message: RegExp): void {
  const r = checkWebIdentityTags(payload);
  assert.equal(r.ok, false, JSON.stringify(payload).slice(0, 200));
  if (r.ok) return;
  assert.equal(r.code, code);
  assert.match(r.message, message);
}

test('well-formed tags and source identity are read, with a packed size', () => {
  const r = checkWebIdentityTags({
    ...tags({ 'kubernetes-namespace': ['shop'], team: ['a b:c/d=e+f-g@h_i.j'] }, ['kubernetes-namespace']),
    [SOURCE_IDENTITY_CLAIM]: 'ns.shop.sa.orders',
  });
  assert.ok(r.ok);
  if (!r.ok) return;
  assert.deepEqual(r.value.tags, { 'kubernetes-namespace': 'shop', team: 'a b:c/d=e+f-g@h_i.j' });
  assert.deepEqual(r.value.transitiveTagKeys, ['kubernetes-namespace']);
  assert.equal(r.value.sourceIdentity, 'ns.shop.sa.orders');
  assert.ok(r.value.packedPolicySize > 0 && r.value.packedPolicySize <= 100);
  const none = checkWebIdentityTags({ sub: 'x' });
  assert.ok(none.ok && Object.keys(none.value.tags).length === 0 && none.value.sourceIdentity === undefined);
});

test('tag limits: count, key and value length, characters, aws: prefix, case-insensitive duplicates, transitive keys', () => {
  refusedWith(
    tags(Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, ['v']]))),
    'ValidationError',
    /less than or equal to 50/,
  );
  assert.ok(
    checkWebIdentityTags(tags(Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`k${i}`, ['v']])))).ok,
    '50 tags are fine',
  );
  refusedWith(tags({ ['k'.repeat(129)]: ['v'] }), 'ValidationError', /between 1 and 128/);
  assert.ok(checkWebIdentityTags(tags({ ['k'.repeat(128)]: ['v'] })).ok);
  refusedWith(tags({ k: ['v'.repeat(257)] }), 'ValidationError', /less than or equal to 256/);
  assert.ok(checkWebIdentityTags(tags({ k: ['v'.repeat(256)] })).ok);
  refusedWith(tags({ 'a(b)': ['v'] }), 'ValidationError', /regular expression/);
  refusedWith(tags({ k: ['v#1'] }), 'ValidationError', /regular expression/);
  refusedWith(tags({ 'aws:team': ['v'] }), 'InvalidParameterValue', /reserved/);
  refusedWith(tags({ Team: ['a'], team: ['b'] }), 'InvalidParameterValue', /case insensitive/);
  refusedWith(tags({ team: ['a'] }, ['other']), 'InvalidParameterValue', /transitive tag key must be included/);
  refusedWith(tags({ team: [1] }), 'InvalidIdentityToken', /array of one string/);
  refusedWith(tags(['team']), 'InvalidIdentityToken', /principal_tags, an object/);
  refusedWith({ [TAGS_CLAIM]: 'team=a' }, 'InvalidIdentityToken', /must be an object/);
  refusedWith(
    tags(Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`key-${i}-${'k'.repeat(100)}`, ['v'.repeat(200)]]))),
    'PackedPolicyTooLarge',
    /exceeds the limit/,
  );
});

test('source identity: 2-64 characters of [\\w+=,.@-], so never aws:', () => {
  for (const bad of ['a', 'x'.repeat(65), 'has space', 'slash/no', 7])
    refusedWith({ [SOURCE_IDENTITY_CLAIM]: bad }, 'ValidationError', /sourceIdentity/);
  refusedWith({ [SOURCE_IDENTITY_CLAIM]: 'aws:admin' }, 'ValidationError', /sourceIdentity/);
  assert.ok(checkWebIdentityTags({ [SOURCE_IDENTITY_CLAIM]: 'ab' }).ok);
  assert.ok(checkWebIdentityTags({ [SOURCE_IDENTITY_CLAIM]: 'x'.repeat(64) }).ok);
});
