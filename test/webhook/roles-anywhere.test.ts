// The webhook's IAM Roles Anywhere annotations: a pod names a trust anchor and a profile, and gets a
// sidecar that signs with its X.509-SVID, even in a cluster without the issuer.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseWebhookConfig } from '../../src/config/webhook.ts';
import { admitPod, type MutationResult } from '../../src/webhook/mutate.ts';
import type { Pod } from '../../src/webhook/pod.ts';

const P = 'spiffe-connector.io/';
const ANCHOR = 'arn:aws:rolesanywhere:eu-west-1:111122223333:trust-anchor/0f0e0d0c-0b0a-4909-8807-060504030201';
const PROFILE = 'arn:aws:rolesanywhere:eu-west-1:111122223333:profile/01020304-0506-4708-8900-0a0b0c0d0e0f';

const noIssuer = parseWebhookConfig(`
webhook: { tls: { certFile: /tls/tls.crt, keyFile: /tls/tls.key } }
sidecar: { image: registry.example/spiffe-connector:0.1.0 }
defaults:
  trustDomain: cluster.example
  aws: { region: eu-west-1 }
`);

function admit(annotations: Record<string, string>): MutationResult {
  const pod: Pod = {
    metadata: {
      name: 'p',
      annotations: {
        [`${P}inject`]: 'true',
        [`${P}aws-role-arn`]: 'arn:aws:iam::111122223333:role/app',
        ...annotations,
      },
    },
    spec: { containers: [{ name: 'app', image: 'app:1' }] },
  };
  return admitPod(pod, { config: noIssuer, randomSecret: () => 'per-pod-secret-0123456789' });
}

test('aws-trust-anchor-arn and aws-profile-arn give a Roles Anywhere sidecar without an issuer', () => {
  const r = admit({ [`${P}aws-trust-anchor-arn`]: ANCHOR, [`${P}aws-profile-arn`]: PROFILE });
  assert.equal(r.outcome, 'injected', r.outcome === 'denied' ? r.denied : '');
  if (r.outcome !== 'injected') return;
  assert.deepEqual(r.config.aws?.rolesAnywhere, { trustAnchorArn: ANCHOR, profileArn: PROFILE });
  assert.equal(r.config.spiffe.jwt, undefined);
  assert.ok(r.config.spiffe.x509);
});

test('half a Roles Anywhere setup, or a wrong ARN, is denied naming the annotation', () => {
  const missing = admit({ [`${P}aws-trust-anchor-arn`]: ANCHOR });
  assert.equal(missing.outcome, 'denied');
  assert.match(
    missing.outcome === 'denied' ? missing.denied : '',
    /spiffe-connector\.io\/aws-profile-arn: is required \(set it on the pod, or as the cluster default defaults\.aws\.rolesAnywhere\.profileArn\)/,
  );
  const wrong = admit({
    [`${P}aws-trust-anchor-arn`]: ANCHOR,
    [`${P}aws-profile-arn`]: 'arn:aws:iam::111122223333:role/app',
  });
  assert.match(
    wrong.outcome === 'denied' ? wrong.denied : '',
    /spiffe-connector\.io\/aws-profile-arn: must be a Roles Anywhere profile ARN/,
  );
  const web = admit({});
  assert.match(
    web.outcome === 'denied' ? web.denied : '',
    /aws-role-arn: AWS federation needs JWT-SVIDs, and this cluster has no issuer exchange/,
  );
});

test('a cluster-wide trust anchor default: the pod names only its role and profile', () => {
  const cluster = parseWebhookConfig(`
webhook: { tls: { certFile: /tls/tls.crt, keyFile: /tls/tls.key } }
sidecar: { image: registry.example/spiffe-connector:0.1.0 }
defaults:
  trustDomain: cluster.example
  aws: { region: eu-west-1, rolesAnywhere: { trustAnchorArn: "${ANCHOR}" } }
`);
  const pod: Pod = {
    metadata: {
      name: 'p',
      annotations: {
        [`${P}inject`]: 'true',
        [`${P}aws-role-arn`]: 'arn:aws:iam::111122223333:role/app',
        [`${P}aws-profile-arn`]: PROFILE,
      },
    },
    spec: { containers: [{ name: 'app', image: 'app:1' }] },
  };
  const r = admitPod(pod, { config: cluster, randomSecret: () => 'per-pod-secret-0123456789' });
  assert.equal(r.outcome, 'injected', r.outcome === 'denied' ? r.denied : '');
  if (r.outcome === 'injected')
    assert.deepEqual(r.config.aws?.rolesAnywhere, { trustAnchorArn: ANCHOR, profileArn: PROFILE });
  assert.equal(
    cluster.defaults.aws['rolesAnywhere'] &&
      (cluster.defaults.aws['rolesAnywhere'] as Record<string, unknown>)['profileArn'],
    undefined,
    'the defaults are not changed by a pod',
  );
});
