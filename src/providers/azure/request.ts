// Reading a managed-identity token request (query string or MSI form body) into the resource to serve, or the
// caller error real endpoints answer with 400 (docs/azure.md#errors). Pure.
import { resourceProblem } from './credential.ts';

export type Surface = 'azure-appservice' | 'azure-imds' | 'azure-msi';

/** The identity this sidecar serves, by every name a caller may use for it. */
export interface ServedIdentity {
  readonly clientId: string;
  readonly objectId?: string | undefined;
  readonly resourceId?: string | undefined;
  /** Whose identity it is, for refusals: a container's own (azure.containers); absent, the pod's. */
  readonly container?: string | undefined;
}

export interface TokenRequest {
  readonly resource: string;
}

export interface Refusal {
  readonly error: string;
  readonly description: string;
}

export type Parsed =
  | { readonly ok: true; readonly request: TokenRequest }
  | { readonly ok: false; readonly refusal: Refusal };

/** Names that select a user-assigned identity, by kind. `clientid` is the 2017 spelling; `msi_res_id` the IMDS one. */
const SELECTORS = {
  client: ['client_id', 'clientid'],
  object: ['object_id', 'principal_id'],
  resource: ['mi_res_id', 'msi_res_id'],
} as const;

export const APP_SERVICE_API_VERSION = '2019-08-01';

/** Parameters as a query parser or form parser gives them: strings, or arrays for repeated names. */
export type Params = Readonly<Record<string, unknown>>;

export function parseTokenRequest(params: Params, surface: Surface, served: ServedIdentity): Parsed {
  const refuse = (description: string, error = 'invalid_request'): Parsed => ({
    ok: false,
    refusal: { error, description },
  });
  const single = (name: string): { value: string | undefined; repeated: boolean } => {
    const v = params[name];
    if (v === undefined) return { value: undefined, repeated: false };
    if (typeof v !== 'string') return { value: undefined, repeated: true };
    return { value: v, repeated: false };
  };

  for (const name of ['resource', 'api-version', ...SELECTORS.client, ...SELECTORS.object, ...SELECTORS.resource]) {
    if (single(name).repeated) return refuse(`Query parameter '${name}' must appear once`);
  }

  const apiVersion = single('api-version').value;
  if (surface === 'azure-appservice') {
    if (!apiVersion)
      return refuse(
        `Required query parameter 'api-version' is missing; this endpoint speaks api-version ${APP_SERVICE_API_VERSION}`,
      );
    if (apiVersion !== APP_SERVICE_API_VERSION)
      return refuse(`api-version '${apiVersion}' is not supported; use ${APP_SERVICE_API_VERSION}`);
  } else if (surface === 'azure-imds') {
    if (!apiVersion) return refuse("Required query variable 'api-version' is missing");
    if (!/^\d{4}-\d{2}-\d{2}$/.test(apiVersion)) return refuse(`api-version '${apiVersion}' is not a valid version`);
  }

  const resource = single('resource').value;
  if (!resource) return refuse("Required query variable 'resource' is missing", 'invalid_resource');
  const problem = resourceProblem(resource);
  if (problem) return refuse(problem, 'invalid_resource');

  const given: Array<{ kind: keyof typeof SELECTORS; name: string; value: string }> = [];
  for (const kind of Object.keys(SELECTORS) as Array<keyof typeof SELECTORS>) {
    for (const name of SELECTORS[kind]) {
      const value = single(name).value;
      if (value !== undefined && value !== '') given.push({ kind, name, value });
    }
  }
  if (given.length > 1)
    return refuse(
      `Specify at most one of client_id, object_id (principal_id) and mi_res_id (msi_res_id); got ${given.map((g) => g.name).join(', ')}`,
    );
  const selector = given[0];
  if (selector && !selects(served, selector.kind, selector.value)) {
    return refuse(
      `Identity not found: ${selector.name} '${selector.value}' is not ${served.container === undefined ? "this pod's identity" : `the identity of container ${served.container}, whose X-IDENTITY-HEADER this is`} (client_id ${served.clientId}); omit it or use that value`,
    );
  }
  return { ok: true, request: { resource } };
}

function selects(served: ServedIdentity, kind: keyof typeof SELECTORS, value: string): boolean {
  const same = (a: string | undefined): boolean => a !== undefined && a.toLowerCase() === value.trim().toLowerCase();
  if (kind === 'client') return same(served.clientId);
  if (kind === 'object') return same(served.objectId);
  return same(served.resourceId);
}
