// The webhook config: defaults filled in, every problem reported with its path, cloud defaults checked
// by each cloud's own schema but kept as written.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError } from '../../src/config/common.ts';
import { loadWebhookConfig, parseWebhookConfig } from '../../src/config/webhook.ts';

test('a minimal config gets the documented defaults', () => {
  const c = parseWebhookConfig(
    'webhook: { tls: { certFile: /c, keyFile: /k } }\nsidecar: { image: img }\ndefaults: { trustDomain: spiffe://example.org }\n',
  );
  assert.equal(c.webhook.address, '0.0.0.0:8443');
  assert.equal(c.webhook.annotationPrefix, 'spiffe-connector.io/');
  assert.equal(c.sidecar.name, 'spiffe-connector');
  assert.equal(c.sidecar.runAsUser, 65532);
  assert.equal(c.defaults.trustDomain, 'example.org');
  assert.equal(c.defaults.metadataPort, 8181);
  assert.equal(c.defaults.csi.driver, 'spiffe.csi.cert-manager.io');
  assert.deepEqual(c.defaults.aws, {});
  assert.ok(Object.isFrozen(c.defaults));
});

test('cloud defaults are kept as written (the sidecar applies its own defaults)', () => {
  const c = parseWebhookConfig(
    'webhook: { tls: { certFile: /c, keyFile: /k } }\nsidecar: { image: img }\ndefaults: { trustDomain: example.org, gcp: { projectId: my-project } }\n',
  );
  assert.deepEqual(c.defaults.gcp, { projectId: 'my-project' });
});

test('every problem is listed with its path', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'webhook-config-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'webhook.yaml');
  await writeFile(
    file,
    `webhook:
  tls: { certFile: /c }
  annotationPrefix: Spiffe
sidecar:
  image: img
  runAsUser: 0
  resources: { limits: { memory: lots } }
defaults:
  trustDomain: example.org
  aws: { roleArn: "arn:aws:iam::111122223333:role/x", region: moon-1 }
  azure: { tenantId: nope }
  extra: 1
`,
  );
  await assert.rejects(loadWebhookConfig(file), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.deepEqual(error.problems, [
      'webhook.tls.keyFile: is required',
      'webhook.annotationPrefix: must be a DNS subdomain followed by "/", such as spiffe-connector.io/',
      'sidecar.resources.limits.memory: must be a Kubernetes quantity such as 100m or 64Mi',
      'sidecar.runAsUser: must not be 0: the sidecar runs as non-root',
      'defaults.aws.region: must be an AWS region such as eu-west-1',
      'defaults.aws: Unrecognized key: "roleArn"',
      'defaults.azure.tenantId: must be the directory (tenant) ID, a GUID',
      'defaults: Unrecognized key: "extra"',
    ]);
    return true;
  });
});

test('docs/webhook.md lists every annotation the webhook reads', async () => {
  const { readFile } = await import('node:fs/promises');
  const { ANNOTATIONS } = await import('../../src/webhook/annotations.ts');
  const doc = await readFile(new URL('../../docs/webhook.md', import.meta.url), 'utf8');
  for (const a of ANNOTATIONS) assert.ok(doc.includes(`| \`spiffe-connector.io/${a.name}\` |`), a.name);
});
