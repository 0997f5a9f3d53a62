// Renders charts/spiffe-connector with Helm itself: `helm template` for the objects, `helm install
// --dry-run=client` for NOTES.txt, `helm lint --strict`. The helm binary is the one scripts/install-tools.sh
// builds into .tools/bin (pinned there), or else `helm` on the PATH; without either, `renderer()` says why
// so the chart tests can skip. Helm's own directories point into a temporary one: nothing of the user's is read.
import { execFile } from 'node:child_process';
import { access, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';

const run = promisify(execFile);

export const CHART_DIR = new URL('../../charts/spiffe-connector/', import.meta.url).pathname;
const PINNED = new URL('../../.tools/bin/helm', import.meta.url).pathname;

export interface RenderedDocument {
  /** The template the object came from, e.g. spiffe-connector/templates/webhook-deployment.yaml. */
  readonly template: string;
  readonly object: Record<string, unknown>;
}

export interface Rendered {
  readonly documents: readonly RenderedDocument[];
  readonly notes: string;
  /** The manifest exactly as Helm printed it (for byte-for-byte comparisons). */
  readonly text: string;
}

export interface RenderOptions {
  readonly valuesFiles?: readonly string[];
  readonly set?: readonly string[];
  readonly release?: string;
  readonly namespace?: string;
  /** Capabilities.KubeVersion (helm's default otherwise). */
  readonly kubeVersion?: string;
  /** Extra Capabilities.APIVersions, e.g. monitoring.coreos.com/v1. */
  readonly apiVersions?: readonly string[];
  /** Also render NOTES.txt (a second helm run). */
  readonly notes?: boolean;
}

export interface Renderer {
  readonly helm: string;
  readonly version: string;
  render(options?: RenderOptions): Promise<Rendered>;
  lint(options?: Pick<RenderOptions, 'valuesFiles' | 'set' | 'kubeVersion'>): Promise<string>;
}

async function works(helm: string): Promise<string | undefined> {
  try {
    const { stdout } = await run(helm, ['version', '--short'], { timeout: 30_000 });
    return stdout.trim();
  } catch {
    return undefined;
  }
}

let built: Promise<Renderer | { skip: string }> | undefined;

export function renderer(): Promise<Renderer | { skip: string }> {
  built ??= find();
  return built;
}

async function find(): Promise<Renderer | { skip: string }> {
  let helm: string | undefined;
  let version: string | undefined;
  try {
    await access(PINNED);
    version = await works(PINNED);
    if (version) helm = PINNED;
  } catch {
    // not built here
  }
  if (!helm) {
    version = await works('helm');
    if (version) helm = 'helm';
  }
  if (!helm || !version)
    return {
      skip: 'no helm (bash scripts/install-tools.sh builds it into .tools/bin from the Go module proxy; it needs Go)',
    };
  const home = await mkdtemp(join(tmpdir(), 'helm-home-'));
  const env = {
    PATH: process.env['PATH'] ?? '',
    HOME: home,
    HELM_CONFIG_HOME: join(home, 'config'),
    HELM_CACHE_HOME: join(home, 'cache'),
    HELM_DATA_HOME: join(home, 'data'),
    KUBECONFIG: join(home, 'no-kubeconfig'),
  };
  const binary = helm;
  const common = (options: RenderOptions): string[] => {
    const args: string[] = [];
    for (const f of options.valuesFiles ?? []) args.push('-f', f);
    for (const s of options.set ?? []) args.push('--set', s);
    return args;
  };
  const helmRun = async (args: string[]): Promise<string> => {
    try {
      const { stdout } = await run(binary, args, { env, maxBuffer: 64 * 1024 * 1024, timeout: 120_000 });
      return stdout;
    } catch (error) {
      const e = error as { stderr?: string; stdout?: string };
      throw new Error(`helm ${args[0]} failed: ${(e.stderr || e.stdout || String(error)).trim()}`);
    }
  };
  return {
    helm: binary,
    version,
    async render(options = {}) {
      const release = options.release ?? 'spiffe-connector';
      const namespace = options.namespace ?? 'spiffe-connector';
      const args = ['template', release, CHART_DIR, '--namespace', namespace, ...common(options)];
      if (options.kubeVersion) args.push('--kube-version', options.kubeVersion);
      for (const v of options.apiVersions ?? []) args.push('--api-versions', v);
      const text = await helmRun(args);
      const documents: RenderedDocument[] = [];
      for (const doc of parseAllDocuments(text)) {
        if (doc.errors.length > 0) throw new Error(`helm printed invalid YAML: ${doc.errors[0]?.message}`);
        const object = doc.toJS() as Record<string, unknown> | null;
        if (object === null) continue;
        const source = /# Source: (\S+)/.exec(doc.commentBefore ?? '')?.[1] ?? '';
        documents.push({ template: source, object });
      }
      let notes = '';
      if (options.notes) {
        const json = await helmRun([
          'install',
          release,
          CHART_DIR,
          '--namespace',
          namespace,
          '--dry-run=client',
          '--output',
          'json',
          ...common(options),
        ]);
        notes = (JSON.parse(json) as { info?: { notes?: string } }).info?.notes ?? '';
      }
      return { documents, notes, text };
    },
    async lint(options = {}) {
      const args = ['lint', '--strict', CHART_DIR, ...common(options)];
      if (options.kubeVersion) args.push('--kube-version', options.kubeVersion);
      return helmRun(args);
    },
  };
}
