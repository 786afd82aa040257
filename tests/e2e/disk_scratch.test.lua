-- A scratch disk end to end on the default (microvm) profile: the guest
-- formats it with busybox mke2fs, mounts it, writes and syncs; the data
-- survives vm:reset(), and the host reads the same bytes back through
-- QEMU (read_sectors) as the guest wrote.


local vm = provium:vm("scratch", "default")
vm:boot({disks = {{id = "data", size = "32M"}}})

test("a scratch disk is blank, the size asked for, and named by its id", function(t)
    local d = vm:disk("data")
    t:assert_eq(d:id(), "data")
    t:assert_eq(d:size(), 32 * 1024 * 1024)
    t:assert_eq(d:read_sectors(0, 8), string.rep("\0", 8 * 512))
    local dev = vm:disk("data"):guest_path()
    t:assert_eq(vm:run("cat /sys/block/" .. dev:sub(6) .. "/size").stdout, tostring(32 * 2048) .. "\n")
end)

test("format, mount, write, sync, reset, read back", function(t)
    local dev = vm:disk("data"):guest_path()
    vm:run("mke2fs -q " .. dev):assert_ok()
    vm:run("mkdir -p /mnt/d && mount " .. dev .. " /mnt/d && echo persisted-line > /mnt/d/f && sync"):assert_ok()
    vm:reset()
    dev = vm:disk("data"):guest_path()
    vm:run("mkdir -p /mnt/d && mount " .. dev .. " /mnt/d"):assert_ok()
    t:assert_eq(vm:run("cat /mnt/d/f").stdout, "persisted-line\n")
    -- the ext2 superblock magic (0xEF53 at byte 1080) as the host sees it through QEMU
    local sb = vm:disk("data"):read_sectors(2, 1)
    t:assert_eq(sb:sub(1080 - 1024 + 1, 1080 - 1024 + 2), "\x53\xEF")
end)

test("host writes land where the guest reads them (uncached)", function(t)
    local d = vm:disk("data")
    local payload = "written-by-the-host" .. string.rep("!", 512 - 19)
    d:write_sectors(60000, payload)
    t:assert_eq(d:read_sectors(60000, 1), payload)
    local dev = vm:disk("data"):guest_path()
    local r = vm:run("dd if=" .. dev .. " bs=512 skip=60000 count=1 iflag=direct 2>/dev/null | head -c 19")
    t:assert_eq(r.stdout, "written-by-the-host")
end)

test("sector arguments are checked, naming the disk and the VM", function(t)
    local d = vm:disk("data")
    local ok, err = pcall(d.read_sectors, d, 65536, 1)
    t:assert(not ok and err:find("out of range") and err:find("disk 'data' of VM 'scratch'"), err)
    ok, err = pcall(d.read_sectors, d, 0, -2)
    t:assert(not ok and err:find("negative"), err)
    ok, err = pcall(d.write_sectors, d, 65535, string.rep("x", 1024))
    t:assert(not ok and err:find("out of range"), err)
    ok, err = pcall(vm.disk, vm, "nope")
    t:assert(not ok and err:find("no disk 'nope'") and err:find("data"), err)
end)

test("attach_disk on microvm says how to declare the disk", function(t)
    local ok, err = pcall(vm.attach_disk, vm, {id = "late", size = "1M"})
    t:assert(not ok and err:find("declare it before the boot") and err:find("disks ="), err)
end)
