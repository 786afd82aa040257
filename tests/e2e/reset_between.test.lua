-- provium.reset_between_tests: every test starts from the state at the end
-- of the top-level chunk.
provium.reset_between_tests = true
local vm = provium:vm("shared", "default"):boot()
vm:write_file("/etc/baseline", "set at file scope")

test("first test changes the guest", function(t)
  t:assert_eq(vm:read_file("/etc/baseline"), "set at file scope")
  vm:write_file("/etc/baseline", "changed")
  vm:write_file("/tmp/leak", "x")
end)

test("second test sees the baseline again", function(t)
  t:assert_eq(vm:read_file("/etc/baseline"), "set at file scope")
  t:assert_eq(vm:run("test -e /tmp/leak").exit_code, 1)
end)
