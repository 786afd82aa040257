-- Agent operations: files, handles, syscalls, streams of bytes, batches.
-- The same suite runs against a real VM (ops.test.lua) and against the agent
-- as a host process (ops_local.test.lua); paths live under `base`, which is
-- /tmp in a VM and the agent's private scratch directory on the host.
return function(profile)
local vm = provium:vm("ops", profile):boot()
local is_local = profile == "local"
local base = is_local and vm:run("pwd").stdout:gsub("\n$", "") or "/tmp"

test("stat, listdir, mkdir, rename, unlink", function(t)
  vm:mkdir(base .. "/a/b/c", {parents = true, perm = tonumber("750", 8)})
  local st = vm:stat(base .. "/a/b/c")
  t:assert_eq(st.entry_type, "directory")
  t:assert_eq(st.perm, tonumber("750", 8))
  vm:write_file(base .. "/a/f", "12345")
  st = vm:stat(base .. "/a/f")
  t:assert_eq(st.size, 5)
  t:assert_eq(st.entry_type, "file")
  t:assert(st.mtime_ns > 1000000000 * 1000000, "mtime_ns looks wrong: " .. st.mtime_ns)
  local names = {}
  for _, e in ipairs(vm:listdir(base .. "/a")) do names[e.name] = e.entry_type end
  t:assert_eq(names.b, "directory")
  t:assert_eq(names.f, "file")
  vm:rename(base .. "/a/f", base .. "/a/g")
  t:assert_eq(vm:read_file(base .. "/a/g"), "12345")
  vm:unlink(base .. "/a/g")
  local err = select(2, pcall(vm.stat, vm, base .. "/a/g"))
  t:assert(tostring(err):find("No such file", 1, true), "stat of removed file: " .. tostring(err))
  vm:unlink(base .. "/a/b/c") -- empty directory
end)

