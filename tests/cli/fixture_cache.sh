#!/usr/bin/env bash
# End-to-end checks of the fixture cache through the CLI: a second run builds
# nothing, editing a fixture or its helper rebuilds, parallel files build a
# cold fixture once, a corrupt entry is rebuilt with a warning, and the
# `provium fixture` subcommand (stale's exit status, build by name or path).
# Then: references found by tokenizing Lua (names in strings and comments do
# not count), fixtures built on fixtures, a build that needs itself, keying
# on the profiles a build booted (their disk images' contents included), and
# the per-project --rerun-failed state.
# Runs in a private project and cache.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PROVIUM=$ROOT/build/provium
# shellcheck source=../lib/cleanup.sh
. "$ROOT/tests/lib/cleanup.sh"
scratch_dir pvfix
export PROVIUM_CACHE_DIR=$T/cache
NPASS=0 NFAIL=0
# shellcheck source=../lib/project.sh
. "$ROOT/tests/lib/project.sh"

ok() { echo "ok - $1"; NPASS=$((NPASS + 1)); }
notok() { echo "not ok - $1"; shift; for l in "$@"; do printf '%s\n' "$l" | sed 's/^/#   /'; done; NFAIL=$((NFAIL + 1)); }

P=$T/proj
project_toml "$P"
cat >"$P/helper.lua" <<'LUA'
return {value = "v1"}
LUA
cat >"$P/base.fixture.lua" <<'LUA'
local h = require("helper")
local vm = provium:vm("b", "default"):boot()
vm:write_file("/etc/base", h.value)
return vm:snapshot()
LUA
cat >"$P/use.test.lua" <<'LUA'
test("sees the fixture", function(t)
  local vm = provium:vm_fixture("base")
  t:assert(#vm:read_file("/etc/base") > 0)
end)
LUA

# run ARGS...: provium in the project; sets OUT, RC
run() { OUT=$(cd "$P" && timeout -k 5 300 "$PROVIUM" "$@" 2>&1); RC=$?; }
built() { grep -o '"name":"base","built":[a-z]*\|"built":[a-z]*,"name":"base"' <<<"$OUT" | grep -o 'true\|false' | head -1; }

# fixture_events FILE KIND...: the events of FILE are exactly these fixture_* kinds, for fixture "base"
fixture_events() {
    python3 - "$@" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
fx = [e for e in ev if e["kind"].startswith("fixture_")]
assert [e["kind"] for e in fx] == sys.argv[2:], [e["kind"] for e in fx]
for e in fx:
    assert e["payload"]["path"] == "base" and e["payload"]["file"].endswith("use.test.lua"), e
done = [e for e in fx if e["kind"] == "fixture_build_done"]
for e in done:
    assert e["payload"]["duration_ns"] > 0 and e["payload"]["snapshot_bytes"] > 0, e
    start = [s for s in fx if s["kind"] == "fixture_build_started"][0]
    assert start["ts"] < e["ts"], (start, e)
PY
}

run --json --save-events "$T/ev1.jsonl" use.test.lua
[ "$RC" = 0 ] && [ "$(built)" = true ] && ok "first run builds the fixture" || notok "first run builds the fixture" "$OUT"
E=$(fixture_events "$T/ev1.jsonl" fixture_build_started fixture_build_done 2>&1) &&
    ok "a build emits fixture_build_started and fixture_build_done (path, duration_ns, snapshot_bytes)" ||
    notok "a build emits fixture_build_started and fixture_build_done" "$E"
run --json --save-events "$T/ev2.jsonl" use.test.lua
[ "$RC" = 0 ] && [ "$(built)" = false ] && ok "second run builds nothing" || notok "second run builds nothing" "$OUT"
E=$(fixture_events "$T/ev2.jsonl" fixture_cache_hit 2>&1) &&
    ok "a cached fixture emits fixture_cache_hit" || notok "a cached fixture emits fixture_cache_hit" "$E"
echo 'return {value = "v2"}' >"$P/helper.lua"
run --json use.test.lua
[ "$RC" = 0 ] && [ "$(built)" = true ] && ok "editing a required helper rebuilds" || notok "editing a required helper rebuilds" "$OUT"
echo '-- a comment changes the source' >>"$P/base.fixture.lua"
run --json use.test.lua
[ "$RC" = 0 ] && [ "$(built)" = true ] && ok "editing the fixture rebuilds" || notok "editing the fixture rebuilds" "$OUT"
run --json use.test.lua
[ "$(built)" = false ] && ok "... and then it is cached again" || notok "... and then it is cached again" "$OUT"

# corrupt the cached entry: the test still passes, with a warning, after a rebuild
entry=$(ls -dt "$PROVIUM_CACHE_DIR"/fixtures/*/ | head -1)  # the newest: the current key
: >"$entry/state"
run --json use.test.lua
if [ "$RC" = 0 ] && grep -q "cached snapshot unusable" <<<"$OUT" && grep -q "fixture 'base'" <<<"$OUT"; then
    ok "a corrupt cache entry is rebuilt with a warning naming the fixture"
else
    notok "a corrupt cache entry is rebuilt with a warning naming the fixture" "$OUT"
fi

# the entry stores guest RAM compressed; damaged compressed RAM is rebuilt too
entry=$(ls -dt "$PROVIUM_CACHE_DIR"/fixtures/*/ | head -1)
if [ -s "$entry/ram.zst" ] && [ ! -e "$entry/ram" ]; then
    ok "a cache entry holds its guest RAM as ram.zst"
else
    notok "a cache entry holds its guest RAM as ram.zst" "$(ls -la "$entry")"
fi
dd if=/dev/urandom of="$entry/ram.zst" bs=1 seek=4096 count=512 conv=notrunc 2>/dev/null
run --json use.test.lua
if [ "$RC" = 0 ] && grep -q "cached snapshot unusable" <<<"$OUT" && grep -q "ram.zst is corrupt" <<<"$OUT"; then
    ok "an entry with damaged compressed RAM is rebuilt with a warning saying so"
else
    notok "an entry with damaged compressed RAM is rebuilt with a warning saying so" "$OUT"
fi

# three files at once need a cold fixture: one builds, the others wait and restore
cat >"$P/cold.fixture.lua" <<'LUA'
local vm = provium:vm("c", "default"):boot()
vm:write_file("/etc/cold", "1")
return vm:snapshot()
LUA
for i in 1 2 3; do
    cat >"$P/cold$i.test.lua" <<'LUA'
test("cold", function(t) t:assert_eq(provium:vm_fixture("cold"):read_file("/etc/cold"), "1") end)
LUA
done
run --json -j 3 cold1.test.lua cold2.test.lua cold3.test.lua
nbuilt=$(grep -o '"built":true' <<<"$OUT" | wc -l)
if [ "$RC" = 0 ] && [ "$nbuilt" = 1 ]; then
    ok "three parallel files needing the same cold fixture build it once"
else
    notok "three parallel files needing the same cold fixture build it once" "built $nbuilt times" "$OUT"
fi

# the subcommand
run fixture list
if [ "$RC" = 0 ] && grep -q '^base .*cached' <<<"$OUT" && grep -q '^cold .*cached' <<<"$OUT"; then
    ok "provium fixture list shows cached fixtures"
else
    notok "provium fixture list shows cached fixtures" "$OUT"
fi
echo '-- edited' >>"$P/cold.fixture.lua"
run fixture stale
if [ "$RC" = 1 ] && grep -q '^cold .*stale' <<<"$OUT" && ! grep -q '^base' <<<"$OUT"; then
    ok "provium fixture stale lists exactly the edited fixture, exit 1"
else
    notok "provium fixture stale lists exactly the edited fixture, exit 1" "rc $RC" "$OUT"
fi
run fixture build cold
[ "$RC" = 0 ] && grep -q '^built cold' <<<"$OUT" && ok "provium fixture build builds a stale fixture" ||
    notok "provium fixture build builds a stale fixture" "$OUT"
run fixture build cold
[ "$RC" = 0 ] && grep -q '^up to date cold' <<<"$OUT" && ok "... and leaves a fresh one alone" ||
    notok "... and leaves a fresh one alone" "$OUT"
run fixture rebuild cold
[ "$RC" = 0 ] && grep -q '^built cold' <<<"$OUT" && ok "provium fixture rebuild always builds" ||
    notok "provium fixture rebuild always builds" "$OUT"
run fixture build nosuch
[ "$RC" = 1 ] && grep -q "no fixture 'nosuch'" <<<"$OUT" && ok "building an unknown fixture names it" ||
    notok "building an unknown fixture names it" "$OUT"
run fixture clean
[ "$RC" = 0 ] && [ ! -d "$PROVIUM_CACHE_DIR/fixtures" ] && ok "provium fixture clean empties the cache" ||
    notok "provium fixture clean empties the cache" "$OUT"

# cache_max_size: the next run evicts least recently used entries
run fixture build base >/dev/null
run fixture build cold >/dev/null
before=$(ls -d "$PROVIUM_CACHE_DIR"/fixtures/*/ 2>/dev/null | wc -l)
sed -i 's/^roots = \["."\]/roots = ["."]\ncache_max_size = 1/' "$P/provium.toml"
run use.test.lua
after=$(ls -d "$PROVIUM_CACHE_DIR"/fixtures/*/ 2>/dev/null | wc -l)
sed -i '/^cache_max_size/d' "$P/provium.toml"
if [ "$before" -ge 2 ] && [ "$after" -lt "$before" ]; then
    ok "entries over cache_max_size are evicted at startup ($before -> $after)"
else
    notok "entries over cache_max_size are evicted at startup" "before $before, after $after" "$OUT"
fi

# a fixture that fails to build fails the test with the builder's error
cat >"$P/broken.fixture.lua" <<'LUA'
error("deliberately broken fixture")
LUA
cat >"$P/broken.test.lua" <<'LUA'
test("uses broken", function(t) provium:vm_fixture("broken") end)
LUA
run broken.test.lua
[ "$RC" = 1 ] && grep -q "fixture 'broken' failed to build" <<<"$OUT" && grep -q "deliberately broken" <<<"$OUT" &&
    ok "a fixture that fails to build reports the builder's error" ||
    notok "a fixture that fails to build reports the builder's error" "$OUT"

# ---- references are found by tokenizing Lua, not by grepping it ----
# The source is full of fixture-looking text that is no call: in strings, in
# comments, in long brackets. None of it may count, and it must not break it.
cat >"$P/tricky.fixture.lua" <<'LUA'
-- provium:vm_fixture("in_a_comment")
--[[ provium.fixture("in_a_long_comment") ]]
--[==[ ]] require("in_a_level_2_comment") ]==]
local s = [[ provium:vm_fixture("in_a_long_string") ]]
local s2 = [==[ ]] provium:fixture"in_a_level_2_string" ]==]
local s3 = "require('in_a_string') provium:lab_fixture('x')"
local vm = provium:vm("t", "default"):boot()
vm:write_file("/etc/marker", "from-fixture")
vm:run("echo 'fixture\"x\"' > /etc/quoted"):assert_ok()
if false then provium:vm_fixture("never_called") end
return vm:snapshot()
LUA
cat >"$P/tricky.test.lua" <<'LUA'
test("a fixture whose strings look like references", function(t)
  local vm = provium:vm_fixture("tricky")
  t:assert_eq(vm:read_file("/etc/marker"), "from-fixture")
  t:assert_eq(vm:read_file("/etc/quoted"), 'fixture"x"\n')
end)
LUA
run tricky.test.lua
[ "$RC" = 0 ] && ok "a fixture writing 'from-fixture', with names in comments, strings and [==[ ]==], builds and restores" ||
    notok "a fixture writing 'from-fixture', with names in comments, strings and [==[ ]==], builds and restores" "$OUT"
