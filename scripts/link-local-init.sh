#!/bin/sh
# Link-local mode's init container (the Dockerfile's link-local-init target; README.md "Clients that hard-code
# the metadata address"): puts each address given (default 169.254.169.254 and 169.254.170.2) on the pod's lo
# as a /32, so the sidecar can listen there. Idempotent: an address already on lo is left as it is, so a
# restarted init container succeeds. Needs CAP_NET_ADMIN in the pod's network namespace, nothing else; works
# with iproute2's ip and busybox's.
set -eu

[ "$#" -gt 0 ] || set -- 169.254.169.254 169.254.170.2

fail() {
  echo "link-local-init: $1 (the container needs the capability NET_ADMIN)" >&2
  exit 1
}

on_lo() {
  ip -o -f inet addr show dev lo | grep -q " inet $1/32 "
}

for address in "$@"; do
  if ! printf '%s\n' "$address" | grep -Eq '^169\.254\.([0-9]{1,3})\.([0-9]{1,3})$'; then
    echo "link-local-init: $address is not a link-local IPv4 address (169.254.x.y)" >&2
    exit 2
  fi
done

# A pod's lo is up already; a bare network namespace's is not.
ip -o link show dev lo | grep -q '[<,]UP[,>]' || ip link set lo up || fail 'cannot bring lo up'
for address in "$@"; do
  if on_lo "$address"; then
    echo "link-local-init: $address/32 is already on lo"
  elif ip addr add "$address/32" dev lo; then
    echo "link-local-init: added $address/32 to lo"
  elif on_lo "$address"; then
    # Added by another run between the check and the add.
    echo "link-local-init: $address/32 is already on lo"
  else
    fail "cannot add $address/32 to lo"
  fi
done
