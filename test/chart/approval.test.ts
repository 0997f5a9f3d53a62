// With cert-manager's default approver off (csi-driver-spiffe requires it), every Certificate the chart
// renders must be approved by the CertificateRequestPolicies it renders (approver-policy.ts decides as
// approver-policy does), for the defaults and every example; and nothing else may be: not a certificate the
// chart does not make, not the SVID requests csi-driver-spiffe's own approver is there for.

import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { decide, requestFor } from './approver-policy.ts';
import { type Rendered, renderer } from './render.ts';

type Obj = Record<string, any>;

const EXAMPLES = new URL('../../examples/', import.meta.url).pathname;
const CERT_MANAGER = 'system:serviceaccount:cert-manager:cert-manager';
const NAMESPACE = 'spiffe-connector';

const objects = (r: Rendered): Obj[] => r.documents.map((d) => d.object as Obj);
const certificates = (r: Rendered): Obj[] => objects(r).filter((o) => o['kind'] === 'Certificate');

const cases = async (): Promise<Array<{ name: string; files: string[]; set?: string[] }>> => [
  { name: 'the default values', files: [] },
  ...(await readdir(EXAMPLES))
    .filter((f) => /^values-.*\.yaml$/.test(f))
    .sort()
    .map((f) => ({ name: `examples/${f}`, files: [join(EXAMPLES, f)] })),
  { name: 'test/chart/values/openshift.yaml', files: [new URL('./values/openshift.yaml', import.meta.url).pathname] },
  {
    name: 'a long release name',
    files: [join(EXAMPLES, 'values-issuer.yaml')],
    set: ['fullnameOverride=a-release-name-that-is-long-enough-to-be-cut-by-the-63-limit'],
  },
];

for (const c of await cases()) {
  test(`approver-policy approves every Certificate the chart renders: ${c.name}`, async (t) => {
    const r = await renderer();
    if ('skip' in r) return t.skip(r.skip);
    const rendered = await r.render({ valuesFiles: c.files, ...(c.set ? { set: c.set } : {}) });
    const all = objects(rendered);
    const certs = certificates(rendered);
    assert.ok(certs.length >= 2, 'the webhook CA and serving certificate at least');
    for (const cert of certs) {
      const decision = decide(requestFor(cert, CERT_MANAGER), all);
      assert.equal(decision.decision, 'approved', `${cert['metadata'].name}: ${JSON.stringify(decision)}`);
    }
  });
}

test('the policies approve nothing but the chart’s certificates, and leave SVIDs to csi-driver-spiffe', async (t) => {
  const r = await renderer();
  if ('skip' in r) return t.skip(r.skip);
  const rendered = await r.render({ valuesFiles: [join(EXAMPLES, 'values-issuer.yaml')] });
  const all = objects(rendered);
  const [webhookCert] = certificates(rendered).filter((c) => c['metadata'].name === 'spiffe-connector-webhook');
  const [issuerCert] = certificates(rendered).filter((c) => c['metadata'].name === 'spiffe-connector-issuer');
  assert.ok(webhookCert && issuerCert);

  // Another name from the chart's CA issuer, or from the issuer's ClusterIssuer: denied.
  const evil = structuredClone(webhookCert);
  evil['spec'].dnsNames = ['login.example.com'];
  const d1 = decide(requestFor(evil, CERT_MANAGER), all);
  assert.equal(d1.decision, 'denied');
  const evilIssuer = structuredClone(issuerCert);
  evilIssuer['spec'].isCA = true;
  assert.equal(decide(requestFor(evilIssuer, CERT_MANAGER), all).decision, 'denied');
  const clientAuth = structuredClone(issuerCert);
  clientAuth['spec'].usages = ['client auth'];
  assert.equal(decide(requestFor(clientAuth, CERT_MANAGER), all).decision, 'denied');

  // The same certificate in another namespace: not this chart's to judge.
  const elsewhere = structuredClone(webhookCert);
  elsewhere['metadata'].namespace = 'shop';
  assert.equal(decide(requestFor(elsewhere, CERT_MANAGER), all).decision, 'unapproved');

  // csi-driver-spiffe's SVID request for the issuer pod (same namespace, maybe the same ClusterIssuer): made by the
  // driver's ServiceAccount, which no chart policy is bound to, so its own approver decides.
  const svid = {
    kind: 'Certificate',
    metadata: { name: 'svid', namespace: NAMESPACE },
    spec: {
      issuerRef: issuerCert['spec'].issuerRef,
      uris: [`spiffe://example.org/ns/${NAMESPACE}/sa/spiffe-connector-issuer`],
      usages: ['digital signature', 'key encipherment', 'client auth', 'server auth'],
      privateKey: { algorithm: 'ECDSA', size: 256 },
    },
  };
  assert.equal(
    decide(requestFor(svid, 'system:serviceaccount:cert-manager:cert-manager-csi-driver-spiffe'), all).decision,
    'unapproved',
  );

  // Without the policies (certManager.approverPolicy=false, a cluster whose default approver runs): none rendered.
  const off = await r.render({
    valuesFiles: [join(EXAMPLES, 'values-issuer.yaml')],
    set: ['certManager.approverPolicy=false'],
  });
  assert.equal(objects(off).filter((o) => o['kind'] === 'CertificateRequestPolicy').length, 0);
  assert.equal(decide(requestFor(webhookCert, CERT_MANAGER), objects(off)).decision, 'unapproved');
});
