#!/usr/bin/env bash
# Black-box tests of the runner: the resource pool and claims, -j, CPU
# pressure gating, selection (--filter, --tag, --tag-meta, --include-slow,
# --shard, --rerun-failed, --since, --fail-fast), the outputs (--json,
# --junit validated by xmllint against tests/runner/junit.xsd, --tap read by
# prove, --save-events), KTAP sub-tests in each of them, and the list/doctor
# subcommands.
#
# Run after `make all image`:  tests/runner/run.sh  (cds to the repository
# root itself; PROVIUM_RUNNER_LIMIT changes the 120 s per-run bound).
# Same conventions as tests/cli/run.sh: every run bounded by timeout(1), a
# private TMPDIR and cache per script, "ok - ..." / "not ok - ..." lines, exit
# 1 when any check failed. Only tests/runner/fixtures/vm boots VMs.
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
# shellcheck source=../lib/checks.sh
. "$ROOT/tests/lib/checks.sh"
FIX=tests/runner/fixtures
LIMIT=${PROVIUM_RUNNER_LIMIT:-120}

if [ ! -x "$ROOT/build/provium" ]; then
    echo "Bail out! run tests/runner/run.sh after 'make all image'" >&2
    exit 2
fi
for tool in python3 xmllint prove; do
    command -v $tool >/dev/null || { echo "Bail out! $tool is needed" >&2; exit 2; }
done

# shellcheck source=../lib/cleanup.sh
. "$ROOT/tests/lib/cleanup.sh"
scratch_dir pvrun
# a private copy: a concurrent `make` must not swap the binary mid-run
cp "$ROOT/build/provium" "$T/provium" || exit 2
PROVIUM=$T/provium
export PROVIUM_CACHE_DIR=$T/cache
export PROVIUM_RERUN_STATE=$T/rerun.json
export PROVIUM_NO_PROGRESS=1

RUN_N=0
pv() {
    RUN_N=$((RUN_N + 1))
    TD=$T/r$RUN_N
    mkdir -p "$TD"
    local t0
    t0=$(date +%s%N)
    TMPDIR=$TD timeout -k 5 "$LIMIT" env ${PV_PATH:+PATH="$PV_PATH"} "$PROVIUM" "$@" >"$TD.out" 2>"$TD.err"
    RC=$?
    ELAPSED=$((($(date +%s%N) - t0) / 1000000))
    STDOUT=$(cat "$TD.out")
    STDERR=$(cat "$TD.err")
    OUT="$STDOUT"$'\n'"$STDERR"
}

# py SCRIPT ARGS...: a python check; its last output line is the problem.
py() {
    local script=$1
    shift
    python3 -c "$script" "$@" >"$T/py.err" 2>&1 || problem "$(tail -n1 "$T/py.err")"
}

# ---------------------------------------------------------------- counts and exit codes
section_exit_codes() {

pv $FIX/basic/pass.test.lua $FIX/basic/skip.test.lua
begin "passing and skipping files: exit 0, counts in the summary"
expect_rc 0
expect_re '^PASS tests/runner/fixtures/basic/pass\.test\.lua \(2 passed, 0 failed, 0 skipped\)'
expect_re '^PASS tests/runner/fixtures/basic/skip\.test\.lua \(1 passed, 0 failed, 2 skipped\)'
expect_re '^2 files: 2 passed, 0 failed; 5 tests: 3 passed, 0 failed, 2 skipped'
end_check

pv $FIX/basic
begin "a failing test: exit 1; slow tests skipped by default"
expect_rc 1
expect_re '^FAIL tests/runner/fixtures/basic/fail\.test\.lua \(1 passed, 1 failed, 0 skipped\)'
expect_re '^PASS tests/runner/fixtures/basic/slow\.test\.lua \(1 passed, 0 failed, 1 skipped\)'
expect_re '^5 files: 4 passed, 1 failed; 14 tests: 10 passed, 1 failed, 3 skipped'
end_check

pv --include-slow -v $FIX/basic/slow.test.lua
begin "--include-slow runs meta.slow tests"
expect_rc 0
expect_re '\(2 passed, 0 failed, 0 skipped\)'
expect_out "log: slow ran"
end_check

pv -q $FIX/basic
begin "-q prints only failing files and the summary"
expect_rc 1
expect_out "FAIL tests/runner/fixtures/basic/fail.test.lua"
expect_no_out "PASS tests/runner"
expect_re '^5 files:'
end_check

pv -v -q $FIX/basic
begin "-v with -q is a usage error"
expect_rc 2
end_check

pv --timeout 2s $FIX/hang $FIX/crash $FIX/basic/pass.test.lua
begin "a timed-out file and a crashed file are reported; the run continues; exit 1"
expect_rc 1
expect_re '^TIMEOUT tests/runner/fixtures/hang/loop\.test\.lua'
expect_re '^CRASH tests/runner/fixtures/crash/exit\.test\.lua'
expect_re '^PASS tests/runner/fixtures/basic/pass\.test\.lua'
end_check
}

