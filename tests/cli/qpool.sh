#!/usr/bin/env bash
# The QEMU pool (host/vmm/qpool.c) through the CLI, in a private project and
# cache: a file that boots one profile again and again has its second and
# later boots served by spare QEMUs, and the guests it gets are what a boot
# without spares gives (same facts, fresh identities, the host's clock); the
# spares count in the resource pool (the pool's reported use includes them,
# a claim that only fits one VM gets none and still boots); no QEMU outlives
# the file, at its end or on Ctrl-C; PROVIUM_QEMU_POOL=0 turns it off.
# PROVIUM_QPOOL_TRACE shows what the pool did.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib/vm_scripts.sh
. "$ROOT/tests/lib/vm_scripts.sh"

P=$T/proj
mkdir -p "$P"
printf '[provium]\nroots = ["."]\n[profiles.default]\nkernel = "%s"\ninitrd = "%s"\n' \
    "$ROOT/build/image/vmlinux" "$ROOT/build/image/initrd.cpio" >"$P/provium.toml"
# Boots "default" five times, one after the other and two at once, and
# writes what a test can see of each guest that must not depend on how it
# came up to $FACTS; what must differ between VMs is asserted here.
cat >"$P/again.test.lua" <<'LUA'
local facts = assert(io.open(os.getenv("FACTS"), "w"))
local seen = {}
local function look(t, v, i)
  for _, what in ipairs({"/proc/sys/kernel/random/uuid", "/proc/sys/kernel/random/boot_id"}) do
    local id = v:read_file(what)
    t:assert(not seen[id], "two VMs read the same " .. what)
    seen[id] = true
  end
  local bytes = v:run("head -c 16 /dev/urandom | od -An -tx1").stdout
  t:assert(not seen[bytes], "two VMs drew the same bytes from /dev/urandom")
  seen[bytes] = true
  t:assert(math.abs(v:clock():get() - os.time()) < 30, "the guest clock is not the host's")
  v:write_file("/tmp/mine", v:name())
  facts:write(i, " hostname=", (v:run("hostname").stdout:gsub("\n", "")), " cmdline=", (v:read_file("/proc/cmdline"):gsub("\n", "")),
    " memtotal=", v:read_file("/proc/meminfo"):match("MemTotal:%s+(%d+)"), " tmp=", v:read_file("/tmp/mine"),
    " state=", v:state(), "\n")
end
test("one profile booted again and again", function(t)
  for i = 1, 3 do
    local v = provium:vm("seq" .. i, "default"):boot()
    look(t, v, i)
    v:run("sleep 1") -- the test works: the spare for the next boot gets ready meanwhile
    v:shutdown()
  end
  local a = provium:vm("a", "default"):boot()
  local b = provium:vm("b", "default"):boot()
  look(t, a, 4)
  look(t, b, 5)
  local p = provium:vm("pinned", "default"):boot({initial_time = 1000000000})
  local now = p:clock():get()
  t:assert(now >= 1000000000 and now < 1000000000 + 60, "guest clock " .. now .. " is not at initial_time")
  facts:close()
end)
LUA
cat >"$P/claimed.test.lua" <<'LUA'
provium:claim({memory = os.getenv("CLAIM"), cpus = 1})
test("boots within a claim", function(t)
  for i = 1, 3 do
    local v = provium:vm("c" .. i, "default"):boot()
    t:assert_eq(v:run("echo " .. i).stdout, i .. "\n")
    v:shutdown()
  end
end)
LUA
cat >"$P/long.test.lua" <<'LUA'
test("waits", function(t)
  provium:vm("w1", "default"):boot():shutdown()
  provium:vm("w2", "default"):boot():run("sleep 60")
end)
LUA

run() { OUT=$(cd "$P" && TMPDIR=$T timeout -k 5 "$LIMIT" "$PROVIUM" "$@" 2>&1); RC=$?; }
trace_count() { grep -c " $1 " "$TR" 2>/dev/null || true; }
TR=$T/trace
export PROVIUM_QPOOL_TRACE=$TR

