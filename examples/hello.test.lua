-- The smallest useful Provium test: boot the default image, ask the kernel things.
local vm = provium:vm("box", "default"):boot()

test("the kernel answers", function(t)
  local r = vm:run("uname -sr")
  r:assert_ok()
  t:assert_contains(r.stdout, "Linux 6.1")
  local pid = vm:syscall(39)                -- getpid, straight into the kernel
  t:assert(pid.ret > 1)
  vm:write_file("/tmp/x", "data")
  t:assert_eq(vm:stat("/tmp/x").size, 4)
end)
