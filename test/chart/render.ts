// Renders charts/spiffe-connector as Helm does, with test/chart/render/main.go (Go text/template +
// sprig + Helm's functions) built here with Debian's golang-go and golang-github-masterminds-sprig-dev.
// When that toolchain is absent, `renderer()` says why so the chart tests can skip.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const CHART_DIR = new URL('../../charts/spiffe-connector/', import.meta.url).pathname;
const SOURCE = new URL('./render/main.go', import.meta.url);
/** Debian's Go library tree (GOPATH layout). */
const GOCODE = '/usr/share/gocode';
const NEEDED = ['src/github.com/Masterminds/sprig/go.mod', 'src/sigs.k8s.io/yaml/yaml.go'];

export interface RenderedDocument {
  readonly template: string;
  readonly object: Record<string, unknown>;
}

export interface Rendered {
  readonly documents: readonly RenderedDocument[];
  readonly notes: string;
}

export interface RenderOptions {
  readonly valuesFiles?: readonly string[];
  readonly release?: string;
  readonly namespace?: string;
}

export interface Renderer {
  render(options?: RenderOptions): Promise<Rendered>;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

async function findGo(): Promise<string | undefined> {
  for (const candidate of ['go', '/usr/lib/go/bin/go', '/usr/local/go/bin/go']) {
    try {
      await run(candidate, ['version']);
      return candidate;
    } catch {
      // next
    }
  }
  return undefined;
}

let built: Promise<Renderer | { skip: string }> | undefined;

/** Builds the renderer once per process (and once per source version on this machine). */
export function renderer(): Promise<Renderer | { skip: string }> {
  built ??= build();
  return built;
}

async function build(): Promise<Renderer | { skip: string }> {
  const go = await findGo();
  if (!go) return { skip: 'no Go toolchain (apt-get install golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev)' };
  for (const file of NEEDED) {
    if (!(await exists(join(GOCODE, file)))) return { skip: `${GOCODE}/${file} is missing (apt-get install golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev)` };
  }
  const source = await readFile(SOURCE, 'utf8');
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const root = join(tmpdir(), `spiffe-connector-chart-render-${hash}`);
  const binary = join(root, 'bin', 'render');
  if (!(await exists(binary))) {
    // GOPATH mode over Debian's tree; the go.mod marks the program as module-aware code so that
    // imports like github.com/Masterminds/sprig/v3 resolve to the /v3-less directory (minimal module compatibility).
    const pkg = join(root, 'src', 'chartrender');
    await mkdir(pkg, { recursive: true });
    await writeFile(join(pkg, 'main.go'), source);
    await writeFile(join(pkg, 'go.mod'), 'module chartrender\n\ngo 1.19\n');
    await run(go, ['build', '-o', binary, '.'], {
      cwd: pkg,
      env: { ...process.env, GO111MODULE: 'off', GOPATH: `${root}:${GOCODE}`, GOFLAGS: '', GOCACHE: join(tmpdir(), 'spiffe-connector-go-cache') },
      timeout: 300_000,
    });
  }
  return {
    async render(options = {}) {
      const args = ['-chart', CHART_DIR, '-name', options.release ?? 'spiffe-connector', '-namespace', options.namespace ?? 'spiffe-connector'];
      for (const f of options.valuesFiles ?? []) args.push('-f', f);
      try {
        const { stdout } = await run(binary, args, { maxBuffer: 64 * 1024 * 1024 });
        return JSON.parse(stdout) as Rendered;
      } catch (error) {
        const stderr = (error as { stderr?: string }).stderr ?? String(error);
        throw new Error(`helm-style render failed: ${stderr.trim()}`);
      }
    },
  };
}
