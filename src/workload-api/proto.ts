// The vendored Workload API proto loaded for @grpc/grpc-js, the SSRF header, and the wire shapes each
// side reads, with their type guards (SPIFFE_Workload_API.md; proto/workload.proto, no `package`).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

/** docs/spiffe.md#workload-api (the security header): every request carries `workload.spiffe.io: true`. */
export const SECURITY_HEADER = 'workload.spiffe.io';
export const SECURITY_HEADER_VALUE = 'true';
/** SPIRE's wording (spire pkg/agent/endpoints/middleware.go), answered with InvalidArgument. */
export const SECURITY_HEADER_MISSING = 'security header missing from request';

/**
 * proto/workload.proto of the package: looked for upwards from this module's directory, which is
 * src/workload-api/ when run from source and dist/chunks/ (or dist/) in the bundle the build makes.
 */
function protoFile(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = dirname(dir)) {
    const candidate = join(dir, 'proto', 'workload.proto');
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) throw new Error(`proto/workload.proto not found above ${start}`);
  }
}

export interface WorkloadApiDefinition {
  readonly service: grpc.ServiceDefinition;
  readonly Client: grpc.ServiceClientConstructor;
}

let loaded: WorkloadApiDefinition | undefined;

/**
 * Loads proto/workload.proto once. google/protobuf/struct.proto is one of the well-known types
 * protobufjs (under @grpc/proto-loader) carries built in, so no includeDirs are needed.
 */
export function workloadApiDefinition(): WorkloadApiDefinition {
  if (loaded) return loaded;
  const file = protoFile();
  const packageDefinition = loadSync(file, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const Client = grpc.loadPackageDefinition(packageDefinition)['SpiffeWorkloadAPI'];
  if (typeof Client !== 'function' || !('service' in Client))
    throw new Error(`${file} defines no SpiffeWorkloadAPI service`);
  const ctor = Client as grpc.ServiceClientConstructor;
  loaded = { service: ctor.service, Client: ctor };
  return loaded;
}

/** Call metadata carrying the security header; sent on every call. */
export function securityMetadata(): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set(SECURITY_HEADER, SECURITY_HEADER_VALUE);
  return metadata;
}

/** True when the call carries `workload.spiffe.io: true` (the value compared exactly, as SPIRE does). */
export function hasSecurityHeader(metadata: grpc.Metadata): boolean {
  const values = metadata.get(SECURITY_HEADER);
  return values.length === 1 && values[0] === SECURITY_HEADER_VALUE;
}

// ---- wire shapes (proto-loader output with keepCase and defaults: every field present) ----

export interface X509SvidWire {
  readonly spiffe_id: string;
  readonly x509_svid: Buffer;
  readonly x509_svid_key: Buffer;
  readonly bundle: Buffer;
  readonly hint: string;
}

export interface X509SvidResponseWire {
  readonly svids: readonly X509SvidWire[];
  readonly crl: readonly Buffer[];
  readonly federated_bundles: Readonly<Record<string, Buffer>>;
}

export interface X509BundlesResponseWire {
  readonly crl: readonly Buffer[];
  readonly bundles: Readonly<Record<string, Buffer>>;
}

export interface JwtSvidWire {
  readonly spiffe_id: string;
  readonly svid: string;
  readonly hint: string;
}

export interface JwtSvidResponseWire {
  readonly svids: readonly JwtSvidWire[];
}

export interface JwtBundlesResponseWire {
  readonly bundles: Readonly<Record<string, Buffer>>;
}

export interface JwtSvidRequestWire {
  readonly audience: readonly string[];
  readonly spiffe_id: string;
}

export interface ValidateJwtSvidRequestWire {
  readonly audience: string;
  readonly svid: string;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function isBufferMap(value: unknown): value is Record<string, Buffer> {
  return isObject(value) && Object.values(value).every((v) => Buffer.isBuffer(v));
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}

function isX509SvidWire(value: unknown): value is X509SvidWire {
  return (
    isObject(value) &&
    typeof value['spiffe_id'] === 'string' &&
    Buffer.isBuffer(value['x509_svid']) &&
    Buffer.isBuffer(value['x509_svid_key']) &&
    Buffer.isBuffer(value['bundle']) &&
    typeof value['hint'] === 'string'
  );
}

export function isX509SvidResponse(value: unknown): value is X509SvidResponseWire {
  return (
    isObject(value) &&
    Array.isArray(value['svids']) &&
    value['svids'].every(isX509SvidWire) &&
    Array.isArray(value['crl']) &&
    value['crl'].every((c) => Buffer.isBuffer(c)) &&
    isBufferMap(value['federated_bundles'])
  );
}

export function isX509BundlesResponse(value: unknown): value is X509BundlesResponseWire {
  return (
    isObject(value) &&
    Array.isArray(value['crl']) &&
    value['crl'].every((c) => Buffer.isBuffer(c)) &&
    isBufferMap(value['bundles'])
  );
}

export function isJwtSvidResponse(value: unknown): value is JwtSvidResponseWire {
  return (
    isObject(value) &&
    Array.isArray(value['svids']) &&
    value['svids'].every(
      (s) =>
        isObject(s) &&
        typeof s['spiffe_id'] === 'string' &&
        typeof s['svid'] === 'string' &&
        typeof s['hint'] === 'string',
    )
  );
}

export function isJwtBundlesResponse(value: unknown): value is JwtBundlesResponseWire {
  return isObject(value) && isBufferMap(value['bundles']);
}

export function isJwtSvidRequest(value: unknown): value is JwtSvidRequestWire {
  return isObject(value) && isStringArray(value['audience']) && typeof value['spiffe_id'] === 'string';
}

export function isValidateJwtSvidRequest(value: unknown): value is ValidateJwtSvidRequestWire {
  return isObject(value) && typeof value['audience'] === 'string' && typeof value['svid'] === 'string';
}
