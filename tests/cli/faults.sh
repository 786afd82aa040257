#!/usr/bin/env bash
# The fault matrix at the command line (issue 17): faults whose effect is the
# report, the output or the exit status of provium itself. Every run is
# bounded by timeout(1) and has its own TMPDIR and cache directory.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib/vm_scripts.sh
. "$ROOT/tests/lib/vm_scripts.sh"
FIX=tests/cli/fixtures/faults
CONF=$FIX/faults.toml

pv() { pv_timed --config "$CONF" "$@"; }

# ---- item 3: a NUL byte must not lose the file's report, in any format
section_nul_report() {
pv -v "$FIX/nul_report.test.lua"
begin "NUL bytes in a test name, a log line and a failure message: text report"
expect_rc 1
expect_out 'name a\x00b'
expect_out 'log a\x00b'
expect_out 'msg x\x00y'
expect_out '1 passed, 1 failed'
expect_no_out 'without a report'
end_check

pv --json "$FIX/nul_report.test.lua"
begin "the same in --json: a parseable report with the bytes escaped"
expect_rc 1
expect_out '"name":"name a\\x00b"'
expect_no_out 'without a report'
python3 -c 'import json,sys; [json.loads(l) for l in sys.stdin if l.startswith("{")]' <<<"$OUT" ||
    problem "--json output is not JSON"
end_check

pv --junit "$T/junit.xml" "$FIX/nul_report.test.lua"
begin "the same in JUnit: well-formed XML naming both tests"
expect_rc 1
python3 -c 'import sys,xml.etree.ElementTree as E; r=E.parse(sys.argv[1]).getroot(); n=[c.get("name") for c in r.iter("testcase")]; sys.exit(0 if len(n)==2 and "x00" in n[0] else 1)' "$T/junit.xml" ||
    problem "junit.xml is not well-formed or lacks the tests"
end_check

pv --tap "$FIX/nul_report.test.lua"
begin "the same in TAP"
expect_rc 1
expect_out 'ok 1 - '
expect_out 'not ok 2 - '
expect_no_out 'without a report'
end_check
}

# ---- item 4: a non-regular initrd is refused, not read until memory ends
section_nonregular_initrd() {
pv "$FIX/zero_initrd.test.lua"
begin "initrd = /dev/zero: refused at once with the reason"
expect_rc 1
expect_out "initrd /dev/zero is a character device; it must be a regular file"
expect_no_out "out of memory"
[ "$ELAPSED" -lt 20000 ] || problem "took $ELAPSED ms"
end_check
}

# ---- item 8: a file that times out names its test and what it waited for
section_timeout_names_test() {
pv --timeout 4 "$FIX/file_timeout.test.lua"
begin "a file timeout names the running test and the call it was blocked in"
expect_rc 1
expect_out "TIMEOUT"
expect_out "timed out after 4 s in test 'waits forever', waiting for VM 'sleeper': the guest agent's reply to exec"
end_check

pv --json --timeout 4 "$FIX/file_timeout.test.lua"
begin "the same in --json chunk_error"
expect_out '"chunk_error":"timed out after 4 s in test '"'"'waits forever'"'"', waiting for VM '"'"'sleeper'"'"
end_check
}

# ---- items 12, 13: a caught per-test timeout still fails; a bad meta.timeout
section_caught_timeouts() {
# fails its own test only, pointing at the test file
pv -v "$FIX/sticky_timeout.test.lua"
begin "a per-test timeout caught by pcall fails the test"
expect_rc 1
expect_out "FAIL catches its own timeout"
expect_out "test timed out after 0.3s"
end_check
begin "an invalid meta.timeout fails that test only, at the test file's line"
expect_out "ok   first, passes"
expect_out "ok   last, passes"
expect_out "sticky_timeout.test.lua:9: test 'bad timeout': meta.timeout must be a positive number"
expect_out "sticky_timeout.test.lua:10: test 'negative timeout'"
expect_out "2 passed, 3 failed"
expect_no_out "framework.lua"
end_check
}

# ---- item 17: guest bytes cannot drive the user's terminal
section_terminal_escapes() {
pv -v "$FIX/escapes.test.lua"
begin "escape sequences in names, logs and command output are shown, not sent to the terminal"
expect_rc 1
expect_out 'FAIL escapes \x1B[2J'
expect_out 'stdout: \x1B]0;owned\x07 out'
expect_out 'log: title \x1B]0;pwned\x07 colour \x1B[31mred'
expect_out 'cr\x0Dline'
if printf '%s' "$OUT" | grep -q "$(printf '\033')"; then problem "a raw ESC byte reached the output"; fi
end_check
}

