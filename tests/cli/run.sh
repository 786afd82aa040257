#!/usr/bin/env bash
# Black-box tests of the provium command line: exit codes, the wording of
# errors, boot failures, timeouts, crashes, interruption and VM cleanup.
#
# Run after `make all image`:   tests/cli/run.sh   (it cds to the repository
# root itself; set PROVIUM_CLI_LIMIT to change the 120 s per-run bound).
#
# Prints one TAP-like line per check ("ok - ..." / "not ok - ..." followed by
# what was observed) and exits 1 when any check failed. Every provium run is
# bounded (timeout(1), or an explicit deadline for the background runs), every
# provium run gets its own TMPDIR (so its /tmp/provium-XXXXXX scratch
# directory, and therefore its QEMU command lines, are recognisable) and the
# guest-initrd cache lives in a private directory that is removed at the end.
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
# shellcheck source=../lib/checks.sh
. "$ROOT/tests/lib/checks.sh"
CLI=$ROOT/tests/cli
FIX=$CLI/fixtures
CONF=$CLI/configs/cli.toml
PROVIUM=$ROOT/build/provium
LIMIT=${PROVIUM_CLI_LIMIT:-120} # seconds for any single provium invocation

if [ ! -x "$PROVIUM" ] || [ ! -d "$CLI/fixtures" ]; then
    echo "Bail out! run tests/cli/run.sh from the repository root after 'make all image'" >&2
    exit 2
fi
for f in vmlinux initrd.cpio debian-vmlinuz; do
    if [ ! -e "$ROOT/build/image/$f" ]; then
        echo "Bail out! build/image/$f is missing; run 'make image'" >&2
        exit 2
    fi
done
command -v python3 >/dev/null || { echo "Bail out! python3 is needed" >&2; exit 2; }

# shellcheck source=../lib/cleanup.sh
. "$ROOT/tests/lib/cleanup.sh"
scratch_dir pvcli
export PROVIUM_CACHE_DIR=$T/cache

FINDINGS=()

# ---------------------------------------------------------------- helpers

# pv ARGS...: runs provium (bounded by timeout) from the repository root with a
# private TMPDIR. Sets OUT (stdout+stderr), STDOUT, STDERR, RC, TD, ELAPSED.
RUN_N=0
pv() {
    RUN_N=$((RUN_N + 1))
    TD=$T/r$RUN_N
    mkdir -p "$TD"
    local t0
    t0=$(date +%s%N)
    (cd "${PV_CWD:-$ROOT}" && TMPDIR=$TD timeout -k 5 "$LIMIT" "$PROVIUM" "$@" >"$TD.out" 2>"$TD.err")
    RC=$?
    ELAPSED=$((($(date +%s%N) - t0) / 1000000)) # ms
    STDOUT=$(cat "$TD.out")
    STDERR=$(cat "$TD.err")
    OUT="$STDOUT"$'\n'"$STDERR"
}

# Checks of this script beyond the shared harness (tests/lib/checks.sh).
expect_faster_than() { [ "$ELAPSED" -lt $(($1 * 1000)) ] || problem "took ${ELAPSED} ms, expected under $1 s"; }
expect_no_qemu() {
    qemu_gone_within "$1" "${2:-2}" || problem "QEMU still running $2 s after provium exited: $(live_qemu "$1" | tr '\n' ' ')"
}
expect_no_scratch() {
    local left
    left=$(ls -d "$1"/provium-* 2>/dev/null)
    [ -z "$left" ] || problem "scratch directory left behind: $left"
}
finding() {
    FINDINGS+=("$1")
    echo "# finding: $1"
}

