-- The fault matrix at the Lua boundary (issue 17): hostile calls from a test
-- must end in a clear Lua error, never a crash of the test process, a hang or
-- a lost report. Runs against the local profile, so it needs no boot.
-- Items that need a real VM are in faults_vm.test.lua; the report and exit
-- status ones in tests/cli/faults.sh.
local vm = provium:vm("faults", "local"):boot()
local base = vm:run("pwd").stdout:gsub("\n$", "")

test("getmetatable() hides __gc; a freed VM refuses use instead of crashing", function(t)
  local mt = getmetatable(vm)
  t:assert_eq(mt.__name, "VM")
  t:assert_eq(mt.__gc, nil, "__gc is reachable through getmetatable")
  t:assert_eq(mt.__index, nil, "methods are replaceable through getmetatable")
  -- debug.getmetatable still reaches the real one: __gc must be idempotent
  -- and every method must see the freed object
  local v2 = provium:vm("gc-victim", "local"):boot()
  local real = debug.getmetatable(v2)
  real.__gc(v2)
  real.__gc(v2)
  t:assert_contains(t:assert_raises(v2.state, v2), "already freed")
  t:assert_contains(t:assert_raises(v2.run, v2, "true"), "already freed")
  t:assert_contains(t:assert_raises(v2.read_file, v2, "/etc/hostname"), "already freed")
  -- a worker outlives its VM's explicit __gc, and a worker's own __gc
  -- leaves nothing behind that a later free of the VM could reach
  -- (both found by tests/fuzz/lua_api.test.lua)
  local v3 = provium:vm("gc-owner", "local"):boot()
  local w, w2 = v3:spawn_worker(), v3:spawn_worker()
  debug.getmetatable(w2).__gc(w2)
  debug.getmetatable(v3).__gc(v3)
  t:assert_contains(t:assert_raises(w.pid, w), "already freed")
  t:assert_contains(t:assert_raises(w.console_log, w), "already freed")
  t:assert_contains(t:assert_raises(w2.stat, w2, "/"), "already freed")
  t:assert_eq(tostring(w):match("^Worker") ~= nil, true)
end)

test("__gc twice on processes, streams, batches and files is harmless", function(t)
  local p = vm:run_async("sleep 5")
  local mt = debug.getmetatable(p)
  t:assert_eq(getmetatable(p).__gc, nil)
  vm:write_file(base .. "/tailed", "")
  local s = vm:tail_file(base .. "/tailed")
  local f = vm:open_file(base .. "/opened", {write = true, create = true})
  for _, o in ipairs({s, f}) do
    debug.getmetatable(o).__gc(o)
    debug.getmetatable(o).__gc(o)
  end
  t:assert_contains(t:assert_raises(s.next, s, 1), "already freed")
  p:kill()
  mt.__gc(p)
  mt.__gc(p)
  t:assert_contains(t:assert_raises(p.wait, p, 1), "already freed")
  vm:batch(function(b)
    local bmt = debug.getmetatable(b)
    t:assert_eq(getmetatable(b).__gc, nil)
    bmt.__gc(b)
    bmt.__gc(b)
    t:assert_raises(b.stat, b, "/")
  end)
end)

test("NUL bytes in logs, names and failure messages reach the report", function(t)
  t:log("a\0b")
  t:log(vm:read_file("/proc/self/cmdline"))
  -- the report of this file is checked by tests/cli/faults.sh; a NUL here
  -- used to make the whole file 'exit with status 0 without a report'
end)

test("name with a NUL\0inside", function(t) t:log("x\0y") end)

test("push_file refuses devices and FIFOs at once, saying what they are", {timeout = 20}, function(t)
  local err = t:assert_raises(vm.push_file, vm, "/dev/zero", base .. "/z")
  t:assert_contains(err, "/dev/zero: it is a character device, not a regular file")
  local fifo = os.tmpname()
  os.remove(fifo)
  t:assert(os.execute("mkfifo " .. fifo), "mkfifo")
  local t0 = os.time()
  err = t:assert_raises(vm.push_file, vm, fifo, base .. "/f")
  os.remove(fifo)
  t:assert_contains(err, "it is a FIFO, not a regular file")
  t:assert(os.time() - t0 <= 2, "push_file of a FIFO waited for a writer")
  err = t:assert_raises(vm.push_file, vm, "/tmp", base .. "/d")
  t:assert_contains(err, "it is a directory, not a regular file")
end)

