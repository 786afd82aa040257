-- A file that mixes the dialects. It uses provium:vm (newer dialect), so
-- only the tests whose function takes no parameter are classic and run
-- where they are declared; the function(t) tests are collected and run, in
-- declaration order, after the top level has finished.
local vm = provium:vm("mixed", "default"):boot()
local ran = {}

test("collected one", function(t)
  t:assert_eq(table.concat(ran, ","), "classic one,classic two,top level done")
  table.insert(ran, "collected one")
end)

test("classic one", function()
  table.insert(ran, "classic one")
  vm:write_file("/tmp/mixed", "from classic one")
end)

assert_eq(table.concat(ran, ","), "classic one", "only the classic test has run so far")
assert_eq(vm:read_file("/tmp/mixed"), "from classic one")

test("collected two", function(t)
  t:assert_eq(ran[#ran], "collected one")
  t:assert_eq(vm:read_file("/tmp/mixed"), "from classic two")
  table.insert(ran, "collected two")
end)

test("classic two", function()
  table.insert(ran, "classic two")
  vm:write_file("/tmp/mixed", "from classic two")
end)

table.insert(ran, "top level done")

test("a vararg function is the newer dialect", function(...)
  local t = ...
  t:assert_eq(table.concat(ran, ","), "classic one,classic two,top level done,collected one,collected two")
end)
