-- Booting from a disk (docs/user-guide.md, "Booting from a root filesystem
-- image"): the busybox initramfs tree goes into an ext4 image made with
-- provium.ext4_image, and three profiles of provium.toml boot it:
--   rootfs           the default kernel from the disk alone (read-only, init=)
--   rootfs-writable  the same disk behind a qcow2 overlay (rootfs_writable)
--   initrd-rootfs    the initramfs boots, the disk is /dev/vda
-- The image must come out of every boot byte for byte as it went in.
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$")
local build = here .. "/../../build"
local images = build .. "/test-images"
local image = images .. "/busybox-root.ext4" -- the profiles' rootfs
local tree = images .. "/busybox-tree." .. tostring(os.time()) .. "." .. tostring(math.random(1 << 30))

local function sh(cmd)
  local ok = os.execute(cmd)
  if not ok then error("host command failed: " .. cmd, 2) end
end

local function sha256(path)
  local p = assert(io.popen("sha256sum '" .. path .. "'"))
  local out = p:read("a")
  p:close()
  return out:match("^(%x+)")
end

-- The image is made by the first test that needs it, not at the top level:
-- `provium list` runs the top level too. The initramfs is two concatenated
-- cpio archives; cpio reads the first, which is everything but /home/user
-- (the second only gives it its owner).
local made, before
local function disk()
  if made then return made end
  sh("mkdir -p '" .. tree .. "' && cd '" .. tree .. "' && cpio -id --quiet < '" .. build .. "/image/initrd.cpio'" ..
     " && mkdir -p home/user")
  sh("test -x '" .. tree .. "/bin/busybox'")
  made = provium.ext4_image{dir = tree, path = image, label = "provium-root"}
  sh("rm -rf '" .. tree .. "'")
  before = sha256(image)
  return made
end

-- A booted VM of a profile whose rootfs is the image.
local function boot_on(name, profile)
  disk()
  return provium:vm(name, profile):boot()
end

test("the helper made an ext4 image with the tree in it", function(t)
  disk()
  t:assert_eq(made:sub(1, 1), "/")
  local p = assert(io.popen("/sbin/debugfs -R 'ls -p /bin' '" .. made .. "' 2>/dev/null; /sbin/dumpe2fs -h '" ..
                            made .. "' 2>/dev/null"))
  local out = p:read("a")
  p:close()
  t:assert_contains(out, "/busybox/")
  t:assert_contains(out, "Filesystem volume name:   provium-root")
  t:assert_contains(out, "Filesystem features:")
end)

test("the helper's errors name what is wrong", function(t)
  local err = tostring(t:assert_raises(function()
    provium.ext4_image{dir = "/nonexistent/tree", path = images .. "/x.ext4"}
  end))
  t:assert_contains(err, "source directory /nonexistent/tree: No such file or directory")
  err = tostring(t:assert_raises(function() provium.ext4_image{dir = here, path = images .. "/x.ext4", size = "1M"} end))
  t:assert_contains(err, "size 1048576 bytes is out of range")
  err = tostring(t:assert_raises(function() provium.ext4_image{dir = here, pth = "x"} end))
  t:assert_contains(err, "pth")
end)

test("rootfs only: the kernel boots the disk with init=, read-only", function(t)
  local vm = boot_on("disk", "rootfs")
  local cmdline = vm:read_file("/proc/cmdline")
  t:assert_contains(cmdline, " root=/dev/vda ro init=/sbin/init")
  t:assert(not cmdline:find("rdinit=", 1, true), "a disk boot has no rdinit=: " .. cmdline)
  -- / is the disk itself; no initramfs is left under it
  local mounts = vm:read_file("/proc/mounts")
  local overlay = vm:run("grep -qw overlay /proc/filesystems"):ok()
  t:assert(overlay, "the default kernel has overlayfs (image/kernel.fragment)")
  if overlay then
    t:assert(mounts:find("\noverlay / overlay ", 1, true) or mounts:find("^overlay / overlay "), mounts)
  else
    t:assert(mounts:find("/dev/vda / ext4 ro", 1, true), mounts)
  end
  t:assert_eq(vm:run("test -e /provium-agent || test -e /init"):ok(), false, "the shim is gone after the switch")
  t:assert_eq(vm:read_file("/sys/block/vda/serial"), "provium-rootfs")
  -- the agent works: commands, files in the tmpfs layer
  t:assert_eq(vm:run("busybox echo from-the-disk").stdout, "from-the-disk\n")
  vm:write_file("/tmp/note", "written in the guest")
  t:assert_eq(vm:read_file("/tmp/note"), "written in the guest")
  t:assert_eq(vm:run("cat /tmp/note").stdout, "written in the guest")
  -- the disk's read-only attachment holds even against the guest's root
  local r = vm:run("echo x > /etc/hosts")
  t:assert(overlay or not r:ok(), "a read-only root without overlayfs refuses writes")
  if overlay then -- the tmpfs layer takes writes anywhere under /
    vm:write_file("/etc/on-the-layer", "tmpfs layer")
    t:assert_eq(vm:run("cat /etc/on-the-layer").stdout, "tmpfs layer")
  end
  if not overlay then t:assert_contains(r.stderr, "Read-only file system") end
  r = vm:run("dd if=/dev/zero of=/dev/vda bs=512 count=1 conv=fsync")
  t:assert(not r:ok(), "QEMU attached the image read-only: " .. r.stdout .. r.stderr)
  vm:shutdown()
  t:assert_eq(sha256(image), before, "the image is unchanged")
end)

test("rootfs_writable: the guest writes its root, the image stays as it was", function(t)
  local vm = boot_on("rw", "rootfs-writable")
  t:assert_contains(vm:read_file("/proc/cmdline"), " root=/dev/vda rw init=/sbin/init")
  t:assert(vm:read_file("/proc/mounts"):find("/dev/vda / ext4 rw", 1, true))
  vm:write_file("/etc/written-by-guest", "on the overlay")
  vm:run("dd if=/dev/urandom of=/root/blob bs=64k count=16 && sync"):assert_ok()
  t:assert_eq(vm:read_file("/etc/written-by-guest"), "on the overlay")
  -- a reset is a reboot on the same disk: the write survives it
  vm:reset()
  t:assert_eq(vm:read_file("/etc/written-by-guest"), "on the overlay")
  vm:shutdown()
  t:assert_eq(sha256(image), before, "the image is unchanged")
  -- a new boot starts again from the image's bytes
  local again = provium:vm("rw2", "rootfs-writable"):boot()
  t:assert_eq(again:run("test -e /etc/written-by-guest"):ok(), false)
  again:shutdown()
end)

test("initrd and rootfs: the initramfs boots, the disk is /dev/vda", function(t)
  local vm = boot_on("both", "initrd-rootfs")
  local cmdline = vm:read_file("/proc/cmdline")
  t:assert_contains(cmdline, "rdinit=/provium-wrapper provium.init=/sbin/init")
  t:assert(not cmdline:find(" root=", 1, true), cmdline)
  t:assert(vm:run("test -b /dev/vda"):ok(), "/dev/vda is a block device")
  t:assert(not vm:read_file("/proc/mounts"):find("/dev/vda", 1, true), "the disk is not mounted for the test")
  vm:run("mkdir -p /mnt/disk && mount -o ro /dev/vda /mnt/disk"):assert_ok()
  t:assert(vm:run("test -x /mnt/disk/bin/busybox"):ok())
  vm:shutdown()
  t:assert_eq(sha256(image), before, "the image is unchanged")
end)

test("rootfs_writable: a snapshot keeps the root disk's contents, a restore gets them back", function(t)
  local vm = boot_on("snapsrc", "rootfs-writable")
  vm:run("echo before > /etc/state && sync"):assert_ok()
  local snap = vm:snapshot()
  vm:run("echo after > /etc/state && echo later > /etc/later && sync"):assert_ok()
  vm:shutdown()
  -- two VMs from one snapshot: each gets the disk as it was, and its own copy
  local a = provium:vm("snapa", "rootfs-writable"):restore(snap)
  local b = provium:vm("snapb", "rootfs-writable"):restore(snap)
  t:assert_eq(a:run("cat /etc/state").stdout, "before\n")
  t:assert_eq(a:run("test -e /etc/later"):ok(), false)
  -- dropping the page cache makes the guest read the disk itself
  a:run("sync && echo 3 > /proc/sys/vm/drop_caches && cat /etc/state"):assert_ok()
  t:assert_eq(a:run("cat /etc/state").stdout, "before\n")
  a:run("echo a > /etc/state && sync"):assert_ok()
  t:assert_eq(b:run("cat /etc/state").stdout, "before\n")
  a:shutdown()
  b:shutdown()
  t:assert_eq(sha256(image), before, "the image is unchanged")
  -- a snapshot of the disk profile does not restore on a profile without one
  local err = tostring(t:assert_raises(function() provium:vm("nodisk", "default"):restore(snap) end))
  t:assert_contains(err, "was taken with a root disk, and VM 'nodisk' (profile 'default') has none")
end)

test("a modular kernel with overlayfs: the shim loads virtio_blk, the root is a writable overlay", function(t)
  local vm = boot_on("deb", "debian-rootfs")
  local mounts = vm:read_file("/proc/mounts")
  t:assert(mounts:find("overlay / overlay ", 1, true), mounts)
  t:assert_contains(mounts, "lowerdir=/provium/disk")
  t:assert(vm:run("grep -q '^virtio_blk ' /proc/modules"):ok(), "virtio_blk came from the shim")
  -- the whole root takes writes; they land in tmpfs, not on the disk
  vm:write_file("/etc/on-the-overlay", "tmpfs layer")
  t:assert_eq(vm:run("cat /etc/on-the-overlay").stdout, "tmpfs layer")
  vm:run("echo changed >> /etc/hosts && rm /bin/true"):assert_ok()
  t:assert(not vm:run("dd if=/dev/zero of=/dev/vda bs=512 count=1 conv=fsync"):ok(), "the disk is read-only")
  vm:shutdown()
  t:assert_eq(sha256(image), before, "the image is unchanged")
end)