begin "the boot cache entry is made (cold boot), then later boots use spares"
FACTS=$T/facts.warm run again.test.lua
expect_rc 0
rm -f "$TR"
FACTS=$T/facts.pool run -j1 --save-events "$T/ev.jsonl" again.test.lua
expect_rc 0
# the first boot restores and leaves a spare; seq2, seq3, a, b and pinned use one each
[ "$(trace_count use)" -ge 4 ] || problem "spares used $(trace_count use) times, expected at least 4: $(cat "$TR")"
# while seq1 and seq2 work, their spares load their state and greet the agent
[ "$(trace_count greet)" -ge 1 ] || problem "no spare got ready while the test worked: $(cat "$TR")"
grep -q " drop default .*(the file ends)" "$TR" || problem "the last spare was not stopped at the file's end: $(cat "$TR")"
[ -z "$(live_qemu "$T")" ] || problem "QEMU left after the file ended: $(live_qemu "$T")"
end_check

begin "the spares are counted in the pool's use"
# one VM at a time plus its spare: the pool's use reaches two VMs' memory
# (256 MiB each) during the sequential boots; and never more than the three
# the file has at once (a, b and pinned) plus one spare
python3 - "$T/ev.jsonl" <<'PY' || problem "pool use: see above"
import json, sys
used = [json.loads(l)["payload"]["used"]["memory_bytes"] for l in open(sys.argv[1])
        if '"pool_state"' in l]
mib = [u >> 20 for u in used]
ok = 512 in mib and max(mib) <= 4 * 256
print("# pool use (MiB):", mib)
sys.exit(0 if ok else 1)
PY
end_check

begin "with PROVIUM_QEMU_POOL=0 no spare starts and the guests look the same"
rm -f "$TR"
PROVIUM_QEMU_POOL=0 FACTS=$T/facts.nopool run -j1 again.test.lua
expect_rc 0
[ "$(trace_count start)" = 0 ] || problem "a spare started with PROVIUM_QEMU_POOL=0: $(cat "$TR")"
diff "$T/facts.pool" "$T/facts.nopool" >/dev/null || problem "the guests differ: $(diff "$T/facts.pool" "$T/facts.nopool")"
[ "$(wc -l <"$T/facts.pool")" = 5 ] || problem "facts: $(cat "$T/facts.pool")"
end_check

begin "a claim that fits one VM gets no spare, and every boot still fits it"
rm -f "$TR"
CLAIM=256M run claimed.test.lua
expect_rc 0
[ "$(trace_count start)" = 0 ] || problem "a spare started beyond the claim: $(cat "$TR")"
[ "$(trace_count refused)" -ge 1 ] || problem "no spare was asked for: $(cat "$TR")"
rm -f "$TR"
CLAIM=512M run claimed.test.lua
expect_rc 0
[ "$(trace_count use)" -ge 2 ] || problem "a claim with room for a spare got none: $(cat "$TR")"
end_check

begin "Ctrl-C leaves no QEMU behind, spares included"
rm -f "$TR"
(cd "$P" && TMPDIR=$T exec "$PROVIUM" long.test.lua >"$T/long.out" 2>&1) &
pid=$!
BG_PIDS+=("$pid")
deadline=$(($(date +%s) + LIMIT))
until grep -q " start " "$TR" 2>/dev/null && grep -q " use " "$TR" 2>/dev/null || [ "$(date +%s)" -gt "$deadline" ]; do
    sleep 0.2
done
grep -q " use " "$TR" || problem "no spare was used before Ctrl-C: $(cat "$TR" 2>/dev/null)"
[ -n "$(live_qemu "$T")" ] || problem "no QEMU ran"
kill -INT "$pid"
wait "$pid"
RC=$?
expect_rc 130
qemu_gone_within "$T" 10 || problem "QEMU left after Ctrl-C: $(live_qemu "$T")"
end_check

check_summary
