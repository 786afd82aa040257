-- The fault matrix against real VMs (issue 17): faults that need QEMU and a
-- guest kernel. Each must end in a clear error naming the VM, the operation
-- and the cause, within a bounded time, without killing the test process.

-- The QEMU processes this test file started: children of this process.
local function my_children()
  local self = io.open("/proc/self/stat"):read("l")
  local pid = self:match("^(%d+)")
  local f = io.open("/proc/" .. pid .. "/task/" .. pid .. "/children")
  local out = {}
  for c in f:read("a"):gmatch("%d+") do
    local comm = io.open("/proc/" .. c .. "/comm")
    if comm and comm:read("l"):find("qemu", 1, true) then out[#out + 1] = c end
    if comm then comm:close() end
  end
  f:close()
  return out
end

-- SIGKILLs the QEMU of a VM booted alone in this test (by its pid). Such a
-- VM boots cold (boot_cache = false): a boot-cache boot may take over a
-- spare QEMU started earlier and leave a new one (host/vmm/qpool.c), and
-- then the new child is not the VM's.
local function kill_qemu(t, before)
  local known = {}
  for _, p in ipairs(before) do known[p] = true end
  local killed = 0
  for _, p in ipairs(my_children()) do
    if not known[p] then
      os.execute("kill -9 " .. p)
      killed = killed + 1
    end
  end
  t:assert_eq(killed, 1, "QEMU processes of the new VM")
  os.execute("sleep 0.2")
end

test("pause and snapshot after QEMU was killed: an error, not SIGPIPE", {timeout = 120}, function(t)
  local before = my_children()
  local vm = provium:vm("sigpipe", "default"):boot({boot_cache = false})
  kill_qemu(t, before)
  local err = t:assert_raises(vm.pause, vm)
  t:assert_contains(err, "VM 'sigpipe'")
  t:assert_contains(err, "killed by signal 9")
  t:assert_eq(vm:state(), "dead")
  err = t:assert_raises(vm.snapshot, vm)
  t:assert_contains(err, "dead")
end)

test("a command on a VM whose QEMU was killed says QEMU was killed by a signal", {timeout = 120}, function(t)
  local before = my_children()
  local vm = provium:vm("killed", "default"):boot({boot_cache = false})
  kill_qemu(t, before)
  local err = t:assert_raises(vm.run, vm, "true")
  t:assert_contains(err, "VM 'killed'")
  t:assert_contains(err, "killed by signal 9")
  t:assert_eq(vm:state(), "dead")
end)

test("kill -9 of the guest agent is noticed within seconds and named", {timeout = 40}, function(t)
  local vm = provium:vm("agentkill", "default"):boot()
  local pid = vm:run("pidof provium-agent"):assert_ok().stdout:match("%d+")
  t:assert(pid, "no agent pid")
  local t0 = os.time()
  local err = t:assert_raises(vm.run, vm, "kill -9 " .. pid .. "; sleep 30")
  t:assert(os.time() - t0 <= 5, "the agent's death took " .. (os.time() - t0) .. " s to notice")
  t:assert_contains(err, "VM 'agentkill'")
  t:assert_contains(err, "the guest agent died")
  t:assert_eq(vm:state(), "dead")
  -- later calls and cleanup do not wait for the agent
  t0 = os.time()
  err = t:assert_raises(vm.read_file, vm, "/etc/hostname")
  t:assert_contains(err, "agent died")
  vm:shutdown()
  t:assert(os.time() - t0 <= 3, "calls after the death waited")
end)

test("a kernel command line over the kernel's 2 KB limit is refused before boot", {timeout = 20}, function(t)
  local long = "console=ttyS0 quiet " .. string.rep("provium.pad=xxxxxxxx ", 110)
  local t0 = os.time()
  local err = t:assert_raises(function()
    provium:vm("longcmd", "default", {kernel_cmdline = long}):boot()
  end)
  t:assert_contains(err, "VM 'longcmd'")
  t:assert_contains(err, "over the kernel's limit of 2047")
  t:assert_contains(err, "shorten kernel_cmdline")
  t:assert(os.time() - t0 <= 5, "took " .. (os.time() - t0) .. " s")
  -- just under the limit still boots, with provium's parameters intact
  local fits = "console=ttyS0 quiet " .. string.rep("p=x ", 470)
  local vm = provium:vm("fits", "default", {kernel_cmdline = fits}):boot()
  t:assert_contains(vm:read_file("/proc/cmdline"), "rdinit=/provium-wrapper")
end)
