#!/usr/bin/env bash
# Artifacts through a 3-node cluster against the same files on this machine, in one run:
#   - keep: a job writes --mib MiB of files (half random, half text) and keeps them; the
#     leader's "artifacts packed and copied" log line gives the time to pack (tar + zstd +
#     SHA-256, in the node) and to copy the blob to the two other nodes. Baselines: `cp -r`
#     of the same files, and `tar -c | zstd -3` of them into one file;
#   - fetch: `GET /v1/jobs/{id}/artifacts/archive` of the blob from a node, checked against its
#     digest, against `cp` of the blob file;
#   - deliver: a job that needs it on the same pool, from its placement to its start (the
#     blob unpacked into its workspace first);
#   - submissions: `flotilla-bench submit` (16 clients, 10 s) p99 with and without a keep of
#     the same size running, as a ratio (issue 23's goal: under 2).
#
#   bench/artifacts.sh [--mib 1024] [--copy-mib-per-s N] [--out DIR]
#
# --copy-mib-per-s is the nodes' --blob-copy-mib-per-s (their default unless given; 0 for no
# bound).
#
# Uses FLOTILLA_BIN (default: the debug build); figures for docs/benchmarks.md say which.
set -euo pipefail
cd "$(dirname "$0")/.."

mib=1024
out=""
copy_rate=""
while [ $# -gt 0 ]; do
  case "$1" in
    --mib) mib="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --copy-mib-per-s) copy_rate="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
case "$mib" in *[!0-9]*|"") echo "--mib takes a number" >&2; exit 2 ;; esac
[ "$mib" -ge 1 ] && [ "$mib" -le 16384 ] || { echo "--mib must be 1..16384" >&2; exit 2; }
command -v zstd >/dev/null || { echo "error: zstd is needed for the baseline (apt-get install zstd)" >&2; exit 1; }

case "$copy_rate" in *[!0-9]*) echo "--copy-mib-per-s takes a number" >&2; exit 2 ;; esac
node_args="--leader-tick-ms 100${copy_rate:+ --blob-copy-mib-per-s $copy_rate}"
source bench/lib.sh
bench_setup artifacts
base="https://127.0.0.1:18701"
api() { curl_tls -sf --max-time 600 -H "authorization: Bearer $FLOTILLA_TOKEN" "$@"; }

echo "== flotilla ($bin), data in $work; artifacts of $mib MiB"
form_flotilla_cluster >/dev/null
flotilla pool register --name art --provider process --cpu-millis 8000 --memory-mib 16384 \
  --max-workers 8 --label stage=art >/dev/null
limits="$(api "$base/v1/limits" | python3 -c 'import json,sys; l=json.load(sys.stdin)["limits"]; l["max_artifact_bytes_per_job"]=64<<30; l["max_artifact_bytes_per_tenant"]=1<<40; print(json.dumps(l))')"
api -X PUT -H 'content-type: application/json' --data "$limits" "$base/v1/limits" >/dev/null

# The files: half random (does not compress), half text (compresses well), in 64 MiB files.
half=$(( mib / 2 )); [ "$half" -ge 1 ] || half=1
make="mkdir -p out && i=0; while [ \$i -lt $(( (half + 63) / 64 )) ]; do head -c $(( 64 << 20 )) /dev/urandom > out/noise-\$i; yes flotilla-artifact-benchmark | head -c $(( 64 << 20 )) > out/text-\$i; i=\$((i + 1)); done; du -sb out"
spec=$(python3 - "$make" <<'EOF'
import json, sys
job = lambda name, steps, **kw: dict({"name": name, "steps": steps, "resources": {"cpu_millis": 100, "memory_mib": 64},
                                      "constraints": {"stage": "art"}, "timeout": "1h"}, **kw)
print(json.dumps({"name": "artifacts-bench", "jobs": [
    job("make", [sys.argv[1]], artifacts={"paths": ["out"], "expire_in": "1d"}),
    job("use", ["du -sb out"], needs=["make"]),
]}))
EOF
)
submitted="$(api -H 'content-type: application/json' --data "$spec" "$base/v1/pipelines")"
make_id=$(echo "$submitted" | python3 -c 'import json,sys; print([j["id"] for j in json.load(sys.stdin)["jobs"] if j["name"]=="make"][0])')
use_id=$(echo "$submitted" | python3 -c 'import json,sys; print([j["id"] for j in json.load(sys.stdin)["jobs"] if j["name"]=="use"][0])')
deadline=$(( $(date +%s) + 1800 ))
until api "$base/v1/jobs/$use_id?consistency=linearizable" | grep -q '"state":"SUCCEEDED"'; do
  if api "$base/v1/jobs/$use_id" | grep -q '"state":"FAILED"' || [ "$(date +%s)" -ge "$deadline" ]; then
    echo "error: the pipeline did not succeed" >&2; api "$base/v1/jobs/$make_id" >&2; exit 1
  fi
  sleep 1