# ---------------------------------------------------------------- claims
section_claims() {

pv --save-events $T/claims.jsonl $FIX/claim
begin "claims: an impossible claim is reported for its file, a second claim errors, small claims run"
expect_rc 1
expect_re '^ERROR tests/runner/fixtures/claim/never\.test\.lua'
expect_out "can never fit the pool"
expect_re '^ERROR tests/runner/fixtures/claim/twice_top\.test\.lua'
expect_out "claim already taken"
expect_re '^PASS tests/runner/fixtures/claim/twice\.test\.lua \(1 passed'
expect_re '^PASS tests/runner/fixtures/claim/small\.test\.lua \(1 passed'
py '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
kinds = [e["kind"] for e in ev]
acq = [e["payload"]["path"] for e in ev if e["kind"] == "claim_acquired"]
rel = [e["payload"]["path"] for e in ev if e["kind"] == "claim_released"]
assert sorted(acq) == sorted(rel), "acquired %r released %r" % (acq, rel)
assert any(p.endswith("small.test.lua") for p in acq), "no claim_acquired for small: %r" % acq
assert "claim_refused" in kinds, "no claim_refused event"
last = [e for e in ev if e["kind"] == "pool_state"][-1]["payload"]
assert last["used"]["memory_bytes"] == 0 and last["used"]["cpus"] == 0, "pool not back to empty: %r" % last
' "$T/claims.jsonl"
end_check
}

# ---------------------------------------------------------------- --coverage, --no-preflight
section_coverage() {

PV_PATH=/usr/bin:/bin pv --coverage $FIX/basic/pass.test.lua
begin "--coverage without provium-coverage on PATH: exit 2 with a pointer"
expect_rc 2
expect_out "provium-coverage is not on PATH"
end_check

mkdir -p "$T/cov"
cat >"$T/cov/provium-coverage" <<SH
#!/bin/sh
# a stand-in: records its arguments and the events it was given
echo "\$@" >"$T/cov/args"
cp "\$2" "$T/cov/events"
SH
chmod +x "$T/cov/provium-coverage"
PV_PATH=$T/cov:/usr/bin:/bin pv --coverage --no-preflight $FIX/basic/pass.test.lua
begin "--coverage pipes the run's events to provium-coverage --from FILE; --no-preflight is accepted"
expect_rc 0
grep -q '^--from ' "$T/cov/args" 2>/dev/null || problem "provium-coverage args: $(cat "$T/cov/args" 2>&1)"
grep -q '"kind":"run_completed"' "$T/cov/events" 2>/dev/null || problem "no events reached provium-coverage"
end_check
}

# ---------------------------------------------------------------- VM boots charged to claims and the pool
section_vm_charges() {

# pressure gating off: both files must be running at once to hold and wait
PROVIUM_PSI_THRESHOLD=off pv --json --mem 4G --cpus 2 --timeout 60 --save-events $T/dl.jsonl $FIX/deadlock
begin "hold and wait without claims: exactly one boot fails at once, naming the deadlock and provium:claim"
expect_rc 1
[ "$ELAPSED" -lt 10000 ] || problem "took ${ELAPSED} ms"
py '
import json, sys
files = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
assert len(files) == 2, files
fails = [t["message"] for f in files for t in f["tests"] if t["status"] == "failed"]
assert len(fails) == 1, "expected one failed boot: %r" % fails
assert "the pool is deadlocked" in fails[0] and "provium:claim" in fails[0], fails[0]
assert all(f["chunk_error"] is None and f["timeout"] == "in_time" for f in files), files
ev = [json.loads(l) for l in open(sys.argv[2])]
assert any(e["kind"] == "boot_refused" and e["payload"]["reason"] == "deadlock" for e in ev), "no boot_refused"
last = [e for e in ev if e["kind"] == "pool_state"][-1]["payload"]
assert last["used"]["memory_bytes"] == 0 and last["used"]["cpus"] == 0, "pool not back to empty: %r" % last
' "$STDOUT" "$T/dl.jsonl"
end_check

pv --json --mem 4G --cpus 2 --save-events $T/charge.jsonl $FIX/charge
begin "boots are charged to the claim: past it fails fast; unclaimed files are charged to the pool; test-scope claims, memory_bytes, zero claims"
expect_rc 0
py '
import json, sys
files = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
assert len(files) == 2 and all(f["passed"] for f in files), [(f["path"], [(t["name"], t["message"]) for t in f["tests"]], f["chunk_error"]) for f in files]
' "$STDOUT"
end_check

begin "events: file_discovered has fixture_refs and declared_claim, vm_spawned memory_bytes, amounts use memory_bytes"
py '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
fd = {e["payload"]["path"].split("/")[-1]: e["payload"] for e in ev if e["kind"] == "file_discovered"}
assert fd["claims.test.lua"]["declared_claim"] == {"memory_bytes": 64 << 20, "cpus": 1.0}, fd
assert fd["over_claim.test.lua"]["declared_claim"] == {"memory_bytes": 512 << 20, "cpus": 1.0}, fd
assert all(p["fixture_refs"] == [] for p in fd.values()), fd
vs = [e["payload"] for e in ev if e["kind"] == "vm_spawned"]
assert vs and all(p["memory_bytes"] == 1 << 20 and p["vm_name"] and p["profile"] == "local" and p["file"] for p in vs), vs
for e in ev:
    for k in ("reservation", "amount", "waiting_for"):
        if k in e["payload"]:
            assert set(e["payload"][k]) == {"memory_bytes", "cpus"}, e
' "$T/charge.jsonl"
end_check

pv --json --mem 4G --cpus 1 $FIX/deadlock/a_hold_and_wait.test.lua
begin "an unclaimed file with more vCPUs than the pool takes the whole pool instead of failing"
expect_rc 0
end_check

pv --json --mem 300M --cpus 2 $FIX/pool_mem
begin "an unclaimed file whose VMs need more memory than the pool: the boot is refused at once ('exceeds pool total')"
expect_rc 0
end_check

pv --mem 100M $FIX/basic/pass.test.lua
begin "a pool too small for one default VM: exit 2 with an explanation"
expect_rc 2
expect_out "cannot hold one default VM"
end_check
}

