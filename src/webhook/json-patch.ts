// JSON Patch (RFC 6902) operations as the AdmissionReview response carries them, and JSON Pointer
// (RFC 6901) paths with `~` and `/` escaped.

export interface JsonPatchOp {
  readonly op: 'add';
  readonly path: string;
  readonly value: unknown;
}

/** A JSON Pointer from path segments: `pointer('metadata', 'annotations', 'a/b')` → `/metadata/annotations/a~1b`. */
export function pointer(...parts: ReadonlyArray<string | number>): string {
  return parts.map((p) => `/${String(p).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');
}

/** Appends items to an array member that may be absent: one `add` of the whole array, or one `add …/-` per item. */
export function appendAll(
  ops: JsonPatchOp[],
  arrayPath: string,
  existing: readonly unknown[] | undefined,
  items: readonly unknown[],
): void {
  if (items.length === 0) return;
  if (existing === undefined) {
    ops.push({ op: 'add', path: arrayPath, value: [...items] });
    return;
  }
  for (const item of items) ops.push({ op: 'add', path: `${arrayPath}/-`, value: item });
}
