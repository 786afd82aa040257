-- A helper that pushes files: its relative host paths resolve against this
-- directory (tests/e2e/helpers), not against the test file that requires it.
return function(vm, host_path, guest_path)
  vm:push_file(host_path, guest_path)
end
