-- provium.reset_between_tests with a disk: the snapshot taken at the end of
-- the top-level chunk holds the disk too, so each test starts from the
-- disk as it was then, and file-scope Disk handles keep working.
provium.reset_between_tests = true
local vm = provium:vm("shared-disk", "default"):boot({disks = {{id = "data", size = "4M"}}})
local disk = vm:disk("data")
disk:write_sectors(0, "baseline")

test("first test writes over the baseline", function(t)
    t:assert_eq(disk:read_sectors(0, 1):sub(1, 8), "baseline")
    vm:run("printf 'changed!' | dd of=" .. disk:guest_path() .. " bs=512 conv=sync,fsync"):assert_ok()
    disk:write_sectors(100, "leak")
    t:assert_eq(disk:read_sectors(0, 1):sub(1, 8), "changed!")
end)

test("second test sees the baseline disk again", function(t)
    t:assert_eq(disk:read_sectors(0, 1):sub(1, 8), "baseline")
    t:assert_eq(disk:read_sectors(100, 1), string.rep("\0", 512))
    local r = vm:run("dd if=" .. disk:guest_path() .. " bs=512 count=1 iflag=direct 2>/dev/null | head -c 8")
    t:assert_eq(r.stdout, "baseline")
end)
