// The injected sidecar as Kubernetes objects: a native sidecar (init container with restartPolicy
// Always, KEP-753) gated by a startup probe on /readyz, locked down (restricted Pod Security profile).

import { parseHostPort } from '../config/common.ts';
import { CONFIG_ENV } from '../config/load.ts';
import type { SidecarConfig } from '../config/schema.ts';
import type { ClusterDefaults, SidecarSettings } from '../config/webhook.ts';

/**
 * csi-driver-spiffe's volume attribute: the group that may read the 0440 SVID files (docs/spiffe.md#csi-driver-spiffe).
 */
export const FS_GROUP_ATTRIBUTE = 'spiffe.csi.cert-manager.io/fs-group';

export const STATE_VOLUME = 'spiffe-connector-state';
/** The emptyDir with a directory per container with a role of its own; each such container mounts only its own (a subPath). */
export const CONTAINERS_VOLUME = 'spiffe-connector-containers';

/** Where the sidecar (and, each its own directory, the containers with their own role) mount the containers volume. */
export function containersDir(stateDir: string): string {
  return `${stateDir.replace(/\/+$/, '')}-containers`;
}
export const SVID_VOLUME = 'spiffe-connector-svid';
/** Container port name (IANA_SVC_NAME: at most 15 characters). */
export const OPS_PORT_NAME = 'spiffe-conn-ops';

export interface SidecarSpecInput {
  readonly sidecar: SidecarSettings;
  readonly defaults: ClusterDefaults;
  readonly config: SidecarConfig;
  /** The YAML the sidecar reads from SPIFFE_CONNECTOR_CONFIG. */
  readonly configText: string;
  readonly svidVolume: string;
  readonly stateVolume: string;
  /** The containers volume (a role per container), mounted at containersDir(stateDir). */
  readonly containersVolume?: string;
  /** Group the sidecar runs as: the one the SVID volume grants read access to. */
  readonly runAsGroup: number;
  /** Declare the ops port by name (skipped when the pod already uses that name). */
  readonly declarePort: boolean;
}

export function opsPortOf(config: SidecarConfig): number {
  return parseHostPort(config.server.opsAddress)?.port ?? 9090;
}

export function metricsPortOf(config: SidecarConfig): number {
  return parseHostPort(config.server.metricsAddress)?.port ?? 9091;
}

export function metadataPortOf(config: SidecarConfig): number {
  return parseHostPort(config.server.metadataAddress)?.port ?? 8181;
}

function withoutEmpty(resources: SidecarSettings['resources']): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const [k, list] of Object.entries(resources)) {
    const entries = Object.entries(list ?? {}).filter(([, v]) => v !== undefined) as Array<[string, string]>;
    if (entries.length > 0) out[k] = Object.fromEntries(entries);
  }
  return out;
}

export function sidecarContainer(input: SidecarSpecInput): Record<string, unknown> {
  const { sidecar, config } = input;
  const opsPort = opsPortOf(config);
  const probe = (path: string, periodSeconds: number, failureThreshold: number) => ({
    httpGet: { path, port: opsPort, scheme: 'HTTP' },
    periodSeconds,
    failureThreshold,
    timeoutSeconds: 2,
  });
  const startupPeriod = 2;
  return {
    name: sidecar.name,
    image: sidecar.image,
    imagePullPolicy: sidecar.imagePullPolicy,
    args: ['run'],
    env: [{ name: CONFIG_ENV, value: input.configText }],
    // Native sidecar: starts before the app containers, runs beside them, stops after them.
    restartPolicy: 'Always',
    ...(input.declarePort ? { ports: [{ name: OPS_PORT_NAME, containerPort: opsPort, protocol: 'TCP' }] } : {}),
    // The app containers start only once every configured cloud holds credentials.
    startupProbe: probe('/readyz', startupPeriod, Math.ceil(sidecar.startupTimeoutSeconds / startupPeriod)),
    readinessProbe: probe('/readyz', 10, 3),
    livenessProbe: probe('/healthz', 10, 3),
    resources: withoutEmpty(sidecar.resources),
    securityContext: {
      runAsNonRoot: true,
      ...(sidecar.runAsUser === null ? {} : { runAsUser: sidecar.runAsUser }),
      runAsGroup: input.runAsGroup,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [
      { name: input.svidVolume, mountPath: input.defaults.csi.mountPath, readOnly: true },
      { name: input.stateVolume, mountPath: config.server.stateDir },
      ...(input.containersVolume === undefined
        ? []
        : [{ name: input.containersVolume, mountPath: containersDir(config.server.stateDir) }]),
    ],
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}

export function svidVolume(name: string, defaults: ClusterDefaults, fsGroup: number): Record<string, unknown> {
  return {
    name,
    csi: {
      driver: defaults.csi.driver,
      readOnly: true,
      volumeAttributes: { ...defaults.csi.volumeAttributes, [FS_GROUP_ATTRIBUTE]: String(fsGroup) },
    },
  };
}

/** Token files the sidecar writes for the app (tiny): tmpfs, never on the node's disk. */
export function stateVolume(name: string): Record<string, unknown> {
  return { name, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } };
}

/** Where the link-local init image (Dockerfile target link-local-init) keeps its script. */
export const LINK_LOCAL_INIT_COMMAND = '/usr/local/bin/link-local-init';

/**
 * Link-local mode's init container: puts the addresses on the pod's lo (ip addr, idempotent) and exits, before the
 * sidecar starts. NET_ADMIN is the one capability it keeps. It runs as uid 0 because Kubernetes gives an added
 * capability to a non-root process only through file capabilities, which allowPrivilegeEscalation: false (no_new_privs)
 * disables: a non-root user with capabilities.add NET_ADMIN still gets EPERM. Never privileged, nothing mounted,
 * read-only root filesystem.
 */
export function linkLocalInitContainer(
  name: string,
  image: string,
  imagePullPolicy: string,
  addresses: readonly string[],
): Record<string, unknown> {
  return {
    name,
    image,
    imagePullPolicy,
    command: [LINK_LOCAL_INIT_COMMAND],
    args: [...addresses],
    resources: { requests: { cpu: '10m', memory: '16Mi' }, limits: { memory: '32Mi' } },
    securityContext: {
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}
