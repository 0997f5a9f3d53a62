// The release: .github/workflows/release.yml linted by actionlint (built by scripts/install-tools.sh; the
// test skips, saying why, without it), the versions that must move together kept together, and the chart's
// default image being the one the workflow publishes.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { parseDocument } from 'yaml';

const run = promisify(execFile);
const ROOT = new URL('../../', import.meta.url).pathname;
const WORKFLOW = join(ROOT, '.github/workflows/release.yml');
const ACTIONLINT = join(ROOT, '.tools/bin/actionlint');

type Obj = Record<string, any>;
const yamlFile = async (path: string): Promise<Obj> => parseDocument(await readFile(path, 'utf8')).toJS() as Obj;

async function actionlint(): Promise<string | undefined> {
  for (const candidate of [ACTIONLINT, 'actionlint']) {
    try {
      if (candidate.startsWith('/')) await access(candidate);
      await run(candidate, ['-version'], { timeout: 30_000 });
      return candidate;
    } catch {
      // next
    }
  }
  return undefined;
}

async function lint(bin: string, file: string): Promise<{ ok: boolean; out: string }> {
  try {
    const { stdout } = await run(bin, ['-no-color', file], { timeout: 60_000 });
    return { ok: true, out: stdout };
  } catch (error) {
    return { ok: false, out: String((error as { stdout?: string }).stdout ?? error) };
  }
}

test('actionlint finds nothing wrong with the release workflow (and does find a broken copy wrong)', async (t) => {
  const bin = await actionlint();
  if (!bin)
    return t.skip(
      'no actionlint (bash scripts/install-tools.sh builds it into .tools/bin from the Go module proxy; it needs Go)',
    );
  const clean = await lint(bin, WORKFLOW);
  assert.ok(clean.ok, clean.out);
  const dir = await mkdtemp(join(tmpdir(), 'actionlint-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const broken = join(dir, 'release.yml');
  await writeFile(
    broken,
    (await readFile(WORKFLOW, 'utf8'))
      .replace('provenance: mode=max', 'provenence: mode=max')
      .replace('needs: [version, image]', 'needs: [version, imagee]'),
  );
  const bad = await lint(bin, broken);
  assert.equal(bad.ok, false);
  assert.match(bad.out, /provenence/);
  assert.match(bad.out, /imagee/);
});

test('package.json, Chart.yaml version and appVersion agree, and the default image tag is that version', async () => {
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const chart = await yamlFile(join(ROOT, 'charts/spiffe-connector/Chart.yaml'));
  const values = await yamlFile(join(ROOT, 'charts/spiffe-connector/values.yaml'));
  assert.match(pkg.version, /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/);
  assert.equal(chart['version'], pkg.version, 'Chart.yaml version');
  assert.equal(chart['appVersion'], pkg.version, 'Chart.yaml appVersion');
  assert.equal(values['image'].tag, '', 'the image tag defaults to appVersion (_helpers.tpl)');
  assert.equal(values['image'].digest, '');
});

test('the workflow publishes what the chart installs by default, for both architectures, attested and signed', async () => {
  const wf = await yamlFile(WORKFLOW);
  const values = await yamlFile(join(ROOT, 'charts/spiffe-connector/values.yaml'));
  assert.deepEqual(Object.keys(wf['on']), ['push']);
  assert.ok(
    wf['on'].push.tags.every((p: string) => p.startsWith('v')),
    'version tags only',
  );
  assert.equal(
    wf['env'].IMAGE,
    `${values['image'].registry}/${values['image'].repository}`,
    'values.yaml points at the image the workflow pushes',
  );
  assert.deepEqual(wf['permissions'], {}, 'nothing by default; each job asks for what it needs');

  // The version job refuses a tag that does not match the files.
  const check = wf['jobs'].version.steps.find((s: Obj) => s.id === 'version').run as string;
  for (const needle of ['package.json', 'Chart.yaml', 'appVersion']) assert.ok(check.includes(needle), needle);

  const image = wf['jobs'].image;
  assert.deepEqual(image.needs, ['version', 'test']);
  assert.equal(image.permissions['id-token'], 'write', 'keyless signing needs the OIDC token');
  assert.equal(image.permissions.packages, 'write');
  const build = image.steps.find((s: Obj) => String(s.uses).startsWith('docker/build-push-action@'));
  assert.deepEqual(build.with.platforms.split(','), ['linux/amd64', 'linux/arm64']);
  assert.equal(build.with.sbom, true);
  assert.equal(build.with.provenance, 'mode=max');
  assert.equal(build.with.push, true);
  const meta = image.steps.find((s: Obj) => String(s.uses).startsWith('docker/metadata-action@'));
  assert.match(
    meta.with.tags,
    /type=semver,pattern=\{\{version\}\}/,
    'the image tag is the bare version, as appVersion',
  );
  assert.ok(
    image.steps.some((s: Obj) => /cosign sign --yes "\$\{IMAGE\}@\$\{DIGEST\}"/.test(s.run ?? '')),
    'the pushed digest is signed',
  );

  const chart = wf['jobs'].chart;
  assert.deepEqual(chart.needs, ['version', 'image']);
  const push = chart.steps.find((s: Obj) => /helm push/.test(s.run ?? '')).run as string;
  assert.match(push, /helm package charts\/spiffe-connector --version "\$VERSION" --app-version "\$VERSION"/);
  assert.match(push, /cosign sign --yes/);
  assert.match(wf['env'].CHART_REPOSITORY, /^oci:\/\//);

  // The README installs from where the workflow pushes.
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  assert.ok(readme.includes(`${wf['env'].CHART_REPOSITORY}/spiffe-connector`), 'README installs the released chart');
  assert.ok(
    readme.includes(`${values['image'].registry}/${values['image'].repository}`),
    'README names the released image',
  );
});
