#!/usr/bin/env bash
# Smoke test of the compose deployment on this machine's Docker Engine: builds the image from
# the binaries already built (deploy/image.sh, no registry), starts the 3-node cluster, checks
# it forms, runs a pipeline on the embedded process provider, stops the leader's container and
# checks the other two keep serving (a second pipeline runs, and one that uses a secret, masked
# in its output). Cleans up whatever happens.
#
#   deploy/compose/smoke-test.sh [--bin-dir DIR]      (default: $CARGO_TARGET_DIR/debug)
set -euo pipefail
cd "$(dirname "$0")/../.."

bin_dir="${CARGO_TARGET_DIR:-target}/debug"
[ "${1:-}" = "--bin-dir" ] && bin_dir="$2"
cli="$bin_dir/flotilla"

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  echo "error: neither 'docker compose' nor docker-compose is installed" >&2
  exit 1
fi

project="flotilla-smoke-$$"
tag="flotilla:smoke-$$"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export FLOTILLA_PROCESS_PROVIDER=true FLOTILLA_IMAGE="$tag" FLOTILLA_PORT_1="$(free_port)" FLOTILLA_PORT_2="$(free_port)" FLOTILLA_PORT_3="$(free_port)"
servers="127.0.0.1:$FLOTILLA_PORT_1,127.0.0.1:$FLOTILLA_PORT_2,127.0.0.1:$FLOTILLA_PORT_3"
dc() { "${compose[@]}" -p "$project" -f deploy/compose/docker-compose.yml "$@"; }
work="$(mktemp -d)"
# The pre-shared admin token, the image's user's alone; the CLI sends it.
"$cli" token generate >"$work/admin-token"
chown 10001:10001 "$work/admin-token"
chmod 600 "$work/admin-token"
export FLOTILLA_ADMIN_TOKEN_SOURCE="$work/admin-token"
FLOTILLA_TOKEN="$(cat "$work/admin-token")"
export FLOTILLA_TOKEN
# The cluster CA: its key the image's user's alone, its certificate what the CLI trusts.
"$cli" tls ca-create --name smoke --out "$work/tls" >/dev/null
chown 10001:10001 "$work/tls/ca.key"
export FLOTILLA_TLS_CA_SOURCE="$work/tls/ca.crt" FLOTILLA_TLS_CA_KEY_SOURCE="$work/tls/ca.key"
export FLOTILLA_CA_FILE="$work/tls/ca.crt"
# The secrets' key, the image's user's alone.
"$cli" secret generate-key >"$work/secrets.key"
chown 10001:10001 "$work/secrets.key"
chmod 600 "$work/secrets.key"
export FLOTILLA_SECRETS_KEY_SOURCE="$work/secrets.key"

cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    echo "== smoke test failed; container logs:" >&2
    dc logs --no-color --tail 40 >&2 || true
  fi
  dc down -v --remove-orphans >/dev/null 2>&1 || true
  docker image rm -f "$tag" >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

# Polls `$@` once a second until it succeeds or $1 seconds pass.
retry() {
  local seconds="$1"; shift
  for _ in $(seq "$seconds"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "error: gave up after ${seconds}s: $*" >&2
  "$@" || true
  return 1
}

status_json() { "$cli" --server "$1" -o json cluster status; }
formed() {
  status_json "$1" | python3 -c '
import json, sys
v = json.load(sys.stdin)
voters = [m for m in v["members"] if m["voter"]]
sys.exit(0 if len(voters) == 3 and v["leader"] is not None else 1)'
}
leader_id() { status_json "$servers" | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])'; }

echo "== image from $bin_dir"
deploy/image.sh --bin-dir "$bin_dir" --tag "$tag"

echo "== 3-node cluster ($project)"
dc up -d
retry 120 formed "127.0.0.1:$FLOTILLA_PORT_1"
retry 60 formed "127.0.0.1:$FLOTILLA_PORT_3"
echo "cluster formed; leader is node $(leader_id)"

echo "== a pipeline on the process provider"
"$cli" --server "$servers" pool register --name local --provider process --cpu-millis 2000 --memory-mib 1024 --max-workers 4
"$cli" --server "$servers" pipeline submit --file examples/hello.yaml --wait | tee "$work/first.log"
grep -q "hello from flotilla" "$work/first.log"

leader="$(leader_id)"
echo "== stopping node$leader (the leader)"
dc stop "node$leader"
rest=""
for i in 1 2 3; do
  [ "$i" = "$leader" ] && continue
  port_var="FLOTILLA_PORT_$i"
  rest="${rest:+$rest,}127.0.0.1:${!port_var}"
done
new_leader() {
  local l
  l="$(status_json "$rest" | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])')"
  [ "$l" != "None" ] && [ "$l" != "$leader" ]
}
retry 60 new_leader
echo "node $(status_json "$rest" | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])') leads now"
"$cli" --server "$rest" pipeline submit --file examples/hello.yaml --wait | tee "$work/second.log"
grep -q "hello from flotilla" "$work/second.log"
echo "== a secret, used by a job and masked in its output"
secret_value="smoke-$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$secret_value" | "$cli" --server "$rest" secret set deploy-password
"$cli" --server "$rest" pipeline submit --file examples/secret.yaml --wait | tee "$work/secret.log"
grep -q "deploying with password \*\*\*\*" "$work/secret.log"
if grep -q "$secret_value" "$work/secret.log"; then
  echo "error: the secret's value is in the job's output" >&2
  exit 1
fi
echo "== without the token, the cluster refuses"
if "$cli" --server "$rest" --token "" pool list >"$work/anonymous.log" 2>&1; then
  echo "error: an anonymous pool list was answered" >&2
  exit 1
fi
grep -q "needs a token" "$work/anonymous.log"
echo "== without the cluster CA, the client trusts no node"
if "$cli" --server "$rest" --ca-file /dev/null pool list >"$work/untrusted.log" 2>&1; then
  echo "error: a client that trusts no CA was answered" >&2
  exit 1
fi
echo "== plain HTTP is not served"
if curl -fsS --max-time 5 "http://127.0.0.1:${FLOTILLA_PORT_1}/v1/health/live" >/dev/null 2>&1; then
  echo "error: the API answered plain HTTP" >&2
  exit 1
fi
echo "== compose smoke test passed"
