// The small part of the Reflect metadata API (rbuckton's proposal, as in the reflect-metadata
// package) that tsyringe, a dependency of @peculiar/x509, checks for at load. Installed only if absent.

type MetadataMap = Map<unknown, unknown>;
type Target = object;

interface ReflectMetadataApi {
  getMetadata(key: unknown, target: Target, property?: PropertyKey): unknown;
  getOwnMetadata(key: unknown, target: Target, property?: PropertyKey): unknown;
  hasMetadata(key: unknown, target: Target, property?: PropertyKey): boolean;
  hasOwnMetadata(key: unknown, target: Target, property?: PropertyKey): boolean;
  defineMetadata(key: unknown, value: unknown, target: Target, property?: PropertyKey): void;
  metadata(key: unknown, value: unknown): (target: Target, property?: PropertyKey) => void;
}

const store = new WeakMap<Target, Map<PropertyKey | undefined, MetadataMap>>();

function own(target: Target, property: PropertyKey | undefined, create: boolean): MetadataMap | undefined {
  let byProperty = store.get(target);
  if (!byProperty) {
    if (!create) return undefined;
    byProperty = new Map();
    store.set(target, byProperty);
  }
  let map = byProperty.get(property);
  if (!map && create) {
    map = new Map();
    byProperty.set(property, map);
  }
  return map;
}

function lookup(key: unknown, target: Target, property: PropertyKey | undefined): { found: boolean; value: unknown } {
  for (let t: Target | null = target; t !== null; t = Object.getPrototypeOf(t) as Target | null) {
    const map = own(t, property, false);
    if (map?.has(key)) return { found: true, value: map.get(key) };
  }
  return { found: false, value: undefined };
}

const api: ReflectMetadataApi = {
  getMetadata: (key, target, property) => lookup(key, target, property).value,
  getOwnMetadata: (key, target, property) => own(target, property, false)?.get(key),
  hasMetadata: (key, target, property) => lookup(key, target, property).found,
  hasOwnMetadata: (key, target, property) => own(target, property, false)?.has(key) ?? false,
  defineMetadata: (key, value, target, property) => {
    own(target, property, true)?.set(key, value);
  },
  metadata: (key, value) => (target, property) => {
    own(target, property, true)?.set(key, value);
  },
};

const reflect = Reflect as unknown as Partial<ReflectMetadataApi>;
if (typeof reflect.getMetadata !== 'function') {
  for (const [name, fn] of Object.entries(api)) {
    Object.defineProperty(Reflect, name, { value: fn, writable: true, configurable: true });
  }
}
