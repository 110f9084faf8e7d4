#!/usr/bin/env bash
# Retention under a steady load: one node takes --rate pipelines a second for --seconds, each
# a job that prints --output-bytes and succeeds, twice in the same run: first with no
# retention policy (the baseline), then on a fresh node with `--max-pipelines` kept per tenant
# and output removed after `--output-max-age`. The node's resident memory and the size of its
# data directory are sampled every 5 s; the script prints the end figures of both runs, their
# ratio, each run's growth over its second half, and writes the samples as CSV and an SVG
# plot. Each run ends with its jobs by state: a PENDING or SCHEDULED count near the rate times
# the run's length means the node fell behind, its state grew, and no line can be flat.
# The load is `flotilla-bench submit --step` (an open loop over kept-alive TLS connections).
#
#   bench/retention-soak.sh [--rate 20] [--seconds 300] [--output-bytes 2048] \
#       [--max-pipelines 1000] [--output-max-age 30s] [--node-args "FLAGS"] [--out DIR] \
#       [--runs "baseline retention"] [--workers-dir DIR]
#
# --runs picks the runs (either or both, in order); the end ratio needs both.
# --workers-dir puts the process pool's worker directories elsewhere than the run's directory
# (the node's data directory stays there): on an ext4 without a journal, as on the machine of
# docs/benchmarks.md, every file a worker creates makes the kernel scan recently deleted
# inodes (`find_inode_bit`, `recently_deleted`), half the node's CPU at 200 jobs a second;
# a tmpfs (`--workers-dir /dev/shm`) measures the node instead of that.
# --node-args adds flags to the node of both runs (for example a smaller
# --event-journal-events, to see what of the growth the journal's filling is).
#
# Uses FLOTILLA_BIN (default: the debug build); figures come from a release build. The issue's
# soak is --rate 200 --seconds 1800.
set -euo pipefail
cd "$(dirname "$0")/.."

rate=20
seconds=300
output_bytes=2048
max_pipelines=1000
output_max_age=30s
node_args=""
runs="baseline retention"
workers_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --output-bytes) output_bytes="$2"; shift 2 ;;
    --max-pipelines) max_pipelines="$2"; shift 2 ;;
    --output-max-age) output_max_age="$2"; shift 2 ;;
    --node-args) node_args="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --workers-dir) workers_dir="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

source bench/lib.sh
bench_setup retention-soak
api="https://127.0.0.1:18711"
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# One run: a fresh node, the policy (or none), the load with samples; appends to the CSV.
soak() {
  local label="$1" policy="$2" dir="$work/$1"
  mkdir -p "$dir"
  "$bin/flotilla-node" --id 1 --data-dir "$dir/data" --raft-addr 127.0.0.1:17711 --api-addr 127.0.0.1:18711 \
    --process-provider --process-work-dir "${workers_dir:-$dir}/workers-$label" --admin-token-file "$work/admin-token" $tls_args \
    --retention-interval-ms 1000 $node_args >>"$dir/node.log" 2>&1 &
  local node_pid=$!
  pids+=("$node_pid")
  for _ in $(seq 100); do "$bin/flotilla" --server "$api" cluster init >/dev/null 2>&1 && break; sleep 0.2; done
  for _ in $(seq 100); do curl_tls -sf "$api/v1/health/ready" >/dev/null && break; sleep 0.1; done
  "$bin/flotilla" --server "$api" pool register --name main --provider process --cpu-millis 64000 \
    --memory-mib 65536 --max-workers 1024 >/dev/null
  if [ -n "$policy" ]; then
    # shellcheck disable=SC2086
    "$bin/flotilla" --server "$api" retention set $policy >/dev/null
  fi
  echo "== $label: $rate pipelines/s for $seconds s ($output_bytes bytes of output each)${policy:+, policy $policy}"
  # The load: flotilla-bench's open loop over kept-alive TLS connections (a client that opened a
  # connection per request would measure TLS handshakes, not retention). The step prints with
  # the shell's builtin `printf`, so a job is one process: at 200 jobs a second, two more per
  # job (`head | tr`) took the two cores and the node fell behind.
  "$bin/flotilla-bench" --server 127.0.0.1:18711 submit --rate "$rate" --duration-s "$seconds" --warmup-s 0 \
    --clients 64 --step "printf '%${output_bytes}s' x" --json "$dir/load.json" >"$dir/load.txt" 2>&1 &
  local load_pid=$!
  pids+=("$load_pid")
  python3 - "$node_pid" "$dir" "$label" "$out/samples.csv" "$seconds" <<'PY'
import os, subprocess, sys, time
pid, data, label, csv, seconds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
def disk_kib():
    return int(subprocess.check_output(["du", "-sk", data + "/data"]).split()[0])
start = time.time()
samples = []
while time.time() - start < seconds + 15:
    samples.append((round(time.time() - start, 1), rss_kib(), disk_kib()))
    time.sleep(5)
new = not os.path.exists(csv)
with open(csv, "a") as f:
    if new:
        f.write("run,seconds,rss_kib,disk_kib\n")
    for t, r, d in samples:
        f.write(f"{label},{t},{r},{d}\n")
print(f"  end: RSS {samples[-1][1] // 1024} MiB, data {samples[-1][2] // 1024} MiB")
PY
  wait "$load_pid" || echo "  the load generator failed (see $dir/load.txt)"
  python3 - "$dir/load.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["result"]
print(f"  submitted {r['ok']} ({r['errors']} errors, {r['dropped']} arrivals dropped), "
      f"{r['throughput_per_s']:.0f}/s, p99 {r['latency_ms']['p99']:.1f} ms")
PY
  curl_tls -sf -H "Authorization: Bearer $FLOTILLA_TOKEN" "$api/v1/retention" >"$dir/retention.json" || true
  # Whether the node kept up: jobs by state at the end (any PENDING or RUNNING is a backlog),
  # and what RocksDB held.
  curl_tls -sf -H "Authorization: Bearer $FLOTILLA_TOKEN" "$api/metrics" >"$dir/metrics.txt" || true
  echo "  jobs at the end: $(grep -E '^flotilla_jobs\{' "$dir/metrics.txt" | sed -E 's/flotilla_jobs\{state="([A-Z_]+)"\} /\1=/' | tr '\n' ' ')"
  echo "  RocksDB memory: $(storage_memory_parts "$dir/metrics.txt")"
  kill -TERM "$node_pid"; wait "$node_pid" 2>/dev/null || true
}

