local vm = provium:vm("basic", "default"):boot()

test("runs a shell command", function(t)
  local r = vm:run("echo hello; echo err >&2; exit 3")
  t:assert_eq(r.exit_code, 3)
  t:assert_eq(r.stdout, "hello\n")
  t:assert_eq(r.stderr, "err\n")
end)

test("files round trip", function(t)
  vm:write_file("/tmp/x", "data\0with nul")
  t:assert_eq(vm:read_file("/tmp/x"), "data\0with nul")
end)
