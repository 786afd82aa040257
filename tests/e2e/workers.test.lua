-- Workers (issue 7): more agents in one guest, each with its own channel,
-- PID/TID and credentials; fork and thread modes.
local vm = provium:vm("workers", "default"):boot()

local SYS_read, SYS_write, SYS_close, SYS_pipe, SYS_dup2 = 0, 1, 3, 22, 33
local SYS_getpid, SYS_exit, SYS_fcntl, SYS_getuid, SYS_setresuid, SYS_gettid = 39, 60, 72, 102, 117, 186
local F_GETFD, EBADF = 1, 9

-- PIDs of guest processes running the agent binary, and the agent's threads.
local function agent_pids()
  local r = vm:run("for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = provium-agent ] && echo ${p#/proc/}; done")
  local pids = {}
  for p in r.stdout:gmatch("%d+") do pids[#pids + 1] = tonumber(p) end
  return pids
end

local function agent_threads()
  local main = vm:syscall(SYS_getpid).ret
  local n = 0
  for _ in pairs(vm:listdir("/proc/" .. main .. "/task")) do n = n + 1 end
  return n
end

-- seed 002, classic dialect: parent and worker echo independently
test("classic: parent and worker echo independently", function(t)
  local cvm = provium.create("default")
  local worker = cvm:spawn()
  local r1 = cvm:exec("echo parent")
  local r2 = worker:exec("echo child")
  assert_contains(r1.stdout.value, "parent")
  assert_contains(r2.stdout.value, "child")
  t:assert(r2.ok)
  -- classic results: integer syscalls
  t:assert_eq(math.type(worker:syscall(SYS_getpid)), "integer")
  worker:kill()
  cvm:shutdown()
end)

-- seed 002: three workers, three PIDs
test("three workers have distinct PIDs", function(t)
  local w1, w2, w3 = vm:spawn_worker(), vm:spawn_worker(), vm:spawn_worker()
  local p1, p2, p3 = w1:syscall(SYS_getpid).ret, w2:syscall(SYS_getpid).ret, w3:syscall(SYS_getpid).ret
  local parent = vm:syscall(SYS_getpid).ret
  t:assert(p1 ~= p2 and p2 ~= p3 and p1 ~= p3, "pids " .. p1 .. " " .. p2 .. " " .. p3)
  t:assert(p1 ~= parent and p2 ~= parent and p3 ~= parent)
  t:assert_eq(w1:pid(), p1)
  t:assert_eq(w3:pid(), p3)
  w1:kill(); w2:kill(); w3:kill()
end)

-- seed 002: a killed worker is gone, and says so by name
test("a killed worker is cleaned up and later calls name it", function(t)
  local w = vm:spawn_worker()
  local pid = w:pid()
  local proc = w:run_async("sleep 1000")
  t:assert(vm:stat("/proc/" .. pid) ~= nil)
  w:kill()
  t:assert(not w:alive())
  t:assert(w:join(5))
  local err = t:assert_raises(function() w:run("true") end)
  t:assert_contains(tostring(err), "worker " .. w:id())
  t:assert_contains(tostring(err), "was killed")
  -- neither the worker nor the command it started survives
  wait_until(function()
    return not vm:run("test -e /proc/" .. pid):ok() and not vm:run("test -e /proc/" .. proc:pid()):ok()
  end, {timeout = 5, desc = "worker and its command gone"})
  w:kill() -- idempotent
  w:close()
end)

test("fork mode: credentials are the worker's own", function(t)
  local w = vm:spawn_worker()
  local r = w:syscall(SYS_setresuid, 1000, 1000, 1000)
  t:assert_eq(r.ret, 0)
  t:assert_eq(w:syscall(SYS_getuid).ret, 1000)
  t:assert_eq(vm:syscall(SYS_getuid).ret, 0)
  t:assert_eq(w:run("id -u").stdout, "1000\n")
  t:assert_eq(vm:run("id -u").stdout, "0\n")
  -- file operations run with the worker's identity too
  vm:write_file("/tmp/rootonly", "secret", tonumber("600", 8))
  t:assert_raises(function() w:read_file("/tmp/rootonly") end)
  t:assert_eq(vm:read_file("/tmp/rootonly"), "secret")
  w:kill()
end)

test("thread mode: credentials are per thread", function(t)
  local w = vm:spawn_worker({thread = true})
  t:assert(w:is_thread())
  local main = vm:syscall(SYS_getpid).ret
  -- same process, another thread
  t:assert_eq(w:syscall(SYS_getpid).ret, main)
  t:assert_eq(w:syscall(SYS_gettid).ret, w:pid())
  t:assert_neq(w:pid(), main)
  t:assert_eq(w:syscall(SYS_setresuid, 1000, 1000, 1000).ret, 0)
  t:assert_eq(w:syscall(SYS_getuid).ret, 1000)
  t:assert_eq(vm:syscall(SYS_getuid).ret, 0)
  local status = vm:read_file("/proc/" .. main .. "/task/" .. w:pid() .. "/status")
  t:assert_contains(status, "Uid:\t1000\t1000\t1000")
  t:assert_contains(vm:read_file("/proc/" .. main .. "/task/" .. main .. "/status"), "Uid:\t0\t0\t0")
  -- commands started by a thread worker carry its credentials
  t:assert_eq(w:run("id -u").stdout, "1000\n")
  t:assert_eq(vm:run("id -u").stdout, "0\n")
  -- what a thread worker does not offer is refused clearly
  local err = t:assert_raises(function() w:run_async("true") end)
  t:assert_contains(tostring(err), "thread worker")
  w:kill()
end)

test("thread mode shares the fd table; fork mode does not", function(t)
  local tw = vm:spawn_worker({thread = true})
  local fd = tw:syscall(2, "/tmp/shared-thread", 66, tonumber("644", 8)).ret -- open(O_CREAT|O_RDWR)
  t:assert(fd >= 0)
  t:assert_eq(tw:syscall(SYS_dup2, fd, 777).ret, 777)
  -- the parent uses the worker's descriptor by number
  t:assert(vm:syscall(SYS_fcntl, 777, F_GETFD).ret >= 0)
  t:assert_eq(vm:syscall(SYS_write, 777, "via parent", 10).ret, 10)
  t:assert_eq(vm:read_file("/tmp/shared-thread"), "via parent")
  vm:syscall(SYS_close, 777)
  tw:syscall(SYS_close, fd)
  tw:kill()

  local fw = vm:spawn_worker()
  fd = fw:syscall(2, "/tmp/shared-fork", 66, tonumber("644", 8)).ret
  t:assert_eq(fw:syscall(SYS_dup2, fd, 778).ret, 778)
  t:assert_eq(fw:syscall(SYS_fcntl, 778, F_GETFD).ret >= 0, true)
  local r = vm:syscall(SYS_fcntl, 778, F_GETFD)
  t:assert_eq(r.ret, -1)
  t:assert_eq(r.errno, EBADF)
  fw:kill()
end)

test("concurrency: a worker blocked on an empty FIFO, another writes", function(t)
  vm:run("rm -f /tmp/wfifo; mkfifo /tmp/wfifo"):assert_ok()
  local a, b = vm:spawn_worker(), vm:spawn_worker()
  local rfd = a:syscall(2, "/tmp/wfifo", 2 | 2048).ret -- O_RDWR|O_NONBLOCK: open never blocks
  t:assert(rfd >= 0)
  t:assert_eq(a:syscall(SYS_fcntl, rfd, 4, 2).ret, 0) -- F_SETFL O_RDWR: now reads block
  local h = a:syscall_async(SYS_read, rfd, string.rep("\0", 15), 15)
  -- A is blocked in read(2); everyone else carries on
  t:assert_eq(vm:run("echo parent alive").stdout, "parent alive\n")
  t:assert(not h:done(), "the read must still be blocked")
  local wfd = b:syscall(2, "/tmp/wfifo", 1).ret -- O_WRONLY
  t:assert(wfd >= 0)
  t:assert_eq(b:syscall(SYS_write, wfd, "ping", 4).ret, 4)
  local r = h:await(10)
  t:assert_eq(r.ret, 4)
  t:assert_eq(r.out_bufs[1]:sub(1, 4), "ping")
  -- A serves requests again
  t:assert_eq(a:syscall(SYS_getpid).ret, a:pid())
  a:kill(); b:kill()
end)

test("concurrency in thread mode: blocked pipe read, parent writes", function(t)
  local a = vm:spawn_worker({thread = true})
  local r = a:syscall(SYS_pipe, string.rep("\0", 8))
  t:assert_eq(r.ret, 0)
  local rfd, wfd = string.unpack("<i4i4", r.out_bufs[1])
  local h = a:syscall_async(SYS_read, rfd, string.rep("\0", 15), 15)
  t:assert_eq(vm:syscall(SYS_getuid).ret, 0) -- the agent's main loop is not blocked
  t:assert(not h:done())
  t:assert_eq(vm:syscall(SYS_write, wfd, "pong", 4).ret, 4) -- shared fd table
  local res = h:await(10)
  t:assert_eq(res.ret, 4)
  t:assert_eq(res.out_bufs[1]:sub(1, 4), "pong")
  vm:syscall(SYS_close, rfd)
  vm:syscall(SYS_close, wfd)
  a:kill()
end)

test("killing a worker blocked in a system call", function(t)
  for _, opts in ipairs({{}, {thread = true}}) do
    local a = vm:spawn_worker(opts)
    local r = a:syscall(SYS_pipe, string.rep("\0", 8))
    local rfd, wfd = string.unpack("<i4i4", r.out_bufs[1])
    local h = a:syscall_async(SYS_read, rfd, string.rep("\0", 15), 15)
    t:assert(not h:done())
    a:kill() -- wakes the call (EINTR), the worker sees EOF and exits
    local err = t:assert_raises(function() h:await(5) end)
    t:assert_contains(tostring(err), "worker " .. a:id())
    if opts.thread then
      vm:syscall(SYS_close, rfd)
      vm:syscall(SYS_close, wfd)
    end
  end
end)

test("a worker that dies is reported by name", function(t)
  local w = vm:spawn_worker()
  local h = w:syscall_async(SYS_exit, 3)
  local err = t:assert_raises(function() h:await(10) end)
  t:assert_contains(tostring(err), "worker " .. w:id())
  t:assert_contains(tostring(err), "exited")
  err = t:assert_raises(function() w:syscall(SYS_getpid) end)
  t:assert_contains(tostring(err), "worker " .. w:id())
  t:assert(w:join(5))
end)

test("worker surface: files, handles, batch, streams, clock", function(t)
  local w = vm:spawn_worker()
  w:write_file("/tmp/wsurf", "abc")
  t:assert_eq(vm:read_file("/tmp/wsurf"), "abc")
  t:assert_eq(w:stat("/tmp/wsurf").size, 3)
  local f = w:open_file("/tmp/wsurf", {read = true})
  t:assert_eq(f:read(3), "abc")
  f:close()
  local res = w:batch(function(b) b:read_file("/tmp/wsurf"); b:syscall(SYS_getpid) end)
  t:assert_eq(res[1].ok, "abc")
  t:assert_eq(res[2].ok.ret, w:pid())
  local p = w:run_async("echo out; sleep 0.2; echo more")
  t:assert_eq(p:wait(10).exit_code, 0)
  local tail = w:tail_file("/tmp/wsurf", {start = "beginning"})
  t:assert_eq(tail:next(5), "abc")
  tail:close()
  t:assert(w:clock():get() > 0)
  -- VM lifecycle is not a worker's business
  t:assert_contains(tostring(t:assert_raises(function() w:shutdown() end)), "VM operation")
  w:kill()
end)

test("workers left alive are cleaned up at scope end", function(t)
  vm:spawn_worker()
  vm:spawn_worker({thread = true})
  local w = vm:spawn_worker()
  w:run_async("sleep 1000")
  t:assert(#agent_pids() >= 3)
  t:assert(agent_threads() >= 2)
end)

test("no stray agent processes or threads remain", function(t)
  wait_until(function() return #agent_pids() == 1 and agent_threads() == 1 end,
    {timeout = 5, desc = "one agent process with one thread"})
  t:assert_eq(vm:run("pgrep -x sleep || true").stdout, "")
end)

test("barrier: coroutines meet on the host", function(t)
  local w1, w2 = vm:spawn_worker(), vm:spawn_worker()
  local order = {}
  provium:parallel(
    function()
      w1:write_file("/tmp/bar1", "one")
      order[#order + 1] = "a1"
      provium:barrier("written", 2, 10)
      order[#order + 1] = "a2"
      t:assert_eq(w1:read_file("/tmp/bar2"), "two")
    end,
    function()
      order[#order + 1] = "b1"
      w2:write_file("/tmp/bar2", "two")
      provium:barrier("written", 2, 10)
      order[#order + 1] = "b2"
      t:assert_eq(w2:read_file("/tmp/bar1"), "one")
    end)
  t:assert_eq(table.concat(order, ","), "a1,b1,a2,b2")
  -- a barrier that cannot fill says so at once instead of hanging: false and why
  local t0 = os.clock()
  local ok, why
  provium:parallel(function() ok, why = provium:barrier("lonely", 2, 20) end)
  t:assert_eq(ok, false)
  t:assert_contains(why, "lonely")
  t:assert_contains(why, "1 of 2")
  t:assert(os.clock() - t0 < 5, "the unfillable barrier waited for its timeout")
  w1:kill(); w2:kill()
end)

test("barrier: filled barriers return true, timed-out ones false", function(t)
  local results = {}
  provium:parallel(
    function() results.a = provium:barrier("meet", 2) end,
    function() results.b = provium:barrier("meet", 2, "5s") end)
  t:assert_eq(results.a, true)
  t:assert_eq(results.b, true)
  -- the second task keeps the guest busy past the first one's timeout
  local ok, why
  provium:parallel(
    function() ok, why = provium:barrier("late", 2, 0.2) end,
    function() vm:run("sleep 1"); provium:barrier("other", 1) end)
  t:assert_eq(ok, false)
  t:assert_contains(why, "late")
  t:assert_contains(why, "within 0.2s")
  t:assert_raises(function() provium:barrier("x", "two") end)
  t:assert_raises(function() provium:barrier(42, 1) end)
end)

test("barrier outside provium:parallel", function(t)
  t:assert_eq(provium:barrier("solo", 1), true)
  t:assert_eq(provium:barrier("solo", 1, 0.5), true)
  local ok, why = provium:barrier("pair", 2, 0.05)
  t:assert_eq(ok, false)
  t:assert_contains(why, "pair")
  t:assert_contains(why, "outside provium:parallel")
  -- a coroutine of its own is not a task of parallel either
  local co = coroutine.wrap(function() return provium:barrier("co", 2, 0.05) end)
  t:assert_eq(co(), false)
end)

test("worker:join returns at once when nothing is in flight", function(t)
  for _, opts in ipairs({{}, {thread = true}}) do
    local w = vm:spawn_worker(opts)
    local t0 = os.time()
    local j = w:join()
    t:assert(os.time() - t0 <= 2, "join on an idle worker waited")
    t:assert_eq(j.alive, true)
    t:assert_eq(j.waited, 0)
    t:assert_eq(w:run("echo still here").stdout, "still here\n") -- join does not end the worker
    t:assert_eq(w:handle(), w:id())
    t:assert(w:handle() > 0)
    w:kill()
    t:assert_eq(w:join().alive, false)
  end
end)

test("worker:join waits for the worker's processes and calls", function(t)
  local w = vm:spawn_worker()
  local p1 = w:run_async("sleep 0.5")
  local p2 = w:run_async("sleep 0.7; exit 3")
  local h = w:syscall_async(35, string.rep("\0", 16)) -- nanosleep, a zero timespec: returns at once
  local j = w:join(10)
  t:assert_eq(j.waited, 3)
  t:assert_eq(p1:status(), "exited")
  t:assert_eq(p2:wait().exit_code, 3)
  t:assert(h:done())
  -- a process that outlives the timeout: raises naming the worker
  local p = w:run_async("sleep 100")
  local err = t:assert_raises(function() w:join(0.3) end)
  t:assert_contains(tostring(err), "worker " .. w:id() .. " (fork, pid " .. w:pid())
  t:assert_contains(tostring(err), "1 process(es)")
  p:kill()
  w:kill()
end)

test("worker:kill(sig) signals the worker's processes; kill() ends the worker", function(t)
  local w = vm:spawn_worker()
  local p1, p2 = w:run_async("sleep 100"), w:run_async("sleep 100")
  local other = vm:run_async("sleep 100") -- not the worker's
  t:assert_eq(w:kill("USR1"), 2)
  t:assert_eq(p1:wait(10).signal, 10)
  t:assert_eq(p2:wait(10).signal, 10)
  t:assert_eq(other:status(), "running")
  t:assert(w:alive(), "kill(sig) must not end the worker")
  t:assert_eq(w:kill(9), 0) -- nothing left to signal
  local err = t:assert_raises(function() w:kill({}) end)
  t:assert_contains(tostring(err), "table")
  t:assert_raises(function() w:kill("NOSUCHSIG") end)
  w:kill()
  t:assert(not w:alive())
  other:kill()
end)

test("worker errors name the worker and its uid, not only the VM", function(t)
  vm:write_file("/tmp/w-secret", "s", tonumber("600", 8))
  for _, opts in ipairs({{}, {thread = true}}) do
    local w = vm:spawn_worker(opts)
    local kind = opts.thread and "thread, tid " or "fork, pid "
    w:syscall(SYS_setresuid, 1000, 1000, 1000)
    local err = tostring(t:assert_raises(function() w:open_file("/tmp/w-secret", {read = true}) end))
    t:assert_contains(err, "worker " .. w:id() .. " (" .. kind .. w:pid() .. ", uid 1000) of VM 'workers': "
      .. "open_file /tmp/w-secret: Permission denied")
    -- other errors keep the name (the uid last seen)
    err = tostring(t:assert_raises(function() w:stat("/nonexistent") end))
    t:assert_contains(err, "worker " .. w:id() .. " (" .. kind .. w:pid() .. ", uid 1000) of VM 'workers': ")
    -- the VM's own errors still name the VM
    err = tostring(t:assert_raises(function() vm:stat("/nonexistent") end))
    t:assert_contains(err, "VM 'workers': stat /nonexistent")
    t:assert(not err:find("worker %d"), err)
    w:kill()
  end
end)
