#!/usr/bin/env bash
# The accelerator choice, end to end: a /dev/kvm that opens but cannot run a
# guest (a regular file bound over it in a private mount namespace, which no
# KVM ioctl works on) makes provium probe, fall back to TCG with a notice
# that quotes QEMU, and still pass a real test; forcing kvm there is a clear
# error; tcg skips the probe; doctor tells the truth; the verdict is cached.
# Needs root (unshare -m, mount --bind) and /dev/kvm to bind over; without
# them the fake-device checks are skipped with a reason, the rest still run.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
# shellcheck source=../lib/checks.sh
. "$ROOT/tests/lib/checks.sh"
PROVIUM=$ROOT/build/provium
# shellcheck source=../lib/cleanup.sh
. "$ROOT/tests/lib/cleanup.sh"
scratch_dir pvacc

P=$T/proj
mkdir -p "$P"
cat >"$P/provium.toml" <<TOML
[profiles.default]
kernel = "$ROOT/build/image/vmlinux"
initrd = "$ROOT/build/image/initrd.cpio"
[profiles.forced]
kernel = "$ROOT/build/image/vmlinux"
initrd = "$ROOT/build/image/initrd.cpio"
accel = "kvm"
TOML
cat >"$P/ok.test.lua" <<'LUA'
test("boots and answers", function(t)
  local vm = provium:vm("box", "default"):boot()
  t:assert_eq(vm:run("echo hi").stdout, "hi\n")
end)
LUA
cat >"$P/forced.test.lua" <<'LUA'
test("forced kvm", function(t)
  provium:vm("fk", "forced"):boot()
end)
LUA
: >"$T/fakekvm"

# pv [fake] ARGS...: provium in the project with a fresh cache; with "fake",
# inside a mount namespace whose /dev/kvm is a regular file.
pv() {
    local fake=0
    [ "$1" = fake ] && { fake=1; shift; }
    local t0
    t0=$(date +%s%N)
    if [ $fake = 1 ]; then
        OUT=$(cd "$P" && PROVIUM_CACHE_DIR=${CACHE:-$T/c$RANDOM} timeout -k 5 300 unshare -m sh -c \
            'mount --bind "$0" /dev/kvm && exec "$@"' "$T/fakekvm" "$PROVIUM" "$@" 2>&1)
    else
        OUT=$(cd "$P" && PROVIUM_CACHE_DIR=${CACHE:-$T/c$RANDOM} timeout -k 5 300 "$PROVIUM" "$@" 2>&1)
    fi
    RC=$?
    ELAPSED=$((($(date +%s%N) - t0) / 1000000))
}

can_fake=0
if [ "$(id -u)" = 0 ] && [ -e /dev/kvm ] && unshare -m sh -c "mount --bind $T/fakekvm /dev/kvm" 2>/dev/null; then
    can_fake=1
fi

if [ $can_fake = 1 ]; then
    CACHE=$T/fake-cache pv fake ok.test.lua
    begin "a /dev/kvm that opens but cannot run a guest: TCG fallback with QEMU's words, test passes"
    expect_rc 0
    expect_out "/dev/kvm opens but cannot run a guest"
    expect_out "failed to initialize kvm"
    expect_out "VMs run under TCG"
    expect_out "1 passed"
    end_check

    begin "the probe's verdict is cached under the cache dir"
    v=$(cat "$T"/fake-cache/accel/* 2>/dev/null)
    RC=0 OUT=$v
    expect_out "tcg"
    expect_out "failed to initialize kvm"
    end_check

    CACHE=$T/fake-cache pv fake doctor
    begin "doctor reports what the probe found, not that /dev/kvm opens"
    expect_out "/dev/kvm opens but cannot run a guest"
    expect_out "VMs run under TCG"
    expect_no_out "hardware acceleration"
    end_check

    pv fake --accel kvm ok.test.lua
    begin "--accel kvm where KVM cannot run a guest fails the boot, quoting QEMU"
    expect_rc 1
    expect_out "VM 'box'"
    expect_out "accel = \"kvm\" was asked for"
    expect_out "failed to initialize kvm"
    end_check

    pv fake forced.test.lua
    begin "a profile with accel = \"kvm\" fails clearly where KVM cannot run a guest"
    expect_rc 1
    expect_out "VM 'fk'"
    expect_out "profile setting"
    expect_out "failed to initialize kvm"
    end_check

    CACHE=$T/tcg-cache pv fake --accel tcg ok.test.lua
    begin "--accel tcg runs under TCG without probing or a notice"
    expect_rc 0
    expect_no_out "cannot run a guest"
    [ ! -d "$T/tcg-cache/accel" ] || problem "a probe ran although tcg was forced"
    end_check
else
    echo "ok - # SKIP fake /dev/kvm checks: need root, /dev/kvm and mount namespaces"
fi

pv --accel fast ok.test.lua
begin "--accel with a bad value is a usage error"
expect_rc 2
expect_out "--accel must be auto, kvm or tcg"
end_check

OUT=$(cd "$P" && PROVIUM_ACCEL=bogus timeout 60 "$PROVIUM" ok.test.lua 2>&1)
RC=$?
begin "PROVIUM_ACCEL with a bad value fails the boot and names the variable"
expect_rc 1
expect_out "PROVIUM_ACCEL"
expect_out "not one of auto, kvm, tcg"
end_check

cat >"$T/bad.toml" <<TOML
[profiles.default]
kernel = "$ROOT/build/image/vmlinux"
accel = "hvf"
TOML
pv -c "$T/bad.toml" ok.test.lua
begin "a profile accel other than auto/kvm/tcg is a configuration error"
expect_rc 2
expect_out "accel must be \"auto\", \"kvm\" or \"tcg\""
end_check

for bad in 1 '"1M"' '"2T"' '"100000000"'; do
    cat >"$T/mem.toml" <<TOML
[profiles.default]
kernel = "$ROOT/build/image/vmlinux"
memory = $bad
TOML
    pv -c "$T/mem.toml" ok.test.lua
    begin "memory = $bad is refused before QEMU starts, naming the bound"
    expect_rc 2
    expect_re "memory .*(minimum|maximum|whole number)"
    end_check
done

cat >"$P/badmem.test.lua" <<'LUA'
test("tiny memory", function(t)
  local ok, err = pcall(function() provium:vm("m", "default", {memory = "4M"}):boot() end)
  t:assert(not ok)
  t:assert_contains(tostring(err), "minimum")
end)
LUA
pv --accel tcg badmem.test.lua
begin "a boot option memory below the minimum is refused with the bound"
expect_rc 0
end_check

check_summary
