-- Hot-plug on the pc machine: attach_disk is QMP blockdev-add + device_add
-- (then a PCI rescan in the guest, for kernels without a hot-plug driver),
-- detach is device_del, waiting for the guest to let the device go, then
-- blockdev-del. The default kernel has no ACPI PCI hot-plug driver, so its
-- detach times out with a clear error; Debian's kernel completes it.

test("attach on default-pc: the guest sees the disk, host and guest share its bytes", function(t)
    local vm = provium:vm("hot", "default-pc"):boot()
    local disk = vm:attach_disk({id = "hot", size = "16M"})
    t:assert_eq(disk:id(), "hot")
    t:assert_eq(disk:size(), 16 * 1024 * 1024)
    local dev = disk:guest_path()
    vm:run("printf 'from-the-guest' | dd of=" .. dev .. " bs=512 seek=7 conv=sync,fsync"):assert_ok()
    t:assert_eq(disk:read_sectors(7, 1):sub(1, 14), "from-the-guest")
    disk:fail_reads()
    t:assert(vm:run("dd if=" .. dev .. " of=/dev/null bs=512 count=1 iflag=direct").exit_code ~= 0)
    disk:clear_faults()
    local ok, err = pcall(vm.attach_disk, vm, {id = "hot", size = "1M"})
    t:assert(not ok and err:find("already has a disk with this id"), err)
    -- the default kernel lacks CONFIG_HOTPLUG_PCI_ACPI: QEMU never gets the eject
    ok, err = pcall(disk.detach, disk, {timeout = "3s"})
    t:assert(not ok and err:find("did not release the device") and err:find("HOTPLUG_PCI_ACPI"), err)
    t:assert(not disk:is_detached())
end)

test("detach on a kernel with ACPI hot-plug (debian): the device goes, the handle says so", function(t)
    local vm = provium:vm("hotdeb", "debian"):boot()
    local disk = vm:attach_disk({id = "plug", size = "8M"})
    local dev = disk:guest_path()
    disk:write_sectors(0, "plugged")
    t:assert_eq(vm:run("head -c 7 " .. dev).stdout, "plugged")
    disk:detach()
    t:assert(disk:is_detached())
    local ok, err = pcall(disk.read_sectors, disk, 0, 1)
    t:assert(not ok and err:find("disk is detached"), err)
    ok, err = pcall(disk.detach, disk)
    t:assert(not ok and err:find("disk is detached"), err)
    t:assert(vm:run("grep -l plug /sys/block/*/serial 2>/dev/null").stdout == "", "the guest has no such disk now")
    ok = pcall(vm.disk, vm, "plug")
    t:assert(not ok, "vm:disk does not find a detached disk")
    local again = vm:attach_disk({id = "plug", size = "8M"})
    t:assert_eq(again:read_sectors(0, 1), string.rep("\0", 512), "a new scratch disk under the same id")
end)
