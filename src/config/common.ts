// Pieces every config schema shares: addresses, URLs, durations, and the loader that turns YAML
// into a validated, frozen value or a list of every problem with its path.
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { parseDocument } from 'yaml';
import { en } from 'zod/locales';
import * as z from 'zod/mini';
import { ConnectorError } from '../base/errors.ts';

// The schemas use zod's functional API (zod/mini): checks are values passed to .check(), wrappers are
// functions (z.optional, z._default, z.pipe), so the bundle holds only the parts used and every schema
// object stays small. zod/mini loads no locale: English, as zod's classic API does, for built-in messages
// (imported by name: `z.locales` would bundle every language).
z.config(en());

export const hostPort = z.string().check(
  z.superRefine((value, ctx) => {
    const parsed = parseHostPort(value);
    if (!parsed) ctx.addIssue({ code: 'custom', message: 'must be HOST:PORT (IPv6 as [::1]:PORT), port 0-65535' });
  }),
);

export const loopbackHostPort = hostPort.check(
  z.superRefine((value, ctx) => {
    const parsed = parseHostPort(value);
    if (parsed && !isLoopbackHost(parsed.host)) {
      ctx.addIssue({
        code: 'custom',
        message: 'must be a loopback address (127.0.0.0/8 or [::1]): the metadata endpoints are for this pod only',
      });
    }
  }),
);

export const httpsUrl = z.string().check(
  z.superRefine((value, ctx) => {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'must be an absolute URL' });
      return;
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) {
      ctx.addIssue({ code: 'custom', message: 'must be an https:// URL (http:// only for loopback hosts)' });
    }
  }),
);

/** The container-credentials token and the App Service identity header travel in an HTTP header. */
export const headerSecret = (min: number) =>
  z
    .string()
    .check(
      z.minLength(min, `must be at least ${min} characters`),
      z.maxLength(256, 'must be at most 256 characters'),
      z.regex(/^[A-Za-z0-9._~+/=-]+$/, 'must be letters, digits and ._~+/=- only (it travels in an HTTP header)'),
    );

/** The trust domain name, given bare or as spiffe://name. */
export const trustDomain = z.pipe(
  z.pipe(
    z.string({ error: 'is required' }),
    z.transform((s) => s.replace(/^spiffe:\/\//, '')),
  ),
  z
    .string()
    .check(z.regex(/^[a-z0-9._-]{1,255}$/, 'must be a trust domain name: lowercase letters, digits, ".", "_", "-"')),
);

/** A log level (pino's), default info. */
export const logLevel = z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

/** A Kubernetes container name (a DNS label): the keys of aws.containers and azure.containers. */
export const CONTAINER_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** The keys of a per-container section: container names, at most 32 of them. */
export function containerNames(
  value: Record<string, unknown>,
  ctx: { addIssue(issue: { code: 'custom'; path: PropertyKey[]; message: string }): void },
): void {
  const names = Object.keys(value);
  for (const name of names)
    if (!CONTAINER_NAME.test(name))
      ctx.addIssue({
        code: 'custom',
        path: [name],
        message: 'must be a container name: lowercase letters, digits and "-", at most 63',
      });
  if (names.length > 32) ctx.addIssue({ code: 'custom', path: [], message: 'at most 32 containers' });
}

export interface HostPort {
  host: string;
  port: number;
}

export function parseHostPort(value: string): HostPort | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  const host = m[1] ?? m[2];
  if (host === undefined || host === '') return undefined;
  if (m[1] !== undefined && isIP(m[1]) !== 6) return undefined;
  return { host, port };
}

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

/** Formats a zod issue path the way users read it: `aws.roleArn`, `issuer.audiences[1]`. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? '(root)' : out;
}

export class ConfigError extends ConnectorError {
  readonly problems: readonly string[];

  constructor(source: string, problems: string[]) {
    super(
      'config_invalid',
      `${source}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n  - ${problems.join('\n  - ')}`,
    );
    this.problems = problems;
  }
}

/** Validates a plain value against a schema; every issue is reported with its path. */
export function validate<S extends z.ZodMiniType>(schema: S, value: unknown, source: string): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${formatPath(issue.path)}: ${issue.message}`);
    throw new ConfigError(source, problems);
  }
  return deepFreeze(result.data);
}

/** Parses YAML text (every syntax error reported with its line) and validates it. */
export function parseYamlConfig<S extends z.ZodMiniType>(schema: S, text: string, source: string): z.output<S> {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map(
        (e) =>
          `line ${e.linePos?.[0]?.line ?? '?'}: ${(e.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '')}`,
      ),
    );
  }
  return validate(schema, doc.toJS() ?? {}, source);
}

export async function loadYamlConfig<S extends z.ZodMiniType>(schema: S, file: string): Promise<z.output<S>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError(file, [`cannot read the file: ${(error as NodeJS.ErrnoException).code ?? String(error)}`]);
  }
  return parseYamlConfig(schema, text, file);
}

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}
