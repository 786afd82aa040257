-- Tests of the provium_demo kernel module (provium_demo.c in this directory).
--
-- The module is built on the host by `make kmod` (build/kmod/provium_demo.ko,
-- against the default image's kernel), pushed into a fresh guest, loaded with
-- the raw finit_module syscall, driven through /dev/provium_demo with
-- read/write/lseek/ioctl, and unloaded with delete_module. See README.md for
-- which test reaches which kernel code path.
--
-- The tests share one VM and run in file order. Every test that needs the
-- module calls ensure_loaded(), so a test run on its own still works.

local vm = provium:vm("kmod", "default"):boot()

local KO_HOST = "../../build/kmod/provium_demo.ko" -- relative to this file
local KO_GUEST = "/root/provium_demo.ko" -- /root: boot never mounts over it
local DEV = "/dev/provium_demo"
local BUF_SIZE = 4096 -- PROVIUM_DEMO_BUF_SIZE

-- x86_64 syscall numbers and errno values used below.
local SYS = {write = 1, ioctl = 16, delete_module = 176, finit_module = 313}
local E = {AGAIN = 11, FAULT = 14, EXIST = 17, INVAL = 22, NOTTY = 25, NOSPC = 28}
local O_NONBLOCK = 2048

-- ioctl numbers, encoded like <asm-generic/ioctl.h>:
--   dir << 30 | size << 16 | type << 8 | nr   (dir: 0 none, 1 write, 2 read)
local IOC_NONE, IOC_WRITE, IOC_READ = 0, 1, 2
local function IOC(dir, typ, nr, size)
  return (dir << 30) | (size << 16) | (string.byte(typ) << 8) | nr
end

-- provium_demo.h: _IOR('P', 1, struct provium_demo_stats) = 0x80185001
local GET_STATS = IOC(IOC_READ, "P", 1, 24)
-- provium_demo.h: _IOWR('P', 2, struct provium_demo_xform) = 0xC0105002
local XFORM = IOC(IOC_READ | IOC_WRITE, "P", 2, 16)
local WARN = IOC(IOC_NONE, "P", 9, 0)
assert(GET_STATS == 0x80185001 and XFORM == 0xC0105002 and WARN == 0x5009, "ioctl encoding drifted from provium_demo.h")

-- struct provium_demo_stats {u64 bytes_written; u64 opens_total; u32 open_count_now; u32 pad;}
local STATS_FMT = "<I8I8I4I4"
-- struct provium_demo_xform {u64 user_ptr; u32 len; u32 op;}
local XFORM_FMT = "<I8I4I4"
local OP_UPPER, OP_REVERSE = 1, 2

---------------------------------------------------------------- helpers

local function module_listed()
  local mods = vm:run("cat /proc/modules"):assert_ok().stdout
  return ("\n" .. mods):find("\nprovium_demo ") ~= nil
end

local function dmesg()
  return vm:run("dmesg"):assert_ok().stdout
end

-- finit_module(fd, params, 0) on the pushed .ko; returns the syscall result.
local function finit(params)
  local ko = vm:open_file(KO_GUEST, {read = true})
  local r = vm:syscall(SYS.finit_module, {
    args = {ko:fd(), 0, 0},
    bufs = {params .. "\0"}, -- the kernel reads a NUL-terminated string
    ptrs = {1},              -- slot 1 (second argument) gets its address
  })
  ko:close()
  return r
end

local pushed = false
local function push_ko()
  if pushed then return end
  local ok, err = pcall(vm.push_file, vm, KO_HOST, KO_GUEST)
  if not ok then
    error("cannot push the module; build it first with `make kmod`\n" .. tostring(err), 0)
  end
  pushed = true
end

-- Device files opened by the tests. A failing test leaves its files open
-- (an open file pins the module), so every test starts by closing them.
local dev_files = {}
local function open_dev()
  local f = vm:open_file(DEV, {read = true, write = true})
  dev_files[#dev_files + 1] = f
  return f
end
local function close_leftovers()
  for _, f in ipairs(dev_files) do f:close() end -- close() is idempotent
  dev_files = {}
end

local function ensure_loaded(t)
  close_leftovers()
  if module_listed() then return end
  push_ko()
  local r = finit("greeting=hello")
  t:assert_eq(r.ret, 0, "finit_module failed, errno " .. tostring(r.errno))
end

-- Asserts that a syscall/ioctl result is a failure with the given errno.
local function assert_errno(t, r, errno, what)
  t:assert_eq(r.ret, -1, what .. ": expected failure")
  t:assert_eq(r.errno, errno, what .. ": errno")
end

local function get_stats(t, f)
  local r = vm:ioctl(f, GET_STATS, string.rep("\0", 24))
  t:assert_eq(r.ret, 0, "GET_STATS")
  t:assert_eq(#r.out_data, 24, "GET_STATS output size")
  local bytes, opens, now, pad = provium:unpack(STATS_FMT, r.out_data)
  t:assert_eq(pad, 0, "stats.pad")
  return {bytes_written = bytes, opens_total = opens, open_count_now = now}
end

-- PROVIUM_DEMO_IOC_XFORM on payload; the struct's user_ptr (offset 0) is
-- filled in by provium with the guest address of the payload buffer.
local function xform(f, op, payload, len)
  local arg = provium:pack(XFORM_FMT, 0, len or #payload, op)
  return vm:ioctl(f, XFORM, arg, {bufs = {payload}, ptr_offsets = {0}})
end

---------------------------------------------------------------- tests

test("finit_module loads the module with a parameter", function(t)
  t:assert(not module_listed(), "module already loaded in a fresh guest")
  push_ko()
  local r = finit("greeting=hello")
  t:assert_eq(r.ret, 0, "finit_module, errno " .. tostring(r.errno))

  t:assert(module_listed(), "provium_demo missing from /proc/modules")
  t:assert(dmesg():find("provium_demo: loaded: greeting=hello,", 1, true), "load message not in dmesg")
  t:assert_eq(vm:read_file("/sys/module/provium_demo/parameters/greeting"), "hello\n")
  -- misc_register() + devtmpfs: the node exists as soon as init returns
  vm:run("test -c " .. DEV):assert_ok()
end)

test("loading the same module twice fails with EEXIST", function(t)
  ensure_loaded(t)
  push_ko()
  assert_errno(t, finit(""), E.EXIST, "second finit_module")
  t:assert(module_listed(), "the first instance must survive")
end)

test("write appends, read returns the data from the file position", function(t)
  ensure_loaded(t)
  local f = open_dev()
  t:assert_eq(f:write("hello, "), 7)
  t:assert_eq(f:write("kernel"), 6)
  t:assert_eq(f:read(100), "", "position follows the data after write")
  t:assert_eq(f:seek(0, "set"), 0)
  t:assert_eq(f:read(100), "hello, kernel")
  t:assert_eq(f:read(100), "", "EOF")
  t:assert_eq(f:seek(7, "set"), 7)
  t:assert_eq(f:read(3), "ker")
  t:assert_eq(f:seek(-2, "end"), 11, "SEEK_END is relative to the data")
  t:assert_eq(f:read(100), "el")
  f:close()
end)

test("each open has its own buffer", function(t)
  ensure_loaded(t)
  local a, b = open_dev(), open_dev()
  a:write("only in a")
  t:assert_eq(b:read(100), "", "b must not see a's data")
  b:write("B")
  a:seek(0, "set")
  t:assert_eq(a:read(100), "only in a", "a must not see b's data")
  a:close()
  -- release freed a's state; a new open starts empty
  local c = open_dev()
  t:assert_eq(c:read(100), "")
  b:seek(0, "set")
  t:assert_eq(b:read(100), "B")
  b:close()
  c:close()
end)

test("GET_STATS counts bytes, opens and open files", function(t)
  ensure_loaded(t)
  local a = open_dev()
  local before = get_stats(t, a)
  t:log("stats before", before.bytes_written, before.opens_total, before.open_count_now)
  t:assert(before.open_count_now >= 1, "a is open")

  a:write("12345")
  local b = open_dev()
  b:write("678")
  local after = get_stats(t, b)
  t:log("stats after", after.bytes_written, after.opens_total, after.open_count_now)
  t:assert_eq(after.bytes_written - before.bytes_written, 8)
  t:assert_eq(after.opens_total - before.opens_total, 1)
  t:assert_eq(after.open_count_now - before.open_count_now, 1)

  b:close()
  t:assert_eq(get_stats(t, a).open_count_now, before.open_count_now, "release decrements the count")
  a:close()
end)

test("XFORM transforms a user buffer in place", function(t)
  ensure_loaded(t)
  local f = open_dev()

  local text = "Hello, World 123 \xe9!"
  local r = xform(f, OP_UPPER, text)
  t:assert_eq(r.ret, 0, "uppercase, errno " .. tostring(r.errno))
  t:assert_eq(r.out_bufs[1], "HELLO, WORLD 123 \xe9!", "ASCII only")
  -- the struct itself is only read: len and op come back unchanged
  local _, len, op = provium:unpack(XFORM_FMT, r.out_data)
  t:assert_eq(len, #text)
  t:assert_eq(op, OP_UPPER)

  r = xform(f, OP_REVERSE, "abc\0def")
  t:assert_eq(r.ret, 0, "reverse, errno " .. tostring(r.errno))
  t:assert_eq(r.out_bufs[1], "fed\0cba")

  -- len may cover a prefix of the buffer only
  r = xform(f, OP_REVERSE, "12345678", 4)
  t:assert_eq(r.out_bufs[1], "43215678")

  -- the largest accepted payload
  local big = string.rep("ab", 2048)
  r = xform(f, OP_UPPER, big)
  t:assert_eq(r.ret, 0)
  t:assert_eq(r.out_bufs[1], string.rep("AB", 2048))
  f:close()
end)

test("XFORM and unknown ioctls fail with the documented errno", function(t)
  ensure_loaded(t)
  local f = open_dev()

  assert_errno(t, xform(f, 3, "abc"), E.INVAL, "unknown op 3")
  assert_errno(t, xform(f, 0, "abc"), E.INVAL, "unknown op 0")
  assert_errno(t, xform(f, OP_UPPER, "abc", 0), E.INVAL, "len 0")

  -- No bufs: user_ptr is taken literally. 0x10 is never mapped.
  local bad = provium:pack(XFORM_FMT, 0x10, 4, OP_UPPER)
  assert_errno(t, vm:ioctl(f, XFORM, bad), E.FAULT, "payload at 0x10")
  -- len is validated before the payload is touched: EINVAL, not EFAULT
  bad = provium:pack(XFORM_FMT, 0x10, 4097, OP_UPPER)
  assert_errno(t, vm:ioctl(f, XFORM, bad), E.INVAL, "len 4097")

  -- The struct pointer itself bad: raw ioctl(fd, cmd, 0x10)
  assert_errno(t, vm:syscall(SYS.ioctl, f:fd(), XFORM, 0x10), E.FAULT, "XFORM struct at 0x10")
  assert_errno(t, vm:syscall(SYS.ioctl, f:fd(), GET_STATS, 0), E.FAULT, "GET_STATS into NULL")

  -- Unknown commands, including a known nr with the wrong direction/size
  assert_errno(t, vm:ioctl(f, IOC(IOC_NONE, "P", 3, 0), ""), E.NOTTY, "unknown nr 3")
  assert_errno(t, vm:ioctl(f, IOC(IOC_WRITE, "P", 1, 24), string.rep("\0", 24)), E.NOTTY,
               "_IOW instead of _IOR for GET_STATS")
  assert_errno(t, vm:ioctl(f, IOC(IOC_READ, "P", 1, 16), string.rep("\0", 16)), E.NOTTY,
               "GET_STATS with the wrong size")
  f:close()
end)

test("writing past the 4 KiB buffer fails with ENOSPC", function(t)
  ensure_loaded(t)
  local f = open_dev()
  t:assert_eq(f:write(string.rep("x", 4000)), 4000)
  t:assert_eq(f:write(string.rep("y", 200)), BUF_SIZE - 4000, "partial write up to the capacity")
  -- full: the raw write(2) reports ENOSPC
  local r = vm:syscall(SYS.write, {args = {f:fd(), 0, 1}, bufs = {"z"}, ptrs = {1}})
  assert_errno(t, r, E.NOSPC, "write into a full buffer")

  f:seek(0, "set")
  local data = f:read(2 * BUF_SIZE)
  t:assert_eq(#data, BUF_SIZE)
  t:assert(data == string.rep("x", 4000) .. string.rep("y", BUF_SIZE - 4000), "buffer content")
  f:close()
end)

-- Kernel health: a WARN_ON in the module fails any test during which it
-- fires; a test that provokes it on purpose says so with
-- t:expect_kernel_report, and gets the report, its stack decoded to
-- file:line in the module's own source.
test("a deliberate WARN_ON is a kernel report, decoded to the module's source line", function(t)
  ensure_loaded(t)
  local f = open_dev()
  local got = t:expect_kernel_report("WARNING", function()
    local r = vm:ioctl(f, WARN, "")
    t:assert_eq(r.ret, 0)
  end)
  f:close()
  t:assert_eq(got[1].kind, "warning")
  t:assert_contains(got[1].title, "kernel WARNING in demo_deliberate_warn")
  t:assert_contains(got[1].title, "[provium_demo]")
  -- the RIP frame names provium_demo.c and the line of the WARN_ON
  t:assert(got[1].text:find("demo_deliberate_warn%+0x%x+/0x%x+ %[provium_demo%] %(/[^)]*provium_demo%.c:%d+%)"),
    "trace not decoded to provium_demo.c:LINE:\n" .. got[1].text)
end)

test("delete_module unloads it once no file is open", function(t)
  ensure_loaded(t)
  local name = {args = {0, O_NONBLOCK}, bufs = {"provium_demo\0"}, ptrs = {0}}

  -- an open file holds a reference on the module (fops.owner)
  local f = open_dev()
  assert_errno(t, vm:syscall(SYS.delete_module, name), E.AGAIN, "delete_module while open")
  f:close()

  name.args[2] = 0
  local r = vm:syscall(SYS.delete_module, name)
  t:assert_eq(r.ret, 0, "delete_module, errno " .. tostring(r.errno))
  t:assert(not module_listed(), "provium_demo still in /proc/modules")
  t:assert(dmesg():find("provium_demo: unloaded", 1, true), "unload message not in dmesg")
  t:assert_eq(vm:run("test -e " .. DEV).exit_code, 1, DEV .. " should be gone")
end)

-- The pure helpers behind XFORM (provium_demo_xform.h) have a KUnit suite of
-- their own, provium_demo_kunit.ko (built by `make kmod` next to the module
-- when the kernel has KUnit). vm:kunit loads it, reads its results from
-- debugfs, unloads it, and reports each KUnit case as a sub-test:
-- "the helpers' KUnit suite passes / provium_demo_xform / reverse_one_byte".
test("the helpers' KUnit suite passes", function(t)
  local r = vm:kunit("../../build/kmod/provium_demo_kunit.ko")
  t:assert_eq(r.suites[1], "provium_demo_xform")
  t:assert_eq(r.passed, 6)
  t:assert_eq(#r.cases, 6)
end)
