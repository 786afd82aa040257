-- Disks from images: the VM writes to a qcow2 overlay in its scratch
-- directory (the source keeps its bytes), readonly and persist do what they
-- say, and bad declarations fail before QEMU starts, naming disk and VM.

local HERE = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

local function sha(path)
    local f = assert(io.popen("sha256sum " .. path))
    local s = f:read("a"):match("^(%x+)")
    f:close()
    return s
end

local function make_image(name, fill)
    local p = HERE .. "tmp_disk_images_" .. name
    local f = assert(io.open(p, "wb"))
    f:write(fill .. string.rep("\0", 1024 * 1024 - #fill))
    f:close()
    return p
end


test("an image disk writes to an overlay: the source's hash is unchanged", function(t)
    local img = make_image("src", "ORIGINAL")
    local before = sha(img)
    local vm = provium:vm("overlay", "default")
    vm:boot({disks = {{id = "img", path = img}}})
    local dev = vm:disk("img"):guest_path()
    t:assert_eq(vm:run("head -c 8 " .. dev).stdout, "ORIGINAL")
    vm:run("printf 'CHANGED!' | dd of=" .. dev .. " bs=512 conv=sync,fsync"):assert_ok()
    t:assert_eq(vm:disk("img"):read_sectors(0, 1):sub(1, 8), "CHANGED!", "the guest's write is in the overlay")
    vm:disk("img"):write_sectors(1, "HOSTSIDE")
    t:assert(vm:disk("img"):path():find("%.qcow2$"), vm:disk("img"):path())
    vm:shutdown()
    t:assert_eq(sha(img), before, "the source image is untouched")
    os.remove(img)
end)

test("persist = true writes through to the image; readonly refuses host writes", function(t)
    local img = make_image("persist", "BEFORE")
    local ro = make_image("ro", "READONLY")
    local vm = provium:vm("persist", "default")
    vm:boot({disks = {{id = "keep", path = img, persist = true}, {id = "ro", path = ro, readonly = true}}})
    vm:run("printf 'AFTER!' | dd of=" .. vm:disk("keep"):guest_path() .. " bs=512 conv=sync,fsync"):assert_ok()
    local ok, err = pcall(function() vm:disk("ro"):write_sectors(0, "x") end)
    t:assert(not ok and err:find("read%-only") and err:find("disk 'ro' of VM 'persist'"), err)
    local r = vm:run("printf 'x' | dd of=" .. vm:disk("ro"):guest_path() .. " bs=512 conv=sync,fsync")
    t:assert(r.exit_code ~= 0, "the guest cannot write a readonly disk either")
    t:assert_eq(vm:disk("ro"):read_sectors(0, 1):sub(1, 8), "READONLY")
    vm:shutdown()
    local f = io.open(img, "rb")
    t:assert_eq(f:read(6), "AFTER!")
    f:close()
    os.remove(img)
    os.remove(ro)
end)

test("bad declarations are refused before the boot, naming disk and VM", function(t)
    local vm = provium:vm("bad", "default")
    local missing = HERE .. "tmp_disk_images_missing.img"
    local ok, err = pcall(vm.boot, vm, {disks = {{id = "m", path = missing}}})
    t:assert(not ok and err:find("disk 'm' of VM 'bad'") and err:find("does not exist"), err)
    t:assert(io.open(missing, "rb") == nil, "a named path is never created")
    local img = make_image("fmt", "RAWBYTES")
    ok, err = pcall(vm.boot, vm, {disks = {{id = "f", path = img, format = "qcow2"}}})
    t:assert(not ok and err:find("is raw, but the disk says format = \"qcow2\""), err)
    ok, err = pcall(vm.boot, vm, {disks = {{id = "a", size = "1M"}, {id = "a", size = "1M"}}})
    t:assert(not ok and err:find("disk 'a' of VM 'bad'") and err:find("id"), err)
    local many = {}
    for i = 1, 8 do many[i] = {id = "d" .. i, size = "1M"} end
    ok, err = pcall(vm.boot, vm, {disks = many})
    t:assert(not ok and err:find("more disks than the machine allows") and err:find("microvm"), err)
    t:assert_eq(vm:state(), "created")
    os.remove(img)
end)
