#!/usr/bin/env bash
# Side by side on this machine, in one run: a 3-member etcd cluster (Debian's etcd-server,
# default fsync) and a 3-node Flotilla cluster, data on the same disk, both driven by
# `flotilla bench` with the same closed-loop concurrency levels. Prints throughput and p99
# latency per level and the ratio Flotilla/etcd, and writes the raw results as JSON.
#
#   bench/vs-etcd.sh [--levels "1 16 64 256"] [--duration-s 10] [--out DIR]
#
# Needs: `apt-get install -y etcd-server`; the Flotilla binaries (built by `cargo build
# --workspace --all-targets`, or set FLOTILLA_BIN to a directory holding flotilla and
# flotilla-node, e.g. a release build).
set -euo pipefail
cd "$(dirname "$0")/.."

levels="1 16 64 256"
duration_s=10
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --levels) levels="$2"; shift 2 ;;
    --duration-s) duration_s="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

command -v etcd >/dev/null || { echo "error: etcd not found; apt-get install -y etcd-server" >&2; exit 1; }
source bench/lib.sh
bench_setup vs-etcd

echo "== etcd $(etcd --version | head -1 | awk '{print $3}'), data in $work"
cluster="e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803"
for i in 1 2 3; do
  etcd --name "e$i" --data-dir "$work/etcd-$i" \
    --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
    --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
    --initial-cluster "$cluster" --initial-cluster-state new --log-level error >"$work/etcd-$i.log" 2>&1 &
  pids+=($!)
done
etcd_endpoints="http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793"

echo "== flotilla ($bin)"
form_flotilla_cluster
for _ in $(seq 100); do
  curl -sf -X POST -d '{"key":"cmVhZHk=","value":"eQ=="}' http://127.0.0.1:23791/v3/kv/put >/dev/null && break
  sleep 0.2
done

for c in $levels; do
  echo "== $c clients"
  flotilla_bench etcd-put --endpoints "$etcd_endpoints" --clients "$c" --duration-s "$duration_s" --json "$out/etcd-$c.json"
  flotilla_bench submit --clients "$c" --duration-s "$duration_s" --json "$out/flotilla-$c.json"
done

python3 - "$out" $levels <<'PY'
import json, sys
out, levels = sys.argv[1], sys.argv[2:]
rows = []
print()
print("| clients | etcd ops/s | Flotilla ops/s | ratio | etcd p99 ms | Flotilla p99 ms | ratio (lower is better) |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for c in levels:
    e = json.load(open(f"{out}/etcd-{c}.json"))["result"]
    f = json.load(open(f"{out}/flotilla-{c}.json"))["result"]
    tr = f["throughput_per_s"] / e["throughput_per_s"]
    lr = f["latency_ms"]["p99"] / e["latency_ms"]["p99"]
    rows.append({"clients": int(c), "etcd": e, "flotilla": f, "throughput_ratio": tr, "p99_ratio": lr})
    print(f"| {c} | {e['throughput_per_s']:.0f} | {f['throughput_per_s']:.0f} | {tr:.2f} | {e['latency_ms']['p99']:.2f} | {f['latency_ms']['p99']:.2f} | {lr:.2f} |")
json.dump(rows, open(f"{out}/summary.json", "w"), indent=2)
print(f"\nraw results: {out}")
PY