# ---------------------------------------------------------------- -j and pressure
section_jobs_pressure() {

# py_no_overlap EVENTS: no two files were running at once (dispatch..completed)
NO_OVERLAP='
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
span = {}
for e in ev:
    p = e["payload"].get("path")
    if e["kind"] == "file_dispatched": span[p] = [e["ts"], None]
    if e["kind"] == "file_completed": span[p][1] = e["ts"]
s = sorted(span.values())
assert len(s) >= 3, "expected 3 files, got %d" % len(s)
for a, b in zip(s, s[1:]):
    assert a[1] <= b[0], "files overlap: %r and %r" % (a, b)
'
pv -j 1 --save-events $T/j1.jsonl $FIX/psi
begin "-j 1: files never overlap; file_blocked reason jobs_limit"
expect_rc 0
py "$NO_OVERLAP" "$T/j1.jsonl"
grep -q '"reason":"jobs_limit"' "$T/j1.jsonl" || problem "no file_blocked with reason jobs_limit"
end_check

PROVIUM_PSI_THRESHOLD=off pv --save-events $T/par.jsonl --cpus 8 $FIX/psi
begin "without -j and with room in the pool (pressure gating off), files run concurrently"
expect_rc 0
python3 -c "$NO_OVERLAP" "$T/par.jsonl" >/dev/null 2>&1 && problem "the 3 files ran one after another"
end_check

echo "some avg10=99.00 avg60=99.00 avg300=99.00 total=1" >"$T/psi"
PROVIUM_PSI_FILE=$T/psi PROVIUM_PSI_THRESHOLD=50 pv --cpus 8 --save-events $T/psi.jsonl $FIX/psi
begin "high CPU pressure (/proc/pressure/cpu) pauses new dispatches: one file at a time, reason psi_pressure"
expect_rc 0
py "$NO_OVERLAP" "$T/psi.jsonl"
grep -q '"reason":"psi_pressure"' "$T/psi.jsonl" || problem "no file_blocked with reason psi_pressure"
end_check
}

# ---------------------------------------------------------------- two VM files whose claims do not fit together
section_claims_do_not_fit() {

# pressure gating off: the second file must be dispatched and then wait for its claim
PROVIUM_PSI_THRESHOLD=off pv --cpus 3 --save-events $T/vm.jsonl $FIX/vm
begin "two VM files claiming 2 of 3 vCPUs each never overlap (claim windows and VM lifetimes from events)"
expect_rc 0
expect_re '^2 files: 2 passed, 0 failed'
py '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
win = {}
for e in ev:
    p = e["payload"].get("path")
    if e["kind"] == "claim_acquired": win[p] = [e["ts"], None]
    if e["kind"] == "claim_released": win[p][1] = e["ts"]
assert len(win) == 2 and all(w[1] for w in win.values()), "claims: %r" % win
(a, b) = sorted(win.values())
assert a[1] <= b[0], "claim windows overlap: %r %r" % (a, b)
vms = [e for e in ev if e["kind"] in ("vm_spawned", "vm_shutdown")]
assert len([e for e in vms if e["kind"] == "vm_spawned"]) == 2, "vm events: %r" % vms
for e in vms:
    w = win[e["payload"]["file"]]
    t = e["ts"] - int(e["payload"].get("boot_seconds", 0) * 1e9)
    assert w[0] <= t and e["ts"] <= w[1], "VM event outside its file claim window: %r %r" % (e, w)
assert any(e["kind"] == "file_blocked" and e["payload"]["reason"] == "pool_full" for e in ev), "no pool_full block"
' "$T/vm.jsonl"
end_check

# Ctrl-C while one file holds its claim and another waits for one
RUN_N=$((RUN_N + 1))
TD=$T/r$RUN_N
mkdir -p "$TD"
PROVIUM_PSI_THRESHOLD=off TMPDIR=$TD python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$PROVIUM" --cpus 3 --save-events "$T/int.jsonl" $FIX/vm >"$TD.out" 2>"$TD.err" &
BG=$!
for _ in $(seq 600); do
    grep -q '"file_blocked"' "$T/int.jsonl" 2>/dev/null && pgrep -f "$TD/provium-" >/dev/null && break
    kill -0 $BG 2>/dev/null || break
    sleep 0.1
done
kill -INT $BG 2>/dev/null
RC=999
for _ in $(seq 100); do
    kill -0 $BG 2>/dev/null || { wait $BG; RC=$?; break; }
    sleep 0.05
done
[ "$RC" = 999 ] && kill -KILL $BG 2>/dev/null
OUT="$(cat "$TD.out")"$'\n'"$(cat "$TD.err")"
begin "Ctrl-C with a claim held and one waiting: exit 130 within 5 s, no QEMU, no scratch left"
expect_rc 130
expect_out "interrupted"
sleep 1
pgrep -f "$TD/provium-" >/dev/null && problem "processes of the run are still alive: $(pgrep -af "$TD/provium-" | head -3)"
ls -d "$TD"/provium-* >/dev/null 2>&1 && problem "scratch directory left behind"
end_check
}