# ---- items 1, 15: corrupt, read-only and full fixture caches. A private
section_fixture_caches() {
# project with its own copy of the kernel and initrd (so that another user
# can read them), and its own cache.
CP=$T/cp
CC=$T/cc
mkdir -p "$CP" "$CC"
cp -L build/image/vmlinux build/image/initrd.cpio "$FIX/cache/tiny.fixture.lua" "$FIX/cache/use.test.lua" "$CP/"
printf '[provium]\nroots = ["."]\n[profiles.default]\nkernel = "vmlinux"\ninitrd = "initrd.cpio"\n' >"$CP/provium.toml"
pvc() { OUT=$(cd "$CP" && PROVIUM_CACHE_DIR=${PVC_CACHE:-$CC} TMPDIR=${PVC_TMP:-$T} timeout -k 5 "$LIMIT" \
    ${PVC_AS:+runuser -u "$PVC_AS" --} "$PROVIUM" use.test.lua 2>&1); RC=$?; }
# the fixture's entry (boot-cache entries "boot:PROFILE" sit beside it)
entry() { grep -l '"name": "tiny"' "$CC"/fixtures/*/fixture.json 2>/dev/null | head -1 | xargs -r dirname; }
pvc
begin "the cache project builds its fixture"
expect_rc 0
end_check

# guest RAM is stored as ram.zst (zstd), or as ram in entries of old builds
ramfile() { if [ -e "$(entry)/ram.zst" ]; then echo "$(entry)/ram.zst"; else echo "$(entry)/ram"; fi; }
# the unpacked copies restores map (made from ram.zst on first use) go too,
# or a valid copy would serve the damaged entry
dropcopies() { rm -rf "/dev/shm/provium-ram-$(id -u)" "${TMPDIR:-/tmp}/provium-ram-$(id -u)"; }
R=$(ramfile)
: >"$R"
dropcopies
pvc
begin "a cached entry whose RAM file ($(basename "$R")) is empty is discarded and rebuilt, with the warning in the text output"
expect_rc 0
expect_out "warning: fixture 'tiny': cached snapshot unusable, rebuilding"
expect_re "RAM|ram"
expect_no_out "CRASH"
end_check

R=$(ramfile)
rm -f "$R" && mkdir "$R"
dropcopies
pvc
begin "a cached entry whose RAM file is a directory is discarded and rebuilt"
expect_rc 0
expect_out "cached snapshot unusable, rebuilding"
expect_no_out "CRASH"
end_check

if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null; then
    chmod -R a+rX "$T"
    PVC_AS=nobody PVC_TMP=/tmp pvc
    begin "a read-only cache (another user's) restores its valid entry"
    expect_rc 0
    expect_out "PASS use.test.lua"
    expect_no_out "rebuilding"
    end_check
else
    echo "ok - read-only cache # SKIP needs root and runuser"
fi

mkdir -p "$T/full"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=3m tmpfs "$T/full" 2>/dev/null; then
    PVC_CACHE=$T/full pvc
    umount "$T/full"
    begin "a full cache filesystem reports the real errno"
    expect_rc 1
    expect_re "cannot (copy|compress) guest RAM"
    expect_out "No space left on device"
    expect_no_out ": Success"
    end_check
else
    echo "ok - full cache filesystem # SKIP needs root to mount a small tmpfs"
fi
}

# ---- item 16: stale-run cleanup removes only this user's scratch dirs
section_stale_run_cleanup() {
S=$T/st
mkdir -p "$S/provium-other1" "$S/provium-mine01"
echo 999999999 >"$S/provium-other1/owner.pid"
echo 999999999 >"$S/provium-mine01/owner.pid"
if [ "$(id -u)" = 0 ] && chown -R nobody "$S/provium-other1" 2>/dev/null; then
    OUT=$(TMPDIR=$S timeout -k 5 "$LIMIT" "$PROVIUM" --config "$CONF" "$FIX/pass.test.lua" 2>&1)
    RC=$?
    begin "stale-run cleanup keeps another user's provium-* dir, removes our own"
    expect_rc 0
    [ -d "$S/provium-other1" ] || problem "another user's scratch dir was removed"
    [ ! -e "$S/provium-mine01" ] || problem "our own stale scratch dir was kept"
    end_check
else
    echo "ok - stale-run cleanup of other users' dirs # SKIP needs root to chown"
fi
}

run_sections nul_report nonregular_initrd timeout_names_test caught_timeouts terminal_escapes fixture_caches stale_run_cleanup

check_summary
