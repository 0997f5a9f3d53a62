// Validates Kubernetes objects against the OpenAPI schemas that kubernetes-models (and its cert-manager
// and prometheus-operator packages) ship: types, required fields and enums by the models' JSON-schema validators, and unknown
// fields (what `kubectl`/Helm's strict validation refuses) by walking the models' type declarations.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import ts from 'typescript';

const require = createRequire(import.meta.url);

interface Located {
  readonly module: string;
  readonly kind: string;
}

/** apiVersion + kind → the model module: `apps/v1` → kubernetes-models/apps/v1/Deployment. */
function locate(apiVersion: string, kind: string): Located {
  const pkg = /(^|\.)cert-manager\.io\//.test(apiVersion)
    ? '@kubernetes-models/cert-manager'
    : /^monitoring\.coreos\.com\//.test(apiVersion)
      ? '@kubernetes-models/prometheus-operator'
      : 'kubernetes-models';
  return { module: `${pkg}/${apiVersion}/${kind}`, kind };
}

function packageDir(name: string): string {
  return dirname(require.resolve(`${name}/package.json`));
}

function declarationFile(module: string): string {
  const pkg = module.startsWith('@') ? module.split('/').slice(0, 2).join('/') : (module.split('/')[0] ?? module);
  return join(packageDir(pkg), `${module.slice(pkg.length + 1)}.d.ts`);
}

let program: { checker: ts.TypeChecker; files: Map<string, ts.SourceFile> } | undefined;
const programFiles = new Set<string>();
let previous: ts.Program | undefined;

function typeOf(module: string, kind: string): ts.Type {
  const file = declarationFile(module);
  if (!program?.files.has(file)) {
    programFiles.add(file);
    buildProgram();
  }
  const sf = program?.files.get(file);
  const moduleSymbol = sf && program?.checker.getSymbolAtLocation(sf);
  const iface = moduleSymbol && program?.checker.getExportsOfModule(moduleSymbol).find((s) => s.name === `I${kind}`);
  if (!iface || !program) throw new Error(`${module} declares no I${kind}`);
  return program.checker.getDeclaredTypeOfSymbol(iface);
}

/** One type-checker program over every model declaration asked for so far. */
function buildProgram(): void {
  const p = ts.createProgram(
    [...programFiles],
    {
      module: ts.ModuleKind.ESNext,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      target: ts.ScriptTarget.ES2022,
      noEmit: true,
      skipLibCheck: true,
      types: [],
    },
    undefined,
    previous,
  );
  previous = p;
  const files = new Map<string, ts.SourceFile>();
  for (const f of programFiles) {
    const sf = p.getSourceFile(f);
    if (!sf) throw new Error(`cannot load ${f}`);
    files.set(f, sf);
  }
  program = { checker: p.getTypeChecker(), files };
}

/** Loads the declarations of every kind in `objects` at once (one program instead of one per new kind). */
export async function preloadSchemas(objects: readonly unknown[]): Promise<void> {
  let added = false;
  for (const o of objects) {
    const { apiVersion, kind } = (o ?? {}) as { apiVersion?: unknown; kind?: unknown };
    if (typeof apiVersion !== 'string' || typeof kind !== 'string') continue;
    const file = declarationFile(locate(apiVersion, kind).module);
    if (!programFiles.has(file)) {
      programFiles.add(file);
      added = true;
    }
  }
  if (added) buildProgram();
}

function unknownFields(checker: ts.TypeChecker, value: unknown, type: ts.Type, path: string, out: string[]): void {
  if (value === null || typeof value !== 'object') return;
  let t = checker.getNonNullableType(type);
  if (t.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return;
  if (t.isUnion()) {
    const objects = t.types.filter((u) => u.flags & ts.TypeFlags.Object);
    if (objects.length !== 1 || !objects[0]) return;
    t = objects[0];
  }
  if (Array.isArray(value)) {
    if (!checker.isArrayType(t)) {
      out.push(`${path}: is a list where the schema has an object`);
      return;
    }
    const element = checker.getTypeArguments(t as ts.TypeReference)[0];
    if (element) for (const [i, v] of value.entries()) unknownFields(checker, v, element, `${path}[${i}]`, out);
    return;
  }
  const index = checker.getIndexInfoOfType(t, ts.IndexKind.String);
  for (const [key, v] of Object.entries(value)) {
    const prop = t.getProperty(key);
    const where = path === '' ? key : `${path}.${key}`;
    if (prop) unknownFields(checker, v, checker.getTypeOfSymbol(prop), where, out);
    else if (index) unknownFields(checker, v, index.type, where, out);
    else out.push(`${where}: unknown field`);
  }
}

interface Validatable {
  validate(): void;
}

/** Every problem with one object, as `Kind name: path: message`; empty when the API server would accept its shape. */
export async function validateK8sObject(object: unknown): Promise<string[]> {
  if (typeof object !== 'object' || object === null) return ['not an object'];
  const o = object as { apiVersion?: unknown; kind?: unknown; metadata?: { name?: unknown } };
  if (typeof o.apiVersion !== 'string' || typeof o.kind !== 'string') return ['apiVersion and kind are required'];
  const label = `${o.kind} ${typeof o.metadata?.name === 'string' ? o.metadata.name : '(unnamed)'}`;
  const { module, kind } = locate(o.apiVersion, o.kind);
  let Model: new (data: unknown) => Validatable;
  try {
    Model = ((await import(module)) as Record<string, new (data: unknown) => Validatable>)[kind] as new (
      data: unknown,
    ) => Validatable;
  } catch {
    return [`${label}: no schema for ${o.apiVersion} ${o.kind}`];
  }
  const problems: string[] = [];
  try {
    new Model(object).validate();
  } catch (error) {
    const errors = (error as { errors?: Array<{ instancePath: string; message?: string; params?: unknown }> }).errors;
    if (errors)
      for (const e of errors)
        problems.push(
          `${label}: ${e.instancePath || '/'}: ${e.message ?? 'invalid'} ${JSON.stringify(e.params ?? {})}`,
        );
    else problems.push(`${label}: ${(error as Error).message}`);
  }
  const fields: string[] = [];
  const type = typeOf(module, kind);
  if (program) unknownFields(program.checker, object, type, '', fields);
  problems.push(...fields.map((f) => `${label}: ${f}`));
  return problems;
}
