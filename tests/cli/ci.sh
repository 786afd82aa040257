#!/usr/bin/env bash
# CI at scale, through the CLI:
#  * timings: every file's duration is recorded (--timings FILE or the
#    default under the cache root), one entry per project-relative path,
#    merged across runs; runs narrowed per test (--filter) record nothing;
#  * --shard K/N balances by the recorded durations (longest first), splits
#    files without a timing by path and says so in `list --shard`; the split
#    is the same from another checkout location with the same timings file;
#  * provium timings merge, provium junit merge (xmllint against
#    tests/runner/junit.xsd); --shard auto from PROVIUM_SHARD, GitLab and
#    Buildkite variables, and its error when none is set;
#  * provium cache export/import on a real fixture: the imported snapshot
#    restores without a build, a second import keeps the valid entry, entries
#    built with another QEMU or another fixture source are skipped with a
#    count, truncated or tampered archives import nothing, --images carries
#    image directories with their holes;
#  * the CI templates in ci/ parse as YAML and have the keys they need.
#
# Run after `make all image`: tests/cli/ci.sh
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib/vm_scripts.sh
. "$ROOT/tests/lib/vm_scripts.sh"
# shellcheck source=../lib/project.sh
. "$ROOT/tests/lib/project.sh"
export PROVIUM_NO_PROGRESS=1
unset PROVIUM_SHARD CI_NODE_INDEX CI_NODE_TOTAL BUILDKITE_PARALLEL_JOB BUILDKITE_PARALLEL_JOB_COUNT
for tool in zstd xmllint; do
    command -v $tool >/dev/null || { echo "Bail out! $tool is needed" >&2; exit 2; }
done

# run [ENV=V...] -- ARGS...: provium from $WD (default: the repository root)
WD=$ROOT
run() {
    local envs=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    local t0
    t0=$(date +%s%N)
    OUT=$(cd "$WD" && env ${envs[@]+"${envs[@]}"} TMPDIR=$T timeout -k 5 "$LIMIT" "$PROVIUM" "$@" 2>"$T/stderr")
    RC=$?
    STDERR=$(cat "$T/stderr")
    OUT="$OUT"$'\n'"$STDERR"
    ELAPSED=$((($(date +%s%N) - t0) / 1000000))
}
# jq-less JSON probes
pyj() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); $2" "$1"; }

# ---- the inputs several sections share

