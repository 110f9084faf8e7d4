#!/usr/bin/env bash
# Restart with a large state: a single node holds --jobs finished jobs (submitted in pipelines
# of --jobs-per-pipeline onto a pool that runs one job at a time, then cancelled, so they end
# without running), snapshots every 500 entries; then the node is stopped (SIGTERM) and started
# again. Reports the time from the start to the first ready answer (storage opened, snapshot
# restored, log replayed, elected) and to serving the same applied index, the resident memory
# before and after, the bytes per job of that memory, and the size of the data directory.
#
#   bench/restart.sh [--jobs 1000000] [--jobs-per-pipeline 1000] [--clients 4]
#
# Uses FLOTILLA_BIN (default: the debug build); figures come from a release build.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=1000000
per_pipeline=1000
clients=4
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) jobs="$2"; shift 2 ;;
    --jobs-per-pipeline) per_pipeline="$2"; shift 2 ;;
    --clients) clients="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

source bench/lib.sh
bench_setup restart
api="https://127.0.0.1:18701"
start_node() {
  "$bin/flotilla-node" --id 1 --data-dir "$work/flotilla-1" --raft-addr 127.0.0.1:17701 --api-addr 127.0.0.1:18701 \
    --process-provider --process-work-dir "$work/workers" --admin-token-file "$work/admin-token" $tls_args --snapshot-after-entries 500 --max-request-bytes 4194304 >>"$work/flotilla-1.log" 2>&1 &
  node_pid=$!
  pids+=($!)
}
rss_mib() { awk '/VmRSS/ {printf "%d", $2 / 1024}' "/proc/$1/status"; }

echo "== flotilla ($bin), data in $work"
base_start=$(date +%s.%N)
start_node
for _ in $(seq 100); do "$bin/flotilla" --server "$api" cluster init >/dev/null 2>&1 && break; sleep 0.2; done
for _ in $(seq 100); do curl_tls -sf "$api/v1/health/ready" >/dev/null && break; sleep 0.1; done
empty_rss=$(rss_mib "$node_pid")
"$bin/flotilla" --server "$api" pool register --name one --provider process --cpu-millis 1 --memory-mib 1 --max-workers 1 >/dev/null

echo "== $jobs jobs in pipelines of $per_pipeline, then cancelled"
python3 - "$api" "$jobs" "$per_pipeline" "$clients" <<'PY'
import concurrent.futures, json, os, ssl, sys, time, urllib.request
api, jobs, per, clients = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
# The cluster's CA alone, as for curl_tls.
ctx = ssl.create_default_context(cafile=os.environ["FLOTILLA_CA_FILE"])
def post(path, body):
    req = urllib.request.Request(api + path, data=json.dumps(body).encode(), headers={"content-type": "application/json", "authorization": "Bearer " + os.environ["FLOTILLA_TOKEN"]})
    with urllib.request.urlopen(req, timeout=120, context=ctx) as r:
        return json.load(r)
def submit(p):
    n = min(per, jobs - p * per)
    spec = {"name": f"r{p}", "jobs": [{"name": f"j{i}", "steps": ["true"], "resources": {"cpu_millis": 1, "memory_mib": 1}} for i in range(n)]}
    pid = post("/v1/pipelines", spec)["pipeline"]
    post(f"/v1/pipelines/{pid}/cancel", {})
t = time.time()
with concurrent.futures.ThreadPoolExecutor(clients) as ex:
    list(ex.map(submit, range((jobs + per - 1) // per)))
print(f"  submitted and cancelled in {time.time() - t:.1f} s")
PY
for _ in $(seq 600); do
  active=$(curl_tls -sf -H "Authorization: Bearer $FLOTILLA_TOKEN" "$api/v1/jobs?state=RUNNING&limit=1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
  [ "$active" = 0 ] && break
  sleep 0.5
done
applied=$(curl_tls -sf "$api/v1/cluster" | python3 -c 'import json,sys; print(json.load(sys.stdin)["applied_index"])')
before_rss=$(rss_mib "$node_pid")
echo "  applied index $applied; resident memory $before_rss MiB (empty node: $empty_rss MiB)"

echo "== restart"
kill -TERM "$node_pid"; wait "$node_pid" 2>/dev/null || true
data_mib=$(du -sm "$work/flotilla-1" | cut -f1)
t0=$(date +%s.%N)
start_node
until curl_tls -sf "$api/v1/health/ready" >/dev/null 2>&1; do sleep 0.02; done
t_ready=$(date +%s.%N)
until [ "$(curl_tls -sf "$api/v1/cluster" | python3 -c 'import json,sys; print(json.load(sys.stdin)["applied_index"] or 0)')" -ge "$applied" ]; do sleep 0.02; done
t_caught_up=$(date +%s.%N)
after_rss=$(rss_mib "$node_pid")
python3 - "$jobs" "$t0" "$t_ready" "$t_caught_up" "$before_rss" "$after_rss" "$empty_rss" "$data_mib" <<'PY'
import sys
jobs, t0, ready, caught, before, after, empty, data = int(sys.argv[1]), *map(float, sys.argv[2:5]), *map(int, sys.argv[5:9])
print(f"restart with {jobs} finished jobs: ready after {ready - t0:.2f} s, applied index restored after {caught - t0:.2f} s")
print(f"  resident memory {after} MiB after restart ({before} MiB before; {empty} MiB empty): "
      f"{(after - empty) * 1048576 / jobs:.0f} bytes per job")
print(f"  data directory {data} MiB on disk")
PY