# ---------------------------------------------------------------- 1. options
section_options() {

pv --help
begin "--help exits 0 and describes usage and --timeout"
expect_rc 0
expect_out "usage: provium"
expect_out "--timeout"
expect_out "--config"
expect_out "5 --filter/--tag/--tag-meta"
expect_out "selected no test (\"no tests selected\")"
end_check

pv --version
begin "--version exits 0 and prints a version"
expect_rc 0
expect_re '^provium [0-9]+\.[0-9]+\.[0-9]+'
end_check

pv --no-such-option
begin "an unknown option exits 2 and points at --help"
expect_rc 2
expect_out "no-such-option"
expect_out "provium --help"
end_check

# every subcommand answers --help on stdout with its own usage, and refuses
# an option it does not know by name
begin "every subcommand's --help exits 0 with its own usage; an unknown option exits 2 naming it"
for sub in list doctor fixture cache repl lsp-setup timings junit report; do
    pv "$sub" --help
    [ "$RC" = 0 ] || problem "provium $sub --help: exit $RC"
    grep -qF "usage: provium $sub" <<<"$STDOUT" || problem "provium $sub --help: no usage on stdout: $STDOUT"
    pv "$sub" --no-such-option
    [ "$RC" = 2 ] || problem "provium $sub --no-such-option: exit $RC, expected 2"
    grep -qF -- "--no-such-option" <<<"$STDERR" || problem "provium $sub: the error does not name the option: $STDERR"
    grep -qF "provium $sub --help" <<<"$STDERR" || grep -qF "usage: provium $sub" <<<"$STDERR" ||
        problem "provium $sub: the error does not point at the help: $STDERR"
done
pv list --jobs 2 "$FIX/fail"
[ "$RC" = 2 ] && grep -qF "provium list: --jobs only applies to a run" <<<"$STDERR" ||
    problem "list --jobs: exit $RC, $STDERR"
pv --fixtures "$FIX/fail"
[ "$RC" = 2 ] && grep -qF -- "--fixtures only applies to 'provium list'" <<<"$STDERR" ||
    problem "--fixtures on a run: exit $RC, $STDERR"
end_check

pv --timeout soon "$FIX/fail"
begin "an unparsable --timeout exits 2 and quotes the value"
expect_rc 2
expect_out "--timeout"
expect_out "soon"
end_check

pv --jobs 0 "$FIX/fail"
begin "--jobs 0 exits 2"
expect_rc 2
expect_out "--jobs"
end_check
}

# ---------------------------------------------------------------- 2. paths
section_paths() {

pv --config "$CONF" "$FIX/no-such-dir/x.test.lua"
begin "a nonexistent path exits 2 and names the path"
expect_rc 2
expect_out "no-such-dir/x.test.lua"
expect_out "No such file or directory"
end_check

pv --config "$CONF" "$FIX/empty"
begin "a directory without test files says 'no *.test.lua files found' and exits 0"
expect_rc 0
expect_out "no *.test.lua files found"
end_check
}

# ---------------------------------------------------------------- 3. results
section_results() {

pv --config "$CONF" tests/cli/fixtures/pass
begin "a passing file: exit 0, PASS line with counts, summary line"
expect_rc 0
expect_re '^PASS tests/cli/fixtures/pass/hello\.test\.lua \(2 passed, 0 failed, 0 skipped\) [0-9]+\.[0-9]s$'
expect_re '^1 files: 1 passed, 0 failed; 2 tests: 2 passed, 0 failed, 0 skipped; [0-9]+\.[0-9]s$'
end_check

pv --config "$CONF" tests/cli/fixtures/fail
begin "a failing assert_eq: exit 1, FAIL line, expected/actual and file:line"
expect_rc 1
expect_re '^FAIL tests/cli/fixtures/fail/assert_eq\.test\.lua \(1 passed, 1 failed, 0 skipped\)'
expect_re '^    FAIL compares strings$'
expect_out 'assert_eq.test.lua:6: expected "expected-value", got "actual-value"'
expect_re '^1 files: 0 passed, 1 failed; 2 tests: 1 passed, 1 failed, 0 skipped'
end_check

pv --config "$CONF" -q tests/cli/fixtures/fail tests/cli/fixtures/skip
begin "-q prints failing files only"
expect_rc 1
expect_out "FAIL tests/cli/fixtures/fail/assert_eq.test.lua"
expect_no_out "skip.test.lua"
end_check

pv --config "$CONF" tests/cli/fixtures/skip
begin "t:skip: exit 0, counted as skipped"
expect_rc 0
expect_re '^PASS tests/cli/fixtures/skip/skip\.test\.lua \(1 passed, 0 failed, 1 skipped\)'
expect_re '2 tests: 1 passed, 0 failed, 1 skipped'
end_check

pv --config "$CONF" -v tests/cli/fixtures/skip
begin "-v lists skipped tests with their reason"
expect_rc 0
expect_re '^    SKIP skipped test$'
expect_out "needs hardware we do not have"
end_check

pv --config "$CONF" tests/cli/fixtures/syntax
begin "a Lua syntax error: exit 1, ERROR line naming file and line"
expect_rc 1
expect_re '^ERROR tests/cli/fixtures/syntax/syntax\.test\.lua '
expect_out "syntax.test.lua:5:"
expect_out "near '='"
end_check

pv --config "$CONF" tests/cli/fixtures/toplevel
begin "a runtime error at file top level: exit 1, ERROR line, message with file:line"
expect_rc 1
expect_re '^ERROR tests/cli/fixtures/toplevel/toplevel\.test\.lua \(0 passed, 0 failed, 0 skipped\)'
expect_out "toplevel.test.lua:5: setup exploded at top level"
end_check
}

