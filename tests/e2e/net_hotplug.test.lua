-- Attaching after boot on a pc machine (profile default-pc): the NIC is
-- hot-plugged through QMP (netdev_add + device_add) and the guest finds it
-- by a PCI rescan. Detach takes the link down (QMP set_link), as the
-- reference says; the device stays, since this kernel has no PCI hot-plug
-- driver to answer an unplug request.
local a = provium:vm("a", "default-pc"):boot()
local b = provium:vm("b", "default-pc"):boot()

test("a bridge declared after boot is hot-plugged on pc", function(t)
    local lan = provium:bridge("lan")
    lan:attach({a, b})
    t:assert_eq(a:read_file("/sys/class/net/eth0/address"):gsub("%s", ""), a:nic("lan"):mac())
    wait_until(function() return a:run("ping -c 1 -W 1 b.lan"):ok() end, {timeout = "15s", desc = "a -> b.lan"})
    lan:detach(b)
    -- the detached interface is taken down and renamed out of the ethN order
    t:assert_eq(b:read_file("/sys/class/net/pvoff0/operstate"):gsub("%s", ""), "down")
    t:assert(not a:run("ping -c 1 -W 1 10.1.0.11"):ok(), "b is detached")
end)