# a project of eight files with known, different durations (sleep in Lua)
P=$T/proj
mkdir -p "$P/t"
printf '[provium]\nroots = ["t"]\n' >"$P/provium.toml"
for spec in a:0.9 b:0.1 c:0.1 d:0.5 e:0.1 f:0.4 g:0.1 h:0.3; do
    n=${spec%%:*} s=${spec#*:}
    cat >"$P/t/$n.test.lua" <<LUA
test("sleeps $s", function(t)
  t:assert(os.execute("sleep $s"))  -- sleeps in a child: cheap on CPU
end)
LUA
done
WD=$P

# synthetic timings: one long file and several short ones; g and h have none
cat >"$T/syn.json" <<'JSON'
{"provium_timings": 1, "files": {
 "t/a.test.lua": {"duration": 100, "updated": 1}, "t/b.test.lua": {"duration": 10, "updated": 1},
 "t/c.test.lua": {"duration": 30, "updated": 1}, "t/d.test.lua": {"duration": 50, "updated": 1},
 "t/e.test.lua": {"duration": 20, "updated": 1}, "t/f.test.lua": {"duration": 40, "updated": 1}}}
JSON

# ---------------------------------------------------------------- timings
section_timings() {
run -- --timings "$T/tim.json" t
begin "a run records every file's duration in --timings FILE, keyed by its path in the project"
expect_rc 0
[ -f "$T/tim.json" ] || problem "no timings file"
pyj "$T/tim.json" '
f = d["files"]; assert d["provium_timings"] == 1, d
assert sorted(f) == ["t/%s.test.lua" % c for c in "abcdefgh"], sorted(f)
assert 0.85 <= f["t/a.test.lua"]["duration"] < 5, f["t/a.test.lua"]
assert f["t/b.test.lua"]["duration"] < f["t/a.test.lua"]["duration"]
assert all(isinstance(v["updated"], int) for v in f.values())' 2>"$T/py.err" || problem "$(tail -n1 "$T/py.err")"
end_check

cp "$T/tim.json" "$T/tim.before"
sed -i 's/sleep 0.9/sleep 0.2/' "$P/t/a.test.lua"
run -- --timings "$T/tim.json" t/a.test.lua
begin "a later run of one file updates its entry and keeps the others (merged across runs)"
expect_rc 0
python3 - "$T/tim.before" "$T/tim.json" <<'PY' 2>"$T/py.err" || problem "$(tail -n1 "$T/py.err")"
import json, sys
a = json.load(open(sys.argv[1]))["files"]; b = json.load(open(sys.argv[2]))["files"]
assert sorted(a) == sorted(b), (sorted(a), sorted(b))
assert b["t/a.test.lua"]["duration"] < 0.8, b["t/a.test.lua"]
for k in a:
    if k != "t/a.test.lua": assert a[k] == b[k], k
PY
end_check

cp "$T/tim.json" "$T/tim.before"
run -- --timings "$T/tim.json" --filter "sleeps 0.5" t
begin "a run narrowed to some tests (--filter on names) records no partial durations"
expect_rc 0
cmp -s "$T/tim.before" "$T/tim.json" || problem "the timings file changed"
end_check

rm -rf "$PROVIUM_CACHE_DIR/timings"
run -- t/b.test.lua
begin "without --timings the durations go to <cache root>/timings/<project>.json"
expect_rc 0
n=$(ls "$PROVIUM_CACHE_DIR"/timings/*.json 2>/dev/null | wc -l)
[ "$n" = 1 ] || problem "expected one timings file under the cache root, found $n"
end_check
}

# ---------------------------------------------------------------- balanced shards
section_balanced_shards() {
declare -A SHARD
for k in 1 2 3; do
    run -- list --shard $k/3 --timings "$T/syn.json" t
    SHARD[$k]=$(grep '\.test\.lua' <<<"$OUT" | sed 's/  (.*//' | sort | tr '\n' ' ')
    LISTOUT[$k]=$OUT
done
begin "--shard K/N with timings: longest first to the least loaded shard; no timing: by path, and list says which"
RC=-
# longest first: a(100)->1, d(50)->2, f(40)->3, c(30)->3, e(20)->2, b(10)->2 (70 < 80);
# untimed g, h round robin by path: g->1, h->2
[ "${SHARD[1]}" = "t/a.test.lua t/g.test.lua " ] || problem "shard 1: ${SHARD[1]}"
[ "${SHARD[2]}" = "t/b.test.lua t/d.test.lua t/e.test.lua t/h.test.lua " ] || problem "shard 2: ${SHARD[2]}"
[ "${SHARD[3]}" = "t/c.test.lua t/f.test.lua " ] || problem "shard 3: ${SHARD[3]}"
OUT=${LISTOUT[2]}
expect_re '^shard 2/3: 3 files balanced by their recorded durations \(80\.0s in all\), 1 without a timing split by path; timings: .*syn\.json'
expect_out "t/d.test.lua  (recorded 50.00s)"
expect_out "t/h.test.lua  (no timing: split by path)"
end_check

run -- list --json --shard 2/3 --timings "$T/syn.json" t
begin "list --json --shard: each file says what the split counted (shard_duration, null when split by path)"
expect_rc 0
python3 -c '
import json, sys
d = {o["path"]: o["shard_duration"] for o in map(json.loads, filter(str.strip, sys.stdin))}
assert d == {"t/b.test.lua": 10, "t/d.test.lua": 50, "t/e.test.lua": 20, "t/h.test.lua": None}, d' <<<"$OUT" \
    2>"$T/py.err" || problem "$(tail -n1 "$T/py.err")"
end_check

# the same project at another place (another CI checkout directory)
cp -r "$P" "$T/elsewhere"
WD=$T/elsewhere
run -- list --shard 2/3 --timings "$T/syn.json" "$T/elsewhere/t"
WD=$P
begin "the split is identical from another checkout location with the same timings file"
RC=-
got=$(grep '\.test\.lua' <<<"$OUT" | sed 's/  (.*//' | sed "s|^$T/elsewhere/||" | sort | tr '\n' ' ')
[ "$got" = "${SHARD[2]}" ] || problem "elsewhere: '$got', here: '${SHARD[2]}'"
end_check

run -- --json --shard 1/3 --timings "$T/syn.json" t
begin "a sharded run runs exactly the listed files"
expect_rc 0
got=$(python3 -c 'import json,sys; print(" ".join(sorted(json.loads(l)["path"] for l in sys.stdin if l.strip())) + " ")' <<<"$(grep '^{' <<<"$OUT")")
[ "$got" = "${SHARD[1]}" ] || problem "ran '$got', listed '${SHARD[1]}'"
end_check

begin "... and records its files' durations as pending, leaving the planned durations alone"
RC=-
pyj "$T/syn.json" '
assert sorted(d.get("pending", {})) == ["t/a.test.lua", "t/g.test.lua"], d
assert d["files"]["t/a.test.lua"]["duration"] == 100, d["files"]' 2>"$T/py.err" || problem "$(tail -n1 "$T/py.err")"
end_check

for k in 2 3; do
    run -- --json --shard $k/3 --timings "$T/syn.json" t
done
AFTER=()
for k in 1 2 3; do
    run -- list --shard $k/3 --timings "$T/syn.json" t
    AFTER[$k]=$(grep '\.test\.lua' <<<"$OUT" | sed 's/  (.*//' | sort | tr '\n' ' ')
done
begin "sharded runs record into \"pending\": shards run one after the other keep the split they were planned with"
RC=-
for k in 1 2 3; do
    [ "${AFTER[$k]}" = "${SHARD[$k]}" ] || problem "shard $k/3 changed after the shards ran: ${AFTER[$k]}"
done
pyj "$T/syn.json" '
assert sorted(d["pending"]) == ["t/%s.test.lua" % c for c in "abcdefgh"], d["pending"]
assert d["files"]["t/a.test.lua"]["duration"] == 100, d["files"]' 2>"$T/py.err" || problem "$(tail -n1 "$T/py.err")"
end_check

cp "$T/syn.json" "$T/syn-pending.json"
run -- --timings "$T/syn.json" t/b.test.lua
begin "the next run without --shard folds the pending durations into the plan"
expect_rc 0
pyj "$T/syn.json" '
assert "pending" not in d, d
assert sorted(d["files"]) == ["t/%s.test.lua" % c for c in "abcdefgh"], sorted(d["files"])
assert d["files"]["t/a.test.lua"]["duration"] < 5, d["files"]["t/a.test.lua"]' 2>"$T/py.err" || problem "$(tail -n1 "$T/py.err")"
end_check
cp "$T/syn-pending.json" "$T/syn.json"

echo '{"files": {"t/a.test.lua": {"duration": "long"}}}' >"$T/bad.json"
run -- list --shard 1/2 --timings "$T/bad.json" t
begin "a broken timings file is an error naming the file and the entry"
expect_rc 2
expect_out "bad.json"
expect_out "t/a.test.lua"
end_check
}

# ---------------------------------------------------------------- timings merge
section_timings_merge() {

cat >"$T/m1.json" <<'JSON'
{"provium_timings": 1, "files": {"t/a.test.lua": {"duration": 5, "updated": 100},
 "t/b.test.lua": {"duration": 7, "updated": 300}}}
JSON
cat >"$T/m2.json" <<'JSON'
{"provium_timings": 1, "files": {"t/a.test.lua": {"duration": 9, "updated": 200},
 "t/c.test.lua": {"duration": 1, "updated": 50}, "t/b.test.lua": {"duration": 3, "updated": 100}},
 "pending": {"t/d.test.lua": {"duration": 4, "updated": 400}, "t/c.test.lua": {"duration": 2, "updated": 60}}}
JSON
run -- timings merge "$T/m1.json" "$T/m2.json"
echo "$OUT" | grep -v '^$' >"$T/merged.json"
run -- timings merge "$T/m2.json" "$T/m1.json"
begin "timings merge: the union (pending entries folded in), the newest entry per path wins, order does not matter"
expect_rc 0
python3 - "$T/merged.json" <<'PY' 2>"$T/py.err" || problem "$(tail -n1 "$T/py.err")"
import json, sys
f = json.load(open(sys.argv[1]))["files"]
assert {k: v["duration"] for k, v in f.items()} == {"t/a.test.lua": 9, "t/b.test.lua": 7, "t/c.test.lua": 2,
                                                   "t/d.test.lua": 4}, f
assert "pending" not in json.load(open(sys.argv[1])), "pending left in the merge"
PY
[ "$(echo "$OUT" | grep -v '^$')" = "$(cat "$T/merged.json")" ] || problem "merge depends on the order of its arguments"
end_check

run -- timings merge "$T/m1.json" "$T/nonexistent.json"
begin "timings merge of a missing file fails naming it"
expect_rc 2
expect_out "nonexistent.json"
end_check
}

# ---------------------------------------------------------------- junit merge
section_junit_merge() {

for k in 1 2 3; do
    run -- --shard $k/3 --timings "$T/syn.json" --junit "$T/j$k.xml" t
done
run -- junit merge "$T/j1.xml" "$T/j2.xml" "$T/j3.xml"
printf '%s\n' "$OUT" | grep -v '^$' >"$T/jall.xml"
begin "junit merge: the shards' reports as one, valid against tests/runner/junit.xsd, totals summed"
expect_rc 0
xmllint --noout --schema "$ROOT/tests/runner/junit.xsd" "$T/jall.xml" 2>"$T/xml.err" || problem "$(head -3 "$T/xml.err")"
python3 - "$T/jall.xml" <<'PY' 2>"$T/py.err" || problem "$(tail -n1 "$T/py.err")"
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
names = sorted(s.get("name") for s in r.findall("testsuite"))
assert names == ["t/%s.test.lua" % c for c in "abcdefgh"], names
assert r.get("tests") == "8" and r.get("failures") == "0", r.attrib
assert sum(len(s.findall("testcase")) for s in r.findall("testsuite")) == 8
PY
end_check

printf '<testsuites><testsuite name="x"' >"$T/broken.xml"
run -- junit merge "$T/j1.xml" "$T/broken.xml"
begin "junit merge of a broken report fails naming it"
expect_rc 2
expect_out "broken.xml: not a JUnit report"
end_check
}

# ---------------------------------------------------------------- --shard auto
section_shard_auto() {

run -- list --shard 2/3 --timings "$T/syn.json" t
want=$(grep '\.test\.lua' <<<"$OUT")
for vars in "CI_NODE_INDEX=2 CI_NODE_TOTAL=3" "BUILDKITE_PARALLEL_JOB=1 BUILDKITE_PARALLEL_JOB_COUNT=3" "PROVIUM_SHARD=2/3"; do
    # shellcheck disable=SC2086
    run $vars -- list --shard auto --timings "$T/syn.json" t
    begin "--shard auto with $vars is shard 2/3"
    expect_rc 0
    [ "$(grep '\.test\.lua' <<<"$OUT")" = "$want" ] || problem "a different file list"
    end_check
done
run -- list --shard auto t
begin "--shard auto without CI variables is a usage error that names what it looked for"
expect_rc 2
expect_out "CI_NODE_INDEX"
expect_out "BUILDKITE_PARALLEL_JOB"
expect_out "PROVIUM_SHARD"
end_check
run CI_NODE_INDEX=4 CI_NODE_TOTAL=3 -- list --shard auto t
begin "--shard auto with an index past the total is an error quoting the variables"
expect_rc 2
expect_out "CI_NODE_INDEX='4'"
end_check
}

# ---------------------------------------------------------------- cache export / import
section_cache_export_import() {

F=$T/fproj
project_toml "$F"
cat >"$F/base.fixture.lua" <<'LUA'
local vm = provium:vm("b", "default"):boot()
vm:write_file("/etc/base", "from the fixture")
return vm:snapshot()
LUA
cat >"$F/use.test.lua" <<'LUA'
test("sees the fixture", function(t)
  local vm = provium:vm_fixture("base")
  t:assert_eq(vm:read_file("/etc/base"), "from the fixture")
end)
LUA
A=$T/cacheA
# a fake image directory with a 64 MiB hole, for --images
mkdir -p "$A/images/kernel-0123456789abcdef" "$A/images/kernel-unfinished"
echo kernel >"$A/images/kernel-0123456789abcdef/bzImage"
truncate -s 64M "$A/images/kernel-0123456789abcdef/sparse"
printf 'tail' >>"$A/images/kernel-0123456789abcdef/sparse"
: >"$A/images/kernel-0123456789abcdef/done"
echo half >"$A/images/kernel-unfinished/bzImage"

WD=$F
run PROVIUM_CACHE_DIR=$A -- fixture build base
run PROVIUM_CACHE_DIR=$A -- cache export "$T/c.tar.zst" --images
begin "cache export: the fixture entry, its initramfs and the finished images in one .tar.zst"
expect_rc 0
expect_re 'exported 1 fixture entries, 1 shim initramfs files, 1 images'
listing=$(zstd -dc "$T/c.tar.zst" | tar -t 2>&1)
grep -qE '^fixtures/[0-9a-f]{64}/meta.json$' <<<"$listing" || problem "no fixture snapshot in: $listing"
grep -qE '^initrd/[0-9a-f]{64}\.cpio$' <<<"$listing" || problem "no initramfs in: $listing"
grep -q '^images/kernel-0123456789abcdef/sparse$' <<<"$listing" || problem "no image in: $listing"
grep -q 'kernel-unfinished' <<<"$listing" && problem "an unfinished image was exported"
[ "$(tail -n1 <<<"$listing")" = provium-cache.json ] || problem "the manifest is not last"
end_check

B=$T/cacheB
run PROVIUM_CACHE_DIR=$B -- cache import "$T/c.tar.zst"
begin "cache import into an empty cache installs the entry and the image"
expect_rc 0
expect_out "imported 1 fixture entries and 1 images"
img=$B/images/kernel-0123456789abcdef/sparse
[ "$(tail -c4 "$img" 2>/dev/null)" = tail ] && [ "$(stat -c %s "$img")" = $((64 * 1048576 + 4)) ] ||
    problem "the image file did not arrive whole"
[ "$(du -k "$img" | cut -f1)" -lt 1024 ] || problem "the image's hole was filled: $(du -k "$img")"
end_check

run PROVIUM_CACHE_DIR=$B -- fixture stale
begin "... the imported entry counts as cached"
expect_rc 0
expect_out "every fixture is cached and up to date"
end_check

run PROVIUM_CACHE_DIR=$B -- --json use.test.lua
begin "... and a test restores the imported snapshot without building the fixture"
expect_rc 0
expect_out '"built":false'
expect_no_out '"built":true'
end_check

entry=$(ls -d "$B"/fixtures/*/ | head -1)
touch -d '2020-01-01' "$entry/state"
run PROVIUM_CACHE_DIR=$B -- cache import "$T/c.tar.zst"
begin "a second import keeps the valid local entry and says so"
expect_rc 0
expect_out "imported 0 fixture entries and 0 images"
expect_out "kept 1 fixture entries and 1 images that were already valid here"
[ "$(stat -c %Y "$entry/state")" = "$(date -d 2020-01-01 +%s)" ] || problem "the local entry was overwritten"
end_check

# another QEMU on the importing machine: a wrapper that reports another version
mkdir -p "$T/fakeqemu"
cat >"$T/fakeqemu/qemu-system-x86_64" <<'SHQ'
#!/bin/sh
[ "$1" = --version ] && { echo "QEMU emulator version 99.0.0"; exit 0; }
exec /usr/bin/qemu-system-x86_64 "$@"
SHQ
chmod +x "$T/fakeqemu/qemu-system-x86_64"
run PROVIUM_CACHE_DIR=$T/cacheC PATH="$T/fakeqemu:$PATH" -- cache import "$T/c.tar.zst"
begin "entries built with another QEMU are skipped with a count and the reason"
expect_rc 0
expect_out "imported 0 fixture entries"
expect_re "skipped 1 fixture entries that do not match this machine \(built with QEMU 'QEMU emulator version [0-9]"
n=$(find "$T/cacheC/fixtures" -mindepth 1 -maxdepth 1 -type d | wc -l)
[ "$n" = 0 ] || problem "$n entries installed"
end_check

cp -r "$F" "$T/fproj2"
echo '-- another source' >>"$T/fproj2/base.fixture.lua"
WD=$T/fproj2
run PROVIUM_CACHE_DIR=$T/cacheD -- cache import "$T/c.tar.zst"
WD=$F
begin "an entry whose fixture source differs here is skipped"
expect_rc 0
expect_out "skipped 1 fixture entries that do not match this machine"
end_check

# a truncated archive, and one whose file was changed after export
size=$(stat -c %s "$T/c.tar.zst")
head -c $((size / 2)) "$T/c.tar.zst" >"$T/cut.tar.zst"
run PROVIUM_CACHE_DIR=$T/cacheE -- cache import "$T/cut.tar.zst"
begin "a truncated archive imports nothing"
expect_rc 1
expect_re "cut\.tar\.zst is corrupt: .*; nothing was imported"
[ -z "$(ls -A "$T/cacheE/fixtures" 2>/dev/null)" ] && [ ! -e "$T/cacheE/images/kernel-0123456789abcdef" ] ||
    problem "something was imported: $(ls -R "$T/cacheE" | head)"
end_check

mkdir -p "$T/tamper"
zstd -dc "$T/c.tar.zst" | tar -x -C "$T/tamper"
echo "changed" >"$T/tamper/images/kernel-0123456789abcdef/bzImage"
(cd "$T/tamper" && tar -c --zstd -f "$T/tampered.tar.zst" fixtures initrd images provium-cache.json)
run PROVIUM_CACHE_DIR=$T/cacheF -- cache import "$T/tampered.tar.zst"
begin "an archive whose content does not match its manifest imports nothing"
expect_rc 1
expect_out "bzImage does not match its checksum"
expect_out "nothing was imported"
[ -z "$(ls -A "$T/cacheF/fixtures" 2>/dev/null)" ] || problem "a fixture entry was imported"
[ -z "$(ls -A "$T/cacheF" | grep -v '^fixtures$')" ] || problem "left behind: $(ls -A "$T/cacheF")"
end_check

(cd "$T/tamper" && tar -c --zstd -f "$T/evil.tar.zst" --transform 's|^images|../escape|' images provium-cache.json)
run PROVIUM_CACHE_DIR=$T/cacheG -- cache import "$T/evil.tar.zst"
begin "an archive with paths outside the cache imports nothing"
expect_rc 1
expect_out "unexpected entry"
[ ! -e "$T/escape" ] && [ ! -e "$T/cacheG/../escape" ] || problem "a file escaped"
end_check

run PROVIUM_CACHE_DIR=$A -- cache export "$T/x.tar.zst" --fixtures base,nosuch
begin "cache export --fixtures with a fixture that has no entry fails naming it"
expect_rc 1
expect_out "nosuch"
[ ! -e "$T/x.tar.zst" ] || problem "an archive was written"
end_check

cp "$F/base.fixture.lua" "$F/unbuilt.fixture.lua"
run PROVIUM_CACHE_DIR=$A -- cache export "$T/x.tar.zst" --fixtures unbuilt
begin "cache export --fixtures of a fixture that was never built says how to build it"
expect_rc 1
expect_out "fixture 'unbuilt' has no valid cache entry here (build it first: provium fixture build unbuilt)"
end_check
run PROVIUM_CACHE_DIR=$A -- cache export "$T/y.tar.zst"
begin "cache export of everything leaves out, and counts, fixtures without a valid entry"
expect_rc 0
expect_out "exported 1 fixture entries"
expect_out "1 fixtures have no valid cache entry here and were left out"
end_check
rm "$F/unbuilt.fixture.lua"
}

# ---------------------------------------------------------------- CI templates
section_ci_templates() {

py_check "$ROOT/ci/github-actions.yml" "$ROOT/ci/gitlab-ci.yml" "$ROOT/docs/ci.md" <<'PY'
import sys, yaml
gh = yaml.safe_load(open(sys.argv[1]))
gl = yaml.safe_load(open(sys.argv[2]))
doc = open(sys.argv[3]).read()
errs = []
def need(cond, what):
    if not cond: errs.append(what)
# GitHub Actions: PyYAML reads the key `on` as True
need("on" in gh or True in gh, "github: no trigger (on:)")
jobs = gh.get("jobs", {})
shard_jobs = [j for j in jobs.values() if "matrix" in j.get("strategy", {})]
need(shard_jobs, "github: no job with a strategy.matrix")
j = shard_jobs[0] if shard_jobs else {}
need(j.get("strategy", {}).get("fail-fast") is False, "github: strategy.fail-fast must be false (every shard reports)")
steps = j.get("steps", [])
uses = [s.get("uses", "") for s in steps]
runs = "\n".join(s.get("run", "") for s in steps)
need(any(u.startswith("actions/cache") for u in uses), "github: no actions/cache step")
need(any(u.startswith("actions/upload-artifact") for u in uses), "github: no upload-artifact step")
need("--shard" in runs and "--junit" in runs and "--timings" in runs, "github: the run step lacks --shard/--junit/--timings")
env = {**gh.get("env", {}), **j.get("env", {})}
need("PROVIUM_SHARD" in env or "--shard ${{" in runs, "github: the shard is not passed from the matrix")
need(any("junit" in str(s.get("with", {})) for s in steps), "github: the JUnit report is not uploaded")
need(any(s.get("if") == "always()" or s.get("if") == "${{ always() }}" for s in steps if s.get("uses", "").startswith("actions/upload-artifact")),
     "github: uploads must run when tests fail (if: always())")
merge = [jj for jj in jobs.values() if "needs" in jj]
mruns = "\n".join(s.get("run", "") for s in merge[0].get("steps", [])) if merge else ""
need("timings merge" in mruns and "junit merge" in mruns, "github: no job that merges the shards' timings and JUnit")
need(merge and merge[0].get("if") == "always()", "github: the merge job must run when a shard fails")
# GitLab CI
tj = [v for k, v in gl.items() if isinstance(v, dict) and "parallel" in v]
need(tj, "gitlab: no job with parallel:")
t = tj[0] if tj else {}
need(isinstance(t.get("parallel"), int) and t["parallel"] >= 2, "gitlab: parallel must be a number >= 2")
script = "\n".join(t.get("script", []))
need("--shard auto" in script or "CI_NODE_INDEX" in script, "gitlab: the script does not shard by CI_NODE_INDEX/CI_NODE_TOTAL")
need("junit" in t.get("artifacts", {}).get("reports", {}), "gitlab: no artifacts:reports:junit")
need(t.get("artifacts", {}).get("when") == "always", "gitlab: artifacts must be kept when tests fail")
need("cache" in t, "gitlab: no cache:")
import re
blocks = re.findall(r"```yaml\n(.*?)```", doc, re.S)
for name, path in (("ci/github-actions.yml", sys.argv[1]), ("ci/gitlab-ci.yml", sys.argv[2])):
    need(name in doc, "docs/ci.md does not point to " + name)
    need(open(path).read() in blocks, "docs/ci.md does not show the current " + name)
sys.exit("\n".join(errs) or None)
PY
begin "the CI templates parse as YAML and have a shard matrix, caches and JUnit uploads"
expect_rc 0
end_check
}

run_sections timings balanced_shards timings_merge junit_merge shard_auto cache_export_import ci_templates

check_summary