run fixture list
grep -q '^tricky .*cached' <<<"$OUT" && ! grep -q 'error' <<<"$OUT" &&
    ok "fixture list keys it (an unresolvable name breaks nothing)" ||
    notok "fixture list keys it (an unresolvable name breaks nothing)" "$OUT"

# fixtures that really reference each other, and a helper through require
mkdir -p "$P/fx"
cat >"$P/fx/layer1.fixture.lua" <<'LUA'
local vm = provium:vm("l1", "default"):boot()
vm:write_file("/etc/layer1", "one")
return vm:snapshot()
LUA
cat >"$P/fx/layer2.fixture.lua" <<'LUA'
local vm = provium:vm_fixture "fx/layer1"
vm:write_file("/etc/layer2", require("fx.words").two)
return vm:snapshot()
LUA
echo 'return {two = "two"}' >"$P/fx/words.lua"
cat >"$P/layers.test.lua" <<'LUA'
test("a fixture built on another", function(t)
  local vm = provium:vm_fixture("fx/layer2")
  t:assert_eq(vm:read_file("/etc/layer1") .. vm:read_file("/etc/layer2"), "onetwo")
end)
LUA
run layers.test.lua
[ "$RC" = 0 ] && ok "a fixture built on another fixture restores both layers" ||
    notok "a fixture built on another fixture restores both layers" "$OUT"
