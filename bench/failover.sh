#!/usr/bin/env bash
# Failover under load: a 3-node cluster takes a steady stream of submissions (open loop)
# while the leader is killed with `kill -9` again and again (and restarted). For each kill:
# the time from the kill to the first acknowledged submission committed after it (a pipeline
# id above every id acknowledged before the kill). Then every acknowledged pipeline must exist.
#
#   bench/failover.sh [--kills 20] [--rate 100] [--out DIR]
#
# Uses FLOTILLA_BIN (default: the debug build); benchmark figures come from a release build.
set -euo pipefail
cd "$(dirname "$0")/.."

kills=20
rate=100
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --kills) kills="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

source bench/lib.sh
bench_setup failover
echo "== flotilla ($bin), data in $work"
form_flotilla_cluster

leader() { curl_tls -sf --max-time 2 "https://127.0.0.1:1870$1/v1/cluster" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("leader") or "")'; }

duration_s=$((kills * 6 + 6))
flotilla_bench submit --rate "$rate" --clients 32 --duration-s "$duration_s" --warmup-s 0 \
  --acks "$out/acks.txt" --json "$out/load.json" >"$out/load.txt" 2>&1 &
load_pid=$!
: >"$out/kills.txt"
for k in $(seq "$kills"); do
  sleep 4
  l=""
  for _ in $(seq 50); do
    for i in 1 2 3; do l="$(leader "$i" || true)"; [ -n "$l" ] && break; done
    [ -n "$l" ] && break
    sleep 0.2
  done
  [ -n "$l" ] || { echo "error: no leader before kill $k" >&2; exit 1; }
  echo "$(date +%s%3N) $l" >>"$out/kills.txt"
  kill -9 "${node_pid[$l]}"
  sleep 1
  start_flotilla_node "$l"
  echo "kill $k: node $l"
done
wait "$load_pid" || { cat "$out/load.txt"; exit 1; }
cat "$out/load.txt"

# Every acknowledged pipeline, read back through the leader.
python3 - "$out" "$servers" <<'PY'
import json, os, ssl, sys, urllib.request
out, servers = sys.argv[1], sys.argv[2].split(",")
acks = [tuple(map(int, l.split())) for l in open(f"{out}/acks.txt") if l.strip()]
kills = [tuple(map(int, l.split())) for l in open(f"{out}/kills.txt") if l.strip()]
acks.sort()
gaps = []
for t, node in kills:
    before = max((p for (at, p) in acks if at <= t), default=0)
    after = next(((at, p) for (at, p) in acks if at > t and p > before), None)
    if after:
        gaps.append(after[0] - t)
present = set()
def get(path):
    for s in servers:
        try:
            req = urllib.request.Request(f"https://{s}{path}", headers={"authorization": "Bearer " + os.environ["FLOTILLA_TOKEN"]})
            tls = ssl.create_default_context(cafile=os.environ["FLOTILLA_CA_FILE"])
            with urllib.request.urlopen(req, timeout=10, context=tls) as r:
                return json.load(r)
        except Exception:
            continue
    raise SystemExit("no server answered")
after = 0
while True:
    page = get(f"/v1/pipelines?consistency=linearizable&limit=1000&after={after}")
    present.update(p["id"] for p in page["items"])
    if page.get("next_after") is None:
        break
    after = page["next_after"]
lost = sorted({p for (_, p) in acks} - present)
gaps.sort()
pct = lambda q: gaps[min(len(gaps) - 1, int(q * len(gaps)))] if gaps else None
summary = {"kills": len(kills), "measured": len(gaps), "acknowledged": len(acks), "lost": len(lost),
           "failover_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": gaps[-1] if gaps else None}}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print(json.dumps(summary))
if lost:
    raise SystemExit(f"LOST acknowledged pipelines: {lost[:20]}")
PY
