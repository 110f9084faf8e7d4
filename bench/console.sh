#!/usr/bin/env bash
# The web console with a large history: a 3-node cluster with a `sim` pool is filled with
# --pipelines one-job pipelines (they settle at once and are archived on disk), then every
# console page and BFF route is read --requests times, one request at a time, from one node
# (`flotilla-bench console`): p50/p95/max and bytes per route, each p95 against the REST list's
# p95 measured in the same run.
#
#   bench/console.sh [--pipelines 100000] [--requests 200] [--out DIR]
#
# Uses FLOTILLA_BIN (default: the debug build); benchmark figures come from a release build.
set -euo pipefail
cd "$(dirname "$0")/.."

pipelines=100000
requests=200
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pipelines) pipelines="$2"; shift 2 ;;
    --requests) requests="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

node_args="--sim-duration-ms 1"
source bench/lib.sh
bench_setup console
echo "== flotilla ($bin), data in $work"
form_flotilla_cluster >/dev/null
flotilla pool register --name sim --provider sim --cpu-millis 1000000 --memory-mib 1000000 --max-workers 1000 >/dev/null
flotilla_bench console --pipelines "$pipelines" --requests "$requests" --json "$out/console.json"
echo "results in $out"
