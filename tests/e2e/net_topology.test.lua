-- Two bridges, three VMs on the default profile (microvm): interface order,
-- /etc/hosts, TCP between guests, partitions, isolation, link state and
-- captures through the switch, and the errors for bad input.
provium.rng_seed = 1234 -- the switch seed of bridges without their own
local mgmt = provium:bridge("mgmt")
local data = provium:bridge("data", {seed = 5})
local a = provium:vm("a", "default"):boot()
local b = provium:vm("b", "default"):boot()
local c = provium:vm("c", "default"):boot()
mgmt:attach({a, b, c})
data:attach({a, b})

local function ping(from, to) return from:run("ping -c 1 -W 1 " .. to):ok() end
-- After a partition heals, ARP has to find the peer again (the reference's
-- "wait for ARP / route to re-converge").
local function reaches(from, to)
    wait_until(function() return ping(from, to) end, {timeout = "15s", desc = from:name() .. " -> " .. to})
    return true
end
-- Each test starts from a bridge without rules, whatever the last one left.
local function clean()
    mgmt:reset()
    data:reset()
    -- a test that failed between disconnect and reconnect must not cut the next one off
    for _, vm in ipairs({a, b, c}) do
        if not vm:nic("mgmt"):is_connected() then vm:nic("mgmt"):reconnect() end
    end
end
local function mac_of(vm, ifname) return vm:read_file("/sys/class/net/" .. ifname .. "/address"):gsub("%s+$", "") end

test("interfaces follow bridge names: data is eth0, mgmt is eth1", function(t)
    t:assert_eq(mac_of(a, "eth0"), a:nic("data"):mac())
    t:assert_eq(mac_of(a, "eth1"), a:nic("mgmt"):mac())
    t:assert_eq(a:nic("eth0"):bridge(), "data")
    t:assert_eq(a:nic("eth1"):bridge(), "mgmt")
    -- c is only on mgmt: its only attached interface is eth0
    t:assert_eq(mac_of(c, "eth0"), c:nic("mgmt"):mac())
    t:assert_eq(c:nic("eth0"):bridge(), "mgmt")
end)

test("every member resolves <vm>.<bridge> and <vm>", function(t)
    t:assert(ping(a, "b.data"), "a -> b.data")
    t:assert(ping(a, "c.mgmt"), "a -> c.mgmt")
    t:assert(ping(c, "a"), "c -> a (plain name)")
    t:assert(not ping(c, "b.data"), "c is not on data: b.data must not resolve or answer")
    local hosts = c:read_file("/etc/hosts")
    t:assert_contains(hosts, " a.mgmt")
    t:assert(not hosts:find("data", 1, true), "c's /etc/hosts lists data members:\n" .. hosts)
end)

test("a TCP transfer between guests arrives intact (busybox nc, sha256)", function(t)
    a:run("dd if=/dev/urandom of=/tmp/blob bs=1024 count=512 2>/dev/null"):assert_ok()
    local want = a:run("sha256sum /tmp/blob"):assert_ok().stdout:match("^(%x+)")
    local server = b:run_async("nc -l -p 5001 > /tmp/got")
    wait_until(function() return b:run("netstat -ltn 2>/dev/null | grep -q ':5001'"):ok() end,
        {timeout = "10s", desc = "nc listening on b"})
    a:run("nc -w 5 b.data 5001 < /tmp/blob", {timeout = 60}):assert_ok()
    server:wait()
    local got = b:run("sha256sum /tmp/got"):assert_ok().stdout:match("^(%x+)")
    t:assert_eq(got, want)
end)

test("a symmetric partition cuts both ways and heals", function(t)
    clean()
    mgmt:partition(a, b)
    t:assert(mgmt:is_partitioned(b, a))
    t:assert(not ping(a, "b.mgmt"), "a -> b through a partition")
    t:assert(not ping(b, "a.mgmt"), "b -> a through a partition")
    t:assert(ping(a, "c.mgmt"), "a -> c is not partitioned")
    mgmt:unpartition(a, b)
    t:assert(reaches(a, "b.mgmt") and reaches(b, "a.mgmt"), "healed")
end)