echo '-- edited' >>"$P/fx/layer1.fixture.lua"
run fixture stale
if [ "$RC" = 1 ] && grep -q '^fx/layer1 .*stale' <<<"$OUT" && grep -q '^fx/layer2 .*stale' <<<"$OUT" &&
    ! grep -q '^tricky' <<<"$OUT"; then
    ok "editing the inner fixture makes the outer one stale too, and nothing else"
else
    notok "editing the inner fixture makes the outer one stale too, and nothing else" "rc $RC" "$OUT"
fi
run fixture build fx/layer2
[ "$RC" = 0 ] && grep -q '^built fx/layer2' <<<"$OUT" && ok "... and building the outer one rebuilds it" ||
    notok "... and building the outer one rebuilds it" "$OUT"
echo 'return {two = "TWO"}' >"$P/fx/words.lua"
run fixture stale
[ "$RC" = 1 ] && grep -q '^fx/layer2 .*stale' <<<"$OUT" && ! grep -q '^fx/layer1' <<<"$OUT" &&
    ok "editing a helper the outer fixture requires makes only it stale" ||
    notok "editing a helper the outer fixture requires makes only it stale" "rc $RC" "$OUT"

# a build that reaches itself fails at once, naming the chain
cat >"$P/loop_a.fixture.lua" <<'LUA'
return provium:vm_fixture("loop_b"):snapshot()
LUA
cat >"$P/loop_b.fixture.lua" <<'LUA'
return provium:vm_fixture("loop_a"):snapshot()
LUA
run fixture build loop_a
[ "$RC" = 1 ] && grep -q "fixture 'loop_a': it needs itself to build (loop_a -> loop_b -> loop_a)" <<<"$OUT" &&
    ok "fixtures that need each other fail with the chain" ||
    notok "fixtures that need each other fail with the chain" "$OUT"
