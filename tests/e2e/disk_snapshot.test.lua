-- A VM snapshot includes its disks: the private disk files (scratch files,
-- overlays) are copied while the VM is stopped for the migration stream, so
-- a restore gets the disk exactly as the guest had it at that moment.

test("a snapshot with a disk restores to the same disk contents", function(t)
    local vm = provium:vm("snapdisk", "default")
    vm:boot({disks = {{id = "state", size = "8M"}}})
    local dev = vm:disk("state"):guest_path()
    vm:run("printf 'at-snapshot' | dd of=" .. dev .. " bs=512 seek=3 conv=sync,fsync"):assert_ok()
    local snap = vm:snapshot()
    vm:run("printf 'after-snap!' | dd of=" .. dev .. " bs=512 seek=3 conv=sync,fsync"):assert_ok()
    t:assert_eq(vm:disk("state"):read_sectors(3, 1):sub(1, 11), "after-snap!", "the source VM goes on")
    local copy = provium:vm("snapcopy", "default"):restore(snap)
    local disk = copy:disk("state")
    t:assert_eq(disk:read_sectors(3, 1):sub(1, 11), "at-snapshot", "the restored disk is the snapshot's")
    local r = copy:run("dd if=" .. disk:guest_path() .. " bs=512 skip=3 count=1 iflag=direct 2>/dev/null | head -c 11")
    t:assert_eq(r.stdout, "at-snapshot", "and the restored guest reads the same")
    copy:run("printf 'copy-writes' | dd of=" .. disk:guest_path() .. " bs=512 seek=4 conv=sync,fsync"):assert_ok()
    t:assert_eq(vm:disk("state"):read_sectors(4, 1), string.rep("\0", 512), "the copies are independent")
    -- restored in place (as reset_between_tests does), the old handle names the same disk
    local handle = vm:disk("state")
    vm:shutdown()
    vm:restore(snap)
    t:assert_eq(handle:read_sectors(3, 1):sub(1, 11), "at-snapshot")
end)
