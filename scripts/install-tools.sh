#!/usr/bin/env bash
# Builds the optional tools the tests use when present, from the Go module proxy, into .tools/bin:
#   helm       (helm lint + helm template in test/chart/). Helm 4: the chart (apiVersion v2) renders the
#              same objects under Helm 3.22 and 4.3, but a go-installed Helm 3 takes Kubernetes v1.20 as its
#              default version (its Makefile sets the real one with -ldflags), which kubeVersion >=1.29 refuses.
#   actionlint (the release workflow in test/release/)
#   rolesanywhere-credential-helper (AWS's Roles Anywhere client against the stand-in in test/aws/; needs cgo)
#   spire-server, spire-agent (SPIRE as the sidecar's identity source, and spire-agent's client commands
#              against our Workload API, in test/peers/): Go tools of scripts/peers/go.mod, whose go.sum pins
#              every module; needs cgo (SPIRE's SQLite datastore)
#   go-spiffe-client (go-spiffe v2's X509Source/JWTSource against our Workload API, test/peers/): built from
#              its source in test/peers/go-spiffe-client/ with its own go.mod and go.sum
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
  echo "note: no Go toolchain; helm, actionlint, the Roles Anywhere helper, SPIRE and go-spiffe-client not built, the tests that need them will skip" >&2
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

# build_module "BINARIES" DIR STAMP-FILES... -- GO-ARGS...: runs `go GO-ARGS` in DIR unless every binary is in
# .tools/bin and the first one's .version holds the hash of the stamp files (go.mod, go.sum, sources): each
# tool is built at most once per checkout, and a change to what pins it rebuilds it. SPIRE's module graph is
# large (cloud SDKs, client-go): measured cold ~50 min on the shared 2-core machine under heavy load, 35 s
# from a warm Go build cache into a fresh checkout, 0 s when already built.
build_module() {
  local bins=($1) dir=$2 stamp b
  shift 2
  local files=()
  while [ "$1" != -- ]; do files+=("$dir/$1"); shift; done
  shift
  stamp=$(cat "${files[@]}" | sha256sum | cut -c1-16)
  local have=1
  for b in "${bins[@]}"; do [ -x "$BIN/$b" ] || have=0; done
  if [ $have = 1 ] && [ "$(cat "$BIN/${bins[0]}.version" 2>/dev/null)" = "$stamp" ]; then return 0; fi
  local start=$SECONDS
  # Bounded, so that a cold build on a slow machine cannot take CI past its limit: the tests skip instead,
  # and the next run goes on from Go's build cache.
  if (cd "$dir" && GOBIN="$BIN" GOFLAGS="-buildvcs=false -mod=readonly" CGO_ENABLED=1 timeout "${GO_TOOL_BUILD_TIMEOUT:-2400}" nice -n 15 go "$@"); then
    echo "$stamp" >"$BIN/${bins[0]}.version"
    echo "built ${bins[*]} in $((SECONDS - start)) s" >&2
  else
    echo "note: ${bins[*]} could not be built; the tests that need them will skip" >&2
  fi
}

if command -v cc >/dev/null; then
  # One `go install tool` builds both SPIRE binaries (their shared packages compile once).
  build_module "spire-server spire-agent" scripts/peers go.mod go.sum -- install -trimpath -ldflags=-s tool
else
  echo "note: no C compiler; spire-server and spire-agent not built, the SPIRE tests will skip" >&2
fi
build_module go-spiffe-client test/peers/go-spiffe-client go.mod go.sum main.go -- build -trimpath -ldflags=-s -o "$BIN/go-spiffe-client" .