# ---------------------------------------------------------------- 4. configuration
section_configuration() {

pv --config "$CLI/configs/malformed.toml" "$FIX/fail"
begin "malformed TOML: exit 2, message has file:line:col"
expect_rc 2
expect_re 'malformed\.toml:3:[0-9]+: '
end_check

pv --config "$CLI/configs/unknown_key.toml" "$FIX/fail"
begin "unknown key in a profile: exit 2, names the key, the table and the position"
expect_rc 2
expect_re 'unknown_key\.toml:4:[0-9]+: '
expect_out "'kernal_cmdline'"
expect_out "[profiles.default]"
end_check
grep -qE 'unknown_key\.toml:4:1: ' <<<"$OUT" ||
    finding "the unknown-key error's column points at the value, not at the key: $(grep -oE 'unknown_key\.toml:[0-9]+:[0-9]+' <<<"$OUT")"

pv --config "$T/no-such-config.toml" "$FIX/fail"
begin "--config pointing to a missing file: exit 2, names the file"
expect_rc 2
expect_out "$T/no-such-config.toml"
expect_out "No such file or directory"
end_check

pv --config "$CONF" tests/cli/fixtures/boot/missing_kernel.test.lua
begin "missing kernel file: exit 1, boot error names the VM, the profile and the path"
expect_rc 1
expect_re '^ERROR tests/cli/fixtures/boot/missing_kernel\.test\.lua'
expect_out "VM 'nokernel'"
expect_out "profile 'missing_kernel'"
expect_out "$CLI/configs/no-such-dir/vmlinux-missing"
expect_out "No such file or directory"
end_check

# initrd problems need absolute paths into the scratch area: generate the toml.
mkdir -p "$T/initrd-is-a-dir"
head -c 4096 /dev/urandom >"$T/mode000.initrd"
chmod 000 "$T/mode000.initrd"
# root reads mode-000 files anyway: use a directory then
UNREADABLE=mode000.initrd
[ "$(id -u)" = 0 ] && UNREADABLE=initrd-is-a-dir
cat >"$T/initrd.toml" <<EOF
[profiles.missing_initrd]
kernel = "$ROOT/build/image/vmlinux"
initrd = "$T/no-such.initrd"
[profiles.unreadable_initrd]
kernel = "$ROOT/build/image/vmlinux"
initrd = "$T/$UNREADABLE"
EOF

pv --config "$T/initrd.toml" tests/cli/fixtures/boot/missing_initrd.test.lua
begin "missing initrd: exit 1, error names the profile and the path"
expect_rc 1
expect_re '^ERROR tests/cli/fixtures/boot/missing_initrd\.test\.lua'
expect_out "profile 'missing_initrd'"
expect_out "$T/no-such.initrd"
expect_out "No such file or directory"
end_check
grep -qF "VM 'noinitrd'" <<<"$OUT" ||
    finding "initrd errors do not name the VM (kernel errors do: \"VM 'x': profile 'p': kernel ...\")"

pv --config "$T/initrd.toml" tests/cli/fixtures/boot/unreadable_initrd.test.lua
begin "unreadable initrd ($UNREADABLE): exit 1, error names the profile and the path"
expect_rc 1
expect_re '^ERROR tests/cli/fixtures/boot/unreadable_initrd\.test\.lua'
expect_out "profile 'unreadable_initrd'"
expect_out "$T/$UNREADABLE"
expect_re 'Is a directory|is a directory; it must be a regular file|Permission denied|not readable'
end_check

pv --config "$CONF" tests/cli/fixtures/boot/unknown_profile.test.lua
begin "unknown profile in a test: exit 1, names the profile and lists the available ones"
expect_rc 1
expect_re '^FAIL tests/cli/fixtures/boot/unknown_profile\.test\.lua \(0 passed, 1 failed'
expect_out "unknown profile 'no_such_profile'"
expect_out "default, garbage_initrd, debian_nomods, missing_kernel, no_kernel, local"
expect_out "unknown_profile.test.lua:2:"
end_check

pv --config "$CONF" tests/cli/fixtures/nokernel
begin "a profile without a kernel loads; only its boots fail; lab boot, reserved names and state errors are worded"
expect_rc 0
expect_re '^PASS tests/cli/fixtures/nokernel/nokernel\.test\.lua \(5 passed, 0 failed'
end_check

PV_CWD=$FIX/proj/tests/sub pv
begin "provium.toml is found upwards from the working directory; roots and relative paths resolve against it"
expect_rc 0
expect_re '^PASS .*found\.test\.lua \(1 passed, 0 failed, 0 skipped\)'
end_check
}

