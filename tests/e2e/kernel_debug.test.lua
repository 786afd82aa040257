-- The debug kernel's detectors, provoked for real by tests/kmod/provium_faulty
-- built against the debug tree: each report is classified, titled and kept.
package.path = debug.getinfo(1, "S").source:sub(2):match("^(.*/)tests/e2e/") .. "tests/kmod/?.lua;" .. package.path
local faulty = require("faulty")
local vm = provium:vm("dbg", "debug"):boot()
faulty.load(vm, true)

-- Order matters: a KASAN report taints the kernel with B, which turns lockdep
-- off ("lockdep now unreliable"), so lockdep goes first and KASAN last.
test("lockdep: two mutexes taken in both orders", function(t)
  local got = t:expect_kernel_report("lockdep", function() vm:write_file(faulty.TRIGGER, "lockdep") end)
  t:assert_contains(got[1].title, "possible circular locking dependency")
end)

test("UBSAN: an oversized shift", function(t)
  local got = t:expect_kernel_report("ubsan", function() vm:write_file(faulty.TRIGGER, "ubsan") end)
  t:assert_contains(got[1].title, "shift-out-of-bounds")
end)

test("KASAN: an out-of-bounds write is a kasan report naming the function", function(t)
  local got = t:expect_kernel_report("kasan", function() vm:write_file(faulty.TRIGGER, "kasan") end)
  t:assert_eq(got[1].kind, "kasan")
  t:assert_contains(got[1].title, "slab-out-of-bounds in provium_faulty_kasan")
end)
