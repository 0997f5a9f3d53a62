// The static part of the emulated GCE metadata tree and how the metadata server renders it:
// listings, `?recursive=true` JSON with camelCased keys, `alt=json` (docs/gcp.md#metadata-paths,
// docs/gcp.md#response-format). Pure: facts in, bodies out. Tokens and ID tokens are not here; endpoints.ts asks the
// cache for them.
import { createHash } from 'node:crypto';

/** What the emulated metadata server says about this "instance". */
export interface MetadataFacts {
  readonly projectId: string;
  /** Digits only: gcloud's detection requires it (docs/gcp.md#metadata-paths). */
  readonly numericProjectId: string;
  /** projects/<number>/zones/<zone> */
  readonly zone: string;
  /** Digits only. */
  readonly instanceId: string;
  readonly name: string;
  readonly hostname: string;
  readonly universeDomain: string;
  /** The email served for `default` and listed under service-accounts/. */
  readonly email: string;
  /** More accounts listed under service-accounts/ by their email (gcp.extraServiceAccounts), with the default scopes. */
  readonly extraEmails?: readonly string[];
  /** Scopes of the default token, listed at .../scopes. */
  readonly scopes: readonly string[];
}

/** A leaf is text (or a list served one per line); a directory maps names to nodes. */
export type MetadataNode =
  | { readonly leaf: string | number | readonly string[] }
  | { readonly dir: Readonly<Record<string, MetadataNode>> };

export const TOKEN_LEAVES = ['token', 'identity'] as const;

function leaf(value: string | number | readonly string[]): MetadataNode {
  return { leaf: value };
}

/** One service account directory (`default/` or `<email>/`); token and identity are answered elsewhere. */
function accountDir(facts: MetadataFacts): MetadataNode {
  return { dir: { aliases: leaf(['default']), email: leaf(facts.email), scopes: leaf(facts.scopes) } };
}

/** The whole static tree under /computeMetadata/v1/. */
export function buildTree(facts: MetadataFacts): MetadataNode {
  const account = accountDir(facts);
  return {
    dir: {
      instance: {
        dir: {
          attributes: { dir: {} },
          hostname: leaf(facts.hostname),
          id: leaf(Number.isSafeInteger(Number(facts.instanceId)) ? Number(facts.instanceId) : facts.instanceId),
          name: leaf(facts.name),
          'service-accounts': {
            dir: {
              default: account,
              [facts.email]: account,
              ...Object.fromEntries(
                (facts.extraEmails ?? []).map((email) => [
                  email,
                  { dir: { aliases: leaf([]), email: leaf(email), scopes: leaf(facts.scopes) } },
                ]),
              ),
            },
          },
          zone: leaf(facts.zone),
        },
      },
      project: {
        dir: {
          attributes: { dir: {} },
          'numeric-project-id': leaf(
            Number.isSafeInteger(Number(facts.numericProjectId))
              ? Number(facts.numericProjectId)
              : facts.numericProjectId,
          ),
          'project-id': leaf(facts.projectId),
        },
      },
      universe: { dir: { 'universe-domain': leaf(facts.universeDomain) } },
    },
  };
}

/** Walks `segments` from `root`; undefined when the path does not exist. */
export function lookup(root: MetadataNode, segments: readonly string[]): MetadataNode | undefined {
  let node: MetadataNode | undefined = root;
  for (const segment of segments) {
    if (!node || !('dir' in node)) return undefined;
    node = Object.hasOwn(node.dir, segment) ? node.dir[segment] : undefined;
  }
  return node;
}

/** Whether a path under service-accounts names an account directory that also has token and identity. */
export function isAccountDir(segments: readonly string[]): boolean {
  return segments.length === 3 && segments[0] === 'instance' && segments[1] === 'service-accounts';
}

export interface Rendered {
  readonly json: boolean;
  readonly body: string;
}

/** A directory listing: one entry per line, sub-directories suffixed "/" (docs/gcp.md#response-format). */
export function renderListing(
  node: MetadataNode & { dir: unknown },
  extra: readonly string[] = [],
  json = false,
): Rendered {
  const entries = Object.entries(node.dir as Record<string, MetadataNode>).map(([name, child]) =>
    'dir' in child ? `${name}/` : name,
  );
  // Insertion order (default/ before the email, as GCE lists them); token and identity merged in order.
  const all = extra.length > 0 ? [...entries, ...extra].sort() : entries;
  if (json) return { json: true, body: JSON.stringify(all) };
  return { json: false, body: all.map((e) => `${e}\n`).join('') };
}

/** `?recursive=true` on a directory: JSON with camelCased keys except account names (docs/gcp.md#response-format). */
export function renderRecursive(node: MetadataNode, keepKeys = false): unknown {
  if ('leaf' in node) return node.leaf;
  const out: Record<string, unknown> = {};
  for (const [name, child] of Object.entries(node.dir)) {
    const key = keepKeys ? name : camel(name);
    // The accounts under service-accounts/ keep their names (default, the email).
    out[key] = renderRecursive(child, name === 'service-accounts');
  }
  return out;
}

/** A leaf as the metadata server sends it: text (lists one per line), or JSON with alt=json. */
export function renderLeaf(value: string | number | readonly string[], json: boolean): Rendered {
  if (json) return { json: true, body: JSON.stringify(value) };
  if (typeof value === 'string') return { json: false, body: value };
  if (typeof value === 'number') return { json: false, body: String(value) };
  return { json: false, body: value.map((v) => `${v}\n`).join('') };
}

function camel(name: string): string {
  return name.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
}

/** A stable instance id (digits, below 2^63) for a host of a project: the metadata server needs one. */
export function instanceIdFor(projectNumber: string, hostname: string): string {
  const digest = createHash('sha256').update(`${projectNumber}/${hostname}`).digest();
  return (digest.readBigUInt64BE(0) >> 1n).toString();
}