# ---------------------------------------------------------------- 5./6. boot failures
section_boot_failures() {

pv --config "$CONF" tests/cli/fixtures/panic
begin "kernel panic during boot: fails fast, names the VM, quotes the console panic"
expect_rc 1
expect_re '^(ERROR|FAIL) tests/cli/fixtures/panic/panic\.test\.lua'
expect_out "VM 'panicky'"
expect_out "last console lines:"
expect_out "Kernel panic"
expect_faster_than 30 # the profile's boot_timeout is 120 s
expect_no_qemu "$TD"
end_check

pv --config "$CONF" tests/cli/fixtures/noagent
begin "agent never connects (Debian kernel, no modules, boot_timeout 5s): names VM, 5 s, console"
expect_rc 1
expect_re '^(ERROR|FAIL) tests/cli/fixtures/noagent/noagent\.test\.lua'
expect_out "VM 'silent'"
expect_out "the guest agent did not connect within 5 s"
expect_out "last console lines:"
expect_re '^ +\| \[ *[0-9]+\.[0-9]+\] ' # kernel log lines
expect_faster_than 40
expect_no_qemu "$TD"
end_check

pv --config "$CONF" -v tests/cli/fixtures/guest_panic
begin "guest panic during a test: FAIL, names the VM, console (with -v) shows the panic"
expect_rc 1
expect_re '^FAIL tests/cli/fixtures/guest_panic/sysrq\.test\.lua \(0 passed, 1 failed'
expect_out "VM 'crashy'"
expect_out "Kernel panic"
expect_faster_than 60
expect_no_qemu "$TD"
end_check
pv --config "$CONF" tests/cli/fixtures/guest_panic
grep -qF "Kernel panic" <<<"$OUT" ||
    finding "without -v, a guest panic's failure message quotes only the last 15 console lines (the call trace); the 'Kernel panic - not syncing' line itself is cut off"
}

# ---------------------------------------------------------------- 7. timeout
section_timeout() {

pv --config "$CONF" --timeout 3s tests/cli/fixtures/timeout
begin "--timeout 3s on a 'sleep 60': TIMEOUT line, exit 1, no QEMU left"
expect_rc 1
expect_re '^TIMEOUT tests/cli/fixtures/timeout/sleep\.test\.lua '
expect_out "timed out after 3 s"
expect_re '1 files: 0 passed, 1 failed'
expect_faster_than 20
expect_no_qemu "$TD" 2
expect_no_scratch "$TD"
end_check
}

# ---------------------------------------------------------------- 8. crashes
section_crashes() {

pv --config "$CONF" -j 1 tests/cli/fixtures/crash
begin "crashing test processes (os.exit, SIGSEGV): CRASH lines, exit 1, the next file still passes"
expect_rc 1
expect_re '^CRASH tests/cli/fixtures/crash/a_os_exit\.test\.lua '
expect_out "exited with status 3 without a report"
expect_re '^CRASH tests/cli/fixtures/crash/b_signal\.test\.lua '
expect_out "killed by signal 11"
expect_re '^PASS tests/cli/fixtures/crash/c_pass\.test\.lua \(1 passed'
expect_re '^3 files: 1 passed, 2 failed'
expect_no_qemu "$TD" 2
end_check
}

