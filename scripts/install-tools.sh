#!/usr/bin/env bash
# Builds the optional tools the tests use when present, from the Go module proxy, into .tools/bin:
#   helm       (helm lint + helm template in test/chart/). Helm 4: the chart (apiVersion v2) renders the
#              same objects under Helm 3.22 and 4.3, but a go-installed Helm 3 takes Kubernetes v1.20 as its
#              default version (its Makefile sets the real one with -ldflags), which kubeVersion >=1.29 refuses.
#   actionlint (the release workflow in test/release/)
#   rolesanywhere-credential-helper (AWS's Roles Anywhere client against the stand-in in test/aws/; needs cgo)
# Go's module and build caches (GOMODCACHE, GOCACHE) are Go's defaults, so a second run on the same
# machine only links. A tool already built at the pinned version is kept. Without Go, it says so and
# exits 0: the tests that need the tools skip, saying why.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=v4.3.1
ACTIONLINT_VERSION=v1.7.12
# The newest version the Go module proxy serves (v1.8.0 is not there).
RA_HELPER_VERSION=v1.7.3
BIN="$PWD/.tools/bin"

if ! command -v go >/dev/null; then
  echo "note: no Go toolchain; helm and actionlint not built, the tests that need them will skip" >&2
  exit 0
fi
mkdir -p "$BIN"

# install NAME VERSION MODULE/cmd/PATH [CGO]: go install at that version unless .tools/bin/NAME.version says it is there.
install_tool() {
  local name=$1 version=$2 pkg=$3 cgo=${4:-0}
  if [ -x "$BIN/$name" ] && [ "$(cat "$BIN/$name.version" 2>/dev/null)" = "$version" ]; then return 0; fi
  local start=$SECONDS
  if GOBIN="$BIN" GOFLAGS=-buildvcs=false CGO_ENABLED="$cgo" nice -n 15 go install -trimpath -ldflags=-s "$pkg@$version"; then
    echo "$version" >"$BIN/$name.version"
    echo "built $name $version in $((SECONDS - start)) s" >&2
  else
    echo "note: $name $version could not be built; the tests that need it will skip" >&2
  fi
}

install_tool helm "$HELM_VERSION" helm.sh/helm/v4/cmd/helm
install_tool actionlint "$ACTIONLINT_VERSION" github.com/rhysd/actionlint/cmd/actionlint
# Its PKCS#11 signer links with cgo; without a C compiler it is not built and its test skips.
if command -v cc >/dev/null; then
  install_tool rolesanywhere-credential-helper "$RA_HELPER_VERSION" github.com/aws/rolesanywhere-credential-helper 1
else
  echo "note: no C compiler; rolesanywhere-credential-helper not built, its test will skip" >&2
fi
