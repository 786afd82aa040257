-- Assertion failure texts and t:assert_raises. assert_raises returns the
-- text of an assertion that failed inside it, so the texts are checked here
-- exactly as a failing test would report them.
local vm = provium:vm("msgs", "local"):boot()

test("assert_raises: an assertion failing inside fn is the raise, not a failure", function(t)
  local e = t:assert_raises(function() t:assert_eq(1, 2) end, "inner assertion")
  t:assert_contains(e, "expected 2, got 1")
  e = t:assert_raises(function() t:fail("on purpose") end)
  t:assert_contains(e, "on purpose")
  -- the test is still passing: nothing of the inner failures is left
  t:assert_eq(t.failed, false)
  t:assert_eq(#t.failures, 0)
end)

test("assert_raises(fn, msg): msg names a call that did not raise", function(t)
  local e = t:assert_raises(function() t:assert_raises(function() end, "the frobnicator") end)
  t:assert_contains(e, "the frobnicator: expected to raise, but the function returned normally")
  -- arguments after fn other than one string go to fn
  t:assert_contains(t:assert_raises(error, "as an argument", 0), "as an argument")
end)

test("a string is quoted on one line, control characters escaped once", function(t)
  local e = t:assert_raises(function() t:assert_eq("6.1.192\n", "5.10.0\n") end)
  t:assert_contains(e, 'expected "5.10.0\\n", got "6.1.192\\n"')
  t:assert(not e:find("\\\n", 1, true), "no backslash-newline: " .. e)
  e = t:assert_raises(function() t:assert_eq('a "q" \\ \1\t', "") end)
  t:assert_contains(e, [[got "a \"q\" \\ \x01\t"]])
end)

test("values of several lines differ as a unified diff", function(t)
  local e = t:assert_raises(function() t:assert_eq("one\ntwo\nthree\n", "one\n2\nthree\n") end)
  t:assert_contains(e, "expected and actual differ:\n--- expected\n+++ actual\n@@ -1,3 +1,3 @@\n one\n-2\n+two\n three")
  e = t:assert_raises(function() t:assert_eq("a\nb", "a\nb\n") end)
  t:assert_contains(e, "-b\n+b\n\\ No newline at end of file")
  -- control characters in diff lines stay visible
  e = t:assert_raises(function() t:assert_eq("a\r\nb\n", "a\nb\n") end)
  t:assert_contains(e, "\n-a\n+a\\r\n b")
  -- the classic global assertion says the same
  local ok, ce = pcall(assert_eq, "one\ntwo\n", "one\n2\n")
  t:assert(not ok)
  t:assert_contains(ce, "-2\n+two")
end)

test("assert_contains shows a text of several lines as a block", function(t)
  local e = t:assert_raises(function() t:assert_contains("line one\nline two\n", "three") end)
  t:assert_contains(e, 'expected the text below to contain "three":\n  | line one\n  | line two')
end)

test("assert_ok names the VM, the command, its status and the output tails", function(t)
  local r = vm:run("echo out; echo 'no such device' >&2; exit 3")
  local ok, e = pcall(r.assert_ok, r)
  t:assert(not ok)
  t:assert_contains(e, "command failed: exited with status 3\n  command on vm 'msgs': echo out; echo 'no such device' >&2; exit 3")
  t:assert_contains(e, "\n  stdout: out\n  stderr: no such device")
  r = vm:run("sh", {"-c", "exit 4", "it's"})
  ok, e = pcall(r.assert_ok, r, "setting up")
  t:assert_contains(e, "setting up: command failed: exited with status 4\n  command on vm 'msgs': sh -c 'exit 4' 'it'\\''s'")
  t:assert_contains(e, "stderr: (empty)")
  r = vm:run("head -c 5000 /dev/zero | tr '\\0' x >&2; false")
  ok, e = pcall(r.assert_ok, r)
  t:assert_contains(e, "stderr: (last 2000 of 5000 bytes)\n    xxxx")
end)
