-- vm:push_file streams a host file in bounded chunks (and vm:write_file a
-- long string): a file far larger than the protocol's frame limit arrives
-- whole, and the provium process's peak memory grows by a small fraction of
-- the file's size, not by the file.
local host_file = require("helpers.host_file")
local vm = provium:vm("stream", "default"):boot()
local MiB = 1024 * 1024

-- resident and peak resident memory of this process (the one running the
-- test file), in bytes
local function memory()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) * 1024, tonumber(s:match("VmHWM:%s*(%d+)")) * 1024
end

-- a host file of size bytes, mostly holes, with a marker at every MiB
local function sparse_file(size)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  for at = 0, size - 1, MiB do
    f:seek("set", at)
    f:write(string.format("%016d", at))
  end
  f:seek("set", size - 1)
  f:write("\n")
  f:close()
  return path
end

-- first, before anything else in this process needs memory
test("a 256 MiB file streams through a buffer of a few MiB", function(t)
  local size = 256 * MiB
  local path = sparse_file(size)
  vm:run("mkfifo /tmp/big.fifo")
  local counter = vm:run_async("wc -c < /tmp/big.fifo")
  local rss_before = memory()
  vm:push_file(path, "/tmp/big.fifo")
  local _, peak = memory()
  os.remove(path)
  local r = counter:wait("60s")
  t:assert_eq(r.stdout:match("%d+"), tostring(size), "the guest received every byte")
  local growth = peak - rss_before
  t:log(string.format("peak RSS growth %.1f MiB for a %d MiB file (%.3f of its size)", growth / MiB, size // MiB,
                      growth / size))
  -- a whole copy of the file would be size; the bound is a ratio, far below it
  t:assert(growth < size / 16, string.format("peak RSS grew by %.1f MiB", growth / MiB))
end)

-- content several chunks long, not a multiple of the chunk, with bytes that
-- differ from chunk to chunk
local function patterned(size)
  local parts, n = {}, 0
  local i = 0
  while n < size do
    local piece = string.format("%09d:", i) .. string.rep(string.char(i % 251), 247)
    parts[#parts + 1] = piece
    n = n + #piece
    i = i + 1
  end
  return table.concat(parts):sub(1, size)
end

test("a file of several chunks arrives byte for byte, with its permission", function(t)
  local data = patterned(3 * MiB + 12345)
  local path = host_file(data)
  vm:push_file(path, "/tmp/multi.bin", {perm = tonumber("600", 8)})
  os.remove(path)
  t:assert_eq(vm:stat("/tmp/multi.bin").size, #data)
  t:assert_eq(vm:stat("/tmp/multi.bin").perm, tonumber("600", 8))
  t:assert(vm:read_file("/tmp/multi.bin") == data, "the guest file differs from the host file")
  -- pushed again over a longer file: truncated first
  vm:write_file("/tmp/multi.bin", data .. data)
  local path2 = host_file(data)
  vm:push_file(path2, "/tmp/multi.bin")
  os.remove(path2)
  t:assert_eq(vm:stat("/tmp/multi.bin").size, #data)
end)

test("a chunked push that fails names the guest file and the cause, and closes its descriptor", function(t)
  local data = patterned(3 * MiB)
  local path = host_file(data)
  local fds = function() return vm:run("ls /proc/$PPID/fd | wc -l").stdout end
  local before = fds()
  local err = tostring(t:assert_raises(function() vm:push_file(path, "/nonexistent/dir/x.bin") end))
  t:assert_contains(err, "push_file: opening guest file /nonexistent/dir/x.bin: VM 'stream': ")
  t:assert_contains(err, "No such file or directory")
  -- a file system that fills up after the first chunk
  vm:run("mkdir -p /tmp/small && mount -t tmpfs -o size=1m tmpfs /tmp/small")
  err = tostring(t:assert_raises(function() vm:push_file(path, "/tmp/small/x.bin") end))
  os.remove(path)
  t:assert_contains(err, "push_file: writing guest file /tmp/small/x.bin: VM 'stream': ")
  t:assert_contains(err, "No space left on device")
  -- write_file streams a long string the same way
  err = tostring(t:assert_raises(function() vm:write_file("/tmp/small/y.bin", data) end))
  t:assert_contains(err, "write_file: writing guest file /tmp/small/y.bin: VM 'stream': ")
  t:assert_contains(err, "No space left on device")
  t:assert_eq(fds(), before, "the agent's descriptor count")
  vm:run("umount /tmp/small")
end)

test("a 16 MiB write_file (streamed) and read_file arrive whole and leave no buffers of their size behind", function(t)
  local data = patterned(16 * MiB)
  collectgarbage()
  local before = memory()
  vm:write_file("/tmp/sixteen.bin", data)
  local back = vm:read_file("/tmp/sixteen.bin")
  t:assert(back == data, "read_file returned other bytes")
  back = nil
  collectgarbage()
  local after = memory()
  t:log(string.format("RSS after the transfers: %+.1f MiB", (after - before) / MiB))
  -- before the buffers were given back, two copies' worth stayed (the request
  -- and the receive buffer); the C heap may keep part of one freed copy
  t:assert(after - before < 0.75 * #data, string.format("RSS grew by %.1f MiB", (after - before) / MiB))
  vm:unlink("/tmp/sixteen.bin")
end)

test("a worker streams on its own channels (fork and thread)", function(t)
  local data = patterned(3 * MiB + 7)
  local path = host_file(data)
  for _, thread in ipairs({false, true}) do
    local w = vm:spawn_worker({thread = thread})
    w:write_file("/tmp/worker-w.bin", data)
    w:push_file(path, "/tmp/worker-p.bin")
    t:assert(vm:read_file("/tmp/worker-w.bin") == data, "write_file through the worker")
    t:assert(vm:read_file("/tmp/worker-p.bin") == data, "push_file through the worker")
  end
  os.remove(path)
end)
