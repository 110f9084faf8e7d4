#!/bin/sh
# Starts flotilla-node in a container. With FLOTILLA_ORDINAL_FROM_HOSTNAME=1 (the StatefulSet),
# the node's id, advertised addresses, bootstrap and join follow from the pod's ordinal:
# <name>-0 founds the cluster on its first start, <name>-N (N > 0) joins through <name>-0.
# Otherwise the FLOTILLA_* environment and the arguments configure it as usual.
set -eu

if [ "${FLOTILLA_ORDINAL_FROM_HOSTNAME:-0}" = 1 ]; then
  host="${HOSTNAME:?HOSTNAME is not set}"
  ordinal="${host##*-}"
  base="${host%-*}"
  case "$ordinal" in
    ''|*[!0-9]*) echo "flotilla-entrypoint: hostname $host does not end in -<ordinal>" >&2; exit 2 ;;
  esac
  domain="${FLOTILLA_PEER_DOMAIN:?FLOTILLA_PEER_DOMAIN (the headless service's domain) is not set}"
  export FLOTILLA_NODE_ID=$((ordinal + 1))
  export FLOTILLA_ADVERTISE_RAFT_ADDR="$host.$domain:7001"
  export FLOTILLA_ADVERTISE_API_ADDR="$host.$domain:8001"
  if [ "$ordinal" = 0 ]; then
    export FLOTILLA_BOOTSTRAP=true
  else
    export FLOTILLA_JOIN="http://$base-0.$domain:8001"
  fi
fi

exec /usr/local/bin/flotilla-node "$@"
