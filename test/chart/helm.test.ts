// Helm's own checks of the chart: `helm lint --strict` with every values file, renders that are the same
// byte for byte (nothing random, no cluster lookups: GitOps tools and `helm template` get what `helm
// install` gets), the Kubernetes versions Chart.yaml supports, and the matchConditions default and guard.

import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { type Rendered, renderer } from './render.ts';

type Obj = Record<string, any>;

const EXAMPLES = new URL('../../examples/', import.meta.url).pathname;
const valuesFiles = async (): Promise<string[]> => [
  ...(await readdir(EXAMPLES))
    .filter((f) => /^values-.*\.yaml$/.test(f))
    .sort()
    .map((f) => join(EXAMPLES, f)),
  new URL('./values/everything.yaml', import.meta.url).pathname,
  new URL('./values/openshift.yaml', import.meta.url).pathname,
];

function hook(r: Rendered): Obj {
  const mwc = r.documents.find((d) => (d.object as Obj)['kind'] === 'MutatingWebhookConfiguration');
  assert.ok(mwc, 'a MutatingWebhookConfiguration');
  return (mwc.object as Obj)['webhooks'][0];
}

test('helm lint --strict passes with the defaults and every values file', async (t) => {
  const r = await renderer();
  if ('skip' in r) return t.skip(r.skip);
  const out = await r.lint();
  assert.match(out, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  for (const f of await valuesFiles()) assert.match(await r.lint({ valuesFiles: [f] }), /0 chart\(s\) failed/, f);
});

test('two renders are byte-identical (no generated keys, no lookup, no timestamps)', async (t) => {
  const r = await renderer();
  if ('skip' in r) return t.skip(r.skip);
  for (const files of [[], ...(await valuesFiles()).map((f) => [f])]) {
    const a = await r.render({ valuesFiles: files });
    const b = await r.render({ valuesFiles: files });
    assert.ok(a.text.length > 1000);
    assert.equal(a.text, b.text, `renders differ with ${files.join(' ') || 'the defaults'}`);
  }
});

test('the chart installs on the Kubernetes versions Chart.yaml names, and refuses older ones', async (t) => {
  const r = await renderer();
  if ('skip' in r) return t.skip(r.skip);
  for (const v of ['1.29.0', '1.30.4', '1.33.1', '1.35.0']) {
    const rendered = await r.render({ kubeVersion: v });
    assert.ok(hook(rendered).matchConditions, `matchConditions on with "auto" on ${v}`);
  }
  await assert.rejects(r.render({ kubeVersion: '1.28.9' }), /kubeVersion|incompatible|not compatible/i);
});

test('matchConditions: auto, true and false; off with failurePolicy Fail and no objectSelector is refused with the reason', async (t) => {
  const r = await renderer();
  if ('skip' in r) return t.skip(r.skip);
  const expression = (x: Rendered): string => hook(x).matchConditions[0].expression;
  assert.match(expression(await r.render()), /'spiffe-connector\.io\/inject' in object\.metadata\.annotations/);
  assert.match(expression(await r.render({ set: ['webhook.matchConditions=true'] })), /inject/);
  await assert.rejects(
    r.render({ set: ['webhook.matchConditions=false'] }),
    /every pod of every namespace not excluded would wait on the webhook/,
  );
  // An objectSelector, Ignore, or allPods (said on purpose) lift the guard.
  const selected = await r.render({
    set: ['webhook.matchConditions=false', 'webhook.objectSelector.matchLabels.team=payments'],
  });
  assert.equal(hook(selected).matchConditions, undefined);
  assert.equal(
    hook(await r.render({ set: ['webhook.matchConditions=false', 'webhook.failurePolicy=Ignore'] })).matchConditions,
    undefined,
  );
  // A ServiceAccount lookup that may outlast the API server's patience for the webhook is refused too.
  await assert.rejects(
    r.render({ set: ['webhook.timeoutSeconds=2'] }),
    /serviceAccounts\.timeoutSeconds must be shorter than webhook\.timeoutSeconds/,
  );
  await r.render({ set: ['webhook.timeoutSeconds=3'] });
  // allPods: every pod reaches the webhook except those that opt out; its ServiceAccount may ask for injection.
  const all = await r.render({ set: ['webhook.serviceAccounts.allPods=true'] });
  assert.match(expression(all), /== 'false'/);
  assert.doesNotMatch(expression(all), /\|\|/);
});
