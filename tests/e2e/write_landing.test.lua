-- A large write_file, push_file or file:write into a regular file is written
-- by the agent while it arrives (agent/landing.c); anything else takes the
-- ordinary path. Both must give the same files and the same errors.
local vm = provium:vm("landing", "default"):boot()

-- 3 MiB + 5 bytes of varied bytes: three FD_WRITE chunks and a short tail
local function pattern(n)
  local parts, block = {}, {}
  for i = 0, 4095 do block[#block + 1] = string.char((i * 7 + 3) % 256) end
  block = table.concat(block)
  for i = 1, n // 4096 do parts[#parts + 1] = block:sub(i % 17 + 1) .. block:sub(1, i % 17) end
  parts[#parts + 1] = block:sub(1, n % 4096)
  return table.concat(parts)
end
local data = pattern(3 * 1024 * 1024 + 5)

test("a large write_file into tmpfs arrives whole, and replaces a longer file", function(t)
  vm:write_file("/tmp/big.bin", string.rep("x", 4 * 1024 * 1024))
  vm:write_file("/tmp/big.bin", data)
  t:assert_eq(#vm:read_file("/tmp/big.bin"), #data)
  t:assert(vm:read_file("/tmp/big.bin") == data, "content differs")
  -- one frame of 512 KiB (a single WRITE_FILE, not the stream), with a mode
  local half = data:sub(1, 512 * 1024)
  vm:write_file("/tmp/half.bin", half, tonumber("600", 8))
  t:assert(vm:read_file("/tmp/half.bin") == half, "content differs")
  t:assert_eq(vm:run("stat -c %a /tmp/half.bin").stdout, "600\n")
end)

test("a large push_file into tmpfs arrives whole", function(t)
  local host = os.tmpname()
  local f = assert(io.open(host, "wb"))
  f:write(data)
  f:close()
  vm:push_file(host, "/tmp/pushed.bin")
  os.remove(host)
  t:assert(vm:read_file("/tmp/pushed.bin") == data, "content differs")
end)

test("a large file:write lands at the file offset and moves it", function(t)
  vm:write_file("/tmp/off.bin", "head")
  local f = vm:open_file("/tmp/off.bin", {write = true})
  t:assert_eq(f:seek(2), 2)
  local chunk = data:sub(1, 600 * 1024)
  t:assert_eq(f:write(chunk), #chunk)
  t:assert_eq(f:seek(0, "cur"), 2 + #chunk)
  t:assert_eq(f:write("tail"), 4)
  f:close()
  t:assert(vm:read_file("/tmp/off.bin") == "he" .. chunk .. "tail", "content differs")
end)

test("non-regular targets take the ordinary path", function(t)
  vm:write_file("/dev/null", data) -- a device
  vm:run("mkfifo /tmp/fifo")
  local reader = vm:run_async("cat /tmp/fifo > /tmp/from_fifo")
  vm:write_file("/tmp/fifo", data:sub(1, 400 * 1024)) -- a pipe
  reader:wait()
  t:assert(vm:read_file("/tmp/from_fifo") == data:sub(1, 400 * 1024), "content differs")
end)

test("a full tmpfs gives ENOSPC naming the path, and the VM keeps working", function(t)
  vm:run("mkdir -p /mnt/small && mount -t tmpfs -o size=512k tmpfs /mnt/small")
  local err = tostring(t:assert_raises(function() vm:write_file("/mnt/small/f", data:sub(1, 600 * 1024)) end))
  t:assert_contains(err, "/mnt/small/f")
  t:assert_contains(err, "No space left on device")
  err = tostring(t:assert_raises(function() vm:write_file("/mnt/small/g", data) end))
  t:assert_contains(err, "/mnt/small/g")
  t:assert_contains(err, "No space left on device")
  t:assert_eq(vm:run("echo alive").stdout, "alive\n")
  vm:run("rm -f /mnt/small/f /mnt/small/g") -- a failed write leaves what fitted, as write(2) does
  vm:write_file("/mnt/small/h", data:sub(1, 300 * 1024)) -- what fits still lands
  t:assert(vm:read_file("/mnt/small/h") == data:sub(1, 300 * 1024), "content differs")
  vm:run("umount /mnt/small")
end)

test("workers land their own writes", function(t)
  for _, opts in ipairs({{}, {thread = true}}) do
    local w = vm:spawn_worker(opts)
    w:write_file("/tmp/w.bin", data)
    t:assert(vm:read_file("/tmp/w.bin") == data, "content differs")
    local f = w:open_file("/tmp/w2.bin", {write = true, create = true})
    t:assert_eq(f:write(data:sub(1, 700 * 1024)), 700 * 1024)
    f:close()
    t:assert(vm:read_file("/tmp/w2.bin") == data:sub(1, 700 * 1024), "content differs")
    w:kill()
  end
end)

