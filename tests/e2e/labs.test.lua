-- Labs: sub-labs, membership, batch lifecycle, lab snapshots and lab fixtures.

test("sub-labs hold their own VMs; batch boot and shutdown", function(t)
  local dc1 = provium:lab("dc1")
  local anon = provium:lab()
  t:assert_eq(dc1:name(), "dc1")
  t:assert(anon:name():find("^__lab_"), "anonymous labs get generated names")
  local a = dc1:vm("a", "default")
  local b = dc1:vm("b", "default")
  t:assert_eq(dc1:vm("a"), a)
  t:assert_eq(dc1.b, b)
  t:assert_eq(provium.dc1, dc1)
  t:assert_eq(table.concat(dc1:vm_names(), ","), "a,b")
  t:assert_contains(t:assert_raises(dc1.vm, dc1, "a", "default"), "already exists")
  t:assert_contains(t:assert_raises(dc1.vm, dc1, "zz"), "no VM named 'zz'")
  dc1:boot()
  t:assert_eq(a:state(), "booted")
  t:assert_eq(b:state(), "booted")
  dc1:pause()
  t:assert_eq(b:state(), "paused")
  dc1:resume()
  t:assert_eq(b:run("echo ok").stdout, "ok\n")
  local other = provium:lab("other")
  other:include({a})
  t:assert_eq(other.a, a)
  other:remove("a")
  t:assert_eq(other.a, nil)
  t:assert_eq(a:state(), "booted") -- removal is graph-only
  local kinds = {}
  for _, m in ipairs(provium:members()) do kinds[m.name] = m.kind end
  t:assert_eq(kinds.dc1, "sub_lab")
  dc1:shutdown()
  t:assert_eq(a:state(), "shutdown")
end)

test("batch boot is all or nothing", function(t)
  local lab = provium:lab("mixed")
  local good = lab:vm("good", "default")
  -- every init the kernel would try is junk: it panics at once
  local junk = {}
  for _, p in ipairs({"/provium-wrapper", "/sbin/init", "/etc/init", "/bin/init", "/bin/sh"}) do
    junk[#junk + 1] = {path = p, content = "not an executable"}
  end
  lab:vm("bad", "default", {files = junk})
  local e = t:assert_raises(lab.boot, lab)
  t:assert_contains(e, "'bad'")
  t:assert_eq(good:state(), "shutdown") -- booted by this call, then shut down again
end)

test("lab snapshot and restore keep the members consistent", function(t)
  local lab = provium:lab("pair")
  local x = lab:vm("x", "default"):boot()
  local y = lab:vm("y", "default"):boot()
  x:write_file("/tmp/v", "x1")
  y:write_file("/tmp/v", "y1")
  local snap = lab:snapshot()
  x:write_file("/tmp/v", "x2")
  lab:restore(snap)
  t:assert_eq(x:read_file("/tmp/v"), "x1")
  t:assert_eq(y:read_file("/tmp/v"), "y1")
  t:assert(snap:size() > 0, "lab snapshot size")
  snap:delete()
  t:assert_eq(snap:size(), 0)
end)

test("lab fixtures restore every member into a fresh sub-lab", function(t)
  local lab = provium:lab_fixture("pair")
  t:assert_eq(lab.a:read_file("/etc/role"), "server")
  t:assert_eq(lab.b:read_file("/etc/role"), "client")
  t:assert_eq(#lab:vm_names(), 2)
end)
