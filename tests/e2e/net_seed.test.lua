-- Seed 001 verbatim (profile "peios" -> "default"): two VMs booted first, a
-- bridge declared before them, attached after boot; a pings b by name.
local lan = provium:bridge("lan")
local a   = provium:vm("a", "default"):boot()
local b   = provium:vm("b", "default"):boot()
lan:attach({a, b})
test("a can reach b", function(t)
    a:run("ping -c 1 -W 1 b.lan"):assert_ok()
end)

-- Not part of the seed: the topology outlives pause/resume and a reset
-- (the guest's interfaces, addresses and /etc/hosts are set again after it).
test("pause, resume and reset keep the topology", function(t)
    b:pause()
    b:resume()
    a:run("ping -c 1 -W 1 b.lan"):assert_ok()
    b:reset()
    t:assert_eq(b:read_file("/sys/class/net/eth0/address"):gsub("%s", ""), b:nic("lan"):mac())
    t:assert_contains(b:read_file("/etc/hosts"), "a.lan")
    wait_until(function() return a:run("ping -c 1 -W 1 b.lan"):ok() end, {timeout = "15s", desc = "a -> b after reset"})
    b:run("ping -c 1 -W 1 a.lan"):assert_ok()
    t:assert_eq(table.concat(lan:members(), ","), "a,b")
end)
