// AdmissionReview admission.k8s.io/v1 on the wire: the request's type guard and the response builder
// (Kubernetes "Dynamic Admission Control": response uid echoes the request, patchType JSONPatch, base64 patch).
import type { JsonPatchOp } from './json-patch.ts';

export interface AdmissionRequest {
  readonly uid: string;
  readonly kind: { readonly group: string; readonly version: string; readonly kind: string };
  readonly operation: string;
  readonly namespace?: string;
  readonly name?: string;
  readonly subResource?: string;
  readonly dryRun?: boolean;
  readonly object?: unknown;
}

export interface AdmissionReview {
  readonly apiVersion: 'admission.k8s.io/v1';
  readonly kind: 'AdmissionReview';
  readonly request: AdmissionRequest;
}

export interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly status?: { readonly code: number; readonly message: string };
  readonly patchType?: 'JSONPatch';
  readonly patch?: string;
  readonly warnings?: readonly string[];
  readonly auditAnnotations?: Readonly<Record<string, string>>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const optionalString = (v: unknown): boolean => v === undefined || typeof v === 'string';

export function isAdmissionReview(value: unknown): value is AdmissionReview {
  if (!isRecord(value) || value['apiVersion'] !== 'admission.k8s.io/v1' || value['kind'] !== 'AdmissionReview')
    return false;
  const request = value['request'];
  if (
    !isRecord(request) ||
    typeof request['uid'] !== 'string' ||
    request['uid'] === '' ||
    typeof request['operation'] !== 'string'
  )
    return false;
  const kind = request['kind'];
  if (
    !isRecord(kind) ||
    typeof kind['group'] !== 'string' ||
    typeof kind['version'] !== 'string' ||
    typeof kind['kind'] !== 'string'
  )
    return false;
  return (
    optionalString(request['namespace']) &&
    optionalString(request['name']) &&
    optionalString(request['subResource']) &&
    (request['dryRun'] === undefined || typeof request['dryRun'] === 'boolean')
  );
}

/** The body answering one review. */
export function reviewResponse(response: AdmissionResponse): {
  apiVersion: 'admission.k8s.io/v1';
  kind: 'AdmissionReview';
  response: AdmissionResponse;
} {
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response };
}

/** Allows the object, with a patch (operations, or their JSON already serialized) when there is one. */
export function allow(
  uid: string,
  patch: readonly JsonPatchOp[] | string,
  warnings: readonly string[],
  auditAnnotations?: Record<string, string>,
): AdmissionResponse {
  const json = typeof patch === 'string' ? patch : patch.length > 0 ? JSON.stringify(patch) : undefined;
  return {
    uid,
    allowed: true,
    ...(json !== undefined && json !== '[]'
      ? { patchType: 'JSONPatch' as const, patch: Buffer.from(json).toString('base64') }
      : {}),
    ...(warnings.length > 0 ? { warnings } : {}),
    ...(auditAnnotations ? { auditAnnotations } : {}),
  };
}

export function deny(uid: string, message: string): AdmissionResponse {
  return { uid, allowed: false, status: { code: 400, message } };
}
