// The issuer config: defaults, and every problem reported with its path.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../src/config/common.ts';
import { parseIssuerConfig } from '../../src/config/issuer.ts';

const GOOD = `
issuer:
  url: https://oidc.example.org/spiffe
  trustDomain: example.org
  bundleFile: /etc/spiffe/bundle.pem
  tls: { certFile: /etc/issuer-tls/tls.crt, keyFile: /etc/issuer-tls/tls.key }
  keysDir: /etc/spiffe-connector/keys
  audiences: [sts.amazonaws.com, api://AzureADTokenExchange]
`;

test('a minimal issuer config parses, with defaults', () => {
  const c = parseIssuerConfig(GOOD).issuer;
  assert.equal(c.tokenAddress, '0.0.0.0:8443');
  assert.equal(c.discoveryAddress, '0.0.0.0:8080');
  assert.equal(c.opsAddress, '0.0.0.0:9090');
  assert.equal(c.tokenLifetimeSeconds, 3600);
  assert.equal(c.algorithm, 'RS256');
  // A new key waits out the JWKS the clouds cached (max-age 300) before it signs.
  assert.equal(c.discoveryMaxAgeSeconds, 300);
  assert.equal(c.keyActivationDelaySeconds, 360);
  assert.equal(c.rateLimit, undefined, 'the token endpoint then uses DEFAULT_RATE_LIMIT');
  assert.equal(
    parseIssuerConfig(GOOD.replace('keysDir:', 'discoveryMaxAgeSeconds: 3600\n  keysDir:')).issuer
      .keyActivationDelaySeconds,
    3660,
  );
  assert.equal(
    parseIssuerConfig(GOOD.replace('keysDir:', 'keyActivationDelaySeconds: 0\n  keysDir:')).issuer
      .keyActivationDelaySeconds,
    0,
    'an explicit value is kept',
  );
  const limited = parseIssuerConfig(
    GOOD.replace('keysDir:', 'rateLimit: { perClient: { burst: 5, perSecond: 0.1 } }\n  keysDir:'),
  ).issuer.rateLimit;
  assert.deepEqual(limited, { perClient: { burst: 5, perSecond: 0.1 }, overall: { burst: 500, perSecond: 100 } });
  assert.deepEqual(c.audiences, ['sts.amazonaws.com', 'api://AzureADTokenExchange']);
  assert.ok(Object.isFrozen(c));
  assert.equal(parseIssuerConfig(GOOD.replace('/spiffe', '')).issuer.url, 'https://oidc.example.org');
});

test('every problem is reported with its path', () => {
  const bad = `
issuer:
  url: http://oidc.example.org/x?y=1
  trustDomain: Example.ORG
  tls: { certFile: a }
  keysDir: k
  audiences: [a, a, " b"]
  tokenLifetimeSeconds: 100000
  algorithm: HS256
  extra: 1
`;
  assert.throws(
    () => parseIssuerConfig(bad, 'issuer.yaml'),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      const text = e.problems.join('\n');
      for (const path of [
        'issuer.url',
        'issuer.trustDomain',
        'issuer.bundleFile',
        'issuer.tls.keyFile',
        'issuer.audiences[1]',
        'issuer.audiences[2]',
        'issuer.tokenLifetimeSeconds',
        'issuer.algorithm',
        'issuer',
      ]) {
        assert.ok(
          e.problems.some((p) => p.startsWith(`${path}: `)),
          `${path} in\n${text}`,
        );
      }
      return true;
    },
  );
  assert.throws(
    () => parseIssuerConfig(GOOD.replace('https://oidc.example.org/spiffe', 'https://oidc.example.org/spiffe#x')),
    /issuer\.url: must have no query or fragment/,
  );
  assert.throws(
    () => parseIssuerConfig(GOOD.replace('[sts.amazonaws.com, api://AzureADTokenExchange]', '[]')),
    /issuer\.audiences: list at least one audience/,
  );
});

test('issuer.example.yaml is a valid config', async () => {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile(new URL('../../issuer.example.yaml', import.meta.url), 'utf8');
  const c = parseIssuerConfig(text, 'issuer.example.yaml').issuer;
  assert.equal(c.algorithm, 'RS256');
  assert.equal(c.audiences.length, 3);
});
