#!/bin/sh
# Installs the Debian packages Provium needs to build and to run its tests.
# Idempotent and quiet when everything is already there.
set -eu
pkgs="build-essential pkg-config musl-tools liblua5.4-dev lua5.4 libjansson-dev libssl-dev libzstd-dev
      qemu-system-x86 qemu-utils e2fsprogs linux-source-6.1 busybox-static linux-image-cloud-amd64
      bc flex bison libelf-dev cpio xz-utils libxml2-utils libreadline-dev libarchive-dev libxml2-dev python3-yaml chromium gdb tcpdump
      libnbd-dev"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing$missing" >&2
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
