-- Unprivileged processes in the guest (issue 10): the default initramfs used
-- to have a 0700 root directory, which locked every uid but 0 out of /bin/sh.
local U = require("helpers.unprivileged")
local vm = provium:vm("unpriv", "default"):boot()

U.tests(vm)

-- Boot option files whose parents the image already has must not reset those
-- parents' modes or owners (an initramfs entry for a directory that exists is
-- applied to it); new parents are created 0755.
test("boot files keep the modes of existing directories", function(t)
  local v = provium:vm("files", "default")
  v:boot({files = {
    {path = "/home/user/notes/todo", content = "a"},
    {path = "/home/user/.profile", content = "b"},
    {path = "/etc/extra.conf", content = "c"},
    {path = "/srv/data/x", content = "d"},
  }})
  local r = v:run("stat -c '%n %a %u:%g' / /home/user /home/user/notes /home/user/.profile /etc /srv /srv/data /srv/data/x")
  r:assert_ok()
  t:assert_eq(r.stdout, table.concat({"/ 755 0:0", "/home/user 755 1000:1000", "/home/user/notes 755 0:0",
    "/home/user/.profile 644 0:0", "/etc 755 0:0", "/srv 755 0:0", "/srv/data 755 0:0", "/srv/data/x 644 0:0",
    ""}, "\n"))
  U.check_modes(t, v)
  local w = v:spawn_worker()
  U.drop(w)
  t:assert_eq(w:read_file("/home/user/.profile"), "b")
  w:run("touch /home/user/mine"):assert_ok()
  v:shutdown()
end)
