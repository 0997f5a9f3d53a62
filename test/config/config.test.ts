// The config contract: every problem reported at once with its path, YAML errors with their line,
// loopback-only metadata listener, config.example.yaml valid and documenting every key.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { ConfigError } from '../../src/config/common.ts';
import { parseSidecarConfig } from '../../src/config/load.ts';
import { sidecarSchema } from '../../src/config/schema.ts';

const MINIMAL = `
spiffe:
  trustDomain: example.org
  jwt: { file: /tokens/jwt }
aws:
  roleArn: arn:aws:iam::111122223333:role/app
  region: eu-west-1
`;

function problemsOf(text: string, env: Record<string, string> = {}): string[] {
  try {
    parseSidecarConfig(text, 'test.yaml', env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    return [...error.problems];
  }
  assert.fail('expected the config to be refused');
}

test('a minimal config gets the documented defaults and is frozen', () => {
  const config = parseSidecarConfig(MINIMAL);
  assert.equal(config.server.metadataAddress, '127.0.0.1:8181');
  assert.equal(config.server.opsAddress, '0.0.0.0:9090');
  assert.equal(
    config.server.metricsAddress,
    '127.0.0.1:9091',
    '/metrics stays on loopback while the probes are pod-wide',
  );
  assert.equal(config.server.stateDir, '/var/run/spiffe-connector');
  assert.equal(config.aws?.audience, 'sts.amazonaws.com');
  assert.equal(config.aws?.sessionDurationSeconds, 3600);
  assert.equal(config.aws?.imds, true);
  assert.equal(config.gcp, undefined, 'absent cloud stays absent');
  assert.ok(Object.isFrozen(config) && Object.isFrozen(config.aws));
});

test('every problem is listed at once, each with its path', () => {
  const problems = problemsOf(`
spiffe:
  trustDomain: Example.ORG
  jwt: { file: /t }
server:
  metadataAddress: 0.0.0.0:8181
aws:
  roleArn: arn:aws:iam::123:user/bob
  region: moon-1
  sessionDurationSeconds: 100
  stsEndpoint: ftp://sts
gcp:
  projectId: my-project
  projectNumber: "12a"
  workloadIdentityProvider: pools/x
azure:
  tenantId: not-a-guid
  clientId: 11111111-1111-1111-1111-111111111111
  bogus: 1
`);
  const expect = [
    /^spiffe\.trustDomain: must be a trust domain name/,
    /^server\.metadataAddress: must be a loopback address/,
    /^aws\.roleArn: must be an IAM role ARN/,
    /^aws\.region: must be an AWS region/,
    /^aws\.sessionDurationSeconds: must be at least 900/,
    /^aws\.stsEndpoint: must be an https:\/\/ URL/,
    /^gcp\.projectNumber: must be the numeric project number/,
    /^gcp\.workloadIdentityProvider: must be projects\/<number>/,
    /^azure\.tenantId: must be the directory \(tenant\) ID/,
    /^azure: Unrecognized key: "bogus"/,
  ];
  for (const pattern of expect)
    assert.ok(
      problems.some((p) => pattern.test(p)),
      `missing ${pattern}: got\n${problems.join('\n')}`,
    );
});

test('relationships between sections are checked with the section as path', () => {
  const problems = problemsOf(`
spiffe:
  trustDomain: example.org
  x509: { dir: /svid }
aws:
  roleArn: arn:aws:iam::111122223333:role/app
  region: eu-west-1
azure:
  tenantId: 00000000-0000-0000-0000-000000000000
  clientId: 11111111-1111-1111-1111-111111111111
`);
  assert.ok(problems.some((p) => p.startsWith('aws: AWS federation needs JWT-SVIDs')));
  assert.ok(problems.some((p) => p.startsWith('azure: Entra federation needs JWT-SVIDs')));
  assert.deepEqual(problemsOf('spiffe: { trustDomain: example.org, jwt: { file: /t } }\n'), [
    '(root): configure at least one cloud: aws, gcp or azure',
  ]);
  assert.ok(
    problemsOf(
      'spiffe: { trustDomain: example.org, jwt: { file: /a, exchange: { url: "https://i/token" } } }\naws: { roleArn: "arn:aws:iam::111122223333:role/a", region: eu-west-1 }\n',
    ).some((p) => p.startsWith('spiffe.jwt: set exactly one of file or exchange')),
  );
});

test('YAML syntax errors and duplicate keys name their line', () => {
  const problems = problemsOf('spiffe:\n  trustDomain: a\n  trustDomain: b\n');
  assert.match(problems[0] ?? '', /^line 3: /);
  assert.match(problemsOf('spiffe: [\n')[0] ?? '', /^line \d+: /);
});

test('SPIFFE_ENDPOINT_SOCKET names the Workload API only when no identity source is configured', () => {
  const base =
    'spiffe: { trustDomain: example.org }\naws: { roleArn: "arn:aws:iam::111122223333:role/a", region: eu-west-1 }\n';
  const config = parseSidecarConfig(base, 'env', { SPIFFE_ENDPOINT_SOCKET: 'unix:///run/spire/agent.sock' });
  assert.equal(config.spiffe.workloadApi?.socket, 'unix:///run/spire/agent.sock');
  const files = parseSidecarConfig(MINIMAL, 'env', { SPIFFE_ENDPOINT_SOCKET: 'unix:///run/spire/agent.sock' });
  assert.equal(files.spiffe.workloadApi, undefined);
  assert.ok(
    problemsOf(base, { SPIFFE_ENDPOINT_SOCKET: 'http://x' }).some((p) => p.startsWith('spiffe.workloadApi.socket:')),
  );
});

test('metricsAddress: with the probes when they are loopback, pod-wide only when configured', () => {
  const aws = 'aws: { roleArn: "arn:aws:iam::111122223333:role/a", region: eu-west-1 }\n';
  const of = (server: string) =>
    parseSidecarConfig(`spiffe: { trustDomain: example.org, jwt: { file: /t } }\nserver: ${server}\n${aws}`).server
      .metricsAddress;
  assert.equal(of('{ opsAddress: "0.0.0.0:9090" }'), '127.0.0.1:9091');
  assert.equal(of('{ opsAddress: "127.0.0.1:7000" }'), '127.0.0.1:7000');
  assert.equal(of('{ opsAddress: "0.0.0.0:9090", metricsAddress: "0.0.0.0:9090" }'), '0.0.0.0:9090');
  assert.equal(of('{ metricsAddress: "127.0.0.1:0" }'), '127.0.0.1:0');
});

test('config.example.yaml is valid and documents every key of the schema', async () => {
  const text = await readFile(new URL('../../config.example.yaml', import.meta.url), 'utf8');
  const config = parseSidecarConfig(text, 'config.example.yaml');
  assert.ok(config.aws && config.gcp && config.azure);
  const missing = schemaKeys(sidecarSchema).filter((key) => !new RegExp(`(^|\\s|#\\s*)${key}:`, 'm').test(text));
  assert.deepEqual(missing, [], `keys not documented in config.example.yaml: ${missing.join(', ')}`);
});

/** Every object key in a zod schema, depth first. */
function schemaKeys(schema: unknown, out: string[] = []): string[] {
  const def = (schema as { def?: Record<string, unknown> }).def;
  if (!def) return out;
  switch (def['type']) {
    case 'object':
      for (const [key, value] of Object.entries(def['shape'] as Record<string, unknown>)) {
        out.push(key);
        schemaKeys(value, out);
      }
      break;
    case 'optional':
    case 'default':
    case 'nullable':
    case 'readonly':
    case 'prefault':
      schemaKeys(def['innerType'], out);
      break;
    case 'pipe':
      schemaKeys(def['in'], out);
      schemaKeys(def['out'], out);
      break;
    case 'array':
      schemaKeys(def['element'], out);
      break;
  }
  return [...new Set(out)];
}