# ---------------------------------------------------------------- --json
section_json() {

pv --json $FIX/basic $FIX/crash
begin "--json: one object per file in the upstream shape"
expect_rc 1
py '
import json, sys
lines = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
assert len(lines) == 6, "expected 6 lines, got %d" % len(lines)
by = {o["path"]: o for o in lines}
for o in lines:
    for k in ("path", "timeout", "passed", "chunk_error", "tests"):
        assert k in o, "%s lacks %s" % (o.get("path"), k)
    assert o["timeout"] in ("in_time", "timed_out"), o["timeout"]
    for t in o["tests"]:
        assert set(("name", "status", "message", "log")) <= set(t), t
        assert isinstance(t["log"], list), t
        assert t["status"] in ("passed", "failed", "skipped"), t
p = by["tests/runner/fixtures/basic/pass.test.lua"]
assert p["passed"] is True and p["chunk_error"] is None
assert p["tests"][0]["log"] == ["first log line", "second log line"], p["tests"][0]
c = by["tests/runner/fixtures/crash/exit.test.lua"]
assert c["passed"] is False and "status 3" in c["chunk_error"] and c["tests"] == [], c
' "$STDOUT"
end_check
}

# ---------------------------------------------------------------- --junit
section_junit() {

pv --timeout 2s --junit $T/junit.xml $FIX/basic $FIX/crash $FIX/hang
begin "--junit: valid against tests/runner/junit.xsd; suites, cases, failures, skips, errors"
expect_rc 1
xmllint --noout --schema tests/runner/junit.xsd "$T/junit.xml" >"$T/xmllint.err" 2>&1 ||
    problem "xmllint: $(tail -n2 "$T/xmllint.err" | tr '\n' ' ')"
py '
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "testsuites"
suites = {s.get("name"): s for s in root.findall("testsuite")}
assert len(suites) == 7, "suites: %r" % list(suites)
f = suites["tests/runner/fixtures/basic/fail.test.lua"]
assert (f.get("tests"), f.get("failures"), f.get("skipped")) == ("2", "1", "0"), f.attrib
fc = [c for c in f.findall("testcase") if c.find("failure") is not None]
assert len(fc) == 1 and fc[0].get("name") == "fails on purpose"
msg = fc[0].find("failure").get("message")
assert "got <this> & that" in msg, msg
s = suites["tests/runner/fixtures/basic/skip.test.lua"]
sk = [c.find("skipped").get("message") for c in s.findall("testcase") if c.find("skipped") is not None]
assert sorted(sk) == ["declared skip", "no hardware here"], sk
p = suites["tests/runner/fixtures/basic/pass.test.lua"]
assert "first log line" in p.find("testcase").find("system-out").text
for name, typ in (("crash/exit", "error"), ("hang/loop", "timeout")):
    e = suites["tests/runner/fixtures/%s.test.lua" % name]
    err = e.find("testcase/error")
    assert err is not None and err.get("type") == typ and e.get("errors") == "1", (name, e.attrib)
n = sum(int(s.get("tests")) for s in suites.values())
assert root.get("tests") == str(n), (root.get("tests"), n)
for c in root.iter("testcase"):
    float(c.get("time"))
' "$T/junit.xml"
end_check
}

# ---------------------------------------------------------------- --tap
section_tap() {

pv --tap $FIX/basic $FIX/crash
begin "--tap: TAP version 14 that prove reads (failures, skips, the crash)"
expect_rc 1
head -n1 "$TD.out" | grep -qx "TAP version 14" || problem "first line is not 'TAP version 14'"
# The installed TAP::Harness knows TAP 13; what provium emits (plan at the end,
# SKIP directives, YAML diagnostics) reads the same in both versions.
sed '1s/^TAP version 14$/TAP version 13/' "$TD.out" >"$T/run.tap"
prove -e cat "$T/run.tap" >"$T/prove.out" 2>&1
grep -q "Parse errors" "$T/prove.out" && problem "prove: $(grep -A2 'Parse errors' "$T/prove.out" | tr '\n' ' ')"
grep -qE "Tests: 15 Failed: 2" "$T/prove.out" || problem "prove did not see 15 tests / 2 failures: $(tr '\n' ' ' <"$T/prove.out")"
grep -qE '^ok [0-9]+ - tests/runner/fixtures/basic/skip\.test\.lua: skips at runtime # SKIP no hardware here$' "$TD.out" ||
    problem "no SKIP line for the runtime skip"
grep -qE '^1\.\.15$' "$TD.out" || problem "no plan 1..15"
end_check

pv --tap $FIX/basic/pass.test.lua
begin "--tap on an all-passing file: prove passes"
expect_rc 0
sed '1s/^TAP version 14$/TAP version 13/' "$TD.out" >"$T/ok.tap"
prove -e cat "$T/ok.tap" >"$T/prove.out" 2>&1 || problem "prove failed: $(tr '\n' ' ' <"$T/prove.out")"
end_check

# the same assertion text in every output format
pv --json $FIX/text
cp "$TD.out" "$T/text.json"
pv --junit "$T/text.xml" $FIX/text
pv --tap $FIX/text
sed '1s/^TAP version 14$/TAP version 13/' "$TD.out" >"$T/text.tap"
perl -MTAP::Parser -MJSON::PP -e 'my $p = TAP::Parser->new({source => $ARGV[0]}); my @m;
  while (my $r = $p->next) { push @m, $r->data->{message} if $r->is_yaml }
  print JSON::PP->new->encode(\@m)' "$T/text.tap" >"$T/text.tapmsg" 2>"$T/perl.err"
prove -e cat "$T/text.tap" >"$T/text.prove" 2>&1
pv -v $FIX/text
begin "assertion text: escaped once, several lines as a diff, identical in text, --json, --junit and --tap"
expect_rc 1
expect_out 'uname -r: expected "5.10.0\n", got "6.1.192\n"'
expect_re '^        -B$'
expect_re '^        \+b$'
expect_out 'got "say \"hi\"\\\x01"'
expect_no_out '\\n'
expect_re '^        log: a log line$'
grep -qE '^        log: ?$' <<<"$OUT" && problem "t:log(\"...\\n\") printed an empty log line"
xmllint --noout --schema tests/runner/junit.xsd "$T/text.xml" >"$T/xmllint.err" 2>&1 ||
    problem "xmllint: $(tail -n2 "$T/xmllint.err" | tr '\n' ' ')"
grep -q "Parse errors" "$T/text.prove" && problem "prove: $(grep -A2 'Parse errors' "$T/text.prove" | tr '\n' ' ')"
grep -qE "Tests: 3 Failed: 3" "$T/text.prove" || problem "prove did not see 3 tests / 3 failures: $(tr '\n' ' ' <"$T/text.prove")"
py '
import json, sys, xml.etree.ElementTree as ET
r = json.loads(open(sys.argv[1]).read())
msgs = [t["message"] for t in r["tests"]]
assert len(msgs) == 3, msgs
assert msgs[0].endswith("uname -r: expected \"5.10.0\\n\", got \"6.1.192\\n\""), msgs[0]
assert "\n--- expected\n+++ actual\n@@ -1,3 +1,3 @@\n a\n-B\n+b\n c\td" in msgs[1], msgs[1]
assert [t["log"] for t in r["tests"]][1] == ["a log line"], r["tests"][1]
cases = ET.parse(sys.argv[2]).getroot().findall("testsuite/testcase")
junit_attr = [c.find("failure").get("message") for c in cases]
junit_body = [c.find("failure").text for c in cases]
assert junit_attr == msgs, ("junit message=", junit_attr, msgs)
assert junit_body == msgs, ("junit body", junit_body, msgs)
tap = json.load(open(sys.argv[3]))
assert tap == msgs, ("tap", tap, msgs)
' "$T/text.json" "$T/text.xml" "$T/text.tapmsg"
end_check

pv --tap --json $FIX/basic
begin "--tap with --json is a usage error"
expect_rc 2
end_check
}

