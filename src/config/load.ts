// Reads the sidecar config once at start: the YAML file, plus SPIFFE_ENDPOINT_SOCKET, which the
// SPIFFE Workload Endpoint spec says clients fall back to. The only module that reads process.env.
import * as z from 'zod/mini';
import { loadYamlConfig, parseYamlConfig, validate } from './common.ts';
import { type SidecarConfig, sidecarSchema } from './schema.ts';

export type Environment = Readonly<Record<string, string | undefined>>;

const anything = z.unknown();

/**
 * With no identity source in the file, SPIFFE_ENDPOINT_SOCKET names the Workload API (docs/spiffe.md#endpoint-address).
 */
function applyEnvironment(raw: unknown, env: Environment): unknown {
  const socket = env['SPIFFE_ENDPOINT_SOCKET'];
  if (!socket || raw === null || typeof raw !== 'object') return raw;
  const config = structuredClone(raw) as Record<string, unknown>;
  const spiffe = config['spiffe'];
  if (spiffe && typeof spiffe === 'object') {
    const s = spiffe as Record<string, unknown>;
    if (s['x509'] === undefined && s['jwt'] === undefined && s['workloadApi'] === undefined)
      s['workloadApi'] = { socket };
  }
  return config;
}

export async function loadSidecarConfig(file: string, env: Environment = process.env): Promise<SidecarConfig> {
  const raw = await loadYamlConfig(anything, file);
  return validate(sidecarSchema, applyEnvironment(raw, env), file);
}

export function parseSidecarConfig(text: string, source = 'config', env: Environment = {}): SidecarConfig {
  const raw = parseYamlConfig(anything, text, source);
  return validate(sidecarSchema, applyEnvironment(raw, env), source);
}

/** The environment variable that carries the whole config as YAML (set by the admission webhook). */
export const CONFIG_ENV = 'SPIFFE_CONNECTOR_CONFIG';

/** The config from `--config FILE`, else from SPIFFE_CONNECTOR_CONFIG; undefined when neither is given. */
export async function loadSidecarConfigFrom(
  file: string | undefined,
  env: Environment,
): Promise<SidecarConfig | undefined> {
  if (file !== undefined) return loadSidecarConfig(file, env);
  const inline = env[CONFIG_ENV];
  if (inline !== undefined && inline.trim() !== '') return parseSidecarConfig(inline, CONFIG_ENV, env);
  return undefined;
}

/** The process environment, read here and passed down (STYLE habit 3). */
export function processEnvironment(): Environment {
  return process.env;
}
