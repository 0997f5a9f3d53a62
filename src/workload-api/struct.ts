// JSON values as google.protobuf.Struct in @grpc/proto-loader's object form (protobufjs's built-in
// struct.proto: camelCase oneof fields), for ValidateJWTSVIDResponse.claims.

export type ProtoValue =
  | { readonly nullValue: 'NULL_VALUE' }
  | { readonly numberValue: number }
  | { readonly stringValue: string }
  | { readonly boolValue: boolean }
  | { readonly structValue: ProtoStruct }
  | { readonly listValue: { readonly values: readonly ProtoValue[] } };

export interface ProtoStruct {
  readonly fields: Readonly<Record<string, ProtoValue>>;
}

/** A JSON object (JWT claims) as a Struct; values JSON cannot hold (undefined, functions) are dropped. */
export function jsonToStruct(object: Readonly<Record<string, unknown>>): ProtoStruct {
  const fields: Record<string, ProtoValue> = {};
  for (const [key, value] of Object.entries(object)) {
    const converted = jsonToValue(value);
    if (converted) fields[key] = converted;
  }
  return { fields };
}

function jsonToValue(value: unknown): ProtoValue | undefined {
  if (value === null) return { nullValue: 'NULL_VALUE' };
  switch (typeof value) {
    case 'number':
      return { numberValue: value };
    case 'string':
      return { stringValue: value };
    case 'boolean':
      return { boolValue: value };
    case 'object':
      if (Array.isArray(value))
        return { listValue: { values: value.map((v) => jsonToValue(v) ?? { nullValue: 'NULL_VALUE' }) } };
      return { structValue: jsonToStruct(value as Record<string, unknown>) };
    default:
      return undefined;
  }
}