done
kept_line="$(grep -h 'artifacts packed and copied' "$work"/flotilla-*.log | tail -1 | sed 's/\x1b\[[0-9;]*m//g')"
pack_ms=$(echo "$kept_line" | sed -n 's/.*pack_ms=\([0-9]*\).*/\1/p')
copy_ms=$(echo "$kept_line" | sed -n 's/.*copy_ms=\([0-9]*\).*/\1/p')
blob_bytes=$(echo "$kept_line" | sed -n 's/.*size_bytes=\([0-9]*\).*/\1/p')
use_job="$(api "$base/v1/jobs/$use_id")"
deliver_ms=$(echo "$use_job" | python3 -c 'import json,sys; a=json.load(sys.stdin)["attempts"][-1]; print(a["started_at_ms"]-a["scheduled_at_ms"])')

# The same files on this machine (the make job's workspace is gone: made again, the same way).
files="$work/baseline"
mkdir -p "$files" && (cd "$files" && sh -c "$make" >/dev/null)
t0=$(date +%s%3N); cp -r "$files/out" "$work/baseline-copy"; sync; t1=$(date +%s%3N)
tar -C "$files" -cf - out | zstd -3 -q -o "$work/baseline.tar.zst"; sync; t2=$(date +%s%3N)
cp_ms=$((t1 - t0)); tarzstd_ms=$((t2 - t1))
rm -rf "$work/baseline-copy"

# Fetch from a follower, and `cp` of the blob file as its baseline.
t0=$(date +%s%3N); api -o "$work/fetched.tar.zst" "https://127.0.0.1:18702/v1/jobs/$make_id/artifacts/archive?consistency=linearizable"; t1=$(date +%s%3N)
fetch_ms=$((t1 - t0))
blob="$(ls "$work"/flotilla-2/artifacts/sha256/* | head -1)"
t0=$(date +%s%3N); cp "$blob" "$work/blob-copy"; sync; t1=$(date +%s%3N)
blob_cp_ms=$((t1 - t0))
cmp -s "$blob" "$work/fetched.tar.zst" || { echo "error: the archive fetched differs from the blob" >&2; exit 1; }
rm -f "$work/fetched.tar.zst" "$work/blob-copy"

# Submission p99 alone, then while a keep of the same size is under way. The artifact pool is
# drained meanwhile, so the submissions' jobs wait on the bench pool and run nowhere.
flotilla pool drain art >/dev/null
flotilla_bench submit --clients 16 --duration-s 10 >"$work/submit-alone.txt"
flotilla pool drain art --undo >/dev/null
# Placed ahead of the jobs the first submissions left pending (they match the pool too).
second="$(echo "$spec" | python3 -c 'import json,sys; s=json.load(sys.stdin); s["name"]="artifacts-bench-2"; s["jobs"]=s["jobs"][:1]; s["jobs"][0]["priority"]=100; print(json.dumps(s))')"
api -H 'content-type: application/json' --data "$second" "$base/v1/pipelines" >/dev/null
# The measurement starts once the leader packs (a blob on its way in), bounded to 10 minutes.
packing=0
for _ in $(seq 6000); do
  if ls "$work"/flotilla-*/artifacts/incoming/ 2>/dev/null | grep -q '^collect'; then packing=1; break; fi
  sleep 0.1
done
[ "$packing" = 1 ] || { echo "error: the second keep never started packing" >&2; exit 1; }
flotilla pool drain art >/dev/null
flotilla_bench submit --clients 16 --duration-s 10 >"$work/submit-during.txt"

python3 - "$out/artifacts.json" "$mib" "${blob_bytes:-0}" "${pack_ms:-0}" "${copy_ms:-0}" "$cp_ms" "$tarzstd_ms" \
  "$fetch_ms" "$blob_cp_ms" "$deliver_ms" "$work/submit-alone.txt" "$work/submit-during.txt" "$copy_rate" <<'EOF'
import json, re, sys
out, mib, blob, pack, copy, cp, tarzstd, fetch, blobcp, deliver, alone, during, copy_rate = sys.argv[1:14]
mib, blob, pack, copy, cp, tarzstd, fetch, blobcp, deliver = map(int, (mib, blob, pack, copy, cp, tarzstd, fetch, blobcp, deliver))
def p99(path):
    text = open(path).read()
    m = re.search(r'"p99_ms":\s*([0-9.]+)', text) or re.search(r'p99[^0-9]*([0-9.]+)', text)
    return float(m.group(1)) if m else None
a, d = p99(alone), p99(during)
mbps = lambda ms, b=mib << 20: round(b / (1 << 20) / (ms / 1000), 1) if ms else None
r = {
    "files_mib": mib, "blob_bytes": blob, "copy_mib_per_s": copy_rate or "default",
    "pack_ms": pack, "copy_to_two_nodes_ms": copy, "keep_ms": pack + copy,
    "cp_r_ms": cp, "tar_zstd_ms": tarzstd,
    "pack_vs_tar_zstd": round(pack / tarzstd, 2) if tarzstd else None,
    "keep_vs_cp_r": round((pack + copy) / cp, 2) if cp else None,
    "fetch_ms": fetch, "blob_cp_ms": blobcp, "fetch_vs_cp": round(fetch / blobcp, 2) if blobcp else None,
    "fetch_mib_per_s": mbps(fetch, blob),
    "placed_to_started_with_inputs_ms": deliver,
    "submit_p99_ms_alone": a, "submit_p99_ms_during_keep": d,
    "submit_p99_ratio": round(d / a, 2) if a and d else None,
}
json.dump(r, open(out, "w"), indent=2)
print(json.dumps(r, indent=2))
EOF
echo "results in $out"
