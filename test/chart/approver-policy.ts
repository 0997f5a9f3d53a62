// What cert-manager's approver-policy decides for the CertificateRequest a Certificate makes, written from
// its documented semantics (and its predicate/evaluator code, read, not copied):
//   - a policy is appropriate for a request when it selects it (spec.selector.issuerRef name/kind/group,
//     `*` wildcards, kind and group defaulting to Issuer and cert-manager.io; spec.selector.namespace
//     matchNames with wildcards and matchLabels) AND the request's user may `use` it (RBAC);
//   - an appropriate policy permits the request when every attribute of the request is allowed
//     (spec.allowed: a value present but not allowed denies; usages must be a wildcard subset; isCA needs
//     allowed.isCA true) and within spec.constraints;
//   - at least one permits → Approved; some appropriate, none permits → Denied; none appropriate → left alone.
// cert-manager makes the request from the Certificate: issuerRef, isCA, usages and duration copied, the CSR
// holding commonName, dnsNames, ipAddresses, uris, emailAddresses and subject; the requester is
// cert-manager's controller ServiceAccount.

type Obj = Record<string, any>;

export interface Request {
  readonly namespace: string;
  readonly username: string;
  readonly groups: readonly string[];
  readonly issuerRef: { readonly name: string; readonly kind: string; readonly group: string };
  readonly isCA: boolean;
  readonly usages: readonly string[];
  readonly commonName: string;
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  readonly uris: readonly string[];
  readonly emailAddresses: readonly string[];
  readonly subject: Readonly<Record<string, readonly string[]>>;
  readonly duration?: string;
  readonly privateKey: { readonly algorithm: string; readonly size: number };
}

export type Decision =
  | { readonly decision: 'approved'; readonly by: string }
  | { readonly decision: 'denied'; readonly why: readonly string[] }
  | { readonly decision: 'unapproved' };

