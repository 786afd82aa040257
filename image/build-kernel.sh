#!/bin/sh
# Build the default guest kernel from Debian's linux-source-6.1 into a cache
# directory keyed by the source version and the config fragment, so every
# checkout and every CI run on the machine reuses one build.
#   usage: image/build-kernel.sh [debug]    (prints the image directory)
# "debug" adds image/debug.fragment (KASAN, lockdep, UBSAN, KUnit) to the
# default fragment and builds into its own cache directory.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${PROVIUM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/provium}
src_tar=/usr/src/linux-source-6.1.tar.xz
[ -r "$src_tar" ] || { echo "build-kernel: $src_tar missing (apt-get install linux-source-6.1)" >&2; exit 1; }
version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
flavour=${1:-default}
fragments="$here/kernel.fragment"
case $flavour in
  default) name=kernel ;;
  debug) name=kernel-debug; fragments="$fragments $here/debug.fragment" ;;
  *) echo "build-kernel: unknown flavour '$flavour' (default or debug)" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086
key=$( (echo "$version"; cat $fragments "$here/build-kernel.sh") | sha256sum | cut -c1-16)
out="$cache/images/$name-$key"
if [ -f "$out/done" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache/images"
# one builder at a time; others wait and reuse the result
exec 9>"$cache/images/$name-$key.lock"
flock 9
if [ -f "$out/done" ]; then echo "$out"; exit 0; fi
rm -rf "$out" && mkdir -p "$out"
echo "build-kernel: building linux-source $version into $out (several minutes, once)" >&2
tar -C "$out" -xf "$src_tar"
mv "$out"/linux-source-6.1 "$out/src"
cd "$out/src"
make -s tinyconfig >/dev/null
# shellcheck disable=SC2086
./scripts/kconfig/merge_config.sh -m .config $fragments >/dev/null
make -s olddefconfig >/dev/null
# fail loudly if a requested option did not survive dependency resolution
missing=""
# shellcheck disable=SC2086
for opt in $(cat $fragments | grep -E '^CONFIG_[A-Z0-9_]+=[ym]' | cut -d= -f1,2); do
  grep -q "^$opt$" .config || missing="$missing $opt"
done
[ -z "$missing" ] || { echo "build-kernel: options not enabled:$missing" >&2; exit 1; }
make -s -j"$(nproc)" vmlinux bzImage modules >&2
cp vmlinux "$out/vmlinux"
cp arch/x86/boot/bzImage "$out/bzImage"
# the source tree stays: it is the build tree test modules compile against
rm -rf "$out/src/.git" 2>/dev/null || true
touch "$out/done"
echo "$out"
