-- The kernel's own selftests (tools/testing/selftests of linux-source-6.1),
-- run through provium: every KTAP case a binary prints becomes a sub-test.
--
-- `make kselftests` builds the set statically for the default image
-- (image/build-kselftests.sh, cached by content under ~/.cache/provium);
-- build/image/kselftest/kselftests.tar.gz is unpacked into the guest once.
-- See README.md for which directories and why.
--
-- Each test also checks provium against the binary itself: the sub-tests
-- (name and verdict, in order) must be exactly the result lines of the raw
-- KTAP the binary printed, read here line by line without provium's parser.

local vm = provium:vm("kselftest", "default", {memory = "512M"}):boot()
local ROOT = "/opt/kselftest"
vm:push_file("../../build/image/kselftest/kselftests.tar.gz", "/root/kselftests.tar.gz")
vm:run("mkdir -p " .. ROOT .. " && tar -xzf /root/kselftests.tar.gz -C " .. ROOT):assert_ok()

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- The verdicts of flat kselftest output, from its "ok N ..." / "not ok N ..."
-- lines: "<status> <suite> / <description>" each.
local function raw_verdicts(stdout, suite, prefix)
  local out = {}
  prefix = prefix or ""
  for line in stdout:gmatch("[^\n]+") do
    local body = line:sub(1, #prefix) == prefix and line:sub(#prefix + 1) or nil
    local notok, rest = nil, nil
    if body then
      rest = body:match("^not ok %d+%s*(.*)$")
      if rest then notok = true else rest = body:match("^ok %d+%s*(.*)$") end
    end
    if rest then
      local desc, comment = rest:match("^(.-)%s*#%s*(.*)$")
      if not desc then desc, comment = rest, "" end
      desc = trim(desc)
      local word = (comment:match("^(%a+)") or ""):upper()
      local status = notok and "failed" or "passed"
      if word == "SKIP" then
        status = "skipped"
        if desc == "" then desc = trim(comment:sub(5)) end
      elseif word == "TODO" then
        status = notok and "todo" or "passed"
      end
      out[#out + 1] = status .. " " .. suite .. " / " .. desc
    end
  end
  return out
end

local function verdicts_of(cases)
  local out = {}
  for _, c in ipairs(cases) do out[#out + 1] = c.status .. " " .. c.name end
  return out
end

-- Runs one binary through vm:kselftest and compares its sub-tests with the
-- raw KTAP of that same run.
local function selftest(t, path, opts)
  local r = vm:kselftest(ROOT .. "/" .. path, opts)
  local suite = path:match("([^/]+)$")
  local want = raw_verdicts(r.stdout, suite)
  t:assert(#want > 0, path .. " printed no KTAP result line:\n" .. r.stdout)
  t:assert_eq(table.concat(verdicts_of(r.cases), "\n"), table.concat(want, "\n"),
    path .. ": sub-tests against the raw KTAP")
  t:assert(r.exit_code == 0 or r.exit_code == 4, path .. " exited with " .. r.exit_code)
  return r
end

test("membarrier", function(t)
  selftest(t, "membarrier/membarrier_test_single_thread")
  selftest(t, "membarrier/membarrier_test_multi_thread")
  -- and against the same binary run by hand, outside vm:kselftest
  local by_hand = vm:run("cd " .. ROOT .. "/membarrier && ./membarrier_test_single_thread")
  local r = vm:kselftest(ROOT .. "/membarrier/membarrier_test_single_thread")
  t:assert_eq(table.concat(verdicts_of(r.cases), "\n"),
    table.concat(raw_verdicts(by_hand.stdout, "membarrier_test_single_thread"), "\n"))
end)

test("futex/functional", function(t)
  for _, bin in ipairs({"futex_wait", "futex_wait_timeout", "futex_wait_wouldblock", "futex_requeue",
      "futex_wait_uninitialized_heap", "futex_wait_private_mapped_file", "futex_waitv"}) do
    selftest(t, "futex/functional/" .. bin)
  end
end)

test("timers (non-destructive)", function(t)
  -- nanosleep skips the clocks this kernel lacks: those are skipped sub-tests
  local r = selftest(t, "timers/nanosleep")
  t:assert(r.skipped > 0 and r.passed > 0, "expected both passed and skipped clocks")
end)

test("size", function(t)
  selftest(t, "size/get_size")
end)

test("sigaltstack", function(t)
  selftest(t, "sigaltstack/sas")
end)

test("memfd", function(t)
  -- memfd_test prints no KTAP: its exit status is the verdict, one sub-test
  local r = vm:kselftest(ROOT .. "/memfd/memfd_test")
  t:assert_eq(#raw_verdicts(r.stdout, "memfd_test"), 0)
  t:assert_eq(#r.cases, 1)
  t:assert_eq(r.cases[1].name, "memfd_test")
  t:assert_eq(r.cases[1].status, r.exit_code == 0 and "passed" or "failed")
  t:assert_contains(r.stdout, "memfd: DONE")
end)

test("run_kselftest.sh collection", function(t)
  -- the kernel's own runner: each binary's KTAP nested behind "# "
  local r = vm:kselftest(ROOT, {tests = {"membarrier:membarrier_test_single_thread", "size:get_size",
    "sigaltstack:sas"}})
  local want = {}
  local current
  for line in r.stdout:gmatch("[^\n]+") do
    local header = line:match("^# (selftests: .+)$")
    if header then current = header end
    if current and line:match("^# n?o?t? ?ok ") then
      for _, v in ipairs(raw_verdicts(line, current, "# ")) do want[#want + 1] = v end
    end
  end
  t:assert(#want >= 15, "expected the cases of three binaries:\n" .. r.stdout)
  t:assert_eq(table.concat(verdicts_of(r.cases), "\n"), table.concat(want, "\n"))
end)
