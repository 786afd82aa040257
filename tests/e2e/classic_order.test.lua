-- The classic dialect runs in file order (seeds 002, 004): create a VM, use
-- it in tests, shut it down at the end. Each test() body runs where it is
-- declared, so the code after it sees its effects, and the final
-- vm:shutdown() comes after every test.
local vm = provium.create("default")
local ran = {}

test("first writes a marker", function()
  vm:exec("echo one > /tmp/order")
  table.insert(ran, "first")
end)

-- top-level code after a test sees what the test did
assert_eq(table.concat(ran, ","), "first", "the first test ran where it was declared")
assert_eq(vm:exec("cat /tmp/order").stdout:trim(), "one")
vm:exec("echo two >> /tmp/order")

test("a test taking t in a classic file also runs in place", function(t)
  t:assert_eq(vm:read_file("/tmp/order"), "one\ntwo\n")
  table.insert(ran, "second")
end)

assert_eq(table.concat(ran, ","), "first,second")

test("a failing classic test does not stop the file", {tags = {"classic-fail"}}, function()
  table.insert(ran, "third")
  -- the assertion is expected to raise; assert_raises keeps the test passing
  local ok = pcall(assert_eq, 1, 2)
  assert(not ok)
end)

local worker = vm:spawn()
assert_contains(worker:exec("echo child").stdout.value, "child")
worker:kill()

test("the VM is still up before the final shutdown", function()
  assert_eq(vm:state(), "booted")
  table.insert(ran, "fourth")
end)

assert_eq(table.concat(ran, ","), "first,second,third,fourth")
vm:shutdown()
assert_eq(vm:state(), "shutdown")
