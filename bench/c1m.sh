#!/usr/bin/env bash
# The scheduler at C1M scale: a 3-node cluster with the `sim` provider places --jobs jobs on
# --pools simulated pools through the real write path (`flotilla-bench place`), then reports
# placements per second end to end, the time until every job is RUNNING, the ratios to
# Nomad's C1M (3,300/s), and the leader's resident memory with every job in its state.
#
#   bench/c1m.sh [--pools 5000] [--jobs 1000000] [--jobs-per-pipeline 1000] [--clients 8] [--out DIR]
#
# Uses FLOTILLA_BIN (default: the debug build); benchmark figures come from a release build
# (debug builds check every invariant after every apply).
set -euo pipefail
cd "$(dirname "$0")/.."

pools=5000
jobs=1000000
per_pipeline=1000
clients=8
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pools) pools="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --jobs-per-pipeline) per_pipeline="$2"; shift 2 ;;
    --clients) clients="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

node_args="--sim-duration-ms 3600000 --max-request-bytes 4194304"
source bench/lib.sh
bench_setup c1m
echo "== flotilla ($bin), data in $work"
form_flotilla_cluster >/dev/null
flotilla_bench place --pools "$pools" --jobs "$jobs" --jobs-per-pipeline "$per_pipeline" --clients "$clients" --json "$out/c1m.json"

leader="$(flotilla -o json cluster status | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])')"
rss_kib="$(awk '/VmRSS/ {print $2}' "/proc/${node_pid[$leader]}/status")"
peak_kib="$(awk '/VmHWM/ {print $2}' "/proc/${node_pid[$leader]}/status")"
echo "leader (node $leader) resident memory with $jobs jobs placed: $((rss_kib / 1024)) MiB ($((rss_kib * 1024 / jobs)) bytes per job); peak $((peak_kib / 1024)) MiB"
# What of it RocksDB holds (memtables, block cache, table readers), from the leader's metrics.
curl_tls -sf --max-time 10 -H "Authorization: Bearer $FLOTILLA_TOKEN" "$(flotilla_base "$leader")/metrics" >"$out/metrics.txt" || true
echo "  RocksDB memory (bytes): $(storage_memory_parts "$out/metrics.txt")"
echo "results in $out"
