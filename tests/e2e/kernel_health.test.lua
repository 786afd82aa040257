-- Kernel health checks that must pass: reports a test provokes on purpose
-- are caught by t:expect_kernel_report and allowed by meta.kernel_reports.
-- (That an unexpected report fails a test is checked in tests/cli/kernel_health.sh.)
package.path = debug.getinfo(1, "S").source:sub(2):match("^(.*/)tests/e2e/") .. "tests/kmod/?.lua;" .. package.path
local faulty = require("faulty")
local TRIGGER = faulty.TRIGGER
local vm = provium:vm("health", "default"):boot()
faulty.load(vm)

test("expect_kernel_report catches a WARN_ON and names the function and module", function(t)
  local got = t:expect_kernel_report("WARNING", function()
    vm:write_file(TRIGGER, "warn")
  end)
  t:assert_eq(#got, 1)
  t:assert_eq(got[1].kind, "warning")
  t:assert_contains(got[1].title, "kernel WARNING in provium_faulty_warn")
  t:assert_contains(got[1].title, "[provium_faulty]")
  t:assert_contains(got[1].text, "cut here")
  t:assert_contains(got[1].text, "end trace")
end)

test("an oops in a shell child is caught, the VM keeps working", {kernel_reports = "allow"}, function(t)
  local r = vm:run("echo oops > " .. TRIGGER)
  t:assert(r.exit_code ~= 0 or r.signal ~= nil, "the writer should have died")
  t:assert_eq(vm:run("echo alive").stdout, "alive\n")
end)

test("BUG() is classified as an oops", function(t)
  local got = t:expect_kernel_report("oops", function()
    vm:run("echo bug > " .. TRIGGER)
  end)
  t:assert_contains(got[1].title, "kernel BUG at")
end)