rm -f "$P"/loop_*.fixture.lua

# ---- fixture build/rebuild take a name or a path ----
run fixture rebuild ./fx/layer1.fixture.lua
[ "$RC" = 0 ] && grep -q '^built fx/layer1' <<<"$OUT" && ok "fixture rebuild PATH (with the suffix) builds that fixture" ||
    notok "fixture rebuild PATH (with the suffix) builds that fixture" "$OUT"
OUT=$(cd "$P/fx" && timeout -k 5 300 "$PROVIUM" fixture build layer1.fixture.lua 2>&1); RC=$?
[ "$RC" = 0 ] && grep -q '^up to date fx/layer1' <<<"$OUT" && ok "fixture build PATH relative to the working directory" ||
    notok "fixture build PATH relative to the working directory" "$OUT"
run fixture build "$P/fx/layer1"
[ "$RC" = 0 ] && grep -q '^up to date fx/layer1' <<<"$OUT" && ok "fixture build PATH without the suffix" ||
    notok "fixture build PATH without the suffix" "$OUT"
echo 'return nil' >"$T/outside.fixture.lua"
run fixture build "$T/outside.fixture.lua"
[ "$RC" = 1 ] && grep -q "outside.fixture.lua is not under a fixture root" <<<"$OUT" &&
    ok "a fixture file outside the roots is refused, naming the roots" ||
    notok "a fixture file outside the roots is refused, naming the roots" "$OUT"

# ---- a fixture is keyed on the profiles its build booted ----
rm -f "$P/broken.fixture.lua" "$P/broken.test.lua"
for n in $(cd "$P" && "$PROVIUM" fixture stale | awk '$2 == "stale" {print $1}'); do run fixture build "$n"; done
run fixture stale
[ "$RC" = 0 ] && grep -q 'every fixture is cached and up to date' <<<"$OUT" && ok "fixture stale exits 0 when nothing is stale" ||
    notok "fixture stale exits 0 when nothing is stale" "rc $RC" "$OUT"
cat >"$P/two.fixture.lua" <<'LUA'
local a = provium:vm("a", "default"):boot()
local b = provium:vm("b", "other"):boot()
b:shutdown()
return a:snapshot()
LUA
cat >>"$P/provium.toml" <<TOML
[profiles.other]
kernel = "$ROOT/build/image/vmlinux"
initrd = "$ROOT/build/image/initrd.cpio"
TOML
run fixture stale
[ "$RC" = 1 ] && grep -q '^two .*stale' <<<"$OUT" && [ "$(grep -c 'stale  ' <<<"$OUT")" = 1 ] &&
    ok "adding a profile leaves every fixture that does not boot it cached" ||
    notok "adding a profile leaves every fixture that does not boot it cached" "rc $RC" "$OUT"
