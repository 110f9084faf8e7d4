#!/usr/bin/env bash
# Offline checks of the deployment files: the Kubernetes manifests against the API schemas
# (kubernetes-validate, strict: unknown fields fail), the systemd unit (systemd-analyze
# verify; any warning fails), the compose file (compose's own parser) and the shell scripts
# (sh -n, bash -n). `.ci/run` installs kubernetes-validate (pip).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== kubernetes manifests (schemas of Kubernetes 1.33, strict)"
kubernetes-validate --strict --quiet -k 1.33.0 deploy/kubernetes/*.yaml

echo "== systemd unit"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# verify needs the program to exist; the unit is otherwise checked as written.
sed 's#/usr/local/bin/flotilla-node#/bin/true#' deploy/systemd/flotilla-node.service > "$tmp/flotilla-node.service"
out="$(systemd-analyze verify "$tmp/flotilla-node.service" 2>&1)" || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
  echo "$out" >&2
  echo "error: systemd-analyze verify warned about the unit" >&2
  exit 1
fi

echo "== compose file"
if docker compose version >/dev/null 2>&1; then
  docker compose -f deploy/compose/docker-compose.yml config -q
else
  docker-compose -f deploy/compose/docker-compose.yml config -q
fi

echo "== shell scripts"
sh -n deploy/entrypoint.sh
for f in deploy/image.sh deploy/compose/smoke-test.sh deploy/check.sh; do
  bash -n "$f"
done
echo "deployment files OK"
