#!/usr/bin/env bash
# Assembles the runtime image from binaries already built, without a registry or a Docker
# build: the layout of deploy/Dockerfile's runtime stage (non-root user 10001, data under
# /var/lib/flotilla, the same entrypoint), with the binaries' shared libraries copied in and
# Debian's static busybox as /bin/sh (job steps of the process provider run with it).
#
#   deploy/image.sh [--bin-dir DIR] [--tag TAG]
#
# Defaults: --bin-dir $CARGO_TARGET_DIR/debug (or target/debug), --tag flotilla:local.
set -euo pipefail
cd "$(dirname "$0")/.."

bin_dir="${CARGO_TARGET_DIR:-target}/debug"
tag="flotilla:local"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    *) echo "usage: deploy/image.sh [--bin-dir DIR] [--tag TAG]" >&2; exit 2 ;;
  esac
done
for b in flotilla-node flotilla; do
  [ -x "$bin_dir/$b" ] || { echo "error: $bin_dir/$b is missing; build it first (cargo build --bin $b)" >&2; exit 1; }
done
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "error: $busybox is missing (apt-get install busybox-static)" >&2; exit 1; }

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,usr/local/bin,etc,tmp,var/lib/flotilla/workers,etc/ssl/certs}
chmod 1777 "$root/tmp"
install -m 0755 "$bin_dir/flotilla-node" "$bin_dir/flotilla" "$root/usr/local/bin/"
install -m 0755 deploy/entrypoint.sh "$root/usr/local/bin/flotilla-entrypoint"
install -m 0755 "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
# The dynamic loader and every shared library the binaries link, at the same paths.
libs() { ldd "$1" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }'; }
for lib in $( (libs "$bin_dir/flotilla-node"; libs "$bin_dir/flotilla") | sort -u); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'flotilla:x:10001:10001:flotilla:/var/lib/flotilla:/bin/sh' >> "$root/etc/passwd"
printf 'root:x:0:\nflotilla:x:10001:\n' > "$root/etc/group"
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"

# The data directory belongs to the node's user (chown needs root, as docker does).
chown -R 10001:10001 "$root/var/lib/flotilla"
tar -C "$root" --numeric-owner -cf "$root.tar" .
docker import \
  --change 'USER 10001:10001' \
  --change 'WORKDIR /var/lib/flotilla' \
  --change 'ENV PATH=/usr/local/bin:/bin' \
  --change 'ENV FLOTILLA_DATA_DIR=/var/lib/flotilla/data' \
  --change 'ENV FLOTILLA_PROCESS_WORK_DIR=/var/lib/flotilla/workers' \
  --change 'ENV FLOTILLA_RAFT_ADDR=0.0.0.0:7001' \
  --change 'ENV FLOTILLA_API_ADDR=0.0.0.0:8001' \
  --change 'EXPOSE 7001 8001' \
  --change 'ENTRYPOINT ["/usr/local/bin/flotilla-entrypoint"]' \
  "$root.tar" "$tag" >/dev/null
rm -f "$root.tar"
echo "built $tag from $bin_dir"
