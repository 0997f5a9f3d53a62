// charts/spiffe-connector/README.md is generated from values.yaml and README.md.tpl (scripts/chart-readme.ts):
// it must be what the generator prints now, so no value goes undocumented or keeps an old default.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { parseDocument } from 'yaml';
import { renderChartReadme, valueRows } from '../../scripts/chart-readme.ts';

const CHART = new URL('../../charts/spiffe-connector/', import.meta.url);

test('the chart README is current (node scripts/chart-readme.ts rewrites it)', async () => {
  const committed = await readFile(new URL('README.md', CHART), 'utf8');
  assert.ok(
    committed === (await renderChartReadme()),
    'charts/spiffe-connector/README.md is out of date: run node scripts/chart-readme.ts',
  );
});

test('every value has a row with its default and a description', async () => {
  const text = await readFile(new URL('values.yaml', CHART), 'utf8');
  const rows = valueRows(text);
  const values = parseDocument(text).toJS() as Record<string, any>;
  const at = (key: string): unknown => key.split('.').reduce((o: any, k) => o?.[k], values);
  for (const key of [
    'image.registry',
    'webhook.serviceAccounts.enabled',
    'webhook.matchConditions',
    'sidecar.resources',
    'issuer.keys.source',
    'metrics.serviceMonitor.enabled',
    'openshift',
  ]) {
    const row = rows.find((r) => r.key === key);
    assert.ok(row, key);
    assert.deepEqual(JSON.parse(row.default), at(key), `${key} default`);
    assert.ok(row.description.length > 10, `${key} is described`);
  }
  for (const r of rows) assert.notEqual(r.description, '', `${r.key} has a description`);
});
