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

-- Bad arguments are refused before anything is allocated in C: under the
-- ASan build (make check) LeakSanitizer reports any heap a luaL_error left
-- behind, so these calls must leave none.
test("bad file modes and boot options raise without leaking", function(t)
  local host_file = os.tmpname()
  local f = assert(io.open(host_file, "w"))
  f:write("pushed")
  f:close()
  local v = provium:vm("leaks", "local")
  t:assert_contains(t:assert_raises(v.boot, v, {kernel_cmdline = "quiet", files = {{path = "/a", content = "b"}, 7}}),
    "files[2] must be a table")
  t:assert_contains(t:assert_raises(v.boot, v, {kernel_cmdline = "quiet", cpus = 0}), "cpus must be an integer")
  t:assert_contains(t:assert_raises(v.boot, v, {files = {{path = "/a", content = "b"}}, initial_time = -1}),
    "initial_time must be")
  v:boot()
  t:assert_contains(t:assert_raises(v.push_file, v, host_file, "/tmp/x", {perm = "rw"}), "perm must be an integer")
  t:assert_contains(t:assert_raises(v.push_file, v, host_file, "/tmp/x", {perm = 8 ^ 5}), "perm must be an integer")
  t:assert_contains(t:assert_raises(v.push_file, v, host_file, "/tmp/x", {mode = 1}), "mode")
  t:assert_contains(t:assert_raises(v.write_file, v, "/tmp/x", "data", 0x10000), "mode must be between")
  t:assert_eq(v:ping(), true) -- the refused calls left no half-built request behind
  v:shutdown()
  os.remove(host_file)
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
