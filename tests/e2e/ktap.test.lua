-- vm:kselftest and vm:kunit against the default guest: KTAP printed by a
-- program in the guest becomes sub-tests; errors name the VM and the cause.
-- (Failing cases, and every output format, are checked by
-- tests/runner/run.sh with tests/runner/fixtures/ktap.)

local vm = provium:vm("ktap", "default"):boot()

local outside_ok, outside_err = pcall(function() return vm:kselftest("/bin/true") end)

vm:write_file("/root/nested.sh", [[
echo 'KTAP version 1'
echo '1..2'
echo '    KTAP version 1'
echo '    # Subtest: alpha'
echo '    1..2'
echo '    ok 1 first'
echo "    ok 2 second_$FOO # SKIP because $FOO"
echo 'ok 1 alpha'
echo '# between suites'
echo 'ok 2 beta'
]])

test("outside a test vm:kselftest is refused", function(t)
  t:assert(not outside_ok)
  t:assert_contains(outside_err, "vm 'ktap': kselftest: must be called inside a test")
end)

test("nested KTAP from a guest program, with env", function(t)
  local r = vm:kselftest("sh /root/nested.sh", {env = {FOO = "bar"}, timeout = 30})
  t:assert_eq(r.exit_code, 0)
  t:assert_eq(r.passed, 2)
  t:assert_eq(r.skipped, 1)
  t:assert_eq(r.failed, 0)
  t:assert_eq(#r.cases, 3)
  t:assert_eq(r.cases[1].name, "alpha / first")
  t:assert_eq(r.cases[2].name, "alpha / second_bar")
  t:assert_eq(r.cases[2].status, "skipped")
  t:assert_eq(r.cases[2].message, "because bar")
  t:assert_eq(r.cases[3].name, "beta")
  t:assert_contains(r.stdout, "# between suites")
end)

test("a binary path runs in its directory, named after it", function(t)
  vm:run("mkdir -p /root/ks && printf '#!/bin/sh\\necho TAP version 13; echo 1..1; echo ok 1 in_$(basename $(pwd))\\n' "
    .. "> /root/ks/flat && chmod +x /root/ks/flat"):assert_ok()
  local r = vm:kselftest("/root/ks/flat")
  t:assert_eq(#r.cases, 1)
  t:assert_eq(r.cases[1].name, "flat / in_ks")
  t:assert_eq(r.cases[1].status, "passed")
end)

test("no KTAP: the exit status is the verdict (4 is a skip)", function(t)
  local r = vm:kselftest("echo plain output")
  t:assert_eq(#r.cases, 1)
  t:assert_eq(r.cases[1].status, "passed")
  r = vm:kselftest("exit 4", {suite = "skipper"})
  t:assert_eq(r.cases[1].name, "skipper")
  t:assert_eq(r.cases[1].status, "skipped")
end)

test("a missing path is an error naming the VM", function(t)
  local err = t:assert_raises(function() vm:kselftest("/nonexistent/selftest") end)
  t:assert_contains(err, "vm 'ktap': kselftest: /nonexistent/selftest does not exist in the guest")
end)

test("vm:kunit: an unknown suite is an error naming the VM", function(t)
  local err = t:assert_raises(function() vm:kunit("no_such_suite") end)
  t:assert_contains(err, "vm 'ktap': kunit: no suite 'no_such_suite' (known: ")
end)

test("vm:kunit loads the kernel's own example suite", function(t)
  local r = vm:kunit("../../build/image/kernel-build/lib/kunit/kunit-example-test.ko")
  t:assert_eq(r.suites[1], "example")
  -- 6.1's example suite: two cases pass, two skip on purpose
  t:assert_eq(r.passed, 2)
  t:assert_eq(r.skipped, 2)
  t:assert_eq(r.failed, 0)
  local names = {}
  for _, c in ipairs(r.cases) do names[c.name] = c end
  t:assert_eq(names["example / example_simple_test"].status, "passed")
  t:assert_eq(names["example / example_all_expect_macros_test"].status, "passed")
  t:assert_eq(names["example / example_skip_test"].status, "skipped")
  t:assert_eq(names["example / example_skip_test"].message, "this test should be skipped")
  t:assert_eq(vm:run("grep -c kunit_example_test /proc/modules").stdout, "0\n")
  -- unloaded again: loading it a second time works
  t:assert_eq(vm:kunit("../../build/image/kernel-build/lib/kunit/kunit-example-test.ko").failed, 0)
end)
