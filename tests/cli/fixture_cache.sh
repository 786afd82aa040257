#!/usr/bin/env bash
# End-to-end checks of the fixture cache through the CLI: a second run builds
# nothing, editing a fixture or its helper rebuilds, parallel files build a
# cold fixture once, a corrupt entry is rebuilt with a warning, and the
# `provium fixture` subcommand. Runs in a private project and cache.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PROVIUM=$ROOT/build/provium
T=$(mktemp -d /tmp/pvfix.XXXXXX)
trap 'rm -rf "$T"' EXIT
export PROVIUM_CACHE_DIR=$T/cache
NPASS=0 NFAIL=0

ok() { echo "ok - $1"; NPASS=$((NPASS + 1)); }
notok() { echo "not ok - $1"; shift; for l in "$@"; do printf '%s\n' "$l" | sed 's/^/#   /'; done; NFAIL=$((NFAIL + 1)); }

P=$T/proj
mkdir -p "$P"
cat >"$P/provium.toml" <<TOML
[provium]
roots = ["."]
[profiles.default]
kernel = "$ROOT/build/image/vmlinux"
initrd = "$ROOT/build/image/initrd.cpio"
TOML
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
if [ "$RC" = 0 ] && grep -q '^cold .*stale' <<<"$OUT" && ! grep -q '^base' <<<"$OUT"; then
    ok "provium fixture stale lists exactly the edited fixture"
else
    notok "provium fixture stale lists exactly the edited fixture" "$OUT"
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

echo "# $((NPASS + NFAIL)) checks: $NPASS passed, $NFAIL failed"
[ "$NFAIL" = 0 ]