test("a directional partition cuts one way only", function(t)
    clean()
    -- With a -> b cut, ARP cannot complete either way (its replies are one
    -- direction), so both know the other's MAC address first; then each
    -- sends three echo requests and the switch counts what arrives.
    a:run("arp -s 10.1.0.11 " .. b:nic("mgmt"):mac()):assert_ok()
    b:run("arp -s 10.1.0.10 " .. a:nic("mgmt"):mac()):assert_ok()
    t:assert_eq(b:nic("mgmt"):address(), "10.1.0.11")
    mgmt:partition({from = a, to = b})
    t:assert(mgmt:is_partitioned(a, b))
    t:assert(not mgmt:is_partitioned(b, a))
    local rx_b = mgmt:nic(b):counters().rx_packets
    t:assert(not ping(a, "b.mgmt"), "a -> b must be cut")
    a:run("ping -c 3 -i 0.2 -W 1 b.mgmt")
    local got_b = mgmt:nic(b):counters().rx_packets - rx_b
    local rx_a = mgmt:nic(a):counters().rx_packets
    t:assert(not b:run("ping -c 3 -i 0.2 -W 1 a.mgmt"):ok(), "b gets no replies: a -> b is cut")
    local got_a = mgmt:nic(a):counters().rx_packets - rx_a
    mgmt:unpartition({from = a, to = b})
    t:assert_eq(got_b, 0, "frames b received from a while a -> b was cut")
    t:assert(got_a >= 3, "b -> a must flow: a received " .. got_a .. " frames of b's 3 echo requests")
    t:assert(reaches(a, "b.mgmt") and reaches(b, "a.mgmt"), "healed")
end)

test("partition_all and restore_all", function(t)
    clean()
    mgmt:partition_all()
    t:assert(not ping(a, "c.mgmt") and not ping(c, "b.mgmt"))
    t:assert(reaches(a, "b.data"), "partition_all on mgmt leaves data alone")
    mgmt:restore_all()
    t:assert(reaches(a, "c.mgmt"))
end)

test("an isolated VM reaches no one; unisolate restores it", function(t)
    clean()
    reaches(a, "b.mgmt")
    mgmt:isolate(c)
    t:assert(mgmt:is_isolated(c))
    t:assert(not ping(c, "a.mgmt") and not ping(a, "c.mgmt"))
    t:assert(ping(a, "b.mgmt"), "the others still talk")
    mgmt:unisolate(c)
    t:assert(reaches(c, "a.mgmt"))
end)

test("link down shows carrier 0 in the guest; up restores it", function(t)
    clean()
    reaches(a, "c.mgmt")
    local nic = a:nic("mgmt")
    nic:disconnect()
    -- QEMU tells the guest through a config interrupt; the driver updates carrier when it runs
    wait_until(function() return a:read_file("/sys/class/net/eth1/carrier"):gsub("%s", "") == "0" end,
        {timeout = "5s", desc = "carrier lost"})
    t:assert(not ping(a, "c.mgmt"))
    nic:reconnect()
    wait_until(function() return a:read_file("/sys/class/net/eth1/carrier"):gsub("%s", "") == "1" end,
        {timeout = "5s", desc = "carrier back"})
    wait_until(function() return ping(a, "c.mgmt") end, {timeout = "10s", desc = "a -> c after reconnect"})
end)

test("seeds: the bridge's option, else the lab's rng_seed", function(t)
    t:assert_eq(data:seed(), 5)
    t:assert_eq(mgmt:seed(), 1234)
end)

test("counters are the guest's view", function(t)
    local before = a:nic("data"):counters()
    a:run("ping -c 2 -i 0.2 -W 1 b.data"):assert_ok()
    local after = a:nic("data"):counters()
    t:assert(after.tx_packets - before.tx_packets >= 2, "a sent echo requests")
    t:assert(after.rx_packets - before.rx_packets >= 2, "a received echo replies")
    t:assert(after.tx_bytes > before.tx_bytes and after.rx_bytes > before.rx_bytes)
end)

local function tcpdump(path)
    local p = io.popen("tcpdump -n -r " .. path .. " 2>&1")
    local out = p:read("a")
    p:close()
    return out
end

