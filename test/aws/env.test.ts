// The env lines an app container gets for AWS (docs/aws.md#environment) and what `check` says.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cloudEnvironment } from '../../src/env.ts';
import { AWS_CONTAINER_TOKEN_FILE, awsEnv, describeAws } from '../../src/providers/aws/env.ts';
import { awsConfig } from './support.ts';

test('FULL_URI and TOKEN_FILE, IMDS endpoint when enabled, region; never RELATIVE_URI or TOKEN', () => {
  const config = awsConfig({
    stsEndpoint: 'https://sts.eu-west-1.amazonaws.com',
    stateDir: '/var/run/spiffe-connector',
  });
  assert.deepEqual(awsEnv(config, 'http://127.0.0.1:8181'), [
    ['AWS_CONTAINER_CREDENTIALS_FULL_URI', 'http://127.0.0.1:8181/v1/credentials'],
    ['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE', `/var/run/spiffe-connector/${AWS_CONTAINER_TOKEN_FILE}`],
    ['AWS_EC2_METADATA_SERVICE_ENDPOINT', 'http://127.0.0.1:8181'],
    ['AWS_REGION', 'eu-west-1'],
    ['AWS_DEFAULT_REGION', 'eu-west-1'],
  ]);
  const noImds = awsConfig({ stsEndpoint: 'https://sts.eu-west-1.amazonaws.com', stateDir: '/state/', imds: false });
  const names = awsEnv(noImds, 'http://127.0.0.1:8181/').map(([k]) => k);
  assert.ok(!names.includes('AWS_EC2_METADATA_SERVICE_ENDPOINT'));
  assert.ok(!names.includes('AWS_CONTAINER_CREDENTIALS_RELATIVE_URI'));
  assert.ok(!names.includes('AWS_CONTAINER_AUTHORIZATION_TOKEN'));
  assert.equal(
    Object.fromEntries(awsEnv(noImds, 'http://127.0.0.1:8181/'))['AWS_CONTAINER_CREDENTIALS_FULL_URI'],
    'http://127.0.0.1:8181/v1/credentials',
  );
  assert.deepEqual(cloudEnvironment('aws', noImds, 'http://127.0.0.1:8181/'), awsEnv(noImds, 'http://127.0.0.1:8181/'));
});

test('describe names the role, the STS endpoint, both surfaces and the IMDS caveat', () => {
  const config = awsConfig({ stsEndpoint: 'http://127.0.0.1:4566', stateDir: '/state' });
  const lines = describeAws(config, 'http://127.0.0.1:8181');
  assert.equal(lines.length, 3);
  assert.match(lines[0] ?? '', /arn:aws:iam::111122223333:role\/app.*sts\.amazonaws\.com.*http:\/\/127\.0\.0\.1:4566/);
  assert.match(lines[1] ?? '', /http:\/\/127\.0\.0\.1:8181\/v1\/credentials.*\/state\/aws-container-token/);
  assert.match(lines[2] ?? '', /IMDSv2.*any process in the pod/);
});
