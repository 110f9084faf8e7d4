#!/usr/bin/env bash
# The Docker provider at scale: --jobs one-step jobs (`true` in the test image) through a
# 3-node cluster onto one Docker pool that runs --concurrency containers at once; every
# container must be created, run, reported and removed. Then the same count of
# `docker run --rm` with the same concurrency on the same engine, in the same run, as the
# baseline. Reports:
#   - success: jobs SUCCEEDED / jobs (goal 100%), containers left behind (goal 0);
#   - the provider's create call (create + start of one container), p50/p95/p99, from the
#     leader's `worker_create_seconds` histogram (bucket bounds: a factor of 2 apart);
#   - placed → started per job (`scheduled_at_ms` → `started_at_ms` of its attempt), p50/p95/p99;
#   - containers per second end to end against the baseline's, as a ratio.
#
#   bench/docker.sh [--jobs 1000] [--concurrency 8] [--out DIR]
#
# Uses FLOTILLA_BIN (default: the debug build); figures for docs/benchmarks.md come from a
# release build. Needs the Docker engine and the test image (scripts/test-image builds it).
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=1000
concurrency=8
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) jobs="$2"; shift 2 ;;
    --concurrency) concurrency="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
case "$jobs$concurrency" in *[!0-9]*) echo "--jobs and --concurrency take numbers" >&2; exit 2 ;; esac
[ "$jobs" -ge 1 ] && [ "$concurrency" -ge 1 ] || { echo "--jobs and --concurrency must be at least 1" >&2; exit 2; }

image="${FLOTILLA_TEST_IMAGE:-flotilla-test/busybox:1}"
scripts/test-image >/dev/null
cluster_name="benchdocker$$"
node_args="--docker-socket /var/run/docker.sock --cluster-name $cluster_name --leader-tick-ms 100"
source bench/lib.sh
bench_setup docker

# Whatever happens, this run's containers and tombstone volumes go with it.
docker_cleanup() {
  docker ps -aq --filter "label=flotilla.cluster=$cluster_name" | xargs -r docker rm -f >/dev/null 2>&1 || true
  docker volume ls -q --filter "label=flotilla.cluster=$cluster_name" | xargs -r docker volume rm >/dev/null 2>&1 || true
  docker ps -aq --filter "label=flotilla.bench=$cluster_name" | xargs -r docker rm -f >/dev/null 2>&1 || true
}
trap 'bench_cleanup; docker_cleanup' EXIT

echo "== flotilla ($bin), data in $work; $jobs jobs, $concurrency containers at once"
form_flotilla_cluster >/dev/null
flotilla pool register --name docker --provider docker --cpu-millis $((concurrency * 100)) \
  --memory-mib $((concurrency * 32)) --max-workers "$concurrency" --label runtime=docker >/dev/null

# The pipelines: at most 100 jobs each, one step `true`, no network.
python3 - "$work/pipelines" "$jobs" "$image" <<'EOF'
import json, os, sys
d, jobs, image = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.makedirs(d, exist_ok=True)
n = 0
while n < jobs:
    count = min(100, jobs - n)
    spec = {"name": f"docker-{n}", "jobs": [
        {"name": f"j{i}", "image": image, "steps": ["true"],
         "resources": {"cpu_millis": 100, "memory_mib": 32},
         "constraints": {"runtime": "docker"}} for i in range(count)]}
    with open(os.path.join(d, f"{n:07d}.json"), "w") as f:
        json.dump(spec, f)
    n += count
EOF

base="$(flotilla_base 1)"
api() { curl_tls -sf --max-time 30 -H "authorization: Bearer $FLOTILLA_TOKEN" "$@"; }

