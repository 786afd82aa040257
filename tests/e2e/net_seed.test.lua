-- Seed 001 verbatim (profile "peios" -> "default"): two VMs booted first, a
-- bridge declared before them, attached after boot; a pings b by name.
local lan = provium:bridge("lan")
local a   = provium:vm("a", "default"):boot()
local b   = provium:vm("b", "default"):boot()
lan:attach({a, b})
test("a can reach b", function(t)
    a:run("ping -c 1 -W 1 b.lan"):assert_ok()
end)
