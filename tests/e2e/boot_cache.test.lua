-- Plain boots of one configuration: the first stores (or finds) the boot
-- cache's entry, the later ones restore it. A test must not see a
-- difference: each VM has its own randomness, the clock, the files and the
-- memory it asked for. (tests/cli/boot_cache.sh checks that entries are made,
-- reused, rebuilt and bypassed.)
local function boot(name, opts) return provium:vm(name, "default", opts):boot() end

test("VMs booted from one cached boot each have their own identity", function(t)
  local a, b, d = boot("a"), boot("b"), boot("d") -- at least b and d are restores
  local c = boot("c", {boot_cache = false})
  local seen = {}
  for _, v in ipairs({a, b, c, d}) do
    for _, what in ipairs({"/proc/sys/kernel/random/uuid", "/proc/sys/kernel/random/boot_id"}) do
      local id = v:read_file(what)
      t:assert(not seen[id], "two VMs read the same " .. what .. ": " .. id)
      seen[id] = true
    end
    local bytes = v:run("head -c 16 /dev/urandom | od -An -tx1").stdout
    t:assert(not seen[bytes], "two VMs drew the same bytes from /dev/urandom: " .. bytes)
    seen[bytes] = true
    t:assert(math.abs(v:clock():get() - os.time()) < 30, "the guest clock is not the host's")
    t:assert(v:boot_seconds() > 0, "boot_seconds")
  end
  t:assert_eq(b:run("hostname").stdout, c:run("hostname").stdout)
  t:assert_eq(b:read_file("/proc/cmdline"), c:read_file("/proc/cmdline"))
  t:assert_eq(b:console_log() ~= "", c:console_log() ~= "") -- the boot's console log is there
end)

test("initial_time is honoured by a cached boot", function(t)
  for _, name in ipairs({"t1", "t2"}) do
    local v = boot(name, {initial_time = 1000000000})
    local now = v:clock():get()
    t:assert(now >= 1000000000 and now < 1000000000 + 60, "guest clock " .. now .. " is not at initial_time")
  end
end)

test("boot files and memory are part of the key", function(t)
  for _, content in ipairs({"one", "two", "one"}) do
    local v = boot("f" .. content .. math.random(1e6), {files = {{path = "/etc/marker", content = content}}})
    t:assert_eq(v:read_file("/etc/marker"), content)
  end
  for _, mb in ipairs({256, 384, 384}) do
    local v = boot("m" .. mb .. math.random(1e6), {memory = mb .. "M"})
    local kb = tonumber(v:read_file("/proc/meminfo"):match("MemTotal:%s+(%d+)"))
    t:assert(kb > (mb - 64) * 1024 and kb <= mb * 1024, mb .. "M asked, MemTotal " .. kb .. " kB")
  end
end)

test("a VM from the boot cache snapshots and restores like a cold-booted one", function(t)
  boot("warm") -- the entry exists after this
  local v = boot("s")
  v:write_file("/tmp/x", "y")
  local snap = v:snapshot()
  t:assert(io.open(snap:path() .. "/ram.zst") ~= nil, "the snapshot keeps RAM out of the stream, as for a cold boot")
  t:assert_eq(provium:vm("r", "default"):restore(snap):read_file("/tmp/x"), "y")
  snap:delete()
end)

test("boot_cache takes a boolean", function(t)
  local v = provium:vm("x", "default")
  t:assert_contains(t:assert_raises(v.boot, v, {boot_cache = "no"}), "boot_cache must be true or false")
end)
