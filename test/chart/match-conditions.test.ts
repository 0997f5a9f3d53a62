// The MutatingWebhookConfiguration's matchConditions, as the API server runs them: the rendered CEL
// expressions evaluated (by @marcbachmann/cel-js, a CEL implementation of its own) against pods, with
// `object` the Pod. All conditions true: the webhook is called; any false: the pod is admitted without it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { evaluate } from '@marcbachmann/cel-js';
import { type Rendered, renderer } from './render.ts';

type Obj = Record<string, any>;

function conditions(r: Rendered): Array<{ name: string; expression: string }> {
  const mwc = r.documents.find((d) => (d.object as Obj)['kind'] === 'MutatingWebhookConfiguration');
  assert.ok(mwc);
  return (mwc.object as Obj)['webhooks'][0].matchConditions;
}

const sent = (r: Rendered, pod: Obj): boolean =>
  conditions(r).every((c) => evaluate(c.expression, { object: pod }) === true);

const pod = (metadata: Obj): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'p', namespace: 'shop', ...metadata },
  spec: { containers: [{ name: 'app', image: 'app:1' }] },
});

test('default matchConditions: only pods that mention inject (annotation or label, any value) reach the webhook', async (t) => {
  const r = await renderer();
  if ('skip' in r) return t.skip(r.skip);
  const rendered = await r.render();
  assert.equal(sent(rendered, pod({ annotations: { 'spiffe-connector.io/inject': 'true' } })), true);
  assert.equal(sent(rendered, pod({ labels: { 'spiffe-connector.io/inject': 'true' } })), true);
  assert.equal(
    sent(rendered, pod({ annotations: { 'spiffe-connector.io/inject': 'yes' } })),
    true,
    'a bad value reaches the webhook, which refuses it with a message',
  );
  assert.equal(sent(rendered, pod({})), false);
  assert.equal(sent(rendered, pod({ annotations: { 'example.com/other': 'x' }, labels: { app: 'a' } })), false);
  assert.equal(
    sent(rendered, pod({ annotations: { 'spiffe-connector.io/aws-role-arn': 'arn:aws:iam::1:role/a' } })),
    false,
    'only inject opts in',
  );
});

test('serviceAccounts.allPods: every pod reaches the webhook but those that opt out with inject "false"', async (t) => {
  const r = await renderer();
  if ('skip' in r) return t.skip(r.skip);
  const rendered = await r.render({ set: ['webhook.serviceAccounts.allPods=true'] });
  assert.equal(sent(rendered, pod({})), true, 'a pod with no annotations: its ServiceAccount may ask');
  assert.equal(sent(rendered, pod({ labels: { app: 'a' } })), true);
  assert.equal(sent(rendered, pod({ annotations: { 'spiffe-connector.io/inject': 'true' } })), true);
  assert.equal(sent(rendered, pod({ annotations: { 'spiffe-connector.io/inject': 'false' } })), false);
  assert.equal(sent(rendered, pod({ labels: { 'spiffe-connector.io/inject': 'false' } })), false);
});