started_ms=$(date +%s%3N)
for f in "$work"/pipelines/*.json; do
  api -H 'content-type: application/json' --data-binary "@$f" "$base/v1/pipelines" >>"$work/submitted.jsonl"
  echo >>"$work/submitted.jsonl"
done

# Every job ends (bounded: 4 s per job at worst, so a stuck run fails rather than hangs).
deadline=$(( $(date +%s) + 60 + jobs * 4 ))
while :; do
  settled=$(api "$base/v1/pipelines?limit=1000&consistency=linearizable" | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
print(sum(1 for p in items if p["state"] in ("SUCCEEDED", "FAILED", "CANCELLED")), len(items))')
  read -r done_count total <<<"$settled"
  [ "$done_count" = "$total" ] && [ "$total" -gt 0 ] && break
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "error: only $done_count of $total pipelines settled in time" >&2
    exit 1
  fi
  sleep 1
done
finished_ms=$(date +%s%3N)

# Containers are removed after their jobs settle: wait (bounded) until none of this run's is left.
for _ in $(seq 120); do
  left=$(docker ps -aq --filter "label=flotilla.cluster=$cluster_name" | wc -l)
  [ "$left" -eq 0 ] && break
  sleep 1
done

leader="$(flotilla -o json cluster status | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])')"
api "https://127.0.0.1:1870$leader/metrics" >"$work/metrics.txt" 2>/dev/null \
  || api "http://127.0.0.1:1870$leader/metrics" >"$work/metrics.txt"
# Every job of every pipeline, with its attempts.
python3 - "$work/submitted.jsonl" >"$work/job-ids" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if line:
        for j in json.loads(line)["jobs"]:
            print(j["id"])
EOF
while read -r id; do
  api "$base/v1/jobs/$id"
  echo
done <"$work/job-ids" >"$work/jobs.jsonl"

# The baseline: the same number of containers, the same concurrency, `docker run --rm`.
baseline_started_ms=$(date +%s%3N)
seq "$jobs" | xargs -P "$concurrency" -I{} docker run --rm --network none \
  --label "flotilla.bench=$cluster_name" "$image" true
baseline_finished_ms=$(date +%s%3N)

python3 - "$work/jobs.jsonl" "$work/metrics.txt" "$jobs" "$left" \
  $((finished_ms - started_ms)) $((baseline_finished_ms - baseline_started_ms)) "$out/docker.json" <<'EOF'
import json, re, sys
jobs_file, metrics_file, n, left, flotilla_ms, baseline_ms, out = sys.argv[1:8]
n, left, flotilla_ms, baseline_ms = int(n), int(left), int(flotilla_ms), int(baseline_ms)
jobs = [json.loads(l) for l in open(jobs_file) if l.strip()]
succeeded = sum(1 for j in jobs if j["state"] == "SUCCEEDED")
attempts = sum(len(j.get("attempts", [])) for j in jobs)

def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else None

start = [a["started_at_ms"] - a["scheduled_at_ms"] for j in jobs for a in j.get("attempts", [])
         if a.get("started_at_ms") is not None]
# The leader's histogram of create calls, Docker's only: the bound of the bucket holding each
# quantile.
buckets = []
for line in open(metrics_file):
    m = re.match(r'^flotilla_worker_create_seconds_bucket\{(.*)\} (\S+)$', line.strip()) or \
        re.match(r'^worker_create_seconds_bucket\{(.*)\} (\S+)$', line.strip())
    if m and 'provider="docker"' in m.group(1):
        le = re.search(r'le="([^"]+)"', m.group(1)).group(1)
        buckets.append((float("inf") if le == "+Inf" else float(le), float(m.group(2))))
buckets.sort()
def bucket_quantile(q):
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    for le, count in buckets:
        if count >= q * total:
            return le
result = {
    "jobs": n, "succeeded": succeeded, "success_percent": round(100.0 * succeeded / n, 2),
    "attempts": attempts, "containers_left": left,
    "create_call_s_bucket": {"p50": bucket_quantile(0.5), "p95": bucket_quantile(0.95), "p99": bucket_quantile(0.99),
                             "calls": buckets[-1][1] if buckets else 0},
    "placed_to_started_ms": {"p50": pct(start, 50), "p95": pct(start, 95), "p99": pct(start, 99)},
    "flotilla_containers_per_s": round(n / (flotilla_ms / 1000), 2),
    "docker_run_containers_per_s": round(n / (baseline_ms / 1000), 2),
}
result["ratio_to_docker_run"] = round(result["flotilla_containers_per_s"] / result["docker_run_containers_per_s"], 2)
json.dump(result, open(out, "w"), indent=2)
print(json.dumps(result, indent=2))
if succeeded != n or left != 0:
    sys.exit(1)
EOF
echo "results in $out"
