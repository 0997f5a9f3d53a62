# spiffe-connector chart

Injects a sidecar into annotated pods (or pods of annotated ServiceAccounts) that turns the pod's SPIFFE identity
(cert-manager csi-driver-spiffe) into short-lived AWS, Google Cloud and Azure credentials on emulated metadata
endpoints, and optionally runs the X.509-SVID → JWT-SVID issuer with OIDC discovery that the clouds federate with.

This file is generated from `values.yaml` by `node scripts/chart-readme.ts` (`README.md.tpl` holds the prose).

## Supported versions

- Kubernetes **1.29 and later** (`kubeVersion: ">=1.29.0-0"`): the sidecar is a native sidecar (an init container
  with `restartPolicy: Always`, on by default from 1.29), and the webhook's `matchConditions` (beta and on by default
  from 1.28, GA in 1.30) are always there. Rendered and linted by the tests with Helm 4 (`helm lint --strict`,
  `helm template`); the chart is `apiVersion: v2` and installs with Helm 3 as well.
- cert-manager 1.x with csi-driver-spiffe, and approver-policy (below).
- OpenShift: `openshift: true` leaves `runAsUser` and `fsGroup` to the restricted-v2 SCC (the chart's pods and the
  injected sidecar stay non-root, read-only, no privilege escalation, all capabilities dropped, seccomp
  RuntimeDefault; their group stays 65532, the group csi-driver-spiffe's `fs-group` attribute grants). Inline CSI
  volumes (the SVID) are admitted per the CSIDriver's `security.openshift.io/csi-ephemeral-volume-profile` label:
  give csi-driver-spiffe's driver `restricted` (it mounts only the pod's own SVID).

## Approvers a cluster needs

csi-driver-spiffe requires cert-manager's default approver **off** (`--controllers=*,-certificaterequests-approver`).
Then every CertificateRequest needs an approver:

- **csi-driver-spiffe's approver** approves the SVIDs of every pod (including the issuer's own);
- **approver-policy** approves the chart's certificates: the webhook's self-signed CA and serving certificate, the
  issuer's serving certificate (from `issuer.tls.issuerRef`, an Issuer or ClusterIssuer) and its signing key. With
  `certManager.approverPolicy: true` (the default) the chart renders one CertificateRequestPolicy for its own
  Issuers and one for the issuer's serving certificate, each allowing exactly those names and usages in the release
  namespace, bound to cert-manager's ServiceAccount (`certManager.serviceAccount`) only, so SVID requests (made by
  csi-driver-spiffe's ServiceAccount) are never judged by them. Install the chart in a namespace of its own: the
  serving-certificate policy selects every request for that issuer in the namespace.

Set `certManager.approverPolicy: false` only on a cluster where cert-manager's default approver still runs.

## Install

A released version (image `ghcr.io/spiffe-connector/spiffe-connector:<appVersion>`, amd64 and arm64, signed):

```sh
helm install spiffe-connector oci://ghcr.io/spiffe-connector/charts/spiffe-connector --version <version> \
  -n spiffe-connector --create-namespace -f my-values.yaml
```

Your own build of the image: `image.registry`, `image.repository` (and `image.tag` or `image.digest`), or
`global.imageRegistry` for a mirror, and `imagePullSecrets`.

## Identity on the ServiceAccount

With `webhook.serviceAccounts.enabled` (default) the webhook reads the pod's ServiceAccount and applies its
`spiffe-connector.io/...` annotations (the same names as on pods; a pod annotation overrides) — it is bound a
ClusterRole with `get` on `serviceaccounts` and nothing else, and its NetworkPolicy allows egress to the API server
on `networkPolicy.apiServer.ports`. A lookup that fails denies the pod with the reason when `webhook.failurePolicy`
is `Fail` (injects from the pod's annotations alone, with a warning, when `Ignore`). By default a pod still opts in
with the `spiffe-connector.io/inject` annotation or label (the matchConditions send the API server's other pods
nowhere); `webhook.serviceAccounts.allPods: true` sends every pod of the namespaces not excluded, so an annotated
ServiceAccount alone is enough.

## Signing keys without Helm

The chart never makes a key (no `genPrivateKey`, no `lookup`): two renders are byte-identical, so Argo CD, Flux and
`helm template` install exactly what `helm install` does, and no key sits in Helm's release history. With
`issuer.keys.source: certManager` (default) the signing key is the private key of a cert-manager Certificate from a
self-signed Issuer, rotated by cert-manager every `duration - renewBefore` (`rotationPolicy: Always`). The issuer
keeps publishing the key a rotation replaced and signs with it until the new key has been published for
`issuer.keyActivationDelaySeconds` (default 3600 s, past `discoveryMaxAgeSeconds` and the clouds' JWKS caches).
An issuer pod started after a rotation knows only the new key (it publishes and signs with it at once). With
`existingSecret` you manage PEM files yourself (the newest file name signs; all are published).

## Metrics

The webhook serves `/metrics` over plain HTTP on `webhook.metricsPort` (Service port `metrics`), the issuer on its
`ops` port (9090), the sidecar on its ops port. `metrics.serviceMonitor.enabled` / `metrics.podMonitor.enabled`
create Prometheus Operator monitors for the webhook and the issuer.

## Upgrading

From 0.1.0 of this chart:

- **Signing keys.** `issuer.keys.generate` is gone, and so is the chart's generated Secret template; the Secret
  `<release>-spiffe-connector-issuer-keys` an earlier install made is kept (`helm.sh/resource-policy: keep`). To keep
  that key, set `issuer.keys.source: existingSecret` and `issuer.keys.existingSecret` to that name. To move to
  cert-manager rotation (the new default) the new key signs as soon as the new pods start: tokens from the old key
  stop verifying once the clouds refresh the JWKS, so upgrade when a token lifetime of failed exchanges is
  acceptable, or keep the old Secret first and switch later.
- **Approval.** `certManager.approverPolicy` is now `true`: install approver-policy first, or set it to `false`
  where cert-manager's default approver runs. The policy names changed (`<fullname>-chart`,
  `<fullname>-issuer-tls`).
- **API access.** The webhook now mounts its ServiceAccount token and is bound a ClusterRole (`get` serviceaccounts);
  its NetworkPolicy allows egress to the API server. `webhook.serviceAccounts.enabled: false` restores the old
  behaviour (no token, no RBAC, no egress).
- **matchConditions** is `auto` (on); `false` with `failurePolicy: Fail` and no `objectSelector` now stops the render.
- **Sidecar memory**: request 96Mi, limit 192Mi (was 48Mi/160Mi while the sidecar idles at 81-94 MB, bench/rss.ts:
  the scheduler packed pods that were then OOM-killed).
- **Image**: `image.repository` no longer includes the registry (`image.registry: ghcr.io`); set both if you
  overrode the repository.
- **Metrics** of the webhook moved to their own plain-HTTP port (9091); `/metrics` on the HTTPS port stays.

## Values

{{ values }}