test("large files round-trip byte for byte; files of unknown size; the transfer limit", function(t)
  -- 16 MiB of varied bytes: read_file reads into the reply frame in pieces
  local piece = {}
  for i = 0, 255 do piece[#piece + 1] = string.char(i, (i * 7) % 256) end
  local big = string.rep(table.concat(piece), 32768) -- 16 MiB
  vm:write_file(base .. "/big", big)
  t:assert_eq(vm:stat(base .. "/big").size, #big)
  local back = vm:read_file(base .. "/big")
  t:assert_eq(#back, #big)
  t:assert(back == big, "16 MiB read back differ from what was written")
  -- a shorter rewrite truncates
  vm:write_file(base .. "/big", "short")
  t:assert_eq(vm:read_file(base .. "/big"), "short")
  -- /proc reports size 0: read until EOF, past the first 64 KiB piece
  local maps = vm:run("cat /proc/self/mounts /proc/self/mounts /proc/self/mounts").stdout
  t:assert(#maps > 0, "no mounts")
  t:assert_eq(#vm:read_file("/proc/self/mounts") * 3, #maps)
  -- at the limit and one byte past it
  local limit = 32 * 1024 * 1024 - 4096
  vm:run({args = {"truncate", "-s", tostring(limit), base .. "/edge"}})
  t:assert_eq(#vm:read_file(base .. "/edge"), limit)
  vm:run({args = {"truncate", "-s", tostring(limit + 1), base .. "/edge"}})
  local e = t:assert_raises(vm.read_file, vm, base .. "/edge")
  t:assert_contains(e, "larger than the " .. limit .. " byte transfer limit")
  t:assert_contains(e, "open_file")
  vm:unlink(base .. "/edge")
  vm:unlink(base .. "/big")
end)

test("file handles", function(t)
  local f = vm:open_file(base .. "/h", {write = true, create = true, truncate = true})
  t:assert_eq(f:write("hello world"), 11)
  f:close()
  f:close() -- idempotent
  t:assert(not pcall(f.write, f, "x"), "write after close must fail")
  local r = vm:open_file(base .. "/h", {read = true})
  t:assert_eq(r:read(5), "hello")
  t:assert_eq(r:tell(), 5)
  r:seek(-5, "end")
  t:assert_eq(r:read_all(), "world")
  t:assert_eq(r:read(10), "")
  t:assert_eq(vm:open_file_count(), 1)
  r:close()
  t:assert_eq(vm:open_file_count(), 0)
  local ok, e = pcall(vm.open_file, vm, base .. "/h", {})
  t:assert(not ok and e:find("read=true", 1, true), "empty mode must explain: " .. tostring(e))
end)

test("raw syscalls", function(t)
  local pid = vm:syscall(39)
  t:assert(pid.ret > 1, "getpid")
  t:assert_eq(pid.errno, 0)
  -- openat(AT_FDCWD, path, O_RDONLY) with a string argument, then read(2) into a buffer
  local fd = vm:syscall(257, -100, "/proc/version", 0).ret
  t:assert(fd >= 0, "openat failed")
  local r = vm:syscall(0, {args = {fd, 0, 64}, bufs = {string.rep("\0", 64)}, ptrs = {1}})
  t:assert(r.ret > 0, "read returned " .. r.ret)
  t:assert_eq(r.out_bufs[1]:sub(1, 13), "Linux version")
  vm:syscall(3, fd)
  local bad = vm:syscall(3, 9999)
  t:assert_eq(bad.ret, -1)
  t:assert_eq(bad.errno, 9) -- EBADF
end)

test("ioctl with a nested pointer", function(t)
  -- FIONREAD on a pipe: data is an int the kernel writes back
  local p = vm:syscall(22, {bufs = {string.rep("\0", 8)}, ptrs = {0}}) -- pipe(int[2])
  local rfd, wfd = string.unpack("<i4i4", p.out_bufs[1])
  vm:syscall(1, wfd, "abc", 3) -- write(wfd, "abc\0", 3)
  local r = vm:ioctl(rfd, 0x541B, string.rep("\0", 4))
  t:assert_eq(r.ret, 0)
  t:assert_eq(string.unpack("<i4", r.out_data), 3)
  -- struct iovec {ptr, len} for readv(rfd, &iov, 1): a buffer holding another buffer's address
  local rv = vm:syscall(19, {args = {rfd, 0, 1}, bufs = {provium:pack("<I8I8", 0, 3), "xxx"}, ptrs = {1},
    nested = {{buf = 1, offset = 0, target = 2}}})
  t:assert_eq(rv.ret, 3)
  t:assert_eq(rv.out_bufs[2], "abc")
end)

test("clock", function(t)
  if is_local then t:skip("the local profile would set the host's clock") end
  local c = vm:clock()
  c:set(1700000000)
  t:assert(math.abs(c:get() - 1700000000) < 5, "clock:set")
  local before = c:get_ns()
  c:advance(3600)
  t:assert(c:get_ns() - before >= 3600 * 1000000000, "clock:advance")
  t:assert(not pcall(c.set, c, 0 / 0), "NaN must be rejected")
  t:assert(not pcall(c.advance, c, math.huge), "inf must be rejected")
  t:assert_eq(vm:run("date -u +%Y"):assert_ok().stdout, "2023\n")
end)

test("pack helpers", function(t)
  t:assert_eq(provium:pack("<I4", 1), "\1\0\0\0")
  t:assert_eq(provium.pack("u16 u32be bytes", 1, 2, "xy"), "\1\0\0\0\0\2xy")
  local a, b, rest = provium.unpack("u8 u16 bytes", "\7\1\2tail")
  t:assert_eq(a, 7)
  t:assert_eq(b, 0x0201)
  t:assert_eq(rest, "tail")
end)

test("exec options", function(t)
  local r = vm:run("echo", {"a b", "c"})
  t:assert_eq(r.stdout, "a b c\n")
  r = vm:run({args = {"/bin/sh", "-c", "echo $FOO; pwd; cat"}, env = {FOO = "bar"}, cwd = base, stdin = "in"})
  t:assert_eq(r.stdout, "bar\n" .. base .. "\nin")
  r = vm:run("sleep 5", {timeout = "300ms"})
  t:assert_eq(r.status, "timed_out")
  t:assert_eq(r.exit_code, -2)
  t:assert(r.timed_out)
  r = vm:run("kill -9 $$")
  t:assert_eq(r.status, "signalled")
  t:assert_eq(r.signal, 9)
  local ok, e = pcall(r.assert_ok, r)
  t:assert(not ok and e:find("SIGKILL", 1, true), "assert_ok names the signal: " .. tostring(e))
  ok, e = pcall(vm.run, vm, "/no/such/program", {"arg"})
  t:assert(not ok and tostring(e):find("No such file", 1, true), tostring(e))
  -- the shell form reports a missing program the way sh does
  t:assert_eq(vm:run("/no/such/program").exit_code, 127)
end)

test("batch: many operations, one round trip, failures isolated", function(t)
  local results = vm:batch(function(b)
    b:write_file(base .. "/ba", "1")
    b:write_file(base .. "/bb", "2")
    b:read_file(base .. "/ba")
    b:stat(base .. "/missing")
    b:syscall(39)
    b:mkdir(base .. "/bdir")
    b:listdir(base .. "/bdir")
  end)
  t:assert_eq(#results, 7)
  t:assert_eq(results[1].err, nil)
  t:assert_eq(results[3].ok, "1")
  t:assert(results[4].err:find("No such file", 1, true), results[4].err)
  t:assert(results[5].ok.ret > 1, "getpid in batch")
  t:assert_eq(#results[7].ok, 0)
  t:assert_eq(vm:read_file(base .. "/bb"), "2")
  local many = vm:batch(function(b) for i = 1, 1000 do b:syscall(39) end end)
  t:assert_eq(#many, 1000)
  t:assert_eq(many[1000].ok.ret, many[1].ok.ret)
end)

test("argument forms mix positional args and options; /sbin is on PATH", function(t)
  t:assert_eq(vm:run("echo", {args = {"hi"}}).stdout, "hi\n")
  t:assert_eq(vm:run("pwd", {cwd = base}).stdout, base .. "\n")
  t:assert_eq(vm:run("ls", {"-d", ".", cwd = "/proc"}).stdout, ".\n")
  t:assert_eq(vm:run("sh", {"-c", "echo $X"}, {env = {X = "y"}}).stdout, "y\n")
  if not is_local then
    vm:run("lsmod", {args = {}}):assert_ok() -- /sbin/lsmod, found without a shell
  end
  local r = vm:run("false")
  local ok, e = pcall(r.assert_ok, r, "setting up")
  t:assert(not ok and e:find("setting up: command failed: exited with status 1", 1, true), tostring(e))
end)

test("argument errors name what is wrong and what to use instead", function(t)
  vm:write_file(base .. "/w", "0123456789")
  local f = vm:open_file(base .. "/w", {read = true})
  t:assert_contains(t:assert_raises(f.seek, f, 0, "middle"), 'whence must be "set", "cur" or "end", not "middle"')
  t:assert_eq(f:seek(2, "cur"), 2)
  f:close()
  t:assert_contains(t:assert_raises(vm.syscall, vm, "getpid"), "syscall number nr must be an integer, not string")
  -- vm:run() with nothing to run is an error, not a run of something else
  t:assert_contains(t:assert_raises(function() vm:run() end), "expected a command string or a table, got nil")
  -- a sparse file past the transfer limit: read_file points at the handle and tail forms
  vm:run("truncate -s 40M " .. base .. "/big || dd if=/dev/zero of=" .. base .. "/big bs=1 count=0 seek=40M")
  local e = t:assert_raises(vm.read_file, vm, base .. "/big")
  t:assert_contains(e, "transfer limit")
  t:assert_contains(e, "vm:open_file")
  t:assert_contains(e, "vm:tail_file")
  vm:unlink(base .. "/big")
end)

test("binary output survives into reports", function(t)
  t:log("bytes: \255\254 and more")
end)
end