# ---------------------------------------------------------------- --save-events
section_save_events() {

pv --save-events $T/ev.jsonl $FIX/basic/fail.test.lua $FIX/basic/skip.test.lua
begin "--save-events: ts/kind/payload lines for files, tests, pool"
expect_rc 1
py '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
for e in ev:
    assert set(e) == {"ts", "kind", "payload"} and isinstance(e["ts"], int), e
kinds = [e["kind"] for e in ev]
for k in ("file_discovered", "file_dispatched", "file_completed", "test_started", "test_passed", "test_failed",
          "test_skipped", "pool_state", "run_completed"):
    assert k in kinds, "no %s event" % k
f = [e["payload"] for e in ev if e["kind"] == "test_failed"][0]
assert f["name"] == "fails on purpose" and "compare" in f["reason"] and f["path"].endswith("fail.test.lua"), f
c = {e["payload"]["path"]: e["payload"]["status"] for e in ev if e["kind"] == "file_completed"}
assert sorted(c.values()) == ["failed", "passed"], c
assert kinds.count("file_discovered") == 2
' "$T/ev.jsonl"
end_check
}

# ---------------------------------------------------------------- selection
section_selection() {

pv -v --filter slow $FIX/basic
begin "--filter matching a path runs only that file"
expect_rc 0
expect_re '^PASS tests/runner/fixtures/basic/slow\.test\.lua'
expect_re '^1 files:'
end_check

pv -v --filter "fails on" $FIX/basic
begin "--filter matching a test name runs that test; the others are deselected, not skipped"
expect_rc 1
expect_re '^FAIL tests/runner/fixtures/basic/fail\.test\.lua \(0 passed, 1 failed, 0 skipped\)'
expect_no_out "not selected by"
expect_no_out "    SKIP passes"
expect_re '^1 files:'
expect_out "4 files deselected"
expect_re '^[0-9]+ tests deselected'
end_check

pv -v --tag smoke $FIX/basic
begin "--tag: tests with the tag run, the others are deselected; files without any are not run"
expect_rc 0
expect_re '^PASS tests/runner/fixtures/basic/tags\.test\.lua \(2 passed, 0 failed, 0 skipped\)'
expect_no_out "not selected by --tag smoke"
expect_re '^1 files:'
end_check

pv --json --tag smoke $FIX/basic/tags.test.lua
begin "--json: deselected tests are left out of tests[] and counted in deselected"
expect_rc 0
py '
import json, sys
r = json.loads(sys.argv[1])
assert [t["name"] for t in r["tests"]] == ["smoke fast", "smoke flaky"], r["tests"]
assert r["deselected"] == 3, r
' "$STDOUT"
end_check

pv --filter "no such test" $FIX/basic
begin "--filter that selects no test: exit 5, 'no tests selected', nothing counted as skipped"
expect_rc 5
expect_out "no tests selected: --filter no such test kept none of"
expect_re '; 0 tests: 0 passed, 0 failed, 0 skipped;'
end_check

pv --tag nosuchtag --json $FIX/basic
begin "--tag that selects no test: exit 5 under --json too"
expect_rc 5
grep -qF "no tests selected: --tag nosuchtag" <<<"$STDERR" || problem "stderr lacks the line"
end_check

pv --tag smoke --no-tag smoke $FIX/basic/tags.test.lua
begin "--no-tag that removes every tagged test: exit 5"
expect_rc 5
expect_out "no tests selected"
end_check

pv --filter "no such test" --shard 2/2 $FIX/basic/pass.test.lua
begin "an empty --shard slice exits 0 even with a selection"
expect_rc 0
expect_no_out "no tests selected"
end_check

mkdir -p "$T/emptydir"
pv --filter "no such test" "$T/emptydir"
begin "an empty directory exits 0 even with a selection"
expect_rc 0
expect_no_out "no tests selected"
end_check

pv -v --tag smoke --no-tag flaky $FIX/basic/tags.test.lua
begin "--no-tag wins over --tag"
expect_rc 0
expect_re '\(1 passed, 0 failed, 0 skipped\)'
expect_re '^    ok   smoke fast$'
expect_no_out "smoke flaky"
expect_out "4 tests deselected"
end_check

pv -v --tag-meta subsystems=peinit --tag-meta subsystems=other $FIX/basic/tags.test.lua
begin "--tag-meta: OR within a key (list values)"
expect_rc 0
expect_re '\(2 passed, 0 failed, 0 skipped\)'
expect_re '^    ok   subsystem peinit$'
expect_re '^    ok   subsystem other$'
end_check

pv -v --tag-meta subsystems=peinit --tag-meta subsystems=other --tag-meta area=net $FIX/basic/tags.test.lua
begin "--tag-meta: AND across keys"
expect_rc 0
expect_re '\(1 passed, 0 failed, 0 skipped\)'
expect_re '^    ok   subsystem other$'
end_check

pv -v --tag-meta area=boot --no-tag-meta subsystems=loregd $FIX/basic/tags.test.lua
begin "--no-tag-meta wins over --tag-meta"
expect_rc 0
expect_re '\(1 passed, 0 failed, 0 skipped\)'
expect_re '^    ok   smoke fast$'
expect_no_out "subsystem peinit"
end_check

pv --json $FIX/classic
begin "classic dialect: tests run in place, mixed files run function(t) tests after the top level; declaration order in the report"
expect_rc 0
py '
import json, sys
r = {json.loads(l)["path"].split("/")[-1]: json.loads(l) for l in sys.argv[1].splitlines() if l.strip()}
m, o = r["mixed.test.lua"], r["order.test.lua"]
assert m["passed"] and o["passed"], r
assert [t["name"] for t in m["tests"]] == ["newer a", "classic b", "newer c", "classic d"], m["tests"]
assert [t["name"] for t in o["tests"]] == ["alpha one", "beta", "alpha two"], o["tests"]
' "$STDOUT"
end_check

pv --json --filter alpha $FIX/classic
begin "--filter selects classic tests too: the others are neither run nor reported"
expect_rc 0
py '
import json, sys
r = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
assert len(r) == 1 and r[0]["path"].endswith("classic/order.test.lua"), r
assert r[0]["passed"] and r[0]["chunk_error"] is None, r
assert [(t["name"], t["status"]) for t in r[0]["tests"]] == [("alpha one", "passed"), ("alpha two", "passed")], r
assert r[0]["deselected"] == 1, r
' "$STDOUT"
end_check

pv --tag-meta novalue $FIX/basic
begin "--tag-meta without KEY=VALUE is a usage error"
expect_rc 2
end_check

# shards: disjoint, complete, deterministic
ALL=$(find $FIX/basic $FIX/claim $FIX/psi -name '*.test.lua' | sort)
SHARDS=()
for k in 1 2 3; do
    pv --json --shard $k/3 $FIX/basic $FIX/claim $FIX/psi
    SHARDS+=("$(python3 -c 'import json,sys; print("\n".join(sorted(json.loads(l)["path"] for l in sys.stdin if l.strip())))' <"$TD.out")")
done
pv --json --shard 2/3 $FIX/psi $FIX/claim $FIX/basic
AGAIN=$(python3 -c 'import json,sys; print("\n".join(sorted(json.loads(l)["path"] for l in sys.stdin if l.strip())))' <"$TD.out")
begin "--shard K/N: shards are disjoint, cover every file, and do not depend on argument order"
RC=-
UNION=$(printf '%s\n' "${SHARDS[@]}" | grep . | sort)
[ "$UNION" = "$ALL" ] || problem "union of shards differs from all files: $(diff <(echo "$UNION") <(echo "$ALL") | tr '\n' ' ')"
[ "$(printf '%s\n' "${SHARDS[@]}" | grep . | sort | uniq -d)" = "" ] || problem "a file is in two shards"
[ "$AGAIN" = "${SHARDS[1]}" ] || problem "shard 2/3 changed with argument order"
for s in "${SHARDS[@]}"; do [ -n "$s" ] || problem "an empty shard"; done
end_check

pv --shard 4/3 $FIX/basic
begin "--shard 4/3 is a usage error"
expect_rc 2
end_check

# rerun-failed
rm -f "$PROVIUM_RERUN_STATE"
pv --rerun-failed $FIX/basic
begin "--rerun-failed without state: 'no prior failure state', nothing to re-run, exit 0"
expect_rc 0
expect_out "no prior failure state"
expect_out "nothing to re-run"
expect_no_out "files found"
end_check

pv $FIX/basic
pv --rerun-failed -v $FIX/basic
begin "--rerun-failed after a failing run reruns only the failed file"
expect_rc 1
expect_re '^FAIL tests/runner/fixtures/basic/fail\.test\.lua'
expect_re '^1 files:'
end_check

pv $FIX/basic/pass.test.lua
begin "a clean run of other files keeps the recorded failure"
python3 -c 'import json,sys; f=json.load(open(sys.argv[1]))["failed"]; assert len(f)==1 and f[0].endswith("basic/fail.test.lua"), f' "$PROVIUM_RERUN_STATE" ||
    problem "state: $(cat "$PROVIUM_RERUN_STATE")"
end_check

pv --filter passes $FIX/basic/fail.test.lua
pv --rerun-failed $FIX/basic
begin "after the failing file passes, the state is empty and --rerun-failed has nothing to do"
python3 -c 'import json,sys; f=json.load(open(sys.argv[1]))["failed"]; assert f==[], f' "$PROVIUM_RERUN_STATE" ||
    problem "state: $(cat "$PROVIUM_RERUN_STATE")"
expect_rc 0
expect_out "left no failed files"
expect_out "nothing to re-run"
end_check

# since
mkdir -p "$T/since"
cp $FIX/basic/pass.test.lua $FIX/basic/skip.test.lua "$T/since/"
touch -d '2020-01-01' "$T/since/pass.test.lua"
touch -d '2021-01-01' "$T/marker"
pv --since "$T/marker" "$T/since"
begin "--since FILE runs only files modified after FILE"
expect_rc 0
expect_re 'since/skip\.test\.lua'
expect_no_out "pass.test.lua"
expect_re '^1 files:'
end_check

pv --since "$T/no-such-marker" "$T/since"
begin "--since with a missing file is an error (exit 2)"
expect_rc 2
expect_out "no-such-marker"
end_check

pv -j 1 --fail-fast $FIX/basic
begin "--fail-fast: no new file starts after the first failure"
expect_rc 1
expect_re '^FAIL tests/runner/fixtures/basic/fail\.test\.lua'
expect_no_out "skip.test.lua"
expect_re 'files not run \(--fail-fast\)'
end_check

pv $FIX/../no-tests-here 2>/dev/null
mkdir -p "$T/empty"
pv "$T/empty"
begin "no test files: 'no *.test.lua files found' naming the searched path, exit 0"
expect_rc 0
expect_out "no *.test.lua files found (searched: $T/empty)"
end_check

pv --json "$T/empty"
begin "no test files under --json: one no_files object"
expect_rc 0
py '
import json, sys
lines = [l for l in sys.argv[1].splitlines() if l.strip()]
assert len(lines) == 1, lines
o = json.loads(lines[0])
assert o["no_files"]["pattern"] == "*.test.lua" and o["no_files"]["searched"].endswith("/empty"), o
' "$STDOUT"
end_check

pv --cpu-overcommit 0.1 "$T/empty"
begin "--cpu-overcommit outside 0.5..8 is clamped with a notice; 1.5 is not"
expect_rc 0
expect_out "--cpu-overcommit 0.1 clamped to 0.5"
pv --cpu-overcommit 100 "$T/empty"
expect_out "--cpu-overcommit 100 clamped to 8"
pv --cpu-overcommit 1.5 "$T/empty"
expect_no_out "clamped"
end_check
}

