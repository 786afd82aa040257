-- Faults the guest sees: rules in QEMU's blkdebug driver, changed while
-- the VM runs. The guest's own reads and writes fail as on broken hardware:
-- dd gets EIO, the kernel logs a block I/O error, fsync reports it, ext4
-- aborts its journal and remounts read-only.

local vm = provium:vm("faults", "default")
vm:boot({disks = {{id = "victim", size = "8M"}}})
local disk = vm:disk("victim")
local dev = vm:disk("victim"):guest_path()

-- reads of 4 KiB at sector s, bypassing the guest's page cache
local function read_at(s)
    return vm:run("dd if=" .. dev .. " of=/dev/null bs=512 skip=" .. s .. " count=8 iflag=direct")
end

test("an EIO rule on a sector range fails the guest's read there, with a block error in dmesg", function(t)
    vm:run("dmesg -c > /dev/null")
    disk:fail_range(1000, 16, {op = "read"})
    local r = read_at(1008)
    t:assert(r.exit_code ~= 0, "the read inside the range must fail")
    t:assert(r.stderr:find("Input/output error"), "dd says why: " .. r.stderr)
    local log = vm:run("dmesg").stdout
    t:assert(log:find("I/O error") and log:find(dev:sub(6)), "the kernel logs a block I/O error: " .. log)
    read_at(0):assert_ok() -- outside the range
    t:assert(disk:active_faults()[1]:find("sectors 1000%+16"), disk:active_faults()[1])
end)

test("clearing the rule makes the same read succeed", function(t)
    disk:clear_faults()
    t:assert_eq(#disk:active_faults(), 0)
    read_at(1008):assert_ok()
end)

test("an EIO rule on writes makes fsync fail", function(t)
    disk:fail_writes()
    local r = vm:run("dd if=/dev/zero of=" .. dev .. " bs=4096 count=1 seek=10 conv=fsync")
    t:assert(r.exit_code ~= 0, "a write that cannot reach the disk must fail at fsync")
    t:assert(r.stderr:find("Input/output error"), r.stderr)
    t:assert(vm:run("dmesg").stdout:find("lost async page write"), "the kernel says the write was lost")
    disk:clear_faults()
    vm:run("dd if=/dev/zero of=" .. dev .. " bs=4096 count=1 seek=10 conv=fsync"):assert_ok()
end)

test("once: a transient error is hidden by the kernel's retry, but logged", function(t)
    vm:run("dmesg -c > /dev/null")
    disk:fail_reads({once = true, errno = "EIO"})
    -- the block layer retries a failed fast-fail read once without the
    -- fast-fail flags: the retry reaches the disk after the rule is spent
    read_at(64):assert_ok()
    t:assert(vm:run("dmesg").stdout:find("I/O error, dev " .. dev:sub(6) .. ", sector 64"), "the first try failed")
    disk:clear_faults()
end)

test("after = N lets N reads through, then fails every one", function(t)
    disk:fail_after(3, {op = "read"})
    local results = {}
    for i = 1, 5 do results[i] = read_at(128 + 8 * i).exit_code == 0 end
    t:assert(results[1] and results[2] and results[3], "three reads pass")
    t:assert(not results[4] and not results[5], "then they fail")
    disk:clear_faults()
end)

test("another errno reaches the guest as an I/O error too (virtio-blk has one error status)", function(t)
    disk:fail_reads({errno = "ENOSPC"})
    t:assert(read_at(200).exit_code ~= 0)
    disk:clear_faults()
end)

test("a delay slows the guest's I/O without failing it", function(t)
    disk:delay("500ms")
    t:assert(disk:active_faults()[1]:find("delay 500 ms"), disk:active_faults()[1])
    local start = os.time()
    -- a throttle: at most one request per 500 ms, so 6 reads take 2.5 s or more
    vm:run("for i in 1 2 3 4 5 6; do dd if=" .. dev .. " of=/dev/null bs=512 count=1 skip=$((400 + i)) " ..
           "iflag=direct 2>/dev/null || exit 1; done"):assert_ok()
    local took = os.time() - start
    disk:clear_faults()
    t:assert(took >= 2, ("6 reads took about %d s with a 500 ms delay"):format(took))
end)

test("rule arguments are checked", function(t)
    local ok, err = pcall(disk.fail_range, disk, 10, 0)
    t:assert(not ok and err:find("at least 1"), err)
    ok, err = pcall(disk.fail_after, disk, 0)
    t:assert(not ok and err:find("at least 1"), err)
    ok, err = pcall(disk.fail_range, disk, 16380, 10)
    t:assert(not ok and err:find("out of range"), err)
    ok, err = pcall(disk.fail_reads, disk, {errno = "EWHAT"})
    t:assert(not ok and err:find("errno must be"), err)
    ok, err = pcall(disk.fault_inject, disk, "boom")
    t:assert(not ok and err:find("unknown mode `boom`") and err:find("eio_read, eio_write, slow"), err)
end)

test("rules end with QEMU: after a shutdown and a boot the disk is healthy again", function(t)
    disk:fail_reads()
    vm:shutdown()
    vm:boot() -- the disk stays without being declared again
    t:assert_eq(#disk:active_faults(), 0)
    vm:run("dd if=" .. disk:guest_path() .. " of=/dev/null bs=512 count=8 iflag=direct"):assert_ok()
    disk:fail_reads()
    t:assert(vm:run("dd if=" .. disk:guest_path() .. " of=/dev/null bs=512 count=8 iflag=direct").exit_code ~= 0)
    disk:clear_faults()
end)

test("ext4 whose writes fail aborts its journal and goes read-only (errors=remount-ro)", function(t)
    local img = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "tmp_disk_faults.ext4"
    os.remove(img)
    t:assert(os.execute("truncate -s 64M " .. img .. " && mkfs.ext4 -q -F " .. img), "mkfs.ext4 on the host")
    local fsvm = provium:vm("ext4ro", "default"):boot({disks = {{id = "fs", path = img}}})
    local fs = fsvm:disk("fs")
    fsvm:run("mkdir -p /mnt/fs && mount -t ext4 -o errors=remount-ro " .. fs:guest_path() ..
             " /mnt/fs && echo a > /mnt/fs/a && sync"):assert_ok()
    fs:fail_writes()
    fsvm:run("echo b > /mnt/fs/b; sync")
    local r = fsvm:run("touch /mnt/fs/c")
    t:assert(r.stderr:find("Read%-only file system"), "a write after the abort is refused: " .. r.stderr)
    local log = fsvm:run("dmesg").stdout
    t:assert(log:find("Aborting journal on device") and log:find("Remounting filesystem read%-only"), log)
    fsvm:shutdown()
    os.remove(img)
end)
