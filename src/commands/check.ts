// `spiffe-connector check`: validates the config and the identity it names, and says what would be
// served, or lists every problem (exit 1). Reads files; contacts nothing.
import { readFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { toConnectorError } from '../base/errors.ts';
import { LINK_LOCAL_ADDRESSES, LINK_LOCAL_PORT } from '../base/link-local.ts';
import type { SidecarConfig } from '../config/schema.ts';
import {
  appEnvironment,
  configuredMetadataOrigin,
  describeClouds,
  ownIdentityContainers,
  perContainerBoundary,
  requiredAudiences,
} from '../env.ts';
import { rolesAnywhereProblems } from '../providers/aws/env.ts';
import { googleSubjectProblem } from '../providers/gcp/env.ts';
import { loadX509Files } from '../sources/x509-files.ts';
import { parseJwtSvidInsecure } from '../spiffe/jwt-svid.ts';
import { TrustDomain } from '../spiffe/spiffe-id.ts';

/** Env values that are secrets: `check` output lands in logs and tickets, so it does not show them. */
const SECRET_ENV = new Set([
  'IDENTITY_HEADER',
  'AWS_CONTAINER_AUTHORIZATION_TOKEN',
  'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI',
]);

export interface CheckReport {
  readonly ok: boolean;
  readonly lines: string[];
  readonly problems: string[];
}

/** What link-local mode needs of the network namespace `check` runs in (the pod's, from inside the sidecar). */
export interface LinkLocalHost {
  /** The IPv4 addresses on lo. */
  readonly loAddresses: readonly string[];
  /** net.ipv4.ip_unprivileged_port_start, or undefined when unreadable. */
  readonly unprivilegedPortStart: number | undefined;
  /** Whether this process may bind ports below that anyway (root with CAP_NET_BIND_SERVICE, or that capability). */
  readonly canBindPrivileged: boolean;
}

/** Reads what link-local mode needs from this process's network namespace: it sends nothing. */
export async function readLinkLocalHost(): Promise<LinkLocalHost> {
  const loAddresses = (networkInterfaces()['lo'] ?? []).filter((a) => a.family === 'IPv4').map((a) => a.address);
  const start = await readFile('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').then(
    (t) => Number(t.trim()),
    () => undefined,
  );
  // CapEff is a hex mask; CAP_NET_BIND_SERVICE is bit 10.
  const capEff = await readFile('/proc/self/status', 'utf8').then(
    (t) => /^CapEff:\s*([0-9a-f]+)$/m.exec(t)?.[1],
    () => undefined,
  );
  const canBindPrivileged = capEff !== undefined && (BigInt(`0x${capEff}`) & (1n << 10n)) !== 0n;
  return {
    loAddresses,
    unprivilegedPortStart: start !== undefined && Number.isInteger(start) ? start : undefined,
    canBindPrivileged,
  };
}

/** The problems that would stop link-local mode's listeners, worded for the operator. */
export function linkLocalProblems(host: LinkLocalHost): string[] {
  const problems: string[] = [];
  const missing = LINK_LOCAL_ADDRESSES.filter((a) => !host.loAddresses.includes(a));
  if (missing.length > 0)
    problems.push(
      `server.linkLocal: ${missing.join(' and ')} ${missing.length === 1 ? 'is' : 'are'} not on lo (the webhook's link-local init container adds the addresses with NET_ADMIN: ip addr add ${missing[0]}/32 dev lo); the sidecar cannot listen there`,
    );
  if (!host.canBindPrivileged) {
    if (host.unprivilegedPortStart === undefined)
      problems.push(
        'server.linkLocal: cannot read net.ipv4.ip_unprivileged_port_start, so cannot tell whether port 80 is bindable',
      );
    else if (host.unprivilegedPortStart > LINK_LOCAL_PORT)
      problems.push(
        `server.linkLocal: port ${LINK_LOCAL_PORT} is not bindable: net.ipv4.ip_unprivileged_port_start is ${host.unprivilegedPortStart} (the pod needs the sysctl at 80, which the webhook sets, or NET_BIND_SERVICE)`,
      );
  }
  return problems;
}

export async function checkConfig(
  config: SidecarConfig,
  now: Date,
  linkLocalHost: () => Promise<LinkLocalHost> = readLinkLocalHost,
): Promise<CheckReport> {
  const lines: string[] = [];
  const problems: string[] = [];
  const s = config.spiffe;
  lines.push(`trust domain: ${s.trustDomain}`);

  if (s.workloadApi) {
    lines.push(`identity: SPIFFE Workload API at ${s.workloadApi.socket} (not contacted by check)`);
    if (config.aws?.rolesAnywhere)
      lines.push(
        'aws.rolesAnywhere: check cannot see the Workload API SVID: IAM Roles Anywhere refuses certificates with an empty subject and keys other than RSA and EC',
      );
  } else if (s.x509) {
    try {
      const { svid, bundle } = await loadX509Files({ ...s.x509, trustDomain: s.trustDomain }, now);
      const hours = ((svid.notAfter.getTime() - now.getTime()) / 3_600_000).toFixed(1);
      lines.push(
        `X.509-SVID: ${svid.id.toString()}, valid until ${svid.notAfter.toISOString()} (${hours} h), chain verified against ${bundle.authorities.length} CA certificate(s) of ${s.trustDomain}`,
      );
      const subjectProblem = googleSubjectProblem(config, svid.id.toString());
      if (subjectProblem) problems.push(`gcp: ${subjectProblem}`);
      const [leaf] = svid.certificates;
      if (leaf && config.aws?.rolesAnywhere) {
        for (const p of rolesAnywhereProblems(config, leaf, svid.privateKey.asymmetricKeyType))
          problems.push(`aws.rolesAnywhere: ${p}`);
        const top = svid.certificates.at(-1) ?? leaf;
        lines.push(
          `aws.rolesAnywhere: the trust anchor must hold the CA that issued this SVID (${top.issuer.replace(/\n/g, ', ')}); check cannot ask AWS`,
        );
      }
    } catch (error) {
      problems.push(`spiffe.x509: ${toConnectorError(error).message}`);
    }
  }

  if (s.jwt?.file) {
    try {
      const svid = parseJwtSvidInsecure((await readFile(s.jwt.file, 'utf8')).trim(), { now });
      if (!svid.id.memberOf(TrustDomain.parse(s.trustDomain))) {
        problems.push(
          `spiffe.jwt.file: the JWT-SVID is for ${svid.id.toString()}, outside trust domain ${s.trustDomain}`,
        );
      }
      lines.push(
        `JWT-SVID: ${svid.id.toString()} for ${svid.audience.join(', ')}, issuer ${svid.issuer ?? '(none)'}, valid until ${svid.expiresAt.toISOString()}`,
      );
      if (svid.issuer === undefined)
        problems.push('spiffe.jwt.file: the JWT-SVID has no iss claim; AWS, Google and Entra require one');
      const subjectProblem = googleSubjectProblem(config, svid.id.toString());
      if (subjectProblem) problems.push(`gcp: ${subjectProblem}`);
      for (const audience of requiredAudiences(config)) {
        if (!svid.audience.includes(audience))
          problems.push(
            `spiffe.jwt.file: the JWT-SVID's audience does not include ${audience}, which a configured cloud needs`,
          );
      }
    } catch (error) {
      problems.push(`spiffe.jwt.file: ${toConnectorError(error).message}`);
    }
  } else if (s.jwt?.exchange) {
    lines.push(
      `JWT-SVIDs: exchanged with the issuer at ${s.jwt.exchange.url} for ${requiredAudiences(config).join(', ')} (not contacted by check)`,
    );
  }

  const origin = configuredMetadataOrigin(config);
  if (config.server.metadataPort80) {
    const host = config.server.metadataAddress.slice(0, config.server.metadataAddress.lastIndexOf(':'));
    lines.push(
      `metadata: also on ${host}:80 (server.metadataPort80), for clients that drop the port; needs the pod sysctl net.ipv4.ip_unprivileged_port_start=80 (the webhook sets it) or NET_BIND_SERVICE, and no other container on port 80`,
    );
  }
  if (config.server.linkLocal) {
    lines.push(
      `metadata: link-local mode (server.linkLocal): also on ${LINK_LOCAL_ADDRESSES.map((a) => `${a}:${LINK_LOCAL_PORT}`).join(' and ')}, for clients that hard-code them; needs both addresses on lo (the webhook's init container, NET_ADMIN) and port 80 bindable (the pod sysctl net.ipv4.ip_unprivileged_port_start=80)`,
    );
    problems.push(...linkLocalProblems(await linkLocalHost()));
  }
  for (const [cloud, line] of describeClouds(config, origin)) lines.push(`${cloud}: ${line}`);
  // A role per container is a boundary only with no surface that answers any process of the pod.
  const boundary = perContainerBoundary(config);
  problems.push(...boundary.problems.map((p) => `${p.key}: ${p.message}`));
  lines.push(...boundary.notes);
  for (const container of [undefined, ...ownIdentityContainers(config)]) {
    lines.push(container === undefined ? 'app container environment:' : `app container environment of ${container}:`);
    for (const [k, v] of appEnvironment(config, origin, container))
      lines.push(`  ${k}=${SECRET_ENV.has(k) ? '[redacted: see `spiffe-connector env`]' : v}`);
  }
  return { ok: problems.length === 0, lines, problems };
}
