// Session tags and source identity in a web identity token, checked the way STS checks them for
// AssumeRoleWithWebIdentity (IAM User Guide, "Passing session tags in AWS STS" and "Monitor and control
// actions taken with assumed roles"): the `https://aws.amazon.com/tags` claim's shape, at most 50 tags,
// keys 1-128 and values 0-256 characters of AWS's set, no `aws:` prefix, keys unique regardless of case,
// transitive keys among the tags; `https://aws.amazon.com/source_identity` 2-64 characters of
// `[\w+=,.@-]` (so never the reserved `aws:` prefix). Code of the stand-in's own: nothing from the product.

export const TAGS_CLAIM = 'https://aws.amazon.com/tags';
export const SOURCE_IDENTITY_CLAIM = 'https://aws.amazon.com/source_identity';

const TAG_CHARS = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u;
const SOURCE_IDENTITY = /^[\w+=,.@-]{2,64}$/;

export interface WebIdentitySessionTags {
  /** Tag key → value, in the token's order. */
  readonly tags: Readonly<Record<string, string>>;
  readonly transitiveTagKeys: readonly string[];
  readonly sourceIdentity: string | undefined;
  /**
   * How full the packed session policy and tags are, as a percentage of STS's limit. STS does not publish
   * its packing; this stand-in counts the bytes of keys and values against 2048, so 50 long tags overflow.
   */
  readonly packedPolicySize: number;
}

export type TagCheck =
  | { readonly ok: true; readonly value: WebIdentitySessionTags }
  | { readonly ok: false; readonly status: number; readonly code: string; readonly message: string };

const refuse = (code: string, message: string, status = 400): TagCheck => ({ ok: false, status, code, message });

/** Reads and checks the AWS claims of a verified token's payload. */
export function checkWebIdentityTags(payload: Readonly<Record<string, unknown>>): TagCheck {
  const tags: Record<string, string> = {};
  let transitive: string[] = [];
  const claim = payload[TAGS_CLAIM];
  if (claim !== undefined) {
    if (claim === null || typeof claim !== 'object' || Array.isArray(claim))
      return refuse('InvalidIdentityToken', `The ${TAGS_CLAIM} claim must be an object`);
    const { principal_tags: principal, transitive_tag_keys: keys } = claim as Record<string, unknown>;
    if (principal === null || typeof principal !== 'object' || Array.isArray(principal))
      return refuse('InvalidIdentityToken', `The ${TAGS_CLAIM} claim must hold principal_tags, an object`);
    const entries = Object.entries(principal as Record<string, unknown>);
    if (entries.length > 50)
      return refuse(
        'ValidationError',
        `1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50`,
      );
    const lower = new Set<string>();
    for (const [key, raw] of entries) {
      const value =
        Array.isArray(raw) && raw.length === 1 && typeof raw[0] === 'string'
          ? raw[0]
          : typeof raw === 'string'
            ? raw
            : undefined;
      if (value === undefined)
        return refuse(
          'InvalidIdentityToken',
          `The principal tag ${key.slice(0, 128)} must be a string or an array of one string`,
        );
      if (key.length < 1 || key.length > 128)
        return refuse(
          'ValidationError',
          `1 validation error detected: Value at 'tags.${key.slice(0, 20)}.member.key' failed to satisfy constraint: Member must have length between 1 and 128`,
        );
      if (value.length > 256)
        return refuse(
          'ValidationError',
          `1 validation error detected: Value at 'tags.${key}.member.value' failed to satisfy constraint: Member must have length less than or equal to 256`,
        );
      if (!TAG_CHARS.test(key) || !TAG_CHARS.test(value))
        return refuse(
          'ValidationError',
          `1 validation error detected: Value at 'tags.${key}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*`,
        );
      if (key.toLowerCase().startsWith('aws:'))
        return refuse('InvalidParameterValue', `Tag keys starting with aws: are reserved: ${key}`);
      if (lower.has(key.toLowerCase()))
        return refuse(
          'InvalidParameterValue',
          `Duplicate tag keys found. Please note that Tag keys are case insensitive: ${key}`,
        );
      lower.add(key.toLowerCase());
      tags[key] = value;
    }
    if (keys !== undefined) {
      if (!Array.isArray(keys) || keys.some((k) => typeof k !== 'string'))
        return refuse('InvalidIdentityToken', 'transitive_tag_keys must be an array of strings');
      if (keys.length > 50)
        return refuse(
          'ValidationError',
          `1 validation error detected: Value at 'transitiveTagKeys' failed to satisfy constraint: Member must have length less than or equal to 50`,
        );
      for (const k of keys as string[]) {
        if (!lower.has(k.toLowerCase()))
          return refuse(
            'InvalidParameterValue',
            `The specified transitive tag key must be included in the requested tags: ${k}`,
          );
      }
      transitive = [...(keys as string[])];
    }
  }
  const source = payload[SOURCE_IDENTITY_CLAIM];
  if (source !== undefined) {
    if (typeof source !== 'string' || !SOURCE_IDENTITY.test(source)) {
      return refuse(
        'ValidationError',
        `1 validation error detected: Value at 'sourceIdentity' failed to satisfy constraint: Member must have length between 2 and 64 and satisfy regular expression pattern: [\\w+=,.@-]*`,
      );
    }
  }
  const bytes = Object.entries(tags).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
  const packedPolicySize = Math.ceil((bytes * 100) / 2048);
  if (packedPolicySize > 100)
    return refuse(
      'PackedPolicyTooLarge',
      `Packed size of session tags exceeds the limit by ${packedPolicySize - 100}%`,
    );
  return {
    ok: true,
    value: {
      tags,
      transitiveTagKeys: transitive,
      sourceIdentity: typeof source === 'string' ? source : undefined,
      packedPolicySize,
    },
  };
}