# ---------------------------------------------------------------- 9. interrupts
section_interrupts() {

# Starts provium in the background on the sleeping test (SIGINT reset to its
# default: bash makes background jobs ignore it), waits for its QEMU, then
# sends signal $1. Sets BG (provium's pid), TD and SCRATCH.
start_sleeper() {
    RUN_N=$((RUN_N + 1))
    TD=$T/r$RUN_N
    mkdir -p "$TD"
    TMPDIR=$TD python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$PROVIUM" --config "$CONF" tests/cli/fixtures/timeout >"$TD.out" 2>"$TD.err" &
    BG=$!
    BG_PIDS+=("$BG")
    SCRATCH=
    local q
    for _ in $(seq 600); do # 60 s
        q=$(live_qemu "$TD/provium-" | head -n1)
        if [ -n "$q" ]; then
            SCRATCH=$({ tr '\0' '\n' <"/proc/$q/cmdline"; } 2>/dev/null |
                sed -n 's|^unix:\('"$TD"'/provium-[^/]*\)/.*qmp\.sock.*|\1|p' | head -n1)
            break
        fi
        kill -0 "$BG" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1 # let the guest get going
}

# Waits up to $1 seconds for BG to exit; sets RC (or 999 if it did not).
wait_bg() {
    RC=999
    for _ in $(seq $(($1 * 20))); do
        if ! kill -0 "$BG" 2>/dev/null; then
            { wait "$BG"; } 2>/dev/null # no "Killed" job notice
            RC=$?
            break
        fi
        sleep 0.05
    done
    if [ "$RC" = 999 ]; then
        kill -KILL "$BG" 2>/dev/null
        wait "$BG" 2>/dev/null
    fi
    BG_PIDS=() # reaped: never signal a recycled pid from cleanup
    OUT="$(cat "$TD.out")"$'\n'"$(cat "$TD.err")"
}

for sig in INT TERM; do
    start_sleeper
    t0=$(date +%s%N)
    [ -n "$SCRATCH" ] && kill -"$sig" "$BG"
    wait_bg 5
    ELAPSED=$((($(date +%s%N) - t0) / 1000000))
    begin "SIG$sig: provium exits 130 within 5 s, its QEMU is gone, scratch dir removed"
    [ -n "$SCRATCH" ] || problem "no QEMU with a $TD/provium-XXXXXX/qmp.sock appeared within 60 s"
    expect_rc 130
    expect_out "interrupted"
    expect_no_qemu "$TD" 2
    [ -z "$SCRATCH" ] || [ ! -e "$SCRATCH" ] || problem "scratch directory $SCRATCH still exists"
    end_check
done

start_sleeper
t0=$(date +%s%N)
[ -n "$SCRATCH" ] && kill -KILL "$BG"
wait_bg 5
ELAPSED=$((($(date +%s%N) - t0) / 1000000))
begin "SIGKILL to provium: its QEMU still dies within 5 s (PR_SET_PDEATHSIG)"
[ -n "$SCRATCH" ] || problem "no QEMU with a $TD/provium-XXXXXX/qmp.sock appeared within 60 s"
expect_rc 137
expect_no_qemu "$TD" 5
end_check
[ -n "$SCRATCH" ] && [ -e "$SCRATCH" ] &&
    finding "after SIGKILL to provium its scratch directory $(basename "$SCRATCH") (per-VM dirs, console logs, file logs) is left behind in \$TMPDIR"
}

