-- Impairments applied by the switch, on two VMs (default profile): latency,
-- a seeded drop rate that replays bit for bit, and a token-bucket bandwidth
-- limit. Every bridge is declared before the VMs boot: on microvm their NICs
-- are made at boot (there is no hot-plug), and attach/detach switch links.
local lan = provium:bridge("lan")
local loss1 = provium:bridge("loss1", {seed = 4242})
local loss2 = provium:bridge("loss2", {seed = 4242})
local loss3 = provium:bridge("loss3", {seed = 777})
-- a boots first: lan (no seed option, no lab rng_seed) takes a's rng_seed
local a = provium:vm("a", "default", {rng_seed = 99}):boot()
local b = provium:vm("b", "default"):boot()
lan:attach({a, b})

-- ping's per-packet round trips in ms, and the set of sequence numbers answered
local function pings(from, to, count, interval)
    local r = from:run(string.format("ping -c %d -i %s -W 2 %s", count, interval, to), {timeout = 300})
    local rtts, seqs = {}, {}
    for seq, ms in tostring(r.stdout):gmatch("seq=(%d+) ttl=%d+ time=([%d.]+) ms") do
        rtts[#rtts + 1] = tonumber(ms)
        seqs[#seqs + 1] = tonumber(seq)
    end
    return rtts, seqs, r
end
local function minmax(xs)
    local lo, hi = math.huge, 0
    for _, x in ipairs(xs) do lo, hi = math.min(lo, x), math.max(hi, x) end
    return lo, hi
end

test("latency: RTT is at least twice the one-way delay and not much more", function(t)
    local base = pings(a, "b.lan", 5, 0.2)
    local _, base_hi = minmax(base)
    lan:add_latency(40)
    t:assert_eq(lan:latency_ms(), 40)
    local rtts = pings(a, "b.lan", 5, 0.2)
    lan:reset()
    t:assert_eq(#rtts, 5, "every ping answered")
    local lo, hi = minmax(rtts)
    t:log(string.format("RTT %.1f..%.1f ms with 40 ms each way (baseline max %.1f ms)", lo, hi, base_hi))
    t:assert(lo >= 80, "RTT below 2 x 40 ms: " .. lo)
    t:assert(hi <= 80 + base_hi + 60, "RTT too far above 80 ms: " .. hi)
end)

test("latency in one direction only adds to the round trip once", function(t)
    lan:add_latency({from = a, to = b, ms = 60})
    local rtts = pings(a, "b.lan", 3, 0.2)
    lan:reset()
    t:assert_eq(#rtts, 3)
    local lo, hi = minmax(rtts)
    t:assert(lo >= 60, "RTT below 60 ms: " .. lo)
    t:assert(hi < 120 + 60, "RTT counts the delay twice? " .. hi)
    t:assert_eq(lan:latency_ms(), 0, "a directional rule is not the whole bridge's")
end)

-- 1000 echo requests from a to b with 10 % of a -> b dropped (replies are
-- not touched). ARP is pinned so the requests are the only frames a sends:
-- the seeded stream then decides the same frames on every run.
local function lossy_run(br)
    br:attach({a, b})
    local ba = b:nic(br:name()):address()
    a:run("arp -s " .. ba .. " " .. b:nic(br:name()):mac()):assert_ok()
    b:run("arp -s " .. a:nic(br:name()):address() .. " " .. a:nic(br:name()):mac()):assert_ok()
    br:drop_rate({from = a, to = b, p = 10})
    local _, seqs = pings(a, ba, 1000, 0.01)
    br:detach(a)
    br:detach(b)
    return seqs
end

test("drop rate: 10 % of 1000 within binomial bounds, replayed by seed", function(t)
    local first = lossy_run(loss1)
    local again = lossy_run(loss2)
    local other = lossy_run(loss3)
    local lost = 1000 - #first
    t:log(string.format("lost %d, %d, %d of 1000", lost, 1000 - #again, 1000 - #other))
    -- n = 1000, p = 0.1: mean 100, sd 9.5; 5 sd either side
    t:assert(lost >= 53 and lost <= 147, "lost " .. lost .. " of 1000 at 10 %")
    t:assert_eq(table.concat(again, ","), table.concat(first, ","), "same seed, same frames dropped")
    t:assert_neq(table.concat(other, ","), table.concat(first, ","), "another seed drops other frames")
    t:assert_eq(loss1:seed(), 4242)
    t:assert_eq(lan:seed(), 99, "lan's seed is the first VM's rng_seed")
end)

test("bandwidth: a transfer takes as long as the rate says, within 20 %", function(t)
    local bytes = 1024 * 1024
    a:run("dd if=/dev/urandom of=/tmp/blob bs=1024 count=1024 2>/dev/null"):assert_ok()
    local rate = 2000000
    lan:bandwidth_limit(rate)
    t:assert_eq(lan:bandwidth_bps(), rate)
    local server = b:run_async("nc -l -p 5003 > /tmp/got")
    wait_until(function() return b:run("netstat -ltn 2>/dev/null | grep -q ':5003'"):ok() end,
        {timeout = "10s", desc = "nc listening on b"})
    -- both ends of the interval on b's clock (the receiver)
    local c0 = b:run("cat /proc/uptime").stdout:match("^([%d.]+)")
    a:run("nc b.lan 5003 < /tmp/blob", {timeout = 120}):assert_ok()
    server:wait(120)
    local c1 = b:run("cat /proc/uptime").stdout:match("^([%d.]+)")
    lan:reset()
    t:assert_eq(b:run("stat -c %s /tmp/got").stdout:match("%d+"), tostring(bytes))
    -- Ethernet + IP + TCP headers ride along: 1514 bytes on the wire per 1448 of data
    local expected = bytes * 8 / rate * 1514 / 1448
    local took = tonumber(c1) - tonumber(c0)
    t:log(string.format("%d bytes at %d bit/s: %.2f s, expected %.2f s", bytes, rate, took, expected))
    t:assert(took >= expected * 0.8 and took <= expected * 1.2,
        string.format("took %.2f s, expected %.2f s +- 20 %%", took, expected))
end)
