# Shared by the bench scripts (sourced): a work directory whose processes stop on exit, and a
# local 3-node Flotilla cluster on 127.0.0.1.
#   bench_setup NAME, start_flotilla_node ID, form_flotilla_cluster, flotilla ARGS...,
#   flotilla_bench ARGS... (the load generators, `bench/src`), flotilla_status ID
# `node_args` (a string) adds flags to every node; `bench_plaintext=1` (set before sourcing)
# runs the nodes --insecure-plaintext, for a comparison with TLS.

flotilla_bin_dir() {
  local bin="${FLOTILLA_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/flotilla-target}/debug}"
  for b in flotilla flotilla-node flotilla-bench; do
    [ -x "$bin/$b" ] || { echo "error: $bin/$b not found; build first or set FLOTILLA_BIN" >&2; exit 1; }
  done
  echo "$bin"
}

bin="$(flotilla_bin_dir)"

# Makes $work (on disk, not tmpfs) and $out (unless given), and stops every process listed in
# `pids` when the script exits.
bench_setup() {
  work="$(mktemp -d "${BENCH_DIR:-/var/tmp}/flotilla-$1.XXXXXX")"
  out="${out:-$work/results}"
  mkdir -p "$out"
  # The cluster asks for tokens: one pre-shared admin token for every node, exported for the
  # CLI, the load generators and the scripts' own requests (auth_header).
  ( umask 077; "$bin/flotilla" token generate >"$work/admin-token" )
  FLOTILLA_TOKEN="$(cat "$work/admin-token")"
  export FLOTILLA_TOKEN
  # TLS, as deployed: one cluster CA for every node (tls_args); the CLI, the load generators
  # and curl (curl_tls) trust it alone.
  "$bin/flotilla" tls ca-create --name bench --out "$work/tls" >/dev/null
  FLOTILLA_CA_FILE="$work/tls/ca.crt"
  export FLOTILLA_CA_FILE
  tls_args="--tls-ca-file $work/tls/ca.crt --tls-ca-key-file $work/tls/ca.key"
  [ "${bench_plaintext:-0}" = 1 ] && tls_args="--insecure-plaintext"
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
if [ "${bench_plaintext:-0}" = 1 ]; then
  servers="http://127.0.0.1:18701,http://127.0.0.1:18702,http://127.0.0.1:18703"
else
  servers="127.0.0.1:18701,127.0.0.1:18702,127.0.0.1:18703"
fi
declare -A node_pid

flotilla() { "$bin/flotilla" --server "$servers" "$@"; }
curl_tls() { curl --cacert "$FLOTILLA_CA_FILE" "$@"; }
flotilla_bench() { "$bin/flotilla-bench" --server "$servers" "$@"; }
# The API's base URL on node I, over TLS or plain as the nodes run.
flotilla_base() {
  if [ "${bench_plaintext:-0}" = 1 ]; then echo "http://127.0.0.1:1870$1"; else echo "https://127.0.0.1:1870$1"; fi
}
# GET /v1/cluster of node I.
flotilla_status() {
  curl_tls -sf --max-time 2 -H "authorization: Bearer $FLOTILLA_TOKEN" "$(flotilla_base "$1")/v1/cluster"
}
# What RocksDB holds by part (`part=bytes ...`), from a node's /metrics saved in FILE.
storage_memory_parts() {
  grep -E '^flotilla_storage_memory_bytes' "$1" | sed -E 's/.*part="([a-z_]+)"\} ([0-9.e+]+)/\1=\2/' | tr '\n' ' '
}

start_flotilla_node() {
  local i="$1"
  "$bin/flotilla-node" --id "$i" --data-dir "$work/flotilla-$i" \
    --raft-addr "127.0.0.1:1770$i" --api-addr "127.0.0.1:1870$i" \
    --process-provider --process-work-dir "$work/workers" --admin-token-file "$work/admin-token" \
    $tls_args --max-concurrent-requests 1024 ${node_args:-} >>"$work/flotilla-$i.log" 2>&1 &
  node_pid[$i]=$!
  pids+=($!)
}

# Starts nodes 1-3, initializes, adds members, and registers a pool that runs one job at a time
# (submissions need a pool that fits them; this keeps the load on the write path).
form_flotilla_cluster() {
  for i in 1 2 3; do start_flotilla_node "$i"; done
  # Node 1 alone: sent to the list, init would found the cluster on whichever node answered
  # first, and node 1 (first in every later request's list) would stand outside it.
  for _ in $(seq 100); do "$bin/flotilla" --server "${servers%%,*}" cluster init >/dev/null 2>&1 && break; sleep 0.2; done
  for i in 2 3; do
    for _ in $(seq 100); do
      flotilla cluster add --id "$i" --raft-addr "127.0.0.1:1770$i" --api-addr "127.0.0.1:1870$i" >/dev/null 2>&1 && break
      sleep 0.2
    done
  done
  flotilla pool register --name bench --provider process --cpu-millis 1 --memory-mib 1 --max-workers 1 >/dev/null
  flotilla cluster status
}

# A 3-member etcd cluster beside it (Debian's etcd-server, default settings):
#   start_etcd_member I, form_etcd_cluster, etcd_leader (prints 1-3 or nothing), etcd_endpoint I
# `etcd_pid[I]` holds each member's pid. A member restarted on its data directory rejoins.
# Over http unless the script sets `etcd_scheme=https` and the certificate flags in `etcd_tls`
# (an array), with a CA that `FLOTILLA_CA_FILE` trusts.
declare -A etcd_pid
etcd_scheme="${etcd_scheme:-http}"
etcd_tls=()
etcd_endpoint() { echo "$etcd_scheme://127.0.0.1:2379$1"; }
etcd_curl() { curl -sf --max-time 2 --cacert "$FLOTILLA_CA_FILE" "$@"; }

start_etcd_member() {
  local i="$1" peers="e1=$etcd_scheme://127.0.0.1:23801,e2=$etcd_scheme://127.0.0.1:23802,e3=$etcd_scheme://127.0.0.1:23803"
  command -v etcd >/dev/null || { echo "error: etcd not found; apt-get install -y etcd-server" >&2; exit 1; }
  etcd --name "e$i" --data-dir "$work/etcd-$i" \
    --listen-client-urls "$(etcd_endpoint "$i")" --advertise-client-urls "$(etcd_endpoint "$i")" \
    --listen-peer-urls "$etcd_scheme://127.0.0.1:2380$i" --initial-advertise-peer-urls "$etcd_scheme://127.0.0.1:2380$i" \
    --initial-cluster "$peers" --initial-cluster-state new --log-level error "${etcd_tls[@]}" >>"$work/etcd-$i.log" 2>&1 &
  etcd_pid[$i]=$!
  pids+=($!)
}

form_etcd_cluster() {
  for i in 1 2 3; do start_etcd_member "$i"; done
  for _ in $(seq 100); do
    etcd_curl -X POST -d '{"key":"cmVhZHk=","value":"eQ=="}' "$(etcd_endpoint 1)/v3/kv/put" >/dev/null && return 0
    sleep 0.2
  done
  echo "error: etcd did not take a write" >&2
  exit 1
}

# The member (1-3) that each live member names as leader, from the first that answers.
etcd_leader() {
  local i status
  declare -A member
  for i in 1 2 3; do
    status="$(etcd_curl --max-time 1 -X POST -d '{}' "$(etcd_endpoint "$i")/v3/maintenance/status" || true)"
    [ -n "$status" ] || continue
    member[$i]="$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["header"]["member_id"], d.get("leader",""))' <<<"$status")"
  done
  local leader_id=""
  for i in "${!member[@]}"; do leader_id="${member[$i]#* }"; [ -n "$leader_id" ] && break; done
  for i in "${!member[@]}"; do
    [ "${member[$i]%% *}" = "$leader_id" ] && { echo "$i"; return 0; }
  done
  return 0
}