# ---------------------------------------------------------------- 10. --json
section_json() {

pv --config "$CONF" --json tests/cli/fixtures/pass tests/cli/fixtures/fail tests/cli/fixtures/skip
JSON_OUT=$STDOUT
begin "--json: one parsable object per file with path, passed and tests[].name/status"
expect_rc 1
python3 - "$JSON_OUT" >"$T/json.err" 2>&1 <<'EOF' || problem "$(tail -n1 "$T/json.err")"
import json, sys
lines = [l for l in sys.argv[1].splitlines() if l.strip()]
want = {"tests/cli/fixtures/pass/hello.test.lua": (True, {"echo in the guest": "passed", "files round trip": "passed"}),
        "tests/cli/fixtures/fail/assert_eq.test.lua": (False, {"passes": "passed", "compares strings": "failed"}),
        "tests/cli/fixtures/skip/skip.test.lua": (True, {"skipped test": "skipped", "passing test": "passed"})}
assert len(lines) == 3, "expected 3 lines, got %d" % len(lines)
for l in lines:
    o = json.loads(l)
    assert isinstance(o, dict), "not an object: %r" % l
    assert o.get("path") in want, "unexpected path %r" % o.get("path")
    passed, tests = want.pop(o["path"])
    assert o.get("passed") is passed, "%s: passed=%r" % (o["path"], o.get("passed"))
    assert isinstance(o.get("tests"), list), "%s: tests is %r" % (o["path"], o.get("tests"))
    got = {t.get("name"): t.get("status") for t in o["tests"]}
    assert got == tests, "%s: tests %r, expected %r" % (o["path"], got, tests)
    if o["path"].endswith("assert_eq.test.lua"):
        msg = [t for t in o["tests"] if t["status"] == "failed"][0].get("message", "")
        assert 'expected "expected-value", got "actual-value"' in msg, "failure message %r" % msg
EOF
end_check

pv --config "$CONF" --json tests/cli/fixtures/syntax tests/cli/fixtures/toplevel tests/cli/fixtures/crash/a_os_exit.test.lua
JSON_OUT=$STDOUT
begin "--json for files without test results (syntax error, top-level error, crash): tests is an empty array"
expect_rc 1
python3 - "$JSON_OUT" >"$T/json.err" 2>&1 <<'EOF' || problem "$(tail -n1 "$T/json.err")"
import json, sys
lines = [l for l in sys.argv[1].splitlines() if l.strip()]
assert len(lines) == 3, "expected 3 lines, got %d" % len(lines)
bad = []
for l in lines:
    o = json.loads(l)
    assert o.get("passed") is False, "%s: passed=%r" % (o.get("path"), o.get("passed"))
    assert isinstance(o.get("chunk_error"), str), "%s: no chunk_error" % o.get("path")
    if o.get("tests") != []:
        bad.append("%s: \"tests\": %s" % (o.get("path"), json.dumps(o.get("tests"))))
assert not bad, "tests should be [] but: " + "; ".join(bad)
EOF
end_check
}

# ---------------------------------------------------------------- 11. VM cleanup
section_vm_cleanup() {

pv --config "$CONF" -j 1 tests/cli/fixtures/cleanup
begin "errors raised after booting VMs (in a test, at top level) leave no QEMU behind"
expect_rc 1
expect_re '^FAIL tests/cli/fixtures/cleanup/a_error_in_test\.test\.lua \(0 passed, 1 failed'
expect_out "a_error_in_test.test.lua:6: raised after booting"
expect_re '^ERROR tests/cli/fixtures/cleanup/b_error_at_top\.test\.lua '
expect_out "b_error_at_top.test.lua:3: raised at top level after booting"
expect_no_qemu "$TD" 0
expect_no_scratch "$TD"
end_check
}

# ---------------------------------------------------------------- 12. framework semantics
section_framework() {

pv --config "$CONF" -v tests/cli/fixtures/framework
begin "framework: sticky failures, per-test timeouts (guest wait and Lua loop), console tails"
expect_rc 1
expect_re '^FAIL tests/cli/fixtures/framework/sticky\.test\.lua \(1 passed, 4 failed, 0 skipped\)'
expect_out 'sticky.test.lua:3: caught: expected 2, got 1'
expect_out 'log: still running after the caught failure'
expect_out 'test timed out after 1s'
expect_out 'test timed out after 0.5s'
expect_out 'ok   the file continues after a timed-out test'
expect_out 'deliberate'
expect_out "console-evidence-line"
expect_out "the cause survives the report"
expect_no_out "provium/framework.lua:99"
expect_faster_than 60
expect_no_qemu "$TD" 2
end_check

pv --config "$CONF" -v tests/cli/fixtures/todo_file
begin "todo() at file scope skips every test of the file"
expect_rc 0
expect_out '(0 passed, 0 failed, 2 skipped)'
expect_out 'feature not written yet'
end_check

pv --config "$CONF" tests/cli/fixtures/dup
begin "a duplicate test name is an error at registration, naming the line"
expect_rc 1
expect_out "dup.test.lua:2: test 'same' is already defined"
end_check

pv --config "$CONF" tests/cli/fixtures/reset_refused
begin "reset_between_tests is refused at chunk end while a file-scope stream is open, naming its line"
expect_rc 1
expect_out "reset_between_tests: cannot take the baseline"
expect_out "reset.test.lua:4"
end_check
}

