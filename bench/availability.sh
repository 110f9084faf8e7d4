#!/usr/bin/env bash
# Availability through faults, etcd and Flotilla side by side in one run. Each system is a
# fresh 3-member cluster on this machine taking a steady stream of writes (open loop: etcd
# puts, Flotilla one-job submissions) through three fault windows, one after the other:
#
#   leader-kill     the leader is killed with `kill -9` and kept down for --down-s seconds
#                   (longer than any election), then restarted; --kills times. Figure: the time
#                   from the kill to the first acknowledgment of a write sent after it (so
#                   committed after it), which must come while the killed member is still down.
#   leader-pause    the leader is stopped (SIGSTOP) for --pause-s seconds and resumed; the load
#                   goes to the two followers. Figure: the longest gap between acknowledged
#                   writes from the stop until 10 s after the resume.
#   follower-pause  a follower is stopped for --pause-s seconds and resumed; the load goes to
#                   the other two. Figure: the same longest gap, and whether the leader changed.
#
# Before them, a window without faults (--steady-s seconds at --steady-rate writes/s to all
# three members): the longest gap between acknowledged writes and whether the leader or its
# term changed, which it must not (a false election).
#
# Both run with their default timeouts unless `node_args` (the environment) gives Flotilla's
# nodes other flags, e.g. node_args="--heartbeat-interval-ms 50 --election-timeout-min-ms 250
# --election-timeout-max-ms 500"; over plain HTTP (the transport does not change an election).
# Then every pipeline Flotilla acknowledged is read back (linearizable): none lost.
#
#   bench/availability.sh [--kills 20] [--down-s 8] [--pause-s 10] [--rate 100]
#                         [--steady-s 60] [--steady-rate 1000]
#                         [--timeout-ms 1000] [--systems "etcd flotilla"] [--out DIR]
#
# Needs `apt-get install -y etcd-server` and the Flotilla binaries (FLOTILLA_BIN, default the
# debug build; figures come from a release build).
set -euo pipefail
cd "$(dirname "$0")/.."

kills=20
down_s=8
pause_s=10
rate=100
steady_s=60
steady_rate=1000
timeout_ms=1000
systems="etcd flotilla"
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --kills) kills="$2"; shift 2 ;;
    --down-s) down_s="$2"; shift 2 ;;
    --pause-s) pause_s="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --steady-s) steady_s="$2"; shift 2 ;;
    --steady-rate) steady_rate="$2"; shift 2 ;;
    --timeout-ms) timeout_ms="$2"; shift 2 ;;
    --systems) systems="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
for n in "$kills" "$down_s" "$pause_s" "$rate" "$steady_s" "$steady_rate" "$timeout_ms"; do
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -gt 0 ] || { echo "error: counts and durations are positive integers" >&2; exit 2; }
done
[ "$steady_s" -ge 3 ] || { echo "error: --steady-s is at least 3" >&2; exit 2; }
for s in $systems; do
  case "$s" in etcd|flotilla) ;; *) echo "error: --systems takes etcd and/or flotilla" >&2; exit 2 ;; esac
done

bench_plaintext=1
source bench/lib.sh
bench_setup availability
echo "== availability: $systems; $kills kills (down $down_s s), pauses of $pause_s s, $rate writes/s; results in $out"

flotilla_leader() {
  local i l
  for i in 1 2 3; do
    l="$(flotilla_status "$i" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("leader") or "")' 2>/dev/null || true)"
    [ -n "$l" ] && { echo "$l"; return 0; }
  done
  return 0
}
# The leader and its term, as "leader/term" (for the record of a pause).
leader_term() {
  local system="$1" l
  case "$system" in
    etcd)
      l="$(etcd_leader)"
      [ -n "$l" ] || return 0
      echo "$l/$(etcd_curl --max-time 1 -X POST -d '{}' "$(etcd_endpoint "$l")/v3/maintenance/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["raft_term"])')"
      ;;
    flotilla)
      l="$(flotilla_leader)"
      [ -n "$l" ] || return 0
      echo "$l/$(flotilla_status "$l" | python3 -c 'import json,sys; print(json.load(sys.stdin)["term"])')"
      ;;
  esac
}
wait_leader() {
  local l=""
  for _ in $(seq 100); do
    l="$(leader_term "$1" | cut -d/ -f1)"
    [ -n "$l" ] && { echo "$l"; return 0; }
    sleep 0.1
  done
  echo "error: $1 has no leader" >&2
  exit 1
}
member_pid() { if [ "$1" = etcd ]; then echo "${etcd_pid[$2]}"; else echo "${node_pid[$2]}"; fi; }
start_member() { if [ "$1" = etcd ]; then start_etcd_member "$2"; else start_flotilla_node "$2"; fi; }
now_ms() { date +%s%3N; }

