// The webhook's pure core: one Pod and its settings in, the JSON Patch that injects the sidecar (plus
// warnings) or a denial out. Same input, same output: reinvocation of an injected pod patches nothing.

import { GCE_METADATA_NAME, LINK_LOCAL_ADDRESSES, METADATA_IP } from '../base/link-local.ts';
import type { SidecarConfig } from '../config/schema.ts';
import type { WebhookConfig } from '../config/webhook.ts';
import { appEnvironment, perContainerBoundary } from '../env.ts';
import { ownAwsRole } from '../providers/aws/env.ts';
import {
  INIT_CONTAINERS,
  INJECT,
  PER_CONTAINER_ANNOTATIONS,
  type PodSettings,
  readPodSettings,
  SKIP_CONTAINERS,
} from './annotations.ts';
import { appendAll, type JsonPatchOp, pointer } from './json-patch.ts';
import type { Container, Pod, Volume } from './pod.ts';
import { buildSidecarConfig } from './sidecar-config.ts';
import {
  CONTAINERS_VOLUME,
  containersDir,
  FS_GROUP_ATTRIBUTE,
  linkLocalInitContainer,
  metadataPortOf,
  metricsPortOf,
  OPS_PORT_NAME,
  opsPortOf,
  STATE_VOLUME,
  SVID_VOLUME,
  sidecarContainer,
  stateVolume,
  svidVolume,
} from './sidecar-container.ts';

export type MutationResult =
  | {
      readonly outcome: 'injected';
      readonly patch: readonly JsonPatchOp[];
      readonly warnings: readonly string[];
      readonly config: SidecarConfig;
    }
  | {
      readonly outcome: 'not-requested' | 'already-injected';
      readonly patch: readonly [];
      readonly warnings: readonly [];
    }
  | { readonly outcome: 'denied'; readonly denied: string };

export interface MutationContext {
  readonly config: WebhookConfig;
  /** A fresh random value per call (the Azure identity header). */
  readonly randomSecret: () => string;
}

/** The annotation that turns on each surface perContainerBoundary names. */
const BOUNDARY_ANNOTATION: Readonly<Record<string, string>> = {
  'aws.imds': 'aws-imds',
  'azure.imds': 'azure-imds',
  'azure.msi': 'azure-msi',
  'server.workloadApiSocket': 'workload-api',
};

const NOTHING = { patch: [] as const, warnings: [] as const };

/** The namespaced sysctl that lets unprivileged processes bind ports from its value up (Kubernetes: a safe sysctl). */
const UNPRIVILEGED_PORT_START = 'net.ipv4.ip_unprivileged_port_start';

function uniqueName(wanted: string, taken: ReadonlySet<string>): string {
  if (!taken.has(wanted)) return wanted;
  for (let i = 1; ; i++) if (!taken.has(`${wanted}-${i}`)) return `${wanted}-${i}`;
}

function denied(message: string): MutationResult {
  return { outcome: 'denied', denied: message };
}

function allContainers(pod: Pod): readonly Container[] {
  return [...(pod.spec.initContainers ?? []), ...pod.spec.containers];
}

/** The pod's ServiceAccount and its annotations (service-accounts.ts), when the webhook reads them. */
export interface ServiceAccountAnnotations {
  /** "namespace/name", for messages. */
  readonly name: string;
  readonly annotations: Readonly<Record<string, string>>;
}

/**
 * Settings from the pod's annotations and labels over its ServiceAccount's annotations (same names; the
 * pod's win key by key); the entry point for a whole Pod.
 */