# ---------------------------------------------------------------- 13. repl, lsp-setup, --watch
section_repl_lsp_watch() {

begin "repl: a booted VM bound to vm, expressions print, errors set the exit status"
OUT=$(cd "$ROOT" && printf 'vm:run("echo repl-ok").stdout\n6*7\nerror("boom")\n' |
    TMPDIR=$T timeout -k 5 "$LIMIT" "$PROVIUM" repl -c "$CONF" default 2>&1)
RC=$?
expect_rc 1
expect_out "repl-ok"
expect_out "42"
expect_out "error: repl:1: boom"
expect_no_qemu "$T" 3
end_check

pv repl -c "$CONF" no_such_profile </dev/null
begin "repl with an unknown profile names it"
expect_rc 2
expect_out "unknown profile 'no_such_profile'"
end_check

pv lsp-setup "$T/lsp"
begin "lsp-setup writes type stubs and .luarc.json"
expect_rc 0
[ -s "$T/lsp/.provium/types/provium.lua" ] || problem "no stubs written"
grep -q '"workspace.library"' "$T/lsp/.luarc.json" 2>/dev/null || problem "no .luarc.json"
grep -qE 'function (VM|Guest):run' "$T/lsp/.provium/types/provium.lua" 2>/dev/null || problem "stubs lack VM:run"
end_check

W=$T/watch
mkdir -p "$W"
printf 'test("w", function(t) t:assert(true) end)\n' >"$W/w.test.lua"
# no subshell: the signal below must reach timeout(1), which passes it on
TMPDIR=$T timeout -k 5 60 "$PROVIUM" --config "$CONF" --watch "$W" >"$T/watch.out" 2>&1 &
WPID=$!
BG_PIDS+=("$WPID")
for _ in $(seq 1 100); do grep -q "watching for changes" "$T/watch.out" 2>/dev/null && break; sleep 0.1; done
sleep 0.5
printf 'test("w2", function(t) t:assert(true) end)\n' >>"$W/w.test.lua"
for _ in $(seq 1 100); do [ "$(grep -c '^PASS' "$T/watch.out")" -ge 2 ] && break; sleep 0.1; done
t0=$(date +%s)
kill -TERM "$WPID" 2>/dev/null
wait "$WPID" 2>/dev/null
stopped_in=$(($(date +%s) - t0))
OUT=$(cat "$T/watch.out")
RC=-
begin "--watch runs again after a file changes"
[ "$(grep -c '^PASS' <<<"$OUT")" -ge 2 ] || problem "expected two runs"
expect_out "change detected"
expect_out "(2 passed, 0 failed, 0 skipped)"
[ "$stopped_in" -le 5 ] || problem "provium --watch took ${stopped_in} s to stop after SIGTERM"
end_check

# A process killed before QEMU mapped its guest RAM leaves
# /dev/shm/provium-PID-0.ram behind; a later process that gets the same pid
# must not fail on it (exec keeps the shell's pid, and the REPL boots its VM
# in its own process, so the leftover is its own).
if [ -w /dev/shm ]; then
    RUN_N=$((RUN_N + 1))
    TD=$T/r$RUN_N
    mkdir -p "$TD"
    OUT=$(cd "$ROOT" && echo 'print(vm:run("echo ram-ok").stdout)' | TMPDIR=$TD timeout -k 5 "$LIMIT" sh -c \
        ': > /dev/shm/provium-$$-0.ram; exec "$0" repl --config "$1" default' "$PROVIUM" "$CONF" 2>&1)
    RC=$?
    begin "a stale guest RAM file left under the same pid by a killed run does not break the boot"
    expect_rc 0
    expect_out "ram-ok"
    expect_no_out "File exists"
    end_check
fi
}

run_sections options paths results configuration boot_failures timeout crashes interrupts json vm_cleanup framework repl_lsp_watch

# ---------------------------------------------------------------- summary

begin "no QEMU process from any run of this script is left"
RC=-
OUT=$(live_qemu "$T" | while read -r p; do tr '\0' ' ' <"/proc/$p/cmdline"; echo; done)
[ -z "$OUT" ] || problem "leftover QEMU processes"
end_check

for f in "${FINDINGS[@]}"; do echo "# finding: $f"; done
check_summary