for run in $runs; do
  case "$run" in
    baseline) soak baseline "" ;;
    retention) soak retention "--max-pipelines $max_pipelines --output-max-age $output_max_age" ;;
    *) echo "unknown run $run (baseline, retention)" >&2; exit 2 ;;
  esac
done
python3 - "$out/samples.csv" "$out/retention-soak.svg" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
runs = {}
for r in rows:
    runs.setdefault(r["run"], []).append((float(r["seconds"]), int(r["rss_kib"]) / 1024, int(r["disk_kib"]) / 1024))
end = {k: v[-1] for k, v in runs.items()}
if "baseline" in end and "retention" in end:
    b, k = end["baseline"], end["retention"]
    print(f"== at the end: RSS {k[1]:.0f} MiB with retention vs {b[1]:.0f} MiB without ({k[1] / b[1]:.2f}); "
          f"data {k[2]:.0f} MiB vs {b[2]:.0f} MiB ({k[2] / max(b[2], 1):.2f})")
for name, pts in sorted(runs.items()):
    # Flat or not: the growth over the second half of the run, per minute.
    half = [p for p in pts if p[0] >= pts[-1][0] / 2]
    span_min = max((half[-1][0] - half[0][0]) / 60, 1e-9)
    print(f"   {name}: second half grew RSS {(half[-1][1] - half[0][1]) / span_min:+.1f} MiB/min, "
          f"data {(half[-1][2] - half[0][2]) / span_min:+.1f} MiB/min")
W, H, M = 720, 300, 50
tmax = max(t for v in runs.values() for t, _, _ in v) or 1
def plot(idx, title, y0):
    vmax = max(p[idx] for v in runs.values() for p in v) or 1
    out = [f'<text x="{M}" y="{y0 - 8}" font-size="13">{title}</text>',
           f'<rect x="{M}" y="{y0}" width="{W - 2 * M}" height="{H - 2 * M}" fill="none" stroke="#999"/>',
           f'<text x="{M - 5}" y="{y0 + 10}" font-size="10" text-anchor="end">{vmax:.0f}</text>',
           f'<text x="{M - 5}" y="{y0 + H - 2 * M}" font-size="10" text-anchor="end">0</text>']
    for (name, pts), color in zip(sorted(runs.items()), ["#c33", "#36c"]):
        path = " ".join(f"{M + t / tmax * (W - 2 * M):.1f},{y0 + (H - 2 * M) * (1 - p / vmax):.1f}" for t, *ps in pts for p in [ps[idx - 1]])
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{W - M + 5}" y="{y0 + (H - 2 * M) * (1 - pts[-1][idx] / vmax):.1f}" font-size="11" fill="{color}">{name}</text>')
    return out
parts = plot(1, "resident memory (MiB)", 30) + plot(2, "data directory (MiB)", 30 + H)
parts.append(f'<text x="{W / 2}" y="{2 * H + 20}" font-size="11" text-anchor="middle">seconds (0 to {tmax:.0f})</text>')
svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{W + 60}" height="{2 * H + 30}" font-family="sans-serif">' + "".join(parts) + "</svg>\n"
open(sys.argv[2], "w").write(svg)
print(f"   samples: {sys.argv[1]}; plot: {sys.argv[2]}")
PY