/** approver-policy's wildcard match: `*` matches any run of characters (including none); an empty pattern only the empty string. */
export function wildcardMatches(pattern: string, s: string): boolean {
  if (pattern === '') return s === '';
  const re = new RegExp(
    `^${pattern
      .split('*')
      .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
    's',
  );
  return re.test(s);
}

const subset = (patterns: readonly string[], members: readonly string[]): boolean =>
  members.every((m) => patterns.some((p) => wildcardMatches(p, m)));

/** Go's time.ParseDuration for the h/m/s forms cert-manager values use, in seconds. */
function seconds(d: string): number {
  let total = 0;
  for (const [, n, unit] of d.matchAll(/([0-9.]+)(h|m|s)/g))
    total += Number(n) * (unit === 'h' ? 3600 : unit === 'm' ? 60 : 1);
  return total;
}

/** The request cert-manager makes for `certificate` (in its namespace), requested by `username`. */
export function requestFor(certificate: Obj, username: string): Request {
  const spec = certificate['spec'];
  const pk = spec.privateKey ?? {};
  const algorithm = pk.algorithm ?? 'RSA';
  const subject: Record<string, string[]> = {};
  for (const [k, v] of Object.entries((spec.subject ?? {}) as Record<string, unknown>))
    if (Array.isArray(v)) subject[k] = v as string[];
  return {
    namespace: certificate['metadata'].namespace,
    username,
    groups: [
      'system:serviceaccounts',
      `system:serviceaccounts:${username.split(':')[2] ?? ''}`,
      'system:authenticated',
    ],
    issuerRef: {
      name: spec.issuerRef.name,
      kind: spec.issuerRef.kind || 'Issuer',
      group: spec.issuerRef.group || 'cert-manager.io',
    },
    isCA: spec.isCA === true,
    usages: spec.usages ?? [],
    commonName: spec.commonName ?? '',
    dnsNames: spec.dnsNames ?? [],
    ipAddresses: spec.ipAddresses ?? [],
    uris: spec.uris ?? [],
    emailAddresses: spec.emailAddresses ?? [],
    subject,
    ...(spec.duration ? { duration: spec.duration } : {}),
    privateKey: { algorithm, size: pk.size ?? (algorithm === 'ECDSA' ? 256 : algorithm === 'Ed25519' ? 0 : 2048) },
  };
}

function selects(policy: Obj, r: Request, namespaceLabels: Readonly<Record<string, string>>): boolean {
  const sel = policy['spec'].selector ?? {};
  const ref = sel.issuerRef;
  if (ref) {
    if (ref.name !== undefined && !wildcardMatches(ref.name, r.issuerRef.name)) return false;
    if (ref.kind !== undefined && !wildcardMatches(ref.kind, r.issuerRef.kind)) return false;
    if (ref.group !== undefined && !wildcardMatches(ref.group, r.issuerRef.group)) return false;
  }
  const ns = sel.namespace;
  if (ns) {
    const names: string[] = ns.matchNames ?? [];
    if (names.length > 0 && !names.some((n) => wildcardMatches(n, r.namespace))) return false;
    for (const [k, v] of Object.entries((ns.matchLabels ?? {}) as Record<string, string>))
      if (namespaceLabels[k] !== v) return false;
  }
  return true;
}

/** Whether RBAC lets the request's user `use` the policy in the request's namespace. */
function bound(policy: Obj, r: Request, rbac: readonly Obj[]): boolean {
  const name = policy['metadata'].name;
  const grants = (rules: Obj[]): boolean =>
    rules.some(
      (rule) =>
        (rule.apiGroups ?? []).some((g: string) => g === 'policy.cert-manager.io' || g === '*') &&
        (rule.resources ?? []).some((x: string) => x === 'certificaterequestpolicies' || x === '*') &&
        (rule.verbs ?? []).some((v: string) => v === 'use' || v === '*') &&
        (!rule.resourceNames || rule.resourceNames.length === 0 || rule.resourceNames.includes(name)),
    );
  const subjectIs = (s: Obj, bindingNamespace?: string): boolean =>
    (s.kind === 'ServiceAccount' &&
      r.username === `system:serviceaccount:${s.namespace ?? bindingNamespace}:${s.name}`) ||
    (s.kind === 'User' && s.name === r.username) ||
    (s.kind === 'Group' && r.groups.includes(s.name));
  for (const b of rbac.filter(
    (o) =>
      o['kind'] === 'ClusterRoleBinding' || (o['kind'] === 'RoleBinding' && o['metadata'].namespace === r.namespace),
  )) {
    if (!(b['subjects'] ?? []).some((s: Obj) => subjectIs(s, b['metadata'].namespace))) continue;
    const role = rbac.find(
      (o) =>
        o['kind'] === b['roleRef'].kind &&
        o['metadata'].name === b['roleRef'].name &&
        (o['kind'] === 'ClusterRole' || o['metadata'].namespace === b['metadata'].namespace),
    );
    if (role && grants(role['rules'] ?? [])) return true;
  }
  return false;
}

function violations(policy: Obj, r: Request): string[] {
  const out: string[] = [];
  const a = policy['spec'].allowed ?? {};
  const str = (what: string, value: string, allowed: Obj | undefined): void => {
    if (value === '') {
      if (allowed?.required) out.push(`${what}: required`);
      return;
    }
    if (!allowed || (allowed.value === undefined && !allowed.validations))
      out.push(`${what} ${value}: no allowed value`);
    else if (allowed.value !== undefined && !wildcardMatches(allowed.value, value))
      out.push(`${what} ${value}: not ${allowed.value}`);
  };
  const list = (what: string, values: readonly string[], allowed: Obj | undefined): void => {
    if (values.length === 0) {
      if (allowed?.required) out.push(`${what}: required`);
      return;
    }
    if (!allowed || (allowed.values === undefined && !allowed.validations))
      out.push(`${what} ${values.join(',')}: no allowed values`);
    else if (allowed.values !== undefined && !subset(allowed.values, values))
      out.push(`${what} ${values.join(',')}: not within ${allowed.values.join(',')}`);
  };
  str('commonName', r.commonName, a.commonName);
  list('dnsNames', r.dnsNames, a.dnsNames);
  list('ipAddresses', r.ipAddresses, a.ipAddresses);
  list('uris', r.uris, a.uris);
  list('emailAddresses', r.emailAddresses, a.emailAddresses);
  if (r.isCA && a.isCA !== true) out.push('isCA: not allowed');
  if (r.usages.length > 0) {
    if (!a.usages) out.push(`usages ${r.usages.join(',')}: none allowed`);
    else if (!subset(a.usages, r.usages)) out.push(`usages ${r.usages.join(',')}: not within ${a.usages.join(',')}`);
  }
  for (const [field, values] of Object.entries(r.subject)) list(`subject.${field}`, values, a.subject?.[field]);
  const c = policy['spec'].constraints;
  if (c) {
    if (c.maxDuration && (!r.duration || seconds(r.duration) > seconds(c.maxDuration)))
      out.push(`duration ${r.duration}: over ${c.maxDuration}`);
    if (c.minDuration && (!r.duration || seconds(r.duration) < seconds(c.minDuration)))
      out.push(`duration ${r.duration}: under ${c.minDuration}`);
    const pk = c.privateKey;
    if (pk?.algorithm && pk.algorithm !== r.privateKey.algorithm)
      out.push(`privateKey.algorithm ${r.privateKey.algorithm}: not ${pk.algorithm}`);
    if (pk?.minSize !== undefined && r.privateKey.size < pk.minSize)
      out.push(`privateKey.size ${r.privateKey.size}: under ${pk.minSize}`);
    if (pk?.maxSize !== undefined && r.privateKey.size > pk.maxSize)
      out.push(`privateKey.size ${r.privateKey.size}: over ${pk.maxSize}`);
  }
  return out;
}

/** approver-policy's decision for one request, given every CertificateRequestPolicy and RBAC object there is. */
export function decide(
  r: Request,
  objects: readonly Obj[],
  namespaceLabels: Readonly<Record<string, string>> = { 'kubernetes.io/metadata.name': r.namespace },
): Decision {
  const rbac = objects.filter((o) => ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'].includes(o['kind']));
  const appropriate = objects.filter(
    (o) => o['kind'] === 'CertificateRequestPolicy' && selects(o, r, namespaceLabels) && bound(o, r, rbac),
  );
  if (appropriate.length === 0) return { decision: 'unapproved' };
  const why: string[] = [];
  for (const p of appropriate) {
    const v = violations(p, r);
    if (v.length === 0) return { decision: 'approved', by: p['metadata'].name };
    why.push(...v.map((x) => `${p['metadata'].name}: ${x}`));
  }
  return { decision: 'denied', why };
}
