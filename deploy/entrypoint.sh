#!/bin/sh
# Starts flotilla-node in a container. With FLOTILLA_ORDINAL_FROM_HOSTNAME=1 (the StatefulSet),
# the node's id, advertised addresses, bootstrap and join follow from the pod's ordinal:
# <name>-0 founds the cluster once <name>-1 .. <name>-(FLOTILLA_REPLICAS - 1) all answer that
# they belong to none (a <name>-0 that lost its volume finds them in a cluster and asks to join
# it instead); <name>-N (N > 0) joins through <name>-0.
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
    replicas="${FLOTILLA_REPLICAS:?FLOTILLA_REPLICAS (the StatefulSet's founding size) is not set}"
    case "$replicas" in
      ''|*[!0-9]*|0) echo "flotilla-entrypoint: FLOTILLA_REPLICAS=$replicas is not a positive number" >&2; exit 2 ;;
    esac
    peers=""
    i=1
    while [ "$i" -lt "$replicas" ]; do
      peers="${peers:+$peers,}$base-$i.$domain:8001"
      i=$((i + 1))
    done
    export FLOTILLA_BOOTSTRAP=true
    if [ -n "$peers" ]; then export FLOTILLA_BOOTSTRAP_PEERS="$peers"; fi
  else
    export FLOTILLA_JOIN="https://$base-0.$domain:8001"
  fi
fi

exec /usr/local/bin/flotilla-node "$@"