# ---------------------------------------------------------------- subcommands
section_subcommands() {

pv list $FIX/basic $FIX/vm
begin "provium list: files and test names, without booting VMs"
expect_rc 0
expect_re '^tests/runner/fixtures/basic/tags\.test\.lua$'
expect_re '^    smoke fast$'
expect_re '^    the guest answers \(a\)$'
expect_re '^    takes long  \(skip: slow test'
[ "$ELAPSED" -lt 5000 ] || problem "listing took $ELAPSED ms (did it boot VMs?)"
end_check

pv list --json --tag smoke $FIX/basic
begin "provium list --json --tag: selection is shown per test"
expect_rc 0
py '
import json, sys
o = {json.loads(l)["path"]: json.loads(l) for l in sys.argv[1].splitlines() if l.strip()}
t = {x["name"]: x["selected"] for x in o["tests/runner/fixtures/basic/tags.test.lua"]["tests"]}
assert t["smoke fast"] and t["smoke flaky"] and not t["untagged"], t
' "$STDOUT"
end_check

pv doctor
begin "provium doctor: checks QEMU, KVM/TCG, vsock, tun, cache, image; exit 0 here"
expect_rc 0
expect_re '^ok +qemu +QEMU emulator version'
expect_re '^(ok|warn) +kvm '
expect_re '^(ok|warn) +vhost-vsock '
expect_re '^(ok|warn) +tun '
expect_re '^ok +cache dir '
expect_re '^ok +default image '
end_check

PV_PATH=/nonexistent pv doctor
begin "provium doctor without QEMU on PATH: FAIL line, non-zero exit"
[ "$RC" != 0 ] || problem "exit 0"
expect_re '^FAIL +qemu '
end_check
}

