-- The classic dialect of seeds 002 and 004, adapted only to the default image.
local vm = provium.create("default")

test("exec returns classic results", function()
  local r = vm:exec("echo parent")
  assert_eq(r.ok, true)
  assert_eq(r.exit_code, 0)
  assert_contains(r.stdout.value, "parent")
  assert(r.stdout:contains("par"))
  assert(r.stdout:starts_with("parent"))
  assert_eq(r.stdout:trim(), "parent")
  local bad = vm:exec("echo oops >&2; exit 2")
  assert_eq(bad.ok, false)
  assert_eq(bad.exit_code, 2)
  assert_eq(bad.stderr:trim(), "oops")
end)

test("syscall returns the integer result, -errno on failure", function()
  local pid = vm:syscall(39) -- getpid
  assert(math.type(pid) == "integer" and pid > 1, "getpid")
  assert_eq(vm:syscall(3, 9999), -9) -- close(9999) -> -EBADF
end)

test("provium.pack with named fields", function()
  local blob = provium.pack("u32 u64 i16 bytes", 1, 2, -1, "xy")
  assert_eq(#blob, 4 + 8 + 2 + 2)
  local a, b, c, d = provium.unpack("u32 u64 i16 bytes", blob)
  assert_eq(a, 1); assert_eq(b, 2); assert_eq(c, -1); assert_eq(d, "xy")
end)

test("the dialect follows the constructor", function(t)
  local modern = provium:vm("modern", "default"):boot()
  t:assert_eq(type(modern:syscall(39)), "table")
  t:assert_eq(type(vm:syscall(39)), "number")
end)

test("shutdown and shutdown_all", function()
  local second = provium.create("default")
  assert_eq(second:state(), "booted")
  second:shutdown()
  assert_eq(second:state(), "shutdown")
  provium.shutdown_all()
  assert_eq(vm:state(), "shutdown")
end)
