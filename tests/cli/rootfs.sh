#!/usr/bin/env bash
# Disk boot errors and cache keys through the CLI, in a private project and
# cache: a missing rootfs image, a directory, a qcow2 image, an image with no
# filesystem, a root device that never appears (the wrapper's deadline, its
# message quoted by the host), a disk without the profile's init (the agent is
# PID 1), the boot option files refused, the boot cache
# and fixtures keyed by the image's identity, and `provium mkimage`'s usage
# and errors.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib/vm_scripts.sh
. "$ROOT/tests/lib/vm_scripts.sh"
# shellcheck source=../lib/project.sh
. "$ROOT/tests/lib/project.sh"
trap 'rm -rf "$T"' EXIT

P=$T/proj
mkdir -p "$P/tree"
(cd "$P/tree" && cpio -id --quiet <"$ROOT/build/image/initrd.cpio")
K=$ROOT/build/image/vmlinux
project_toml "$P"
cat >>"$P/provium.toml" <<TOML
[profiles.ok]
kernel = "$K"
rootfs = "disk.ext4"
[profiles.missing]
kernel = "$K"
rootfs = "no-such.ext4"
[profiles.directory]
kernel = "$K"
rootfs = "tree"
[profiles.qcow2]
kernel = "$K"
rootfs = "disk.qcow2"
[profiles.zeros]
kernel = "$K"
rootfs = "zeros.img"
[profiles.noinit]
kernel = "$K"
rootfs = "disk.ext4"
init = "/sbin/no-such-init"
[profiles.nodevice]
kernel = "$K"
rootfs = "disk.ext4"
append = "root=/dev/vdz provium.rootwait=2"
TOML
cat >"$P/boot.test.lua" <<'LUA'
test("boot", function(t)
  local vm = provium:vm("v", os.getenv("PV_PROFILE")):boot()
  t:assert_eq(vm:run("echo up").stdout, "up\n")
end)
LUA
# pv ARGS...: provium ARGS in the project, bounded by LIMIT; sets OUT and RC.
pv() { OUT=$(cd "$P" && timeout -k 5 "$LIMIT" "$PROVIUM" "$@" 2>&1); RC=$?; }
# run PROFILE: boot.test.lua on that profile.
run() { PV_PROFILE=$1 pv boot.test.lua; }
entries() { grep -l '"name": "boot:ok"' "$PROVIUM_CACHE_DIR"/fixtures/*/fixture.json 2>/dev/null | wc -l; }

begin "provium mkimage builds the disk; its usage and errors"
pv mkimage "$P/tree" "$P/disk.ext4"
expect_rc 0
OUT=$(/sbin/dumpe2fs -h "$P/disk.ext4" 2>&1)
expect_out "Filesystem magic number:  0xEF53"
pv mkimage "$P/tree"
expect_rc 2
expect_out "usage: provium mkimage"
pv mkimage --size lots "$P/tree" "$P/x.ext4"
expect_rc 2
expect_out "--size lots is not a size"
pv mkimage "$P/provium.toml" "$P/x.ext4"
expect_rc 1
expect_out "source $P/provium.toml is a regular file, not a directory"
end_check

begin "provium mkimage needs no root: an unprivileged user makes an image"
if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
    echo "# skipped: needs root (to become nobody) and setpriv"
else
    U=$T/unpriv
    mkdir -p "$U/tree/etc"
    echo hello >"$U/tree/etc/motd"
    chmod -R a+rX "$U" && chmod 1777 "$U" && chmod a+x "$T"
    OUT=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$PROVIUM" mkimage --label unpriv "$U/tree" "$U/u.ext4" 2>&1)
    RC=$?
    expect_rc 0
    OUT=$(/sbin/debugfs -R 'cat /etc/motd' "$U/u.ext4" 2>&1)
    expect_out "hello"
    [ "$(stat -c %u "$U/u.ext4")" = 65534 ] || problem "the image is not owned by the unprivileged user"
fi
end_check

begin "a rootfs-only profile boots from the disk"
run ok
expect_rc 0
end_check

begin "a disk without the profile's init: the agent is PID 1 on the disk's root"
cat >"$P/pid1.test.lua" <<'LUA'
test("pid1", function(t)
  local vm = provium:vm("v", "noinit"):boot()
  t:assert_eq(vm:read_file("/proc/1/comm"), "provium-agent\n") -- exec'd from the kept descriptor
  t:assert_contains(vm:read_file("/proc/cmdline"), " init=/sbin/no-such-init")
  local mounts = vm:read_file("/proc/mounts") -- the disk itself, or the tmpfs layer over it (overlayfs)
  t:assert(mounts:find("/dev/vda / ext4 ro", 1, true) or mounts:find("overlay / overlay ", 1, true), mounts)
end)
LUA
pv pid1.test.lua
expect_rc 0
end_check

begin "a missing image: the error names the VM, the profile and the path"
run missing
expect_rc 1
expect_out "VM 'v': profile 'missing': rootfs image $P/no-such.ext4: No such file or directory"
end_check

begin "a directory is not an image"
run directory
expect_rc 1
expect_out "rootfs image $P/tree is a directory; it must be a regular file"
end_check

begin "a qcow2 image is refused with how to convert it"
qemu-img create -q -f qcow2 "$P/disk.qcow2" 64M
run qcow2
expect_rc 1
expect_out "rootfs image $P/disk.qcow2 is in qcow2 format; rootfs takes a raw image"
end_check

begin "an image without a filesystem: the guest's mount error is quoted"
truncate -s 16M "$P/zeros.img"
run zeros
expect_rc 1
expect_out "guest: provium-wrapper: cannot boot from /dev/vda: no filesystem of this kernel could mount it"
end_check

begin "a root device that never appears: the deadline and the device in the host's error"
run nodevice
expect_rc 1
expect_out "guest: provium-wrapper: cannot boot from /dev/vdz: the root device did not appear within 2 s"
# the wrapper's deadline ends the boot, not the host's 60 s boot timeout
expect_no_out "did not connect within"
end_check

begin "the boot option files needs an initramfs: a disk boot refuses it"
cat >"$P/files.test.lua" <<'LUA'
test("files", function(t)
  provium:vm("v", "ok"):boot({files = {{path = "/etc/x", content = "x"}}})
end)
LUA
pv files.test.lua
expect_rc 1
expect_out "profile 'ok' boots from its rootfs disk, and the boot option files needs an initramfs"
end_check

begin "the boot cache keys on the image: a changed image makes a new entry"
[ "$(entries)" = 1 ] || problem "$(entries) boot entries after the first boot, expected 1"
run ok
expect_rc 0
[ "$(entries)" = 1 ] || problem "$(entries) boot entries after the same image again, expected 1"
touch "$P/disk.ext4"
run ok
expect_rc 0
[ "$(entries)" = 2 ] || problem "$(entries) boot entries after touching the image, expected 2"
end_check

begin "a fixture of a disk profile goes stale when the image changes"
cat >"$P/disk.fixture.lua" <<'LUA'
local vm = provium:vm("f", "ok"):boot()
vm:write_file("/tmp/prepared", "yes")
return vm:snapshot()
LUA
cat >"$P/usefix.test.lua" <<'LUA'
test("fixture", function(t) t:assert_eq(provium:vm_fixture("disk"):read_file("/tmp/prepared"), "yes") end)
LUA
pv usefix.test.lua
expect_rc 0
pv fixture stale
expect_rc 0
touch "$P/disk.ext4"
pv fixture stale
expect_rc 1
expect_re "^disk .*stale"
end_check

check_summary
