-- The test framework itself (no VM needed for most of it).

test("t fields and assertions that pass", function(t)
  t:assert_eq(t.name, "t fields and assertions that pass")
  t:assert_eq(type(t.meta), "table")
  t:assert(true)
  t:assert_eq(1, 1)
  t:assert_neq(1, 2)
  t:assert_contains("hello world", "o w")
  t:assert_contains("a.b", ".") -- plain text, not a pattern
  local e = t:assert_raises(function() error("boom") end)
  t:assert_contains(e, "boom")
end)

test("meta is passed through", {tags = {"fast", "unit"}, spec = "SPEC-1", owner = "kernel-team"}, function(t)
  t:assert_eq(t.meta.spec, "SPEC-1")
  t:assert_eq(t.meta.owner, "kernel-team")
  t:assert_eq(t.meta.tags[2], "unit")
end)

test("skipped by meta", {skip = "not on this kernel"}, function(t)
  t:fail("must not run")
end)

test("slow tests are skipped unless asked for", {slow = true}, function(t)
  t:fail("must not run without --include-slow")
end)

test("t:skip skips", function(t)
  t:skip("reason given")
  t:fail("unreachable")
end)

test("todo() inside a test skips it (classic)", function()
  todo("later")
  error("unreachable")
end)

test("wait_until polls until true and returns the value", function(t)
  local n = 0
  local v = wait_until(function() n = n + 1; return n >= 3 and "done" end, {timeout = 2, interval = 0.01})
  t:assert_eq(v, "done")
  local e = t:assert_raises(wait_until, function() return false end, {timeout = 0.1, interval = 0.01, desc = "never"})
  t:assert_contains(e, "never")
  e = t:assert_raises(wait_until, function() error("inside pred") end, {timeout = 1})
  t:assert_contains(e, "inside pred")
end)

test("duplicate test names are rejected at registration", function(t)
  local e = t:assert_raises(test, "duplicate test names are rejected at registration", function() end)
  t:assert_contains(e, "already defined")
  t:assert_contains(t:assert_raises(function() test("no function") end), "missing test function")
end)

test("json: arrays, objects, 64-bit integers", function(t)
  t:assert_eq(json.encode({10, 20, 30}), "[10,20,30]")
  t:assert_eq(json.decode('{"a":{"b":["c","d"]}}').a.b[2], "d")
  t:assert_eq(json.decode("9007199254740993"), 9007199254740993)
  t:assert_eq(math.type(json.decode("3")), "integer")
  t:assert_eq(json.decode("3.5"), 3.5)
  t:assert_contains(t:assert_raises(function() json.decode("{bad") end), "json.decode")
  t:assert_contains(t:assert_raises(json.encode, {f = print}), "cannot encode")
  -- keys 1..n with gaps are an array with nulls; a mixed table is an object
  t:assert_eq(json.encode({[1] = 1, [3] = 3}), "[1,null,3]")
  t:assert_eq(json.decode(json.encode({1, 2, name = "x"})).name, "x")
  -- integers above INT64_MAX wrap like Lua's tonumber("0x...")
  t:assert_eq(json.decode("18446744073709551615"), -1)
  t:assert_eq(json.decode('{"v": 9223372036854775808, "s": "18446744073709551615"}').v, math.mininteger)
  t:assert_eq(json.decode('["18446744073709551615"]')[1], "18446744073709551615")
end)

test("classic assertions raise with both values", function(t)
  assert_eq(1, 1)
  assert_contains("abc", "b")
  local e = t:assert_raises(assert_eq, "x", "y", "values differ")
  t:assert_contains(e, 'values differ: expected "y", got "x"')
  t:assert_contains(t:assert_raises(assert_contains, "abc", "z"), 'to contain "z"')
end)

test("per-test timeout", {timeout = 0.5}, function(t)
  t:log("this test has meta.timeout = 0.5; it finishes in time")
end)

-- The lossy encoder (event payloads, reports) escapes NUL as \x00; the plain
-- json.encode writes \u0000. A metamethod raising in the middle of a lossy
-- encode must not leave the next plain encode lossy.
test("a raising lossy encode leaves json.encode exact", function(t)
  local P = debug.getregistry()["provium.P"]
  t:assert_eq(json.encode("a\0b"), '"a\\u0000b"')
  local raising = setmetatable({[1] = 1, [3] = 3}, {__index = function() error("index raised") end})
  local ok, err = pcall(P.event, "lossy_probe", {payload = raising, text = "x\0y"})
  if ok then t:skip("P.event is a no-op outside the runner") end
  t:assert_contains(err, "index raised")
  t:assert_eq(json.encode("a\0b"), '"a\\u0000b"')
end)

-- The lab snapshot's directory helpers take a path as a path: quotes, $(...)
-- and a leading dash once broke out of the shell command lines
-- framework.lua built (rm -rf '...', mkdir -p '...', du -sk '...').
test("the path helpers of lab snapshots take any path literally", function(t)
  local P = debug.getregistry()["provium.P"]
  local base = os.tmpname()
  os.remove(base)
  t:assert(P.make_dirs(base))
  local marker = base .. "/ran"
  local odd = base .. "/-rf it's \"$(touch " .. marker .. ")\" `touch " .. marker .. "` a b"
  local nested = odd .. "/lab.dc1"
  t:assert_eq(P.make_dirs(nested), true)
  local f = assert(io.open(nested .. "/ram", "w"))
  f:write(string.rep("x", 10000))
  f:close()
  t:assert(P.disk_usage(odd) >= 10000, "disk_usage counts the file under the odd path")
  t:assert_eq(P.disk_usage(odd), P.disk_usage(nested .. "/ram"))
  local ok, why = P.make_dirs(nested .. "/ram")
  t:assert_eq(ok, nil)
  t:assert_contains(why, "cannot create directory " .. nested .. "/ram: it exists and is not a directory")
  P.remove_tree(odd)
  t:assert_eq(io.open(nested .. "/ram"), nil)
  t:assert_eq(io.open(marker), nil, "nothing in the path ran")
  t:assert_eq(P.disk_usage(odd), 0)
  P.remove_tree(odd) -- a missing path is not an error
  P.remove_tree(base)
  t:assert_eq(io.open(base), nil)
end)
