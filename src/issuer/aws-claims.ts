// AWS session tags and source identity in the JWT-SVIDs minted for AWS (README.md "Session tags and
// source identity"): `https://aws.amazon.com/tags` with principal tags taken from the SPIFFE ID's path
// by the issuer config's template, and `https://aws.amazon.com/source_identity` derived from the ID.
// Pure. The config is checked at load against AWS's session-tag rules, so a minted claim always fits them.
import { createHash } from 'node:crypto';
import { type IssuerAwsConfig, MAX_TAG_VALUE } from '../config/issuer.ts';

export const AWS_TAGS_CLAIM = 'https://aws.amazon.com/tags';
export const AWS_SOURCE_IDENTITY_CLAIM = 'https://aws.amazon.com/source_identity';

const PLACEHOLDER = /\{([A-Za-z][A-Za-z0-9]*)\}/g;

/** `/ns/{namespace}/sa/{serviceAccount}` → a matcher of whole paths, each placeholder one segment. */
export function compilePathTemplate(template: string): (path: string) => Record<string, string> | undefined {
  const names: string[] = [];
  const source = template
    .split(PLACEHOLDER)
    .map((part, i) => {
      if (i % 2 === 1) {
        names.push(part);
        return '([A-Za-z0-9._-]+)';
      }
      return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('');
  const re = new RegExp(`^${source}$`);
  return (path) => {
    const m = re.exec(path);
    if (!m) return undefined;
    return Object.fromEntries(names.map((name, i) => [name, m[i + 1] ?? '']));
  };
}

function render(template: string, values: Readonly<Record<string, string>>): string {
  return template.replace(PLACEHOLDER, (_, name: string) => values[name] ?? '');
}

/**
 * The source identity for a SPIFFE ID: its path with `/` → `.` (the trust domain when the path is empty),
 * inside `[\w+=,.@-]` because SPIFFE paths hold only letters, digits, `.`, `-`, `_`; longer than 64, a
 * readable head, `-`, and 12 hex digits of SHA-256 of the whole ID, so distinct IDs stay distinct.
 */
export function sourceIdentityFor(trustDomain: string, path: string): string {
  let name = (path === '' || path === '/' ? trustDomain : path.replace(/^\//, '').replace(/\//g, '.')).replace(
    /[^\w+=,.@-]/g,
    '_',
  );
  if (name.length < 2) name = `${name}@${trustDomain}`.slice(0, 64);
  if (name.length <= 64) return name;
  const hash = createHash('sha256').update(`spiffe://${trustDomain}${path}`).digest('hex').slice(0, 12);
  return `${name.slice(0, 64 - 13)}-${hash}`;
}

/** The AWS claims for one token (empty for other audiences, or when the path does not match the template). */
export function awsClaims(
  config: IssuerAwsConfig | undefined,
  audience: string,
  spiffeId: string,
): Record<string, unknown> {
  if (!config || audience !== config.audience) return {};
  const m = /^spiffe:\/\/([^/]+)(\/.*)?$/.exec(spiffeId);
  if (!m) return {};
  const trustDomain = m[1] ?? '';
  const path = m[2] ?? '';
  const out: Record<string, unknown> = {};
  if (config.sessionTags) {
    const values = compilePathTemplate(config.sessionTags.pathTemplate)(path);
    if (values) {
      const all = { ...values, trustDomain };
      const principalTags: Record<string, string[]> = {};
      for (const [key, template] of Object.entries(config.sessionTags.principalTags))
        principalTags[key] = [render(template, all).slice(0, MAX_TAG_VALUE)];
      out[AWS_TAGS_CLAIM] = {
        principal_tags: principalTags,
        ...(config.sessionTags.transitiveTagKeys.length > 0
          ? { transitive_tag_keys: [...config.sessionTags.transitiveTagKeys] }
          : {}),
      };
    }
  }
  if (config.sourceIdentity) out[AWS_SOURCE_IDENTITY_CLAIM] = sourceIdentityFor(trustDomain, path);
  return out;
}