test("output over the 12 MiB cap is marked truncated, never cut in silence", {timeout = 60}, function(t)
  local r = vm:run("head -c 13000000 /dev/zero; echo tail >&2")
  t:assert_eq(#r.stdout, 12 * 1024 * 1024)
  t:assert_eq(r.truncated, true)
  t:assert_eq(r.stdout_truncated, true)
  t:assert_eq(r.stderr_truncated, nil)
  t:assert_eq(r.status, "exited")
  local small = vm:run("echo hi")
  t:assert_eq(small.truncated, false)
  local failed = vm:run("head -c 13000000 /dev/zero; exit 4")
  local err = t:assert_raises(failed.assert_ok, failed)
  t:assert_contains(err, "output cut: stdout went over the 12 MiB kept per stream")
end)

test("a NUL byte inside a path, program, cwd or env string is refused, not cut", function(t)
  local p = base .. "/a\0b"
  local calls = {
    {"write_file", function() vm:write_file(p, "x") end},
    {"read_file", function() vm:read_file(p) end},
    {"stat", function() vm:stat(p) end},
    {"mkdir", function() vm:mkdir(p) end},
    {"unlink", function() vm:unlink(p) end},
    {"rename", function() vm:rename(base .. "/x", p) end},
    {"open_file", function() vm:open_file(p, {read = true}) end},
    {"tail_file", function() vm:tail_file(p) end},
    {"push_file", function() vm:push_file("/etc/hostname", p) end},
    {"program", function() vm:run("/bin/ec\0ho", {"hi"}) end},
    {"argument", function() vm:run("/bin/echo", {"a\0b"}) end},
    {"cwd", function() vm:run("true", {cwd = "/tm\0p"}) end},
    {"env key", function() vm:run("true", {env = {["A\0B"] = "1"}}) end},
    {"env value", function() vm:run("true", {env = {A = "1\0 2"}}) end},
    {"batch", function() vm:batch(function(b) b:stat(p) end) end},
  }
  for _, c in ipairs(calls) do
    local err = t:assert_raises(c[2])
    t:assert_contains(err, "contains a NUL byte", c[1])
  end
  t:assert(not vm:run("test -e " .. base .. "/a"):ok(), "write_file wrote the cut path")
  t:assert_contains(t:assert_raises(function() vm:run("true", {env = {["A=B"] = "1"}}) end), "contains '='")
  t:assert_contains(t:assert_raises(function() vm:run("true", {env = {[""] = "1"}}) end), "is empty")
  t:assert_contains(t:assert_raises(function()
    provium:vm("nulfiles", "default", {files = {{path = "/etc/a\0b", content = ""}}})
  end), "files: path contains a NUL byte")
  t:assert_contains(t:assert_raises(function() provium:vm_fixture("tiny\0x") end), "fixture name contains a NUL byte")
end)

test("unknown option keys are refused with the nearest known one; option types are checked", function(t)
  local function raises(fn, text) t:assert_contains(t:assert_raises(fn), text) end
  raises(function() vm:run("sleep 3", {timout = 1}) end, "vm:run: unknown option 'timout' (did you mean 'timeout'?)")
  raises(function() vm:run_async("true", {evn = {}}) end, "unknown option 'evn' (did you mean 'env'?)")
  raises(function() vm:run("true", {env = "x"}) end, "env must be a table")
  raises(function() vm:run("true", {env_clear = "yes"}) end, "env_clear must be a boolean")
  raises(function() vm:mkdir(base .. "/m", {parent = true}) end, "did you mean 'parents'")
  raises(function() vm:push_file("/etc/hostname", base .. "/h", {prem = 420}) end, "did you mean 'perm'")
  raises(function() vm:tail_file(base, {strat = "end"}) end, "did you mean 'start'")
  raises(function() vm:spawn_worker{thread = "yes"} end, "thread must be a boolean")
  raises(function() vm:fd_stream(2 ^ 40 // 1) end, "out of range")
  raises(function() vm:fd_stream(-1) end, "out of range")
  raises(function() vm:tail_file(base) end, "Is a directory")
  raises(function() wait_until(function() end, {timeout = -1}) end, "timeout must be a finite duration")
  raises(function() wait_until(function() end, {interval = -0.1}) end, "interval must be a finite duration > 0")
  raises(function() wait_until(function() end, {interval = 0}) end, "interval must be a finite duration > 0")
  raises(function() wait_until(function() end, {timeot = 1}) end, "unknown option 'timeot'")
  -- the array form still takes its arguments as array items
  t:assert_eq(vm:run("/bin/echo", {"a", "b"}).stdout, "a b\n")
  t:assert_eq(vm:run("/bin/echo", {"c", timeout = 5}).stdout, "c\n")
end)

test("smaller cases: parallel + plain yield, syscall_async on a VM, clock overflow, absolute fixture", function(t)
  -- a plain coroutine.yield in a parallel task only lets the others run
  local order = {}
  provium:parallel(function()
    order[#order + 1] = "a1"; coroutine.yield(); order[#order + 1] = "a2"
  end, function()
    order[#order + 1] = "b1"; coroutine.yield(42); coroutine.yield({}); order[#order + 1] = "b2"
  end)
  t:assert_eq(table.concat(order, ","), "a1,b1,a2,b2")
  t:assert_contains(t:assert_raises(vm.syscall_async, vm, 39), "syscall_async runs on a worker")
  -- refused before anything reaches the agent (which here is the host)
  local c = vm:clock()
  t:assert_contains(t:assert_raises(c.set, c, 1e30), "past the year 2262")
  t:assert_contains(t:assert_raises(c.advance, c, -1e30), "does not fit in 64-bit nanoseconds")
  t:assert_contains(t:assert_raises(function() provium:vm_fixture("/abs") end), "not by an absolute path")
  local err = t:assert_raises(function() provium:vm_fixture("nosuch") end)
  t:assert_contains(err, "/nosuch.fixture.lua")
end)

test("a failed snapshot never removes a directory that existed before it", function(t)
  -- found by tests/fuzz/lua_api.test.lua: vm:snapshot(".") on the local
  -- profile failed and then removed its target, the project root. (This
  -- test uses a directory of its own: if the fix breaks, only that goes.)
  local vm = provium:vm("snapper", "local"):boot()
  local base = vm:run("pwd").stdout:gsub("\n$", "")
  local keep = base .. "/keep"
  vm:mkdir(keep)
  vm:write_file(keep .. "/precious", "data")
  t:assert_contains(t:assert_raises(vm.snapshot, vm, keep), "already exists and is not an empty directory")
  t:assert_eq(vm:read_file(keep .. "/precious"), "data")
  -- an empty directory is accepted as the target and stays after a failure
  vm:mkdir(base .. "/empty")
  t:assert_contains(t:assert_raises(vm.snapshot, vm, base .. "/empty"), "needs a real VM")
  t:assert_eq(vm:stat(base .. "/empty").entry_type, "directory")
end)