# load SYSTEM "IDS" SECONDS LABEL [RATE]: writes to the members IDS, in the background
# ($load_pid).
load() {
  local system="$1" ids="$2" seconds="$3" label="$4" urls=() i
  local common=(--rate "${5:-$rate}" --clients 64 --duration-s "$seconds" --warmup-s 0 --timeout-ms "$timeout_ms"
    --acks "$out/$system-$label-acks.txt" --json "$out/$system-$label-load.json")
  if [ "$system" = etcd ]; then
    for i in $ids; do urls+=("$(etcd_endpoint "$i")"); done
    "$bin/flotilla-bench" etcd-put --endpoints "$(IFS=,; echo "${urls[*]}")" "${common[@]}" >"$out/$system-$label-load.txt" 2>&1 &
  else
    for i in $ids; do urls+=("http://127.0.0.1:1870$i"); done
    "$bin/flotilla-bench" --server "$(IFS=,; echo "${urls[*]}")" submit "${common[@]}" >"$out/$system-$label-load.txt" 2>&1 &
  fi
  load_pid=$!
}
event() { echo "$(now_ms) $*" >>"$out/$system-events.txt"; }
# pause_window LABEL MEMBER: MEMBER stopped for --pause-s under writes to the other two.
pause_window() {
  local label="$1" member="$2" p
  p="$(member_pid "$system" "$member")"
  load "$system" "$(for i in 1 2 3; do [ "$i" = "$member" ] || echo "$i"; done | xargs)" $((pause_s + 15)) "$label"
  sleep 3
  event stop "$label" "$member" "$(leader_term "$system")"
  kill -STOP "$p"
  sleep "$pause_s"
  kill -CONT "$p"
  event cont "$label" "$member"
  wait "$load_pid" || { cat "$out/$system-$label-load.txt"; exit 1; }
  event after "$label" "$member" "$(leader_term "$system")"
}

for system in $systems; do
  echo "== $system"
  : >"$out/$system-events.txt"
  if [ "$system" = etcd ]; then form_etcd_cluster; else form_flotilla_cluster >/dev/null; fi
  wait_leader "$system" >/dev/null

  # No fault: no election.
  load "$system" "1 2 3" "$steady_s" steady "$steady_rate"
  sleep 1
  event stop steady - "$(leader_term "$system")"
  sleep $((steady_s - 2))
  event cont steady -
  wait "$load_pid" || { cat "$out/$system-steady-load.txt"; exit 1; }
  event after steady - "$(leader_term "$system")"
  echo "   $steady_s s at $steady_rate writes/s without a fault"

  # Leader killed and kept down.
  load "$system" "1 2 3" $((kills * (down_s + 4) + 4)) kill
  sleep 2
  for k in $(seq "$kills"); do
    l="$(wait_leader "$system")"
    event kill "$l"
    p="$(member_pid "$system" "$l")"
    kill -9 "$p"
    wait "$p" 2>/dev/null || true
    sleep "$down_s"
    event restart "$l"
    start_member "$system" "$l"
    sleep 4
    echo "   kill $k: member $l"
  done
  wait "$load_pid" || { cat "$out/$system-kill-load.txt"; exit 1; }

  # Leader paused; writes go to the followers.
  sleep 2
  l="$(wait_leader "$system")"
  pause_window leader-pause "$l"
  echo "   leader $l paused for $pause_s s"

  # A follower paused; writes go to the leader and the other follower.
  sleep 2
  l="$(wait_leader "$system")"
  f=1
  [ "$l" = 1 ] && f=2
  pause_window follower-pause "$f"
  echo "   follower $f paused for $pause_s s"

  if [ "$system" = flotilla ]; then
    # Every acknowledged pipeline, read back through any node (linearizable).
    cat "$out"/flotilla-*-acks.txt | python3 -c '
import json, os, sys, urllib.request
acked = {int(l.split()[1]) for l in sys.stdin if l.strip()}
present, after = set(), 0
for _ in range(100000):
    page = None
    for i in (1, 2, 3):
        try:
            req = urllib.request.Request(f"http://127.0.0.1:1870{i}/v1/pipelines?consistency=linearizable&limit=1000&after={after}",
                                         headers={"authorization": "Bearer " + os.environ["FLOTILLA_TOKEN"]})
            page = json.load(urllib.request.urlopen(req, timeout=10))
            break
        except Exception:
            continue
    if page is None:
        raise SystemExit("no node answered")
    present.update(p["id"] for p in page["items"])
    if page.get("next_after") is None:
        break
    after = page["next_after"]
