// AWS session tags and source identity in the issuer's JWT-SVIDs: the config is held to AWS's session
// tag rules at load (every problem with its path), and tokens for AWS's audience carry the claims AWS
// reads from a web identity token, tokens for other audiences do not.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeJwt } from 'jose';
import { ConfigError } from '../../src/config/common.ts';
import { parseIssuerConfig } from '../../src/config/issuer.ts';
import { awsClaims, sourceIdentityFor } from '../../src/issuer/aws-claims.ts';
import { AUDIENCES, FORM, postToken, startFixture, TRUST_DOMAIN } from './fixture.ts';

const BASE = `
issuer:
  url: https://oidc.example.org/spiffe
  trustDomain: example.org
  bundleFile: /b.pem
  tls: { certFile: /c, keyFile: /k }
  keysDir: /keys
  audiences: [sts.amazonaws.com, api://AzureADTokenExchange]
`;

function problems(aws: string): string[] {
  try {
    parseIssuerConfig(`${BASE}  aws:\n${aws}`);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return [...error.problems];
  }
  return [];
}

const TAGS = {
  audience: 'sts.amazonaws.com',
  sourceIdentity: true,
  sessionTags: {
    pathTemplate: '/ns/{namespace}/sa/{serviceAccount}',
    principalTags: {
      'kubernetes-namespace': '{namespace}',
      'kubernetes-service-account': '{serviceAccount}',
      'spiffe-trust-domain': '{trustDomain}',
    },
    transitiveTagKeys: ['kubernetes-namespace'],
  },
};

test('issuer.aws: AWS session tag rules are checked at load, each problem with its path', () => {
  assert.deepEqual(
    problems(
      '    sessionTags: { pathTemplate: "/ns/{namespace}/sa/{serviceAccount}", principalTags: { namespace: "{namespace}" }, transitiveTagKeys: [namespace] }\n    sourceIdentity: true\n',
    ),
    [],
  );
  const many = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v']));
  const got = problems(
    `    audience: api://other\n    sessionTags:\n      pathTemplate: "/ns/{namespace}"\n      principalTags: ${JSON.stringify({ ...many, ['x'.repeat(129)]: 'v', 'aws:reserved': 'v', 'bad(key)': 'v', Namespace: '{namespace}', namespace: '{ns}', value: 'a(b)' })}\n      transitiveTagKeys: [missing]\n`,
  );
  for (const p of [
    /^issuer\.aws\.sessionTags\.principalTags: must have at most 50 tags/,
    /^issuer\.aws\.sessionTags\.principalTags\.x{129}: tag keys must be 1-128 characters/,
    /^issuer\.aws\.sessionTags\.principalTags\.aws:reserved: tag keys must not start with aws:/,
    /^issuer\.aws\.sessionTags\.principalTags\.bad\(key\): tag keys may hold only/,
    /^issuer\.aws\.sessionTags\.principalTags\.namespace: AWS tag keys are case-insensitive/,
    /^issuer\.aws\.sessionTags\.principalTags\.namespace: \{ns\} is not in pathTemplate/,
    /^issuer\.aws\.sessionTags\.principalTags\.value: tag values may hold only/,
    /^issuer\.aws\.sessionTags\.transitiveTagKeys\[0\]: "missing" is not a key of principalTags/,
    /^issuer\.aws\.audience: must be one of issuer\.audiences/,
  ]) {
    assert.ok(
      got.some((x) => p.test(x)),
      `missing ${p}:\n${got.join('\n')}`,
    );
  }
  assert.ok(
    problems('    sessionTags: { pathTemplate: "ns/{a}", principalTags: { a: "{a}" } }\n').some((p) =>
      p.startsWith('issuer.aws.sessionTags.pathTemplate: must be a SPIFFE ID path'),
    ),
  );
});

test('the claims: tags from the path, transitive keys, source identity; nothing for other audiences or other paths', () => {
  const config = parseIssuerConfig(`${BASE}  aws: ${JSON.stringify(TAGS)}\n`).issuer.aws;
  assert.deepEqual(awsClaims(config, 'sts.amazonaws.com', 'spiffe://example.org/ns/shop/sa/orders'), {
    'https://aws.amazon.com/tags': {
      principal_tags: {
        'kubernetes-namespace': ['shop'],
        'kubernetes-service-account': ['orders'],
        'spiffe-trust-domain': ['example.org'],
      },
      transitive_tag_keys: ['kubernetes-namespace'],
    },
    'https://aws.amazon.com/source_identity': 'ns.shop.sa.orders',
  });
  assert.deepEqual(awsClaims(config, 'api://AzureADTokenExchange', 'spiffe://example.org/ns/shop/sa/orders'), {});
  assert.deepEqual(awsClaims(config, 'sts.amazonaws.com', 'spiffe://example.org/batch/job'), {
    'https://aws.amazon.com/source_identity': 'batch.job',
  });
  const long = sourceIdentityFor('example.org', `/${'a'.repeat(80)}`);
  assert.equal(long.length, 64);
  assert.match(long, /^a{51}-[0-9a-f]{12}$/);
  assert.notEqual(sourceIdentityFor('example.org', `/${'a'.repeat(80)}b`), long, 'distinct IDs stay distinct');
  assert.equal(sourceIdentityFor('example.org', '/x'), 'x@example.org');
});

test('a token for sts.amazonaws.com carries the tags and source identity; the Entra token does not', async (t) => {
  const fx = await startFixture(t, { aws: TAGS });
  const svid = await fx.ca.issueX509Svid({ spiffeId: `spiffe://${TRUST_DOMAIN}/ns/shop/sa/orders` });
  const aws = await postToken(fx, svid);
  assert.equal(aws.status, 200, JSON.stringify(aws.body));
  const claims = decodeJwt(aws.body['access_token'] as string);
  assert.deepEqual(claims['https://aws.amazon.com/tags'], {
    principal_tags: {
      'kubernetes-namespace': ['shop'],
      'kubernetes-service-account': ['orders'],
      'spiffe-trust-domain': ['example.org'],
    },
    transitive_tag_keys: ['kubernetes-namespace'],
  });
  assert.equal(claims['https://aws.amazon.com/source_identity'], 'ns.shop.sa.orders');
  assert.equal(claims.sub, `spiffe://${TRUST_DOMAIN}/ns/shop/sa/orders`);
  const entra = await postToken(fx, svid, { ...FORM, audience: AUDIENCES[1] ?? '' });
  const other = decodeJwt(entra.body['access_token'] as string);
  assert.equal(other['https://aws.amazon.com/tags'], undefined);
  assert.equal(other['https://aws.amazon.com/source_identity'], undefined);
});
