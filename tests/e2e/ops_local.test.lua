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

-- Issue 12, item 9: objects a Worker owns free their channels when collected.
test("processes, streams and workers free their channels when collected", function(t)
  local v = provium:vm("gc", "local"):boot()
  local before = v:__channel_count()
  -- not registered with the test scope: only the garbage collector frees them
  local reg = debug.getregistry()
  local track = reg["provium.track"]
  reg["provium.track"] = function() end
  local ok, err = pcall(function()
    for _, thread in ipairs({false, true}) do
      local w = v:spawn_worker({thread = thread})
      for _ = 1, 20 do
        if not thread then
          w:run_async("echo hi"):wait()
          w:run_async("echo hi"):stdout_stream()
          w:tail_file("/proc/self/status")
        end
        w:syscall_async(39):done()
        v:run_async("true"):wait()
      end
      w:join()
      w:kill()
    end
  end)
  reg["provium.track"] = track
  t:assert(ok, err)
  collectgarbage("collect")
  collectgarbage("collect")
  t:assert_eq(v:__channel_count(), before)
end)
