-- The uplink (NAT from the bridge to the host, through the switch's slirp
-- helper) reaching only an HTTP server this test starts on the host's
-- 127.0.0.1, through the bridge's gateway address; and a lab snapshot whose
-- bridge (members, impairments, partitions) comes back with the VMs.
local lan = provium:bridge("lan")
local a = provium:vm("a", "default"):boot()
local b = provium:vm("b", "default"):boot()
lan:attach({a, b})

-- a python3 http.server on 127.0.0.1 only, serving a fresh directory
local function start_server()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local f = assert(io.open(dir .. "/hello.txt", "w"))
    f:write("hello from the host\n")
    f:close()
    local port = 20000 + math.random(0, 9999)
    local pidfile = dir .. ".pid"
    assert(os.execute(string.format("cd %s && (python3 -m http.server %d --bind 127.0.0.1 >/dev/null 2>&1 & " ..
        "echo $! > %s)", dir, port, pidfile)))
    local pid = assert(io.open(pidfile)):read("l")
    for _ = 1, 50 do
        if os.execute(string.format("python3 -c \"import socket; socket.create_connection(('127.0.0.1', %d), 0.2)\" " ..
            "2>/dev/null", port)) then break end
        os.execute("sleep 0.1")
    end
    return port, function() os.execute("kill " .. pid .. "; rm -rf " .. dir .. " " .. pidfile) end
end

test("uplink: a guest fetches from a server on the host's loopback via the gateway", function(t)
    local port, stop = start_server()
    local ok, err = pcall(function()
        lan:enable_uplink()
        t:assert(lan:uplink_enabled())
        -- busybox's static wget crashes looking up the "http" service
        -- (no NSS in the initramfs): speak HTTP/1.0 through nc instead
        local get = string.format("printf 'GET /hello.txt HTTP/1.0\\r\\n\\r\\n' | nc -w 5 %s %d", lan:gateway(), port)
        local r = a:run(get, {timeout = 60})
        r:assert_ok()
        t:assert_contains(r.stdout, "200")
        t:assert_contains(r.stdout, "hello from the host")
        lan:disable_uplink()
        t:assert(not a:run(get, {timeout = 30}).stdout:find("hello from the host", 1, true), "the uplink is off")
    end)
    stop()
    if not ok then error(err, 0) end
end)

test("a lab snapshot brings the bridge back with its VMs, and they ping", function(t)
    lan:add_latency(25)
    lan:partition("a", "ghost") -- graph state only: recorded, restored
    local snap = provium:snapshot()
    -- change everything the snapshot recorded
    lan:reset()
    lan:detach(b)
    t:assert(not a:run("ping -c 1 -W 1 b.lan"):ok())
    provium:restore(snap)
    t:assert_eq(lan:latency_ms(), 25)
    t:assert(lan:is_partitioned("a", "ghost"))
    t:assert_eq(table.concat(lan:members(), ","), "a,b")
    local r = a:run("ping -c 3 -i 0.2 -W 2 b.lan")
    r:assert_ok()
    local lo = math.huge
    for ms in tostring(r.stdout):gmatch("time=([%d.]+) ms") do lo = math.min(lo, tonumber(ms)) end
    t:assert(lo >= 50, "the restored 25 ms each way is applied: RTT " .. lo)
    lan:reset()
    b:run("ping -c 1 -W 2 a.lan"):assert_ok()
    snap:delete()
end)

test("a VM snapshot keeps its NIC; an open capture blocks snapshots", function(t)
    local cap = lan:capture()
    local ok, err = pcall(b.snapshot, b)
    t:assert(not ok, "a snapshot with a live capture must be refused")
    t:assert_contains(tostring(err), "capture of bridge 'lan' is open")
    t:assert_contains(tostring(err), "net_uplink_snapshot.test.lua:")
    ok, err = pcall(provium.snapshot, provium)
    t:assert(not ok and tostring(err):find("capture", 1, true), tostring(err))
    cap:close()
    local s = b:snapshot()
    b:shutdown()
    t:assert(not a:run("ping -c 1 -W 1 b.lan"):ok(), "b is down")
    b:restore(s)
    wait_until(function() return a:run("ping -c 1 -W 1 b.lan"):ok() end, {timeout = "15s", desc = "a -> restored b"})
    s:delete()
end)
