#!/usr/bin/env bash
# Kernel health end to end, against a real module that breaks the kernel on
# request (tests/kmod/provium_faulty.c, built by `make kmod-faulty`): a test
# during which the kernel WARNs fails with the report's own title, an oops
# under the agent's own call ends that call within seconds (not at the 60 s
# reply timeout), a report outside any test fails the file, and
# expect_kernel_report fails when nothing was reported.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
# shellcheck source=../lib/checks.sh
. "$ROOT/tests/lib/checks.sh"
PROVIUM=$ROOT/build/provium
FIX=tests/cli/fixtures/kernel
[ -f build/kmod-faulty/provium_faulty.ko ] || { echo "Bail out! run 'make kmod-faulty' first" >&2; exit 2; }
# shellcheck source=../lib/cleanup.sh
. "$ROOT/tests/lib/cleanup.sh"
scratch_dir pvkh

pv() {
    local t0
    t0=$(date +%s%N)
    OUT=$(TMPDIR=$T timeout -k 5 120 "$PROVIUM" "$@" 2>&1)
    RC=$?
    ELAPSED=$((($(date +%s%N) - t0) / 1000000))
}

pv "$FIX/warn.test.lua"
begin "a WARN_ON during a test fails that test, titled by function and module"
expect_rc 1
expect_out "FAIL a WARN_ON fires"
expect_out "VM 'kh': kernel WARNING in provium_faulty_warn"
expect_out "[provium_faulty]"
expect_out "cut here"
expect_re "trigger_write\+0x[0-9a-f]+/0x[0-9a-f]+ \[provium_faulty\] \(/.*provium_faulty\.c:[0-9]+\)"
expect_out "2 passed, 1 failed"
end_check

pv --json "$FIX/warn.test.lua"
begin "--json carries the report as the failure and in kernel_reports"
expect_rc 1
expect_out '"kind":"warning"'
expect_out 'kernel WARNING in provium_faulty_warn'
end_check

pv --junit "$T/j.xml" "$FIX/warn.test.lua"
begin "JUnit carries the report in the failure, and is valid XML"
OUT=$(cat "$T/j.xml")
expect_out "kernel WARNING in provium_faulty_warn"
xmllint --noout "$T/j.xml" 2>/dev/null || problem "xmllint rejects the JUnit file"
end_check

pv --save-events "$T/ev.jsonl" "$FIX/warn.test.lua"
begin "a kernel_report event names the VM, kind and test"
OUT=$(cat "$T/ev.jsonl")
expect_re '"kernel_report".*"kind":"warning"|"kind":"warning".*"kernel_report"'
expect_out '"a WARN_ON fires"'
expect_re '"kernel_report".*provium_faulty\.c:[0-9]+'
end_check

pv "$FIX/agent_oops.test.lua"
begin "an oops that kills the agent's call ends it at once, saying so"
expect_rc 1
expect_out "kernel oops while running write file"
expect_out "BUG: kernel NULL pointer dereference"
[ "$ELAPSED" -lt 30000 ] || problem "took ${ELAPSED} ms: the call waited for a timeout"
end_check

pv "$FIX/between.test.lua"
begin "a report outside any test fails the file"
expect_rc 1
expect_out "outside any test: VM 'kb': kernel WARNING in provium_faulty_warn"
end_check

pv "$FIX/expect_none.test.lua"
begin "expect_kernel_report fails when the kernel reported nothing"
expect_rc 1
expect_out "expected a kernel report matching 'WARNING'"
end_check

check_summary
