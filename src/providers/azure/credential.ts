// An Azure access token as the per-resource cache holds it, and the resource rules the exchange and the
// endpoints share: what a valid `resource` is and how it becomes an Entra scope (docs/azure.md#imds,
// docs/azure.md#federated-credentials).
import type { Secret } from '../../base/secret.ts';

export interface AzureAccessToken {
  readonly accessToken: Secret;
  /** The resource exactly as requested (echoed in every response body). */
  readonly resource: string;
  readonly obtainedAt: Date;
  readonly expiresAt: Date;
  /** The SPIFFE ID of the assertion and Entra's id of the request that issued it (x-ms-request-id): for the audit event. */
  readonly spiffeId?: string | undefined;
  readonly requestId?: string | undefined;
  /** The client id it was issued to, when that is a container's own (azure.containers); else azure.clientId. */
  readonly clientId?: string | undefined;
}

export const MAX_RESOURCE_LENGTH = 2048;

/**
 * The credential cache's key for a resource: the resource itself for the pod's client id, `<container> <resource>`
 * for a container's own (azure.containers). A valid resource has no whitespace, so the two never meet.
 */
export function resourceKey(container: string | undefined, resource: string): string {
  return container === undefined ? resource : `${container} ${resource}`;
}

/** The container (undefined: the pod's) and resource a cache key names. */
export function splitResourceKey(key: string): { container: string | undefined; resource: string } {
  const space = key.indexOf(' ');
  return space === -1
    ? { container: undefined, resource: key }
    : { container: key.slice(0, space), resource: key.slice(space + 1) };
}

/** Why `resource` cannot be a resource (an App ID URI, URL or GUID), or undefined when it can. */
export function resourceProblem(resource: string): string | undefined {
  if (resource === '') return 'resource is empty';
  if (resource.length > MAX_RESOURCE_LENGTH) return `resource is longer than ${MAX_RESOURCE_LENGTH} characters`;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is what this line is for
  if (/[\s\u0000-\u001f\u007f]/.test(resource)) return 'resource contains whitespace or control characters';
  if (/\/\.default$/i.test(resource)) return 'resource must be a resource URI, not a scope (drop "/.default")';
  return undefined;
}

/**
 * The v2 scope for a v1 resource: `<resource>/.default`. A resource with a trailing slash keeps it
 * (`https://management.core.windows.net//.default`), which is how Entra tells apart resource IDs that
 * differ only by that slash; the token's `aud` is then the resource as written.
 */
export function scopeForResource(resource: string): string {
  return `${resource}/.default`;
}
