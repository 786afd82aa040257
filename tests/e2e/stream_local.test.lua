-- The streamed forms of push_file and write_file (over 1 MiB: OPEN, 1 MiB
-- FD_WRITEs two at a time, FD_CLOSE) against the agent as a host process:
-- fast enough to run under ASan (build/asan/provium), where a leak or a
-- stray access on any of their paths fails the file.
local host_file = require("helpers.host_file")
local vm = provium:vm("stream", "local"):boot()
local base = vm:run("pwd").stdout:gsub("\n$", "")
local data = string.rep("0123456789abcdef", 300000) .. "tail" -- 4.8 MB, not a multiple of the chunk

test("write_file and push_file of several chunks arrive whole", function(t)
  vm:write_file(base .. "/w.bin", data)
  t:assert(vm:read_file(base .. "/w.bin") == data, "write_file")
  local p = host_file(data)
  vm:push_file(p, base .. "/p.bin", {perm = tonumber("640", 8)})
  os.remove(p)
  t:assert(vm:read_file(base .. "/p.bin") == data, "push_file")
  t:assert_eq(vm:stat(base .. "/p.bin").perm, tonumber("640", 8))
end)

test("each step's failure names the operation, the step and the guest file", function(t)
  local p = host_file(data)
  local err = tostring(t:assert_raises(function() vm:push_file(p, base .. "/no/dir/x") end))
  t:assert_contains(err, "push_file: opening guest file " .. base .. "/no/dir/x: VM 'stream': ")
  err = tostring(t:assert_raises(function() vm:write_file(base .. "/no/dir/x", data) end))
  t:assert_contains(err, "write_file: opening guest file " .. base .. "/no/dir/x: VM 'stream': ")
  -- opens for writing, refuses the data: the first FD_WRITE fails
  err = tostring(t:assert_raises(function() vm:push_file(p, "/proc/self/status") end))
  t:assert_contains(err, "push_file: writing guest file /proc/self/status: VM 'stream': write: ")
  os.remove(p)
  -- the VM still answers in order afterwards
  t:assert_eq(vm:run("echo ok").stdout, "ok\n")
end)