run fixture build two
[ "$RC" = 0 ] && grep -q '^built two' <<<"$OUT" && ok "a fixture booting two profiles builds" ||
    notok "a fixture booting two profiles builds" "$OUT"
run fixture stale
[ "$RC" = 0 ] && ok "... after which nothing is stale" || notok "... after which nothing is stale" "rc $RC" "$OUT"
printf 'memory = "300M"\n' >>"$P/provium.toml"   # appended to [profiles.other]
run fixture stale
if [ "$RC" = 1 ] && grep -q '^two .*stale' <<<"$OUT" && [ "$(grep -c 'stale  ' <<<"$OUT")" = 1 ]; then
    ok "changing a profile makes stale exactly the fixtures that booted it"
else
    notok "changing a profile makes stale exactly the fixtures that booted it" "rc $RC" "$OUT"
fi
sed -i '/^memory = "300M"$/d' "$P/provium.toml"
truncate -s 1M "$T/other.img"
printf 'disks = [{ id = "img", path = "%s" }]\n' "$T/other.img" >>"$P/provium.toml"   # to [profiles.other]
run fixture build two
printf 'changed' | dd of="$T/other.img" conv=notrunc status=none
run fixture stale
if [ "$RC" = 1 ] && grep -q '^two .*stale' <<<"$OUT" && [ "$(grep -c 'stale  ' <<<"$OUT")" = 1 ]; then
    ok "new contents in a profile's disk image make stale exactly the fixtures that booted it"
else
    notok "new contents in a profile's disk image make stale exactly the fixtures that booted it" "rc $RC" "$OUT"
fi
sed -i '/^disks = /d; /^\[profiles.other\]$/,$d' "$P/provium.toml"
run fixture stale
[ "$RC" = 1 ] && grep -q "^two .*stale" <<<"$OUT" && ok "removing a profile a fixture booted makes it stale" ||
    notok "removing a profile a fixture booted makes it stale" "rc $RC" "$OUT"
rm -f "$P/two.fixture.lua"

# ---- the rerun state is per project and survives fixture clean ----
unset PROVIUM_RERUN_STATE
Q=$T/projq R=$T/projr
mkdir -p "$Q" "$R"
printf '[provium]\ncache_dir = "%s"\n' "$T/qcache" >"$Q/provium.toml"
printf 'test("fails", function(t) t:assert_eq(1, 2) end)\n' >"$Q/fails_here.test.lua"
: >"$R/provium.toml"
printf 'test("passes", function(t) t:assert_eq(1, 1) end)\n' >"$R/passes.test.lua"
runin() { local d=$1; shift; OUT=$(cd "$d" && timeout -k 5 120 "$PROVIUM" "$@" 2>&1); RC=$?; }
runin "$Q" fails_here.test.lua
runin "$Q" fixture clean
runin "$Q" --rerun-failed -v .
[ "$RC" = 1 ] && grep -q 'fails_here.test.lua' <<<"$OUT" && ok "fixture clean with cache_dir set keeps the rerun state" ||
    notok "fixture clean with cache_dir set keeps the rerun state" "rc $RC" "$OUT"
runin "$R" --rerun-failed -v .
[ "$RC" = 0 ] && grep -q 'no prior failure state' <<<"$OUT" && grep -q 'nothing to re-run' <<<"$OUT" &&
    ok "another project's failures are not this project's: no prior failure state, nothing to re-run" ||
    notok "another project's failures are not this project's: no prior failure state, nothing to re-run" "rc $RC" "$OUT"
if python3 - "$PROVIUM_CACHE_DIR/rerun" "$Q" <<'PY'; then
import glob, json, os, sys
states = [json.load(open(f)) for f in glob.glob(os.path.join(sys.argv[1], "*.json"))]
assert states, "no state files"
for st in states:
    for f in st["failed"]:
        assert f.startswith(st["project"] + "/"), (st["project"], f)
assert any(st["project"] == sys.argv[2] and st["failed"] for st in states), states
PY
    ok "each project's state file under the cache's rerun/ holds only its own files"
else
    notok "each project's state file under the cache's rerun/ holds only its own files" "$(cat "$PROVIUM_CACHE_DIR"/rerun/*.json)"
fi

echo "# $((NPASS + NFAIL)) checks: $NPASS passed, $NFAIL failed"
[ "$NFAIL" = 0 ]
