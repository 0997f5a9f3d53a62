// The parts of a core/v1 Pod the webhook reads or writes, and the type guard a request's object
// passes before it is used (Kubernetes API reference, core/v1 Pod, Container, Volume).

export interface EnvVar {
  readonly name: string;
  readonly value?: string;
  readonly valueFrom?: unknown;
}

export interface VolumeMount {
  readonly name: string;
  readonly mountPath: string;
  readonly readOnly?: boolean;
}

export interface ContainerPort {
  readonly containerPort: number;
  readonly name?: string;
}

export interface Container {
  readonly name: string;
  readonly env?: readonly EnvVar[];
  readonly volumeMounts?: readonly VolumeMount[];
  readonly ports?: readonly ContainerPort[];
  readonly restartPolicy?: string;
  readonly [key: string]: unknown;
}

export interface CsiVolumeSource {
  readonly driver: string;
  readonly readOnly?: boolean;
  readonly volumeAttributes?: Readonly<Record<string, string>>;
}

export interface Volume {
  readonly name: string;
  readonly csi?: CsiVolumeSource;
  readonly [key: string]: unknown;
}

export interface ObjectMeta {
  readonly name?: string;
  readonly generateName?: string;
  readonly namespace?: string;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly labels?: Readonly<Record<string, string>>;
  readonly [key: string]: unknown;
}

export interface PodSpec {
  readonly containers: readonly Container[];
  readonly initContainers?: readonly Container[];
  readonly volumes?: readonly Volume[];
  readonly hostNetwork?: boolean;
  readonly serviceAccountName?: string;
  readonly securityContext?: { readonly fsGroup?: number; readonly [key: string]: unknown };
  readonly os?: { readonly name?: string };
  readonly [key: string]: unknown;
}

export interface Pod {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata?: ObjectMeta;
  readonly spec: PodSpec;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isStringMap(value: unknown): boolean {
  return value === undefined || (isRecord(value) && Object.values(value).every((v) => typeof v === 'string'));
}

function isNamedList(value: unknown, check: (item: Record<string, unknown>) => boolean = () => true): boolean {
  return (
    value === undefined ||
    (Array.isArray(value) && value.every((item) => isRecord(item) && typeof item['name'] === 'string' && check(item)))
  );
}

function isContainer(item: Record<string, unknown>): boolean {
  return (
    isNamedList(item['env']) &&
    isNamedList(item['volumeMounts'], (m) => typeof m['mountPath'] === 'string') &&
    (item['ports'] === undefined ||
      (Array.isArray(item['ports']) &&
        item['ports'].every((p) => isRecord(p) && typeof p['containerPort'] === 'number')))
  );
}

function isVolume(item: Record<string, unknown>): boolean {
  const csi = item['csi'];
  return (
    csi === undefined || (isRecord(csi) && typeof csi['driver'] === 'string' && isStringMap(csi['volumeAttributes']))
  );
}

/** Checks the shape of every field the webhook touches; anything else in the Pod is passed through untouched. */
export function isPod(value: unknown): value is Pod {
  if (!isRecord(value)) return false;
  const metadata = value['metadata'];
  if (
    metadata !== undefined &&
    !(isRecord(metadata) && isStringMap(metadata['annotations']) && isStringMap(metadata['labels']))
  )
    return false;
  const spec = value['spec'];
  if (!isRecord(spec)) return false;
  if (!Array.isArray(spec['containers']) || !isNamedList(spec['containers'], isContainer)) return false;
  if (!isNamedList(spec['initContainers'], isContainer)) return false;
  if (!isNamedList(spec['volumes'], isVolume)) return false;
  const sc = spec['securityContext'];
  if (sc !== undefined && !(isRecord(sc) && (sc['fsGroup'] === undefined || typeof sc['fsGroup'] === 'number')))
    return false;
  return true;
}

/** "ns/name", or "ns/generateName*" for a pod a controller is about to name. */
export function podDisplayName(pod: Pod, namespace: string): string {
  const name = pod.metadata?.name;
  if (name) return `${namespace}/${name}`;
  return `${namespace}/${pod.metadata?.generateName ?? ''}*`;
}
