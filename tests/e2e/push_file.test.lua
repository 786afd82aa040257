-- vm:push_file resolves a relative host path against the directory of the
-- Lua file that calls it, and a failure says which path it tried and why.
local push = require("helpers.pusher")
local vm = provium:vm("push", "local"):boot()
local base = vm:run("pwd").stdout:gsub("\n$", "")
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$")

test("relative to the calling test file", function(t)
  vm:push_file("helpers/push_data.txt", base .. "/a")
  t:assert_eq(vm:read_file(base .. "/a"), "next to the helper\n")
end)

test("relative to a required helper that calls it", function(t)
  push(vm, "push_data.txt", base .. "/b")
  t:assert_eq(vm:read_file(base .. "/b"), "next to the helper\n")
  -- the same name from the test file is looked for next to the test file
  local err = tostring(t:assert_raises(function() vm:push_file("push_data.txt", base .. "/c") end))
  t:assert_contains(err, "tests/e2e/push_data.txt: No such file or directory")
end)

test("the error names the path tried, the calling file and the cause", function(t)
  local err = tostring(t:assert_raises(function() push(vm, "missing.txt", base .. "/d") end))
  t:assert_contains(err, "push_file: cannot read host file ")
  t:assert_contains(err, "tests/e2e/helpers/missing.txt: No such file or directory")
  t:assert_contains(err, "the relative path 'missing.txt' is resolved against the directory of ")
  t:assert_contains(err, "tests/e2e/helpers/pusher.lua, the Lua file that called push_file")
  -- an absolute path is taken as it is
  vm:push_file(here .. "/helpers/push_data.txt", base .. "/e")
  t:assert_eq(vm:read_file(base .. "/e"), "next to the helper\n")
  err = tostring(t:assert_raises(function() vm:push_file("/nonexistent/x.bin", base .. "/f") end))
  t:assert_contains(err, "push_file: cannot read host file /nonexistent/x.bin: No such file or directory")
  t:assert(not err:find("relative", 1, true), err)
end)

test("from a string chunk: the innermost Lua file on the stack counts", function(t)
  local chunk = load("local vm, dst = ...; vm:push_file('helpers/push_data.txt', dst)", "=chunk")
  chunk(vm, base .. "/g")
  t:assert_eq(vm:read_file(base .. "/g"), "next to the helper\n")
end)
