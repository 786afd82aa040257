-- Debian's stock cloud kernel: virtio drivers are modules loaded by the agent.
local vm = provium:vm("deb", "debian"):boot()

test("stock kernel runs commands", function(t)
  local r = vm:run("uname -r")
  r:assert_ok()
  t:assert(r.stdout:find("cloud%-amd64") ~= nil, "unexpected kernel: " .. r.stdout)
end)

test("virtio modules were loaded by the agent", function(t)
  local mods = vm:read_file("/proc/modules")
  t:assert(mods:find("virtio_console", 1, true) ~= nil, "virtio_console not in /proc/modules")
end)

-- The stock kernel with the default initramfs: unprivileged workers work too.
require("helpers.unprivileged").tests(vm)
