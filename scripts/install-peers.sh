#!/usr/bin/env bash
# Installs the third-party SDK clients the compatibility tests (test/peers/) run as black boxes, each at an
# exact version, into .tools/peers/ (Python here, Go, Java and two Debian packages below): one Python virtualenv per client set (from
# PyPI, with pip's own cache, so a second run on the same machine installs from the cache), written with a
# stamp so an environment already at the pinned versions is kept. Without python3 (or its venv module), or when a registry cannot be reached, it
# says so and exits 0: the tests that need that client skip, saying why.
# The README's compatibility table lists what these versions did (test/peers/*.test.ts).
set -uo pipefail
cd "$(dirname "$0")/.."

PEERS="$PWD/.tools/peers"
mkdir -p "$PEERS"
# One run at a time (two would rebuild the same environments under each other).
exec 9>"$PEERS/.lock"
if command -v flock >/dev/null; then flock 9; fi

# name and pip requirements, one environment each (two botocore versions cannot share one).
#   boto3-old: the last boto3/botocore before AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (botocore 1.32.0 added it)
PY_ENVS=(
  "boto3-old|boto3==1.28.85 botocore==1.31.85"
  "boto3-new|boto3==1.44.5 botocore==1.44.5"
  "google-auth|google-auth==2.62.2 requests==2.34.2"
  "azure-identity|azure-identity==1.27.0"
)

if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "note: no python3 with venv; the Python SDK compatibility tests will skip" >&2
else
  for entry in "${PY_ENVS[@]}"; do
    name=${entry%%|*}
    reqs=${entry#*|}
    dir="$PEERS/py-$name"
    if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$reqs" ]; then continue; fi
    start=$SECONDS
    rm -rf "$dir"
    # shellcheck disable=SC2086
    if python3 -m venv "$dir" && nice -n 15 "$dir/bin/pip" install --quiet --disable-pip-version-check $reqs; then
      echo "$reqs" >"$dir/.stamp"
      echo "installed $name ($reqs) in $((SECONDS - start)) s" >&2
    else
      rm -rf "$dir"
      echo "note: $name ($reqs) could not be installed; its tests will skip" >&2
    fi
  done
fi

# Go clients: one module each under test/peers/go/ (go.mod/go.sum pin the SDK versions), built into
# .tools/peers/bin with Go's own module and build caches; rebuilt only when the module's files change.
#   aws-old: aws-sdk-go-v2 config v1.22.0, before AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE; aws-new: current
if ! command -v go >/dev/null; then
  echo "note: no Go toolchain; the Go SDK compatibility tests will skip" >&2
else
  mkdir -p "$PEERS/bin"
  for module in test/peers/go/*/; do
    name=$(basename "$module")
    stamp=$(cat "$module"go.mod "$module"go.sum "$module"*.go | sha256sum | cut -c1-16)
    if [ -x "$PEERS/bin/go-$name" ] && [ "$(cat "$PEERS/bin/go-$name.stamp" 2>/dev/null)" = "$stamp" ]; then continue; fi
    start=$SECONDS
    if (cd "$module" && GOFLAGS=-buildvcs=false CGO_ENABLED=0 nice -n 15 go build -trimpath -ldflags=-s -o "$PEERS/bin/go-$name" .); then
      echo "$stamp" >"$PEERS/bin/go-$name.stamp"
      echo "built go-$name in $((SECONDS - start)) s" >&2
    else
      echo "note: go-$name could not be built; its tests will skip" >&2
    fi
  done
fi

# Java clients: one Maven project each under test/peers/java/ (its pom.xml pins the SDK, through the SDK's own
# BOM where it has one), resolved from Maven Central with Maven's own cache (~/.m2), its Main.java compiled
# into .tools/peers/java-<name> beside the classpath Maven resolved; rebuilt only when the project's files change.
if ! command -v java >/dev/null || ! command -v javac >/dev/null || ! command -v mvn >/dev/null; then
  echo "note: no java, javac and mvn; the Java SDK compatibility tests will skip" >&2
else
  for project in test/peers/java/*/; do
    name=$(basename "$project")
    dir="$PEERS/java-$name"
    stamp=$(cat "$project"pom.xml "$project"*.java | sha256sum | cut -c1-16)
    if [ -d "$dir/classes" ] && [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$stamp" ]; then continue; fi
    start=$SECONDS
    rm -rf "$dir"
    mkdir -p "$dir/classes"
    if (cd "$project" && nice -n 15 mvn -q -B -Dstyle.color=never dependency:build-classpath -Dmdep.outputFile="$dir/classpath") &&
      nice -n 15 javac -nowarn -d "$dir/classes" -cp "$(cat "$dir/classpath")" "$project"Main.java; then
      echo "$stamp" >"$dir/.stamp"
      echo "built java-$name in $((SECONDS - start)) s" >&2
    else
      rm -rf "$dir"
      echo "note: java-$name could not be built; its tests will skip" >&2
    fi
  done
fi

# Debian packages, on a Debian machine where this runs as root (CI): Ruby's aws-sdk-core 3.168.1 (bookworm's
# ruby-aws-sdk-core, before the token file: it knows only AWS_CONTAINER_CREDENTIALS_RELATIVE_URI) and the static
# busybox whose ip the link-local init image uses (test/metadata/link-local.test.ts). Elsewhere their tests skip.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && grep -q '^VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null; then
  if ! dpkg -s ruby-aws-sdk-core busybox-static >/dev/null 2>&1; then
    if (apt-get install -y -qq --no-install-recommends ruby-aws-sdk-core busybox-static >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends ruby-aws-sdk-core busybox-static >/dev/null 2>&1; }); then
      echo "installed ruby-aws-sdk-core and busybox-static (Debian)" >&2
    else
      echo "note: ruby-aws-sdk-core and busybox-static could not be installed; their tests will skip" >&2
    fi
  fi
fi
exit 0