test("a bridge capture read by tcpdump shows ICMP echo requests and replies", function(t)
    local file = os.tmpname() .. ".pcap"
    local cap = data:capture({file = file})
    a:run("ping -c 3 -i 0.2 -W 1 b.data"):assert_ok()
    local bytes = table.concat(cap:drain("1s"))
    t:assert(#bytes > 24, "capture stream yields pcap bytes")
    t:assert_eq(string.unpack("<I4", bytes), 0xa1b2c3d4)
    cap:close()
    local out = tcpdump(file)
    os.remove(file)
    local _, req = out:gsub("ICMP echo request", "")
    local _, rep = out:gsub("ICMP echo reply", "")
    t:assert(req >= 3 and rep >= 3, "tcpdump -r:\n" .. out)
    t:assert_contains(out, a:nic("data"):address() .. " > " .. b:nic("data"):address())
end)

test("a NIC capture holds only that NIC's frames", function(t)
    clean()
    reaches(a, "b.mgmt")
    local cap = c:nic("mgmt"):capture()
    a:run("ping -c 2 -i 0.2 -W 1 b.mgmt"):assert_ok()
    c:run("ping -c 2 -i 0.2 -W 1 a.mgmt"):assert_ok()
    local saved = cap:save(os.tmpname() .. ".pcap")
    cap:close()
    local out = tcpdump(saved)
    os.remove(saved)
    t:assert_contains(out, c:nic("mgmt"):address() .. " > " .. a:nic("mgmt"):address() .. ": ICMP echo request")
    t:assert(not out:find(a:nic("mgmt"):address() .. " > " .. b:nic("mgmt"):address(), 1, true),
        "a -> b traffic in c's capture:\n" .. out)
end)

test("detach takes the VM out of every member's /etc/hosts and attach brings it back", function(t)
    data:detach(b)
    t:assert(not a:read_file("/etc/hosts"):find("b.data", 1, true), "a still lists b.data")
    t:assert(not ping(a, "b.data"))
    data:attach(b)
    t:assert_contains(a:read_file("/etc/hosts"), "b.data")
    wait_until(function() return ping(a, "b.data") end, {timeout = "10s", desc = "b.data after re-attach"})
end)

test("bad input gets errors naming the bridge and the VM", function(t)
    local function err_of(fn, ...)
        local ok, e = pcall(fn, ...)
        t:assert(not ok, "expected an error")
        return tostring(e)
    end
    local e = err_of(mgmt.attach, mgmt, a)
    t:assert_contains(e, "bridge 'mgmt'"); t:assert_contains(e, "VM 'a' is already attached")
    e = err_of(mgmt.partition, mgmt, {from = a, to = "ghost"})
    t:assert_contains(e, "VM 'ghost'"); t:assert_contains(e, "call bridge:attach first")
    e = err_of(mgmt.add_latency, mgmt, {from = a, to = b, ms = -5})
    t:assert_contains(e, "bridge 'mgmt'"); t:assert_contains(e, "from VM 'a' to VM 'b'")
    t:assert_contains(err_of(mgmt.add_latency, mgmt, 0 / 0), "NaN")
    t:assert_contains(err_of(mgmt.add_latency, mgmt, 1e9), "out of range")
    t:assert_contains(err_of(mgmt.drop_rate, mgmt, {from = a, to = b, p = 101}), "out of range")
    t:assert_contains(err_of(mgmt.drop_rate, mgmt, -1), "out of range")
    t:assert_contains(err_of(mgmt.bandwidth_limit, mgmt, 0), "bps must be positive")
    e = err_of(a.nic, a, "nope")
    t:assert_contains(e, "VM 'a'"); t:assert_contains(e, "attached to: data, mgmt")
    local nic = data:nic(b)
    data:detach(b)
    e = err_of(nic.capture, nic)
    t:assert_contains(e, "vm 'b'"); t:assert_contains(e, "bridge 'data'")
    data:attach(b)
    -- c booted on microvm without a NIC for a bridge declared after its boot
    local late = provium:bridge("late")
    e = err_of(late.attach, late, c)
    t:assert_contains(e, "bridge 'late'"); t:assert_contains(e, "VM 'c'"); t:assert_contains(e, "hot-plug")
    t:assert_eq(#late:members(), 0)
    mgmt:reset()
end)

test("more bridges than the machine has NIC slots is refused at boot", function(t)
    local many = {}
    for i = 1, 7 do many[i] = provium:bridge("br" .. i) end
    local v = provium:vm("v", "default")
    for _, br in ipairs(many) do br:attach(v) end
    local ok, e = pcall(v.boot, v)
    t:assert(not ok)
    t:assert_contains(tostring(e), "VM 'v'")
    t:assert_contains(tostring(e), "at most")
end)