export function admitPod(
  pod: Pod,
  context: MutationContext,
  serviceAccount?: ServiceAccountAnnotations,
): MutationResult {
  const prefix = context.config.webhook.annotationPrefix;
  const own = pod.metadata?.annotations ?? {};
  const inherited = Object.entries(serviceAccount?.annotations ?? {}).filter(
    ([k]) => k.startsWith(prefix) && !(k in own),
  );
  const annotations = inherited.length === 0 ? own : { ...Object.fromEntries(inherited), ...own };
  const read = readPodSettings(annotations, pod.metadata?.labels ?? {}, prefix);
  const fromAccount = new Set(inherited.map(([k]) => k));
  const named = (problems: readonly string[]): string =>
    problems
      .map((p) => {
        const key = p.slice(0, p.indexOf(':'));
        return fromAccount.has(key) ? `${p} (annotation of ServiceAccount ${serviceAccount?.name})` : p;
      })
      .join('; ');
  if ('problems' in read) return denied(named(read.problems));
  return mutatePod(pod, read.settings, context, named);
}

/**
 * What is wrong with the per-container annotations: a name that is no served container of this pod, or a
 * skipped container.
 */
function perContainerProblems(pod: Pod, settings: PodSettings, prefix: string, serveInit: boolean): string[] {
  const own = settings.containers;
  if (own === undefined || own.size === 0) return [];
  const problems: string[] = [];
  const served = [...(serveInit ? (pod.spec.initContainers ?? []) : []), ...pod.spec.containers].map((c) => c.name);
  for (const [container, clouds] of own) {
    for (const spec of PER_CONTAINER_ANNOTATIONS) {
      if (clouds[spec.cloud] === undefined) continue;
      const key = `${prefix}${spec.name}.${container}`;
      if ((pod.spec.initContainers ?? []).some((c) => c.name === container) && !served.includes(container))
        problems.push(
          `${key}: "${container}" is an init container, served only with ${prefix}${INIT_CONTAINERS}: "true"`,
        );
      else if (!served.includes(container))
        problems.push(`${key}: names no container of this pod (its containers: ${served.join(', ')})`);
      else if (settings.skipContainers.includes(container))
        problems.push(`${key}: container "${container}" is in ${prefix}${SKIP_CONTAINERS}, which gets no credentials`);
    }
  }
  return problems;
}

