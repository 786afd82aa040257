#!/bin/sh
# Build a set of the kernel's own selftests (tools/testing/selftests of the
# default image's linux-source-6.1 tree) statically linked for the default
# guest, into a cache directory keyed like the kernel image: the source
# version, this script and the list of directories.
#   usage: image/build-kselftests.sh KERNEL_SRC   (prints the output directory)
# The output holds install/ (run_kselftest.sh, kselftest-list.txt, one
# directory per target) and kselftests.tar.gz of it, for vm:push_file.
#
# The targets are the ones that build and run in a busybox guest with no
# extra packages (see examples/kselftest/README.md for why each one).
set -eu
TARGETS=${KSELFTEST_TARGETS:-"timers membarrier futex size sigaltstack memfd"}
here=$(cd "$(dirname "$0")" && pwd)
src=${1:?usage: build-kselftests.sh KERNEL_SRC}
[ -d "$src/tools/testing/selftests" ] || { echo "build-kselftests: $src has no tools/testing/selftests" >&2; exit 1; }
cache=${PROVIUM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/provium}
version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
key=$( (echo "$version"; echo "$TARGETS"; cat "$here/build-kselftests.sh") | sha256sum | cut -c1-16)
out="$cache/images/kselftest-$key"
if [ -f "$out/done" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache/images"
exec 9>"$cache/images/kselftest-$key.lock"
flock 9
if [ -f "$out/done" ]; then echo "$out"; exit 0; fi
rm -rf "$out" && mkdir -p "$out/work"
echo "build-kselftests: building $TARGETS into $out (once)" >&2
# A private copy of what the selftests' makefiles read, so the shared kernel
# tree is never written to.
cd "$src"
st=tools/testing/selftests
mkdir -p "$out/work/$st" "$out/work/scripts"
cp -R tools/include "$out/work/tools/"
mkdir -p "$out/work/tools/arch/x86"
cp -R tools/arch/x86/include "$out/work/tools/arch/x86/"
cp scripts/subarch.include "$out/work/scripts/"
cp $st/Makefile $st/lib.mk $st/kselftest.h $st/kselftest_harness.h $st/run_kselftest.sh "$out/work/$st/"
cp -R $st/kselftest "$out/work/$st/"
for t in $TARGETS; do
  mkdir -p "$out/work/$st/$(dirname "$t")"
  cp -R "$st/$t" "$out/work/$st/$t"
done
cd "$out/work/$st"
# valid-adjtimex (a destructive test, never run by default) defines its own
# clock_adjtime, which clashes with static glibc's
sed -i 's/ valid-adjtimex / /' timers/Makefile
# memfd: only memfd_test; the FUSE and hugetlbfs parts need libfuse and hugetlbfs
sed -i 's/^TEST_GEN_FILES := .*/TEST_GEN_FILES :=/; s/^TEST_PROGS := .*/TEST_PROGS :=/' memfd/Makefile
# the makefiles copy files with rsync, which a fresh machine may lack: a
# stand-in that copies (dereferencing links) the sources into the last argument
mkdir -p "$out/work/bin"
cat >"$out/work/bin/rsync" <<'SHIM'
#!/bin/sh
set -e
n=$#; i=0; srcs=""
for a in "$@"; do
  i=$((i + 1))
  if [ $i -eq $n ]; then dest=$a; break; fi
  case $a in -*) ;; *) srcs="$srcs $a" ;; esac
done
for f in $srcs; do
  t=$dest; [ -d "$dest" ] && t=$dest/$(basename "$f")
  [ -e "$t" ] && [ "$(realpath "$f")" = "$(realpath "$t")" ] && continue
  cp -RL "$f" "$t"
done
SHIM
chmod +x "$out/work/bin/rsync"
PATH=$out/work/bin:$PATH
# The guest's userspace is busybox: link everything statically against
# glibc; the UAPI headers are Debian's linux-libc-dev (also 6.1).
make -s -j"$(nproc)" TARGETS="$TARGETS" KHDR_INCLUDES="-isystem /usr/include" CC="gcc -static" \
  INSTALL_PATH="$out/install" install >"$out/build.log" 2>&1 ||
  { echo "build-kselftests: make failed; see $out/build.log" >&2; tail -n 20 "$out/build.log" >&2; exit 1; }
# busybox's timeout has no --foreground, which run_kselftest.sh's runner
# passes when /usr/bin/timeout exists; without it the nested timeouts work
sed -i 's/timeout --foreground /timeout /' "$out/install/kselftest/runner.sh"
find "$out/install" -type f -perm -u+x -exec sh -c 'file "$1" | grep -q ELF && strip "$1"' _ {} \;
tar -C "$out/install" -czf "$out/kselftests.tar.gz" .
rm -rf "$out/work"
touch "$out/done"
echo "$out"