lost = sorted(acked - present)
print(f"   read back: {len(acked)} acknowledged pipelines, {len(lost)} lost")
open(sys.argv[1], "w").write(json.dumps({"acknowledged": len(acked), "lost": lost[:100]}))
if lost:
    raise SystemExit(f"LOST acknowledged pipelines: {lost[:20]}")
' "$out/flotilla-lost.json"
  fi
  for i in 1 2 3; do kill "$(member_pid "$system" "$i")" 2>/dev/null || true; done
  for i in 1 2 3; do wait "$(member_pid "$system" "$i")" 2>/dev/null || true; done
done

python3 - "$out" $systems <<'PY'
import json, sys
out, systems = sys.argv[1], sys.argv[2:]

def acks(system, label):
    return sorted(tuple(map(int, l.split()))[:3] for l in open(f"{out}/{system}-{label}-acks.txt") if l.strip())

def events(system):
    return [l.split() for l in open(f"{out}/{system}-events.txt") if l.strip()]

def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None

results = {}
for system in systems:
    ev = events(system)
    # Leader kills: the first ack of a write sent after the kill, while the member is down.
    kill_acks = acks(system, "kill")
    failovers, missing = [], 0
    kills = [(int(e[0]), e[2]) for e in ev if e[1] == "kill"]
    restarts = [int(e[0]) for e in ev if e[1] == "restart"]
    for (t, _), restart in zip(kills, restarts):
        first = min((at for (at, _, sent) in kill_acks if sent > t), default=None)
        if first is None or first > restart:
            missing += 1
        else:
            failovers.append(first - t)
    r = {"kills": len(kills), "failover_ms": {"p50": pct(failovers, 0.5), "p99": pct(failovers, 0.99),
         "max": max(failovers, default=None)}, "kills_without_ack_while_down": missing,
         "acknowledged": len(kill_acks)}
    # Pauses: the longest gap between acks from the stop until 10 s after the resume.
    for label in ("steady", "leader-pause", "follower-pause"):
        a = [at for (at, _, _) in acks(system, label)]
        stop, cont, after = (next(e for e in ev if e[1] == kind and e[2] == label) for kind in ("stop", "cont", "after"))
        t0, t1 = int(stop[0]), int(cont[0]) + (0 if label == "steady" else 10_000)
        window = [t for t in a if t0 <= t <= t1]
        edges = [t0] + window + [min(t1, max(a, default=t1))]
        gap = max((y - x for x, y in zip(edges, edges[1:])), default=None)
        r[label] = {"longest_gap_ms": gap, "acks_in_window": len(window),
                    "leader_term_before": stop[4] if len(stop) > 4 else "", "leader_term_after": after[4] if len(after) > 4 else ""}
    results[system] = r
json.dump(results, open(f"{out}/summary.json", "w"), indent=2)

def cell(system, path):
    v = results.get(system, {})
    for p in path:
        v = v.get(p) if isinstance(v, dict) else None
    return v

rows = [("no fault: longest gap ms", ("steady", "longest_gap_ms")),
        ("leader killed, kept down: first ack p50 ms", ("failover_ms", "p50")),
        ("leader killed, kept down: first ack p99 ms", ("failover_ms", "p99")),
        ("leader killed, kept down: first ack max ms", ("failover_ms", "max")),
        ("leader paused: longest gap ms", ("leader-pause", "longest_gap_ms")),
        ("follower paused: longest gap ms", ("follower-pause", "longest_gap_ms"))]
print()
print("| window | " + " | ".join(systems) + (" | ratio Flotilla/etcd |" if len(systems) == 2 else " |"))
print("|---|" + "---:|" * len(systems) + ("---:|" if len(systems) == 2 else ""))
for name, path in rows:
    vals = [cell(s, path) for s in systems]
    ratio = ""
    if len(systems) == 2:
        e, f = cell("etcd", path), cell("flotilla", path)
        ratio = f" {f / e:.2f} |" if e and f is not None else " |"
    print(f"| {name} | " + " | ".join("-" if v is None else str(v) for v in vals) + " |" + ratio)
for s in systems:
    r = results[s]
    print(f"{s}: kills without an ack while down: {r['kills_without_ack_while_down']}; "
          f"leader/term through the fault-free window {r['steady']['leader_term_before']} -> {r['steady']['leader_term_after']}, "
          f"around the leader pause {r['leader-pause']['leader_term_before']} -> {r['leader-pause']['leader_term_after']}, "
          f"around the follower pause {r['follower-pause']['leader_term_before']} -> {r['follower-pause']['leader_term_after']}")
print(f"\nraw results: {out}")
PY
