#!/usr/bin/env bash
# The HTML run report (--html FILE, provium report EVENTS -o FILE) of a run
# with passes, failures, skips, a timeout, a file that boots a VM and one
# that restores a VM from a snapshot, whose
# test names and failure messages hold HTML and bytes that are not UTF-8:
#  * a structural check (python's html.parser): self-contained (no script,
#    no external reference), every section, a timeline lane per file and one
#    for the VM, the failure and skip texts escaped so they read back as
#    written;
#  * the consoles of the VMs are kept in report-consoles/ beside it, linked;
#  * `provium report` on the saved events writes the same file;
#  * headless chromium renders it: --dump-dom has the failure text and the
#    timeline elements, and a screenshot is taken.
#
# Run after `make all image`: tests/cli/report.sh
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib/vm_scripts.sh
. "$ROOT/tests/lib/vm_scripts.sh"
export PROVIUM_NO_PROGRESS=1
CHROMIUM=$(command -v chromium || command -v chromium-browser)
[ -n "$CHROMIUM" ] || { echo "Bail out! chromium is needed (scripts/install-deps.sh installs it)" >&2; exit 2; }

run() {
    local t0
    t0=$(date +%s%N)
    OUT=$(TMPDIR=$T timeout -k 5 "$LIMIT" "$PROVIUM" "$@" 2>&1)
    RC=$?
    ELAPSED=$((($(date +%s%N) - t0) / 1000000))
}
# chrome ARGS...: headless chromium with a fresh profile, no network services
chrome() {
    rm -rf "$T/chrome-profile"
    timeout -k 5 90 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run --user-data-dir="$T/chrome-profile" "$@" \
        2>"$T/chrome.err"
}

mkdir -p "$T/h"
cat >"$T/h/hostile.test.lua" <<'LUA'
test("<script>alert('x')</script> & \"quotes\"", function(t)
  t:assert_eq("\xff<b>bold</b>\27[31m", "plain")
end)
test("skipped <i>on purpose</i>", {skip = "reason <u>with markup</u>"}, function(t) end)
LUA
cat >"$T/h/restore.test.lua" <<'LUA'
local vm = provium:vm("snap", "default"):boot()
test("a restored VM answers", function(t)
  local s = vm:snapshot()
  vm:shutdown()
  vm:restore(s)
  t:assert_eq(vm:run("echo back").stdout, "back\n")
end)
LUA
# the timeout only has to end the hang fixture; it is long enough for the
# restore file's cold boot and restore on a busy host too
run --timeout 10s --save-events "$T/events.jsonl" --html "$T/report.html" \
    tests/runner/fixtures/basic tests/runner/fixtures/hang "$T/h" tests/runner/fixtures/vm/a_claims_two.test.lua
begin "--html writes the report of a run with passes, failures, skips and a timeout"
expect_rc 1
[ -s "$T/report.html" ] || problem "no report"
end_check

