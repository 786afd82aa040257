-- Loads tests/kmod/provium_faulty.ko (make kmod-faulty) into a VM; used by
-- tests/e2e/kernel_health.test.lua and tests/cli/fixtures/kernel/.
local M = {}
local ROOT = debug.getinfo(1, "S").source:sub(2):match("^(.*)/tests/kmod/")
-- debug = true: the build against the debug kernel (profile "debug").
function M.load(vm, debug)
  local dir = debug and "/build/kmod-faulty-debug/" or "/build/kmod-faulty/"
  vm:push_file(ROOT .. dir .. "provium_faulty.ko", "/tmp/faulty.ko")
  local ko = vm:open_file("/tmp/faulty.ko", {read = true})
  local r = vm:syscall(313, {args = {ko:fd(), 0, 0}, bufs = {"\0"}, ptrs = {1}})
  ko:close()
  assert(r.ret == 0, "finit_module failed: errno " .. tostring(r.errno))
end
M.TRIGGER = "/proc/provium_faulty"
return M
