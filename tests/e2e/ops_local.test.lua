-- The same operations against the agent running as a host process: no boot,
-- so they run in a fraction of a second. Root-only parts skip when not root.
require("helpers.ops_suite")("local")

test("what needs a real VM is refused clearly on the local profile", function(t)
  local v = provium:vm("host", "local"):boot()
  t:assert_contains(t:assert_raises(v.snapshot, v), "needs a real VM")
  t:assert_contains(t:assert_raises(v.pause, v), "needs a real VM")
  v:shutdown()
  t:assert_eq(v:state(), "shutdown")
end)
