#!/usr/bin/env bash
# A follower paused and resumed under load, with Pre-Vote off (the baseline) and on, in the
# same run: a 3-node cluster takes a steady stream of submissions (open loop) while one
# follower is stopped with SIGSTOP for --pause-s seconds and resumed. For each mode: the
# longest gap between acknowledged submissions from the pause until 10 s after the resume,
# and whether the leader or the term changed.
#
#   bench/pause.sh [--rate 50] [--pause-s 10] [--out DIR]
#
# Uses FLOTILLA_BIN (default: the debug build); benchmark figures come from a release build.
set -euo pipefail
cd "$(dirname "$0")/.."

rate=50
pause_s=10
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate="$2"; shift 2 ;;
    --pause-s) pause_s="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

source bench/lib.sh
bench_setup pause

field() { python3 -c "import json,sys; v=json.load(sys.stdin).get('$1'); print('' if v is None else v)"; }

# One run: a fresh cluster with `node_args`, the load, the pause; a result line in $out/results.txt.
run() {
  local label="$1"
  node_args="$2"
  rm -rf "$work"/flotilla-* "$work/workers"
  echo "== $label: --rate $rate, a follower paused for $pause_s s (node flags: $node_args)"
  form_flotilla_cluster >/dev/null
  local leader="" term=""
  for _ in $(seq 50); do
    leader="$(flotilla_status 1 | field leader || true)"
    [ -n "$leader" ] && break
    sleep 0.2
  done
  [ -n "$leader" ] || { echo "error: no leader" >&2; exit 1; }
  term="$(flotilla_status "$leader" | field term)"
  local follower=1
  [ "$leader" = 1 ] && follower=2
  local duration_s=$((pause_s + 20))
  # To the leader alone: a client whose request waits on the paused node would stall too.
  "$bin/flotilla-bench" --server "127.0.0.1:1870$leader" submit --rate "$rate" --clients 16 --duration-s "$duration_s" --warmup-s 0 \
    --acks "$out/$label-acks.txt" --json "$out/$label-load.json" >"$out/$label-load.txt" 2>&1 &
  local load_pid=$!
  sleep 5
  local stopped resumed
  stopped="$(date +%s%3N)"
  kill -STOP "${node_pid[$follower]}"
  sleep "$pause_s"
  kill -CONT "${node_pid[$follower]}"
  resumed="$(date +%s%3N)"
  wait "$load_pid" || { cat "$out/$label-load.txt"; exit 1; }
  local leader_after term_after
  leader_after="$(flotilla_status "$leader" | field leader || true)"
  term_after="$(flotilla_status "$leader" | field term || true)"
  python3 - "$out/$label-acks.txt" "$stopped" "$resumed" "$label" "$leader" "$leader_after" "$term" "$term_after" <<'PY' | tee -a "$out/results.txt"
import sys
acks_file, stopped, resumed, label, leader, leader_after, term, term_after = sys.argv[1:]
stopped, resumed = int(stopped), int(resumed)
acks = sorted(int(l.split()[0]) for l in open(acks_file) if l.strip())
window = [t for t in acks if stopped <= t <= resumed + 10_000]
gap = max((b - a for a, b in zip(window, window[1:])), default=None)
changed = "no" if (leader, term) == (leader_after, term_after) else f"yes (leader {leader}->{leader_after}, term {term}->{term_after})"
print(f"{label}: longest gap {gap} ms over {len(window)} acks; leader change: {changed}")
PY
  for i in 1 2 3; do kill "${node_pid[$i]}" 2>/dev/null || true; done
  for i in 1 2 3; do wait "${node_pid[$i]}" 2>/dev/null || true; done
}

: >"$out/results.txt"
run pre-vote-off "--pre-vote false"
run pre-vote-on "--pre-vote true"
echo "== results ($out/results.txt)"
cat "$out/results.txt"
