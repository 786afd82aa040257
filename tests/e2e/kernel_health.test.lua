-- Kernel health checks that must pass: reports a test provokes on purpose
-- are caught by t:expect_kernel_report and allowed by meta.kernel_reports.
-- (That an unexpected report fails a test is checked in tests/cli/kernel_health.sh.)
package.path = debug.getinfo(1, "S").source:sub(2):match("^(.*/)tests/e2e/") .. "tests/kmod/?.lua;" .. package.path
local faulty = require("faulty")
local TRIGGER = faulty.TRIGGER
local vm = provium:vm("health", "default"):boot()
faulty.load(vm)

-- First: once the kernel has oopsed (taint D) it stops reporting hung tasks.
test("a task stuck in D state is reported as a hung task", function(t)
  vm:write_file("/proc/sys/kernel/hung_task_timeout_secs", "1")
  local got = t:expect_kernel_report("hung_task", function()
    vm:run_async("echo hang > " .. TRIGGER)
    -- khungtaskd looks once per timeout; under emulation on a loaded host
    -- the first look can take several seconds
    wait_until(function()
      return vm:run("dmesg").stdout:find("blocked for more than", 1, true)
    end, {timeout = 90, interval = 1})
    -- the task stays stuck: no more reports after this one
    vm:write_file("/proc/sys/kernel/hung_task_timeout_secs", "0")
  end)
  t:assert_eq(got[1].kind, "hung_task")
  t:assert_contains(got[1].title, "blocked for more than")
  t:assert_contains(got[1].text, "trigger_write")
end)

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
  -- frames decoded to file:line, in the module (its .ko was pushed) and in vmlinux
  t:assert_contains(got[1].text, "trigger_write+")
  t:assert(got[1].text:find("%[provium_faulty%] %(/[^)]*provium_faulty%.c:%d+%)") ~= nil,
    "module frame not decoded:\n" .. got[1].text)
  t:assert(got[1].text:find("vfs_write%+0x%x+/0x%x+ %(fs/read_write%.c:%d+%)") ~= nil,
    "kernel frame not decoded:\n" .. got[1].text)
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

-- Last: the oopses above left the kernel tainted (D, W); meta.fresh_vm
-- reboots the file-scope VM first, so this test sees a healthy kernel.
test("meta.fresh_vm gives the test a healthy kernel after earlier oopses", {fresh_vm = true}, function(t)
  t:assert_eq(tonumber(vm:read_file("/proc/sys/kernel/tainted")) & (128 | 512), 0)
  t:assert_eq(vm:run("echo fresh").stdout, "fresh\n")
end)
