#!/usr/bin/env bash
# Side by side on this machine, in one run: a 3-member etcd cluster (Debian's etcd-server,
# default fsync) and a 3-node Flotilla cluster, data on the same disk, both driven by
# `flotilla bench` with the same closed-loop concurrency levels. Prints throughput and p99
# latency per level and the ratio Flotilla/etcd, and writes the raw results as JSON.
#
#   bench/vs-etcd.sh [--levels "1 16 64 256"] [--duration-s 10] [--transport tls|plain] [--out DIR]
#
# --transport tls (the default): both with TLS as each is deployed securely: Flotilla's API
# over HTTPS and mutual TLS between its nodes; etcd's client URLs over HTTPS and mutual TLS
# between its peers (certificates from a throw-away CA made with openssl). --transport plain:
# Flotilla with --insecure-plaintext and etcd over http, the comparison of earlier runs. Run
# both to see what TLS costs each.
#
# Needs: `apt-get install -y etcd-server`; the Flotilla binaries (built by `cargo build
# --workspace --all-targets`, or set FLOTILLA_BIN to a directory holding flotilla and
# flotilla-node, e.g. a release build).
set -euo pipefail
cd "$(dirname "$0")/.."

levels="1 16 64 256"
duration_s=10
out=""
transport=tls
while [ $# -gt 0 ]; do
  case "$1" in
    --levels) levels="$2"; shift 2 ;;
    --duration-s) duration_s="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --transport) transport="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

case "$transport" in tls|plain) ;; *) echo "--transport is tls or plain" >&2; exit 2 ;; esac
command -v etcd >/dev/null || { echo "error: etcd not found; apt-get install -y etcd-server" >&2; exit 1; }
[ "$transport" = plain ] && bench_plaintext=1
source bench/lib.sh
bench_setup vs-etcd

if [ "$transport" = tls ]; then
  command -v openssl >/dev/null || { echo "error: openssl not found; apt-get install -y openssl" >&2; exit 1; }
  etcd_scheme=https
  d="$work/etcd-tls"
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=bench etcd CA" -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=etcd" \
    -keyout "$d/etcd.key" -out "$d/etcd.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$d/ext"
  openssl x509 -req -in "$d/etcd.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
    -extfile "$d/ext" -out "$d/etcd.crt" 2>/dev/null
  etcd_tls=(--cert-file "$d/etcd.crt" --key-file "$d/etcd.key"
    --peer-cert-file "$d/etcd.crt" --peer-key-file "$d/etcd.key" --peer-trusted-ca-file "$d/ca.crt"
    --peer-client-cert-auth)
  # The load generators trust both CAs (one bundle).
  cat "$FLOTILLA_CA_FILE" "$d/ca.crt" >"$work/both-ca.crt"
  FLOTILLA_CA_FILE="$work/both-ca.crt"
fi

echo "== etcd $(etcd --version | head -1 | awk '{print $3}'), $transport, data in $work"
form_etcd_cluster
etcd_endpoints="$(etcd_endpoint 1),$(etcd_endpoint 2),$(etcd_endpoint 3)"

echo "== flotilla ($bin), $transport"
form_flotilla_cluster

for c in $levels; do
  echo "== $c clients"
  flotilla_bench etcd-put --endpoints "$etcd_endpoints" --clients "$c" --duration-s "$duration_s" --json "$out/etcd-$c.json"
  flotilla_bench submit --clients "$c" --duration-s "$duration_s" --json "$out/flotilla-$c.json"
done

# How long the followers went between two messages of the leader over the whole run: the
# measure the heartbeat and election timeouts are sized from (raft/leader_contact.rs).
for i in 1 2 3; do
  url="$(echo "$servers" | cut -d, -f"$i")"
  case "$url" in http://*) ;; *) url="https://$url" ;; esac
  curl -sf --cacert "$FLOTILLA_CA_FILE" -H "authorization: Bearer $FLOTILLA_TOKEN" "$url/metrics" >"$out/metrics-$i.txt" || true
done
python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
worst = None
for i in (1, 2, 3):
    buckets = []
    for line in open(f"{out}/metrics-{i}.txt"):
        m = re.match(r'flotilla_raft_leader_contact_gap_seconds_bucket\{le="([^"]+)"\} (\d+)', line)
        if m:
            buckets.append((float(m.group(1)), int(m.group(2))))
    if not buckets or buckets[-1][1] == 0:
        continue
    total = buckets[-1][1]
    # The smallest bucket bound that holds every gap, and the one that holds 99.9% of them.
    every = next(le for le, n in buckets if n == total)
    most = next(le for le, n in buckets if n >= 0.999 * total)
    print(f"node {i}: {total} messages from the leader; every gap <= {every * 1000:.0f} ms, 99.9% <= {most * 1000:.0f} ms")
    worst = every if worst is None else max(worst, every)
if worst is not None:
    print(f"longest gap between a leader's messages on any follower: <= {worst * 1000:.0f} ms")
PY

python3 - "$out" "$transport" $levels <<'PY'
import json, sys
out, transport, levels = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = []
print()
print(f"transport: {transport}")
print("| clients | etcd ops/s | Flotilla ops/s | ratio | etcd p99 ms | Flotilla p99 ms | ratio (lower is better) |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for c in levels:
    e = json.load(open(f"{out}/etcd-{c}.json"))["result"]
    f = json.load(open(f"{out}/flotilla-{c}.json"))["result"]
    tr = f["throughput_per_s"] / e["throughput_per_s"]
    lr = f["latency_ms"]["p99"] / e["latency_ms"]["p99"]
    rows.append({"clients": int(c), "transport": transport, "etcd": e, "flotilla": f, "throughput_ratio": tr, "p99_ratio": lr})
    print(f"| {c} | {e['throughput_per_s']:.0f} | {f['throughput_per_s']:.0f} | {tr:.2f} | {e['latency_ms']['p99']:.2f} | {f['latency_ms']['p99']:.2f} | {lr:.2f} |")
json.dump(rows, open(f"{out}/summary.json", "w"), indent=2)
print(f"\nraw results: {out}")
PY
