#!/usr/bin/env bash
# `provium lsp-setup`: it writes the type stubs (the embedded lua/types.lua)
# and a .luarc.json, leaves an existing .luarc.json alone, and the stubs it
# wrote pass tests/e2e/lsp_stubs.test.lua (which walks the metatables of real
# objects of a booted VM); the same test fails, naming the method, on a copy
# of the stubs with one method removed, so it really checks something.
#
# Run after `make all image`: tests/cli/lsp.sh
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib/vm_scripts.sh
. "$ROOT/tests/lib/vm_scripts.sh"
STUBTEST=$ROOT/tests/e2e/lsp_stubs.test.lua

run() {
    local t0
    t0=$(date +%s%N)
    OUT=$(TMPDIR=$T timeout -k 5 "$LIMIT" "$@" 2>&1)
    RC=$?
    ELAPSED=$((($(date +%s%N) - t0) / 1000000))
}

mkdir -p "$T/ws"
run "$PROVIUM" lsp-setup "$T/ws"
begin "lsp-setup writes the stubs and a .luarc.json"
expect_rc 0
expect_out "wrote $T/ws/.provium/types/provium.lua and $T/ws/.luarc.json"
cmp -s "$T/ws/.provium/types/provium.lua" "$ROOT/lua/types.lua" || problem "the stubs written differ from lua/types.lua"
grep -q '"workspace.library": \[".provium/types"\]' "$T/ws/.luarc.json" 2>/dev/null || problem ".luarc.json lacks the library entry"
end_check

echo '{"mine": true}' >"$T/ws/.luarc.json"
run "$PROVIUM" lsp-setup "$T/ws"
begin "lsp-setup leaves an existing .luarc.json alone and says what to add"
expect_rc 0
expect_out "exists and was left alone"
[ "$(cat "$T/ws/.luarc.json")" = '{"mine": true}' ] || problem ".luarc.json was changed"
end_check

STUBS=$T/ws/.provium/types/provium.lua
run env PROVIUM_STUBS="$STUBS" "$PROVIUM" "$STUBTEST"
begin "the stubs lsp-setup wrote declare every method of the real objects (lsp_stubs.test.lua)"
expect_rc 0
expect_out "1 passed, 0 failed"
end_check

# one method gone (Worker:join), then one declaration the real
# objects lack (provium.no_such_call)
sed '/^function Worker:join(/d' "$STUBS" >"$T/no_method.lua"
run env PROVIUM_STUBS="$T/no_method.lua" "$PROVIUM" "$STUBTEST"
begin "the stubs test fails when a method of a real object is missing from the stubs"
expect_rc 1
expect_out "missing from the stubs"
expect_out "Worker:join"
end_check

sed 's/^function provium.unpack(fmt, data, pos) end$/&\nfunction provium.no_such_call() end/' "$STUBS" >"$T/stale.lua"
run env PROVIUM_STUBS="$T/stale.lua" "$PROVIUM" "$STUBTEST"
begin "the stubs test fails when the stubs declare a method the real object lacks"
expect_rc 1
expect_out "the real objects lack: Provium:no_such_call"
end_check

check_summary