py_check "$T/report.html" <<'PY'
import sys
from html.parser import HTMLParser
text = open(sys.argv[1], encoding="utf-8").read()
class P(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.stack, self.text, self.ids, self.classes = [], [], {}, set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if "id" in a: self.ids.add(a["id"])
        self.classes.append((tag, a.get("class", ""), a))
        self.stack.append(a.get("class", ""))
    def handle_endtag(self, tag):
        if self.stack: self.stack.pop()
    def handle_data(self, d):
        for c in set(self.stack):
            self.text.setdefault(c, []).append(d)
p = P(); p.feed(text)
errs = []
def need(c, what):
    if not c: errs.append(what)
need(not [t for t, a in p.tags if t in ("script", "link", "img", "iframe", "object")], "a script or external element")
import os
need(not [a for t, a in p.tags if "src" in a], "an attribute that loads something")
links = [a["href"] for t, a in p.tags if "href" in a]
need(not [a for t, a in p.tags if "href" in a and (t != "a" or a.get("class") != "console-link")], "a link other than to a console")
need(links, "no link to a kept console")
for l in links:
    need(l.startswith("report-consoles/") and os.path.getsize(os.path.join(os.path.dirname(sys.argv[1]), l)) > 0,
         "the console link %s is not a file beside the report" % l)
import re
need("url(" not in text and "@import" not in text and not re.search(r"(https?|ftp|file):", text), "an external reference in the page")
for sec in ("summary", "timeline", "failures", "skipped", "slowest"):
    need(sec in p.ids, "no section #" + sec)
lanes = [a.get("data-path") for t, c, a in p.classes if "lane file" in c]
for f in ("tests/runner/fixtures/basic/fail.test.lua", "tests/runner/fixtures/hang/loop.test.lua",
          "tests/runner/fixtures/vm/a_claims_two.test.lua"):
    need(f in lanes, "no timeline lane for " + f)
need(any("h/hostile.test.lua" in (l or "") for l in lanes), "no lane for the hostile file")
need([1 for t, c, a in p.classes if c == "bar vm"], "no VM bar in the timeline")
need([1 for t, c, a in p.classes if c == "bar timed_out"], "no timed-out bar in the timeline")
need([1 for t, c, a in p.classes if c == "lane vmlane"], "no VM lane")
need([1 for t, c, a in p.classes if c == "bar vm restored"], "no restored VM in the timeline")
need("restored in" in text and "booted in" in text, "the VM lanes do not tell restores from cold boots")
names = "".join(p.text.get("test-name", []))
need("<script>alert('x')</script> & \"quotes\"" in names, "the hostile test name does not read back as written")
need("skipped <i>on purpose</i>" in names, "the skipped test's name does not read back")
msgs = "".join(p.text.get("message", []))
need('compare: expected "wanted", got "got <this> & that"' in msgs, "the fail.test.lua failure text is missing")
need('got "\\xFF<b>bold</b>\\x1B[31m"' in msgs, "the hostile failure text is missing or not escaped: " + msgs[:300])
need("timed out" in msgs, "the timeout is not among the failures")
need("reason <u>with markup</u>" in text.replace("&lt;", "<").replace("&gt;", ">"), "the skip reason is missing")
need("<u>" not in text and "<b>bold" not in text and "<script>" not in text, "markup from the run reached the page")
locs = "".join(p.text.get("location", []))
need("tests/runner/fixtures/basic/fail.test.lua:5" in locs, "no location for the failure")
sys.exit("\n".join(errs) or None)
PY
begin "the report is self-contained and holds every section, the timeline lanes, and the escaped texts"
expect_rc 0
end_check

run report "$T/events.jsonl" -o "$T/again.html"
begin "provium report on the saved events writes the same report"
expect_rc 0
cmp -s "$T/report.html" "$T/again.html" || problem "the two reports differ: $(diff <(tr '>' '\n' <"$T/report.html") <(tr '>' '\n' <"$T/again.html") | head -5)"
end_check

run report /dev/null -o "$T/none.html"
begin "provium report of a file without events fails and says so"
expect_rc 1
expect_out "holds no provium events"
end_check

chrome --dump-dom "file://$T/report.html" >"$T/dom.html"
RC=$?
OUT=$(head -c 3000 "$T/dom.html"; cat "$T/chrome.err" | tail -5)
begin "headless chromium renders it: the failure text and the timeline are in the DOM"
expect_rc 0
python3 - "$T/dom.html" <<'PY' 2>"$T/py.err" || problem "$(tail -n1 "$T/py.err")"
import sys
from html.parser import HTMLParser
class P(HTMLParser):
    def __init__(self):
        super().__init__(); self.n = {"lane": 0, "bar": 0, "failure": 0, "script": 0}; self.text = []
    def handle_starttag(self, tag, attrs):
        c = dict(attrs).get("class", "")
        self.n["script"] += tag == "script"
        for k in ("lane", "bar", "failure"):
            self.n[k] += k in c.split()
    def handle_data(self, d): self.text.append(d)
p = P(); p.feed(open(sys.argv[1]).read())
t = "".join(p.text)
assert p.n["script"] == 0, "a script element in the DOM"
assert p.n["lane"] >= 9 and p.n["bar"] >= 9, p.n
assert p.n["failure"] >= 3, p.n
assert 'compare: expected "wanted", got "got <this> & that"' in t, "failure text missing from the DOM"
assert "<script>alert('x')</script>" in t, "the hostile name is not text in the DOM"
PY
end_check

chrome --window-size=1200,1000 --screenshot="$T/report.png" "file://$T/report.html" >/dev/null
RC=$?
OUT=$(tail -5 "$T/chrome.err")
begin "headless chromium takes a screenshot of it"
expect_rc 0
[ "$(head -c 8 "$T/report.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || problem "no PNG written"
[ "$(stat -c %s "$T/report.png" 2>/dev/null || echo 0)" -gt 20000 ] || problem "the screenshot is (nearly) empty"
[ -z "${PROVIUM_REPORT_SHOT:-}" ] || cp "$T/report.png" "$PROVIUM_REPORT_SHOT"
end_check

check_summary
