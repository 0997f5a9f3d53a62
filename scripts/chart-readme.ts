// Writes charts/spiffe-connector/README.md: the prose of charts/spiffe-connector/README.md.tpl with every
// value of values.yaml in a table (key, type, default, and the `# --` comment above it, as helm-docs reads
// them). test/chart/readme.test.ts fails when the committed README is not what this prints.
// Usage: node scripts/chart-readme.ts          (rewrite the README)
//        node scripts/chart-readme.ts --check  (exit 1 when it is out of date)
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { isMap, isScalar, isSeq, type Node, parseDocument, type YAMLMap } from 'yaml';

const CHART = fileURLToPath(new URL('../charts/spiffe-connector/', import.meta.url));
const MARKER = '{{ values }}';

export interface ValueRow {
  readonly key: string;
  readonly type: string;
  readonly default: string;
  readonly description: string;
}

/** The comment text of a key: `# -- text` lines (and their continuation lines) without the markers. */
function describe(comment: string | undefined): string {
  if (!comment) return '';
  const lines = comment.split('\n').map((l) => l.trim());
  const start = lines.findIndex((l) => l.startsWith('--'));
  const picked = start === -1 ? lines.slice(-1) : lines.slice(start);
  return picked
    .map((l) => l.replace(/^--\s*/, ''))
    .join(' ')
    .trim();
}

function typeOf(node: unknown): string {
  if (isMap(node)) return 'object';
  if (isSeq(node)) return 'list';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return 'null';
    if (typeof v === 'boolean') return 'bool';
    if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
    return 'string';
  }
  return 'string';
}

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const prose = (s: string): string => cell(s).replace(/</g, '&lt;');

/** One row per documented leaf (scalars, lists, empty maps, free-form maps such as resources). */
export function valueRows(valuesYaml: string): ValueRow[] {
  const doc = parseDocument(valuesYaml);
  const rows: ValueRow[] = [];
  const walk = (map: YAMLMap, path: string): void => {
    map.items.forEach((pair, i) => {
      const key = String((pair.key as { value?: unknown }).value ?? pair.key);
      const comment =
        (pair.key as { commentBefore?: string }).commentBefore ?? (i === 0 ? map.commentBefore : undefined);
      const value = pair.value as Node | null;
      const full = `${path}${key}`;
      const documented = comment?.split('\n').some((l) => l.trim().startsWith('--')) ?? false;
      if (isMap(value) && value.items.length > 0 && !documented) {
        walk(value, `${full}.`);
        return;
      }
      const json = JSON.stringify((value as { toJSON?: () => unknown } | null)?.toJSON?.() ?? null);
      rows.push({ key: full, type: typeOf(value), default: json, description: describe(comment ?? undefined) });
      // A documented map with documented keys below (image, serviceAccounts…) lists those too.
      if (
        isMap(value) &&
        value.items.some((p) => ((p.key as { commentBefore?: string | null }).commentBefore ?? '').includes('--'))
      ) {
        rows.pop();
        walk(value, `${full}.`);
      }
    });
  };
  walk(doc.contents as YAMLMap, '');
  return rows;
}

export async function renderChartReadme(): Promise<string> {
  const [template, values] = await Promise.all([
    readFile(`${CHART}README.md.tpl`, 'utf8'),
    readFile(`${CHART}values.yaml`, 'utf8'),
  ]);
  if (!template.includes(MARKER)) throw new Error(`README.md.tpl has no ${MARKER}`);
  const table = [
    '| Key | Type | Default | Description |',
    '| --- | --- | --- | --- |',
    ...valueRows(values).map((r) => `| \`${r.key}\` | ${r.type} | \`${cell(r.default)}\` | ${prose(r.description)} |`),
  ].join('\n');
  return template.replace(MARKER, table);
}

if (import.meta.main) {
  const text = await renderChartReadme();
  const target = `${CHART}README.md`;
  if (process.argv.includes('--check')) {
    const current = await readFile(target, 'utf8').catch(() => '');
    if (current !== text) {
      console.error('charts/spiffe-connector/README.md is out of date: run node scripts/chart-readme.ts');
      process.exit(1);
    }
  } else {
    await writeFile(target, text);
  }
}
