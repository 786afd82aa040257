-- power_cut: QEMU is killed and each power-cut disk keeps only what the
-- guest had flushed (QEMU's blklogwrites log, replayed up to the last
-- flush). An ext4 image made on the host (provium.ext4_image) then needs
-- journal recovery at the next mount, and fsck finds it clean afterwards.

local HERE = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

local function sh(cmd)
    local ok, how, code = os.execute(cmd)
    return ok, code
end


test("writes flushed before the cut stay, unflushed ones are lost", function(t)
    local vm = provium:vm("cut", "default")
    vm:boot({disks = {{id = "raw", size = "4M", power_cut = true}}})
    local dev = vm:disk("raw"):guest_path()
    vm:run("printf 'flushed-data' | dd of=" .. dev .. " bs=512 seek=10 conv=sync,fsync oflag=direct"):assert_ok()
    -- reaches the disk (O_DIRECT) but no flush follows: it sits in the volatile cache
    vm:run("printf 'volatile-data' | dd of=" .. dev .. " bs=512 seek=20 conv=sync oflag=direct"):assert_ok()
    local disk = vm:disk("raw")
    t:assert_eq(disk:read_sectors(20, 1):sub(1, 13), "volatile-data", "before the cut QEMU has it")
    local cut = disk:power_cut()
    t:assert_eq(vm:state(), "shutdown")
    -- with QEMU gone a raw disk is read from its file
    t:assert_eq(disk:read_sectors(20, 1), string.rep("\0", 512), "read while the VM is off")
    t:assert(cut.lost_writes >= 1 and cut.kept_writes >= 1, ("lost %d, kept %d"):format(cut.lost_writes, cut.kept_writes))
    vm:boot()
    disk = vm:disk("raw")
    t:assert_eq(disk:read_sectors(10, 1):sub(1, 12), "flushed-data")
    t:assert_eq(disk:read_sectors(20, 1), string.rep("\0", 512), "the unflushed write is gone")
    t:assert_eq(vm:run("dd if=" .. vm:disk("raw"):guest_path() .. " bs=512 skip=10 count=1 2>/dev/null | head -c 12").stdout,
                "flushed-data")
end)

test("ext4 after a power cut: journal recovery at mount, then fsck is clean", function(t)
    local tree = HERE .. "tmp_disk_power_tree"
    t:assert(sh("rm -rf " .. tree .. " && mkdir -p " .. tree .. " && echo from-the-image > " .. tree .. "/seed"))
    local img = provium.ext4_image({dir = tree, path = HERE .. "tmp_disk_power.ext4", size = "64M"})
    local before = io.popen("sha256sum " .. img):read("a")
    local vm = provium:vm("ext4cut", "default")
    vm:boot({disks = {{id = "fs", path = img, power_cut = true}}})
    local dev = vm:disk("fs"):guest_path()
    vm:run("mkdir -p /mnt/fs && mount -t ext4 -o commit=600 " .. dev .. " /mnt/fs"):assert_ok()
    t:assert_eq(vm:run("cat /mnt/fs/seed").stdout, "from-the-image\n")
    vm:run("echo synced > /mnt/fs/kept && sync"):assert_ok()
    vm:run("echo never-synced > /mnt/fs/lost"):assert_ok()
    local disk = vm:disk("fs")
    local cut = disk:power_cut()
    local path = disk:path()
    -- the journal holds a committed transaction not yet written home
    local fsck = io.popen("e2fsck -fn " .. path .. " 2>&1"):read("a")
    t:assert(fsck:find("journal recovery"), "fsck before the next mount sees a journal to recover: " .. fsck)
    vm:boot()
    dev = vm:disk("fs"):guest_path()
    vm:run("dmesg -c > /dev/null; mkdir -p /mnt/fs && mount -t ext4 " .. dev .. " /mnt/fs"):assert_ok()
    local log = vm:run("dmesg").stdout
    t:assert(log:find("recovery complete"), "ext4 replays its journal: " .. log)
    t:assert_eq(vm:run("cat /mnt/fs/kept").stdout, "synced\n")
    t:assert(vm:run("test -e /mnt/fs/lost").exit_code ~= 0, "a file never synced does not survive the cut")
    vm:run("umount /mnt/fs"):assert_ok()
    vm:shutdown()
    local ok, code = sh("e2fsck -fn " .. path .. " > /dev/null 2>&1")
    t:assert(ok, "fsck after recovery is clean, exit " .. tostring(code))
    t:assert_eq(io.popen("sha256sum " .. img):read("a"), before, "the source image is untouched")
    t:assert(cut.kept_writes >= 1, "the sync reached the disk")
    os.remove(img)
    sh("rm -rf " .. tree)
end)
