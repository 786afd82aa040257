-- Unprivileged processes in the default initramfs (also booted by the debian
-- profile): workers that drop to uid 1000, the image's "user", run commands,
-- read what everybody may read and are refused what only root may read.
local M = {}

local SYS_setresuid, SYS_setresgid = 117, 119

-- gid first: once the uid is 1000 the worker may no longer change its gid
function M.drop(w)
  assert(w:syscall(SYS_setresgid, 1000, 1000, 1000).ret == 0, "setresgid failed")
  assert(w:syscall(SYS_setresuid, 1000, 1000, 1000).ret == 0, "setresuid failed")
end

-- The modes and owners the image must have (`ls -ld /` was drwx------).
function M.check_modes(t, vm)
  local r = vm:run("stat -c '%n %a %u:%g' / /bin /bin/busybox /etc /etc/passwd /etc/group /home /home/user /root /tmp")
  r:assert_ok()
  t:assert_eq(r.stdout, table.concat({
    "/ 755 0:0", "/bin 755 0:0", "/bin/busybox 755 0:0", "/etc 755 0:0", "/etc/passwd 644 0:0",
    "/etc/group 644 0:0", "/home 755 0:0", "/home/user 755 1000:1000", "/root 700 0:0", "/tmp 1777 0:0", ""}, "\n"))
end

-- A fork worker and a thread worker each drop to uid 1000 and run commands.
function M.check_workers(t, vm)
  local secret = "/tmp/root-secret"
  vm:write_file(secret, "secret", tonumber("600", 8))
  for _, opts in ipairs({{}, {thread = true}}) do
    local kind = opts.thread and "thread" or "fork"
    local w = vm:spawn_worker(opts)
    M.drop(w)
    local r = w:run("id -u; id -g; id -un; head -n1 /etc/passwd; ls / >/dev/null && echo listed")
    t:assert_eq(r.stderr, "", kind .. " worker: stderr")
    t:assert_eq(r.stdout, "1000\n1000\nuser\nroot:x:0:0:root:/root:/bin/sh\nlisted\n", kind .. " worker")
    t:assert_contains(w:read_file("/etc/passwd"), "user:x:1000:1000:")
    -- the root-only file: refused to the agent's own read and to a command
    local err = t:assert_raises(function() w:read_file(secret) end)
    t:assert_contains(tostring(err), "Permission denied")
    r = w:run("cat " .. secret)
    t:assert_neq(r.exit_code, 0, kind .. " worker read a 0600 root file")
    t:assert_contains(r.stderr, "Permission denied")
    t:assert_neq(w:run("ls /root").exit_code, 0, kind .. " worker listed /root")
    -- its home is its own
    w:run("echo " .. kind .. " > /home/user/" .. kind):assert_ok()
    t:assert_eq(vm:run("stat -c %u /home/user/" .. kind).stdout, "1000\n")
    w:kill()
  end
  t:assert_eq(vm:read_file(secret), "secret")
  -- su works for root, as it would on a real system
  local r = vm:run("su user -c 'id -u; id -un'")
  r:assert_ok()
  t:assert_eq(r.stdout, "1000\nuser\n")
end

-- Registers the two tests above for vm.
function M.tests(vm)
  test("the image has the usual modes and owners", function(t) M.check_modes(t, vm) end)
  test("fork and thread workers run as uid 1000", function(t) M.check_workers(t, vm) end)
end

return M