export function mutatePod(
  pod: Pod,
  settings: PodSettings,
  context: MutationContext,
  /** Words problems named by their annotation (admitPod: which came from the ServiceAccount). */
  named: (problems: readonly string[]) => string = (problems) => problems.join('; '),
): MutationResult {
  const { config } = context;
  const { sidecar, defaults } = config;
  const prefix = config.webhook.annotationPrefix;
  if (!settings.inject) return { outcome: 'not-requested', ...NOTHING };
  if (allContainers(pod).some((c) => c.name === sidecar.name)) return { outcome: 'already-injected', ...NOTHING };

  const inject = `${prefix}inject`;
  if (pod.spec.hostNetwork === true) {
    return denied(
      `${inject}: a hostNetwork pod shares the node's loopback, where every host process could read the metadata endpoints; run it without hostNetwork`,
    );
  }
  if (pod.spec.os?.name === 'windows') return denied(`${inject}: the sidecar image runs on Linux nodes only`);
  const unknownSkips = settings.skipContainers.filter((name) => !pod.spec.containers.some((c) => c.name === name));
  if (unknownSkips.length > 0)
    return denied(`${prefix}${SKIP_CONTAINERS}: names no container of this pod: ${unknownSkips.join(', ')}`);

  const serveInit = settings.initContainers ?? sidecar.serveInitContainers;
  const ownProblems = perContainerProblems(pod, settings, prefix, serveInit);
  if (ownProblems.length > 0) return denied(named(ownProblems));

  const built = buildSidecarConfig(settings, defaults, { prefix, randomSecret: context.randomSecret });
  if ('problems' in built) return denied(named(built.problems));
  const sidecarConfig = built.built.config;
  // A surface any process of the pod reads without a container's secret would make them no boundary
  // (docs/webhook.md "A role per container"): refused, by the annotation that turned it on.
  const boundary = perContainerBoundary(sidecarConfig).problems;
  if (boundary.length > 0) {
    const [first, clouds] = [...(settings.containers ?? [])][0] ?? ['', {}];
    const own = `${prefix}${PER_CONTAINER_ANNOTATIONS.find((a) => clouds[a.cloud] !== undefined)?.name ?? ''}.${first}`;
    return denied(
      boundary
        .map(
          (p) =>
            `${prefix}${BOUNDARY_ANNOTATION[p.key] ?? INJECT}: cannot be on with ${own}: ${p.message.replace(/; (set it false|unset it)$/, '')}`,
        )
        .join('; '),
    );
  }

  const ports = [
    { port: metadataPortOf(sidecarConfig), annotation: 'metadata-port' },
    { port: opsPortOf(sidecarConfig), annotation: 'ops-port' },
    { port: metricsPortOf(sidecarConfig), annotation: 'metrics-port' },
  ];
  for (const { port, annotation } of ports) {
    const user = allContainers(pod).find((c) => c.ports?.some((p) => p.containerPort === port));
    if (user)
      return denied(
        `${prefix}${annotation}: port ${port} is declared by container "${user.name}"; set ${prefix}${annotation} to a free port`,
      );
  }
  // server.metadataPort80 and server.linkLocal: the sidecar binds port 80 without privilege through the pod's
  // (namespaced, safe) sysctl; a pod that already sets it higher, or a container on port 80, cannot have it.
  const linkLocal = sidecarConfig.server.linkLocal;
  const sysctls: Array<{ name: string; value: string }> = [];
  if (sidecarConfig.server.metadataPort80 || linkLocal) {
    const annotation = `${prefix}${sidecarConfig.server.metadataPort80 ? 'metadata-port-80' : 'link-local'}`;
    const user = allContainers(pod).find((c) => c.ports?.some((p) => p.containerPort === 80));
    if (user) return denied(`${annotation}: port 80 is declared by container "${user.name}"`);
    const existing = pod.spec.securityContext?.['sysctls'];
    const list = Array.isArray(existing) ? (existing as Array<{ name?: unknown; value?: unknown }>) : [];
    const set = list.find((e) => e.name === UNPRIVILEGED_PORT_START);
    if (set === undefined) sysctls.push({ name: UNPRIVILEGED_PORT_START, value: '80' });
    else if (!(typeof set.value === 'string' && /^\d+$/.test(set.value) && Number(set.value) <= 80)) {
      return denied(
        `${annotation}: the pod sets ${UNPRIVILEGED_PORT_START} to ${String(set.value)}; the sidecar needs 80 or lower to listen on port 80`,
      );
    }
  }

  // server.linkLocal: GCE clients also use the name metadata.google.internal, mapped to the address in the pod's
  // /etc/hosts (hostAliases); a pod that maps it elsewhere cannot have it.
  const hostAliases: Array<{ ip: string; hostnames: string[] }> = [];
  const existingAliases = Array.isArray(pod.spec['hostAliases'])
    ? (pod.spec['hostAliases'] as Array<{ ip?: unknown; hostnames?: unknown }>)
    : undefined;
  if (linkLocal) {
    if (sidecar.linkLocalInitImage === undefined)
      return denied(
        `${prefix}link-local: this webhook has no link-local init image configured (sidecar.linkLocalInitImage; chart value linkLocal.initImage)`,
      );
    if (sidecarConfig.gcp) {
      const mapped = (existingAliases ?? []).filter(
        (a) => Array.isArray(a.hostnames) && (a.hostnames as unknown[]).includes(GCE_METADATA_NAME),
      );
      const elsewhere = mapped.find((a) => a.ip !== METADATA_IP);
      if (elsewhere)
        return denied(
          `${prefix}link-local: the pod's hostAliases map ${GCE_METADATA_NAME} to ${String(elsewhere.ip)}; link-local mode serves it at ${METADATA_IP}`,
        );
      if (mapped.length === 0) hostAliases.push({ ip: METADATA_IP, hostnames: [GCE_METADATA_NAME] });
    }
  }

  const warnings: string[] = [];
  const patch: JsonPatchOp[] = [];
  appendAll(patch, pointer('spec', 'hostAliases'), existingAliases, hostAliases);
  const volumes = pod.spec.volumes ?? [];
  const volumeNames = new Set(volumes.map((v) => v.name));
  const newVolumes: unknown[] = [];

  // The X.509-SVID: reuse the pod's csi-driver-spiffe volume, or add one readable by the sidecar's group.
  let runAsGroup = sidecar.runAsGroup;
  const existing: Volume | undefined = volumes.find((v) => v.csi?.driver === defaults.csi.driver);
  let svidName: string;
  if (existing) {
    svidName = existing.name;
    // The X.509-SVID buys the pod's JWT-SVID, which every per-container role trusts.
    const reader = settings.containers?.size
      ? allContainers(pod).find((c) => c.volumeMounts?.some((m) => m.name === existing.name))
      : undefined;
    if (reader)
      warnings.push(
        `container "${reader.name}" mounts the SPIFFE volume "${existing.name}": with the pod's SVID it can take any container's role, so the roles per container are no boundary against it`,
      );
    const fsGroup = existing.csi?.volumeAttributes?.[FS_GROUP_ATTRIBUTE];
    const podFsGroup = pod.spec.securityContext?.fsGroup;
    if (fsGroup !== undefined && /^[1-9]\d{0,9}$/.test(fsGroup)) runAsGroup = Number(fsGroup);
    else if (podFsGroup !== undefined && podFsGroup > 0) runAsGroup = podFsGroup;
    else {
      warnings.push(
        `volume "${existing.name}" (${defaults.csi.driver}) sets no ${FS_GROUP_ATTRIBUTE}: the non-root sidecar (group ${runAsGroup}) may not read the SVID`,
      );
    }
  } else {
    svidName = uniqueName(SVID_VOLUME, volumeNames);
    volumeNames.add(svidName);
    newVolumes.push(svidVolume(svidName, defaults, runAsGroup));
  }
  // The token files (0640) and the Workload API socket (0660) are read through the group that owns
  // the state emptyDir: the pod's fsGroup. A pod without one gets the sidecar's group (README
  // "Kubernetes quick start"); a pod that sets one keeps it.
  // Under OpenShift (sidecar.runAsUser null) the SCC assigns the fsGroup from the namespace's range.
  const addFsGroup = pod.spec.securityContext?.fsGroup === undefined && sidecar.runAsUser !== null;
  if (pod.spec.securityContext === undefined) {
    const value = { ...(addFsGroup ? { fsGroup: runAsGroup } : {}), ...(sysctls.length > 0 ? { sysctls } : {}) };
    if (Object.keys(value).length > 0) patch.push({ op: 'add', path: pointer('spec', 'securityContext'), value });
  } else {
    if (addFsGroup) patch.push({ op: 'add', path: pointer('spec', 'securityContext', 'fsGroup'), value: runAsGroup });
    const existing = pod.spec.securityContext['sysctls'];
    appendAll(
      patch,
      pointer('spec', 'securityContext', 'sysctls'),
      Array.isArray(existing) ? existing : undefined,
      sysctls,
    );
  }
  const stateName = uniqueName(STATE_VOLUME, volumeNames);
  volumeNames.add(stateName);
  newVolumes.push(stateVolume(stateName));
  // A role per container: a second emptyDir, a directory per such container, each mounted into its container only.
  const ownRoles = Object.keys(sidecarConfig.aws?.containers ?? {});
  const containersName = ownRoles.length > 0 ? uniqueName(CONTAINERS_VOLUME, volumeNames) : undefined;
  if (containersName !== undefined) newVolumes.push(stateVolume(containersName));
  appendAll(patch, pointer('spec', 'volumes'), pod.spec.volumes, newVolumes);

  const portNameTaken = allContainers(pod).some((c) => c.ports?.some((p) => p.name === OPS_PORT_NAME));
  const container = sidecarContainer({
    sidecar,
    defaults,
    config: sidecarConfig,
    configText: built.built.text,
    svidVolume: svidName,
    stateVolume: stateName,
    ...(containersName === undefined ? {} : { containersVolume: containersName }),
    runAsGroup,
    declarePort: !portNameTaken,
  });
  // Link-local mode: the addresses go on lo just before the sidecar starts (it binds them at once).
  const added: Array<Record<string, unknown>> = [];
  if (linkLocal && sidecar.linkLocalInitImage !== undefined) {
    const taken = new Set(allContainers(pod).map((c) => c.name));
    taken.add(sidecar.name);
    added.push(
      linkLocalInitContainer(
        uniqueName(`${sidecar.name}-link-local`, taken),
        sidecar.linkLocalInitImage,
        sidecar.imagePullPolicy,
        LINK_LOCAL_ADDRESSES,
      ),
    );
  }
  added.push(container);
  const initContainers = pod.spec.initContainers ?? [];
  if (serveInit && initContainers.length > 0) {
    // First among the init containers: its startup probe holds the next ones until credentials are ready.
    added.forEach((value, i) => {
      patch.push({ op: 'add', path: pointer('spec', 'initContainers', i), value });
    });
  } else {
    appendAll(patch, pointer('spec', 'initContainers'), pod.spec.initContainers, added);
  }

  // Each app container (and init container when asked): the environment `spiffe-connector env` prints, and the token files read-only.
  const stateDir = sidecarConfig.server.stateDir;
  const served: Array<{ c: Container; at: (i: number, ...rest: Array<string | number>) => string; i: number }> = [];
  // Indexes after the insertion at 0 (init containers moved down by what was inserted).
  if (serveInit)
    for (const [i, c] of initContainers.entries())
      served.push({ c, i: i + added.length, at: (n, ...rest) => pointer('spec', 'initContainers', n, ...rest) });
  for (const [i, c] of pod.spec.containers.entries())
    served.push({ c, i, at: (n, ...rest) => pointer('spec', 'containers', n, ...rest) });
  served.forEach(({ c, i, at }) => {
    if (settings.skipContainers.includes(c.name)) return;
    // The same function as `spiffe-connector env --container NAME`: its own identity where it has one.
    const env = appEnvironment(sidecarConfig, undefined, c.name);
    const explicit = new Set((c.env ?? []).map((e) => e.name));
    const add: Array<{ name: string; value: string }> = [];
    for (const [name, value] of env) {
      if (explicit.has(name)) {
        const hint = /^no_proxy$/i.test(name)
          ? ' (it must include 127.0.0.1, or proxied SDK calls miss the metadata endpoints)'
          : '';
        warnings.push(`container "${c.name}": ${name} is set explicitly and was left as it is${hint}`);
      } else add.push({ name, value });
    }
    appendAll(patch, at(i, 'env'), c.env, add);
    if (containersName !== undefined && ownAwsRole(sidecarConfig, c.name) !== undefined) {
      // Its own directory only, where the sidecar sees it too (so the env's paths hold in both); not the pod's
      // token mount. A subPath directory (not the file): the sidecar's atomic renames inside it stay visible.
      const own = `${containersDir(stateDir)}/${c.name}`;
      if ((c.volumeMounts ?? []).some((m) => m.mountPath === own))
        warnings.push(`container "${c.name}": ${own} is already mounted; its token file is not mounted there`);
      else
        appendAll(patch, at(i, 'volumeMounts'), c.volumeMounts, [
          { name: containersName, mountPath: own, subPath: c.name, readOnly: true },
        ]);
      return;
    }
    if ((c.volumeMounts ?? []).some((m) => m.mountPath === stateDir)) {
      warnings.push(`container "${c.name}": ${stateDir} is already mounted; the token files are not mounted there`);
    } else {
      appendAll(patch, at(i, 'volumeMounts'), c.volumeMounts, [
        { name: stateName, mountPath: stateDir, readOnly: true },
      ]);
    }
  });
  return { outcome: 'injected', patch, warnings, config: sidecarConfig };
}
