#!/usr/bin/env bash
# What the user guide's troubleshooting section promises about failure
# reports, checked on a real VM in every output format:
#  * r:assert_ok("msg") keeps msg intact in front of the failure (with the
#    command's stdout and stderr);
#  * bytes that are not valid UTF-8 in a failure or a t:log line show as \xNN
#    escapes and the report is still written (text, --json, --tap, --junit).
#
# Run after `make all image`: tests/cli/guide_claims.sh
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib/vm_scripts.sh
. "$ROOT/tests/lib/vm_scripts.sh"

cat >"$T/claims.test.lua" <<'LUA'
local vm = provium:vm("claims", "default"):boot()
test("assert_ok with a message", function(t)
  vm:run("echo out-marker; echo err-marker >&2; exit 3"):assert_ok("loading the module")
end)
test("binary data in a failure", function(t)
  t:log("log \xff\xfe end")
  t:assert_eq("\xff\xfe\0", "abc")
end)
LUA

run() {
    local t0
    t0=$(date +%s%N)
    OUT=$(TMPDIR=$T timeout -k 5 "$LIMIT" "$PROVIUM" -c "$ROOT/tests/cli/configs/cli.toml" "$@" 2>&1)
    RC=$?
    ELAPSED=$((($(date +%s%N) - t0) / 1000000))
}

run -v "$T/claims.test.lua"
begin "text: assert_ok(msg) puts msg, unchanged, in front of the failure and its output"
expect_rc 1
expect_re 'claims\.test\.lua:3: loading the module: .*exited with status 3'
expect_out "out-marker"
expect_out "err-marker"
end_check

begin "text: non-UTF-8 bytes in a failure and in t:log show as \\xNN escapes"
expect_out 'got "\xFF\xFE\x00"'
expect_out 'log \xFF\xFE end'
end_check

run --json "$T/claims.test.lua"
begin "--json: the report is written and carries both failures, escapes included"
expect_rc 1
python3 - "$OUT" <<'PY' || problem "the JSON report is not as expected (see above)"
import json, sys
msgs = []
for line in sys.argv[1].splitlines():
    line = line.strip()
    if line.startswith("{"):
        msgs.append(json.dumps(json.loads(line)))
text = " ".join(msgs)
ok = "loading the module: " in text and "out-marker" in text and "\\\\xFF\\\\xFE" in text
print("# json ok" if ok else "# json lacks a message: " + text[:2000])
sys.exit(0 if ok else 1)
PY
end_check

run --tap "$T/claims.test.lua"
begin "--tap: the report is written and carries both failures"
expect_rc 1
expect_out "not ok"
expect_out "loading the module: "
expect_out 'xFF'
expect_no_out "not valid UTF-8"
end_check

run --junit "$T/junit.xml" "$T/claims.test.lua"
begin "--junit: the XML report parses and carries both failures"
expect_rc 1
OUT=$(python3 - "$T/junit.xml" <<'PY' 2>&1
import sys, xml.dom.minidom
doc = xml.dom.minidom.parse(sys.argv[1])
for f in doc.getElementsByTagName("failure"):
    print(f.getAttribute("message"))
    print("".join(n.data for n in f.childNodes if n.nodeType in (n.TEXT_NODE, n.CDATA_SECTION_NODE)))
PY
)
expect_out "loading the module: "
expect_out 'xFF'
end_check

check_summary
