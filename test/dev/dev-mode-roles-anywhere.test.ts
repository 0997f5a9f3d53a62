// `npm start` shows IAM Roles Anywhere too: the dev mode's second sidecar signs CreateSession at the Roles
// Anywhere stand-in with an SVID that has a subject, the AWS SDK gets those credentials with the env lines
// the banner names, and a rotation signs a new session.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fromHttp } from '@aws-sdk/credential-providers';
import { runDev } from '@spiffe-connector/dev/dev-mode.ts';
import { silentLogger } from '../../src/ops/logger.ts';
import { until } from '../helpers/until.ts';

test('the dev mode serves AWS through Roles Anywhere beside web identity, and rotates both', async (t) => {
  let printed = '';
  const dev = await runDev({
    metadataPort: 0,
    rotateSeconds: 3600,
    logger: silentLogger(),
    print: (text) => {
      printed += text;
    },
  });
  t.after(() => dev.close());
  const ra = dev.rolesAnywhere;
  assert.match(printed, /Roles Anywhere {2}http:\/\/127\.0\.0\.1:\d+ {4}a second sidecar/);
  assert.ok(printed.includes(ra.app.metadataOrigin));
  const env = Object.fromEntries(ra.env);
  const get = () =>
    fromHttp({
      awsContainerCredentialsFullUri: env['AWS_CONTAINER_CREDENTIALS_FULL_URI'] ?? '',
      awsContainerAuthorizationTokenFile: env['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'] ?? '',
    })();
  const first = await get();
  assert.equal(first.accessKeyId, ra.fake.sessions()[0]?.accessKeyId);
  assert.equal(ra.fake.sessions()[0]?.principalTags['x509SAN/URI'], 'spiffe://spiffe-connector.dev/ns/default/sa/app');
  assert.ok(dev.sts.stats.assumeRoleSuccesses >= 1, 'web identity is served as before');

  await dev.rotate();
  await until(() => ra.fake.stats.sessions >= 2, 'the rotated SVID to sign a second CreateSession', {
    timeoutMs: 60_000,
  });
  assert.equal(ra.fake.stats.sessions, 2, 'the rotated SVID signed exactly one new session');
  assert.notEqual(ra.fake.sessions()[1]?.serial, ra.fake.sessions()[0]?.serial);
});