# ---------------------------------------------------------------- KTAP sub-tests
section_ktap() {
# t:ktap and vm:kselftest (on the local profile) in text, -v, --json, --junit and --tap

# 5 tests (1 passed, 4 failed) and 12 sub-tests (6 passed, 4 failed, 2 skipped)
SUMMARY='1 files: 0 passed, 1 failed; 17 tests: 7 passed, 8 failed, 2 skipped'

pv $FIX/ktap
begin "text: failed sub-tests under their failed test, counted in the summary"
expect_rc 1
expect_out 'FAIL tests/runner/fixtures/ktap/ktap.test.lua (7 passed, 8 failed, 2 skipped)'
expect_out "$SUMMARY"
expect_re '^    FAIL kunit text with a failing case$'
expect_re '^        tests/runner/fixtures/ktap/ktap\.test\.lua:[0-9]+: 1 KTAP case failed:$'
expect_re '^      FAIL kunit text with a failing case / demo / demo_clamp$'
expect_re '^          Expected clamp\(5\) == 4, but$'
expect_re '^      FAIL kselftest script on the local profile / ks_demo\.sh / reads$'
expect_re '^        tests/runner/fixtures/ktap/ktap\.test\.lua:[0-9]+: t:ktap: no KTAP in the text'
# passing sub-tests only with -v
expect_no_out 'demo / demo_add'
end_check

pv -v $FIX/ktap
begin "-v: every sub-test with its verdict"
expect_rc 1
expect_re '^      ok   kunit text with a failing case / demo / demo_add$'
expect_re '^      SKIP kunit text with a failing case / demo / demo_later$'
expect_re '^          needs hardware$'
expect_re '^      ok   kunit text with a failing case / other / other_case$'
expect_re '^      ok   all cases pass / flat / second$'
expect_re '^      SKIP kselftest script on the local profile / ks_demo\.sh / ioctl$'
expect_re '^      ok   all cases pass / flat / first$'
expect_re '^          echo .* did not finish within 1 s and was killed$'
expect_out "$SUMMARY"
end_check

pv --json $FIX/ktap
cp "$TD.out" "$T/ktap.json"
pv --junit "$T/ktap.xml" $FIX/ktap
pv --tap $FIX/ktap
sed '1s/^TAP version 14$/TAP version 13/' "$TD.out" >"$T/ktap.tap"
cp "$TD.out" "$T/ktap14.tap"
prove -e cat "$T/ktap.tap" >"$T/prove.out" 2>&1
begin "--json, --junit and --tap carry the same sub-tests"
xmllint --noout --schema tests/runner/junit.xsd "$T/ktap.xml" >"$T/xmllint.err" 2>&1 ||
    problem "xmllint: $(tail -n2 "$T/xmllint.err" | tr '\n' ' ')"
grep -q "Parse errors" "$T/prove.out" && problem "prove: $(grep -A2 'Parse errors' "$T/prove.out" | tr '\n' ' ')"
grep -qE "Tests: 5 Failed: 4" "$T/prove.out" || problem "prove did not see 5 tests / 4 failures: $(tr '\n' ' ' <"$T/prove.out")"
py '
import json, re, sys, xml.etree.ElementTree as ET
r = json.loads(open(sys.argv[1]).read())
subs = [(s["name"], s["status"]) for t in r["tests"] for s in t.get("subtests", [])]
want = [("kunit text with a failing case / demo / demo_add", "passed"),
        ("kunit text with a failing case / demo / demo_clamp", "failed"),
        ("kunit text with a failing case / demo / demo_later", "skipped"),
        ("kunit text with a failing case / other / other_case", "passed"),
        ("all cases pass / flat / first", "passed"),
        ("all cases pass / flat / second", "passed"),
        ("kselftest script on the local profile / ks_demo.sh / opens", "passed"),
        ("kselftest script on the local profile / ks_demo.sh / reads", "failed"),
        ("kselftest script on the local profile / ks_demo.sh / ioctl", "skipped"),
        ("kselftest that outlives its timeout / sleeper / started", "passed"),
        ("kselftest that outlives its timeout / sleeper / (plan)", "failed"),
        ("kselftest that outlives its timeout / sleeper / (timeout)", "failed")]
# ("ok ... # TODO" passes)
assert subs == want, ("json", subs)
status = {t["name"]: t["status"] for t in r["tests"]}
assert status == {"kunit text with a failing case": "failed", "all cases pass": "passed",
                  "no ktap at all": "failed", "kselftest script on the local profile": "failed",
                  "kselftest that outlives its timeout": "failed"}, status
clamp = [s for t in r["tests"] for s in t.get("subtests", []) if s["name"].endswith("demo_clamp")][0]
assert "EXPECTATION FAILED at demo_test.c:41" in clamp["message"], clamp
assert clamp["log"][0] == "demo_clamp: EXPECTATION FAILED at demo_test.c:41", clamp["log"]
root = ET.parse(sys.argv[2]).getroot()
assert root.get("tests") == "17" and root.get("failures") == "8" and root.get("skipped") == "2", root.attrib
cases = root.findall("testsuite/testcase")
names = [c.get("name") for c in cases]
for n, st in want:
    assert n in names, ("junit lacks", n)
    c = cases[names.index(n)]
    got = "failed" if c.find("failure") is not None else "skipped" if c.find("skipped") is not None else "passed"
    assert got == st, ("junit", n, got, st)
tap = open(sys.argv[3]).read()
assert "    # Subtest: tests/runner/fixtures/ktap/ktap.test.lua: kunit text with a failing case\n    1..4\n" in tap, tap
assert re.search(r"^    not ok 2 - tests/runner/fixtures/ktap/ktap\.test\.lua: kunit text with a failing case / demo / demo_clamp$", tap, re.M), tap
assert re.search(r"^    ok 3 - .* / demo / demo_later # SKIP needs hardware$", tap, re.M), tap
assert re.search(r"^not ok 1 - tests/runner/fixtures/ktap/ktap\.test\.lua: kunit text with a failing case$", tap, re.M), tap
' "$T/ktap.json" "$T/ktap.xml" "$T/ktap14.tap"
end_check
}

run_sections exit_codes claims coverage vm_charges jobs_pressure claims_do_not_fit json junit tap save_events selection subcommands ktap

# ---------------------------------------------------------------- summary

check_summary
