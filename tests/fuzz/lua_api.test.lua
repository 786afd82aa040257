-- Fuzzer of the Lua API boundary (`make fuzz`, run by the ASan+UBSan build of
-- provium): random calls of every method of every provium object, and of the
-- provium and json functions, with random arguments of random types, against
-- the local profile. Any outcome but a Lua error or a result is a bug: a
-- crash (the file CRASHes, with the sanitizer's report in its output) or a
-- hang (a round passes its per-test timeout).
--
-- FUZZ_SECONDS (default 60) bounds the run; FUZZ_SEED (default: the time)
-- makes it repeatable; the seed is logged in every round.
--
-- The local profile's agent acts on the host itself, so a few calls are never
-- made or are made only with safe arguments: raw system calls and ioctls,
-- the clock (it would set the host's time), commands other than a fixed
-- harmless set, and absolute paths (random strings never start with "/" and
-- hold no ".."). Relative host paths (push_file, snapshot) resolve against
-- the project root, so `make fuzz-lua` runs this file with a config in a
-- sandbox directory of its own (marked by a FUZZ_SANDBOX file); anywhere
-- else it refuses to start. An early version without the sandbox lost a
-- whole checkout to vm:snapshot(".") (fixed: see faults.test.lua).
do
  local mark = io.open("FUZZ_SANDBOX")
  if not mark then
    error("tests/fuzz/lua_api.test.lua runs only in its sandbox: use `make fuzz-lua`", 0)
  end
  mark:close()
end
local SECONDS = tonumber(os.getenv("FUZZ_SECONDS") or "") or 60
local SEED = tonumber(os.getenv("FUZZ_SEED") or "") or os.time()
local ROUND_SECONDS = 10
local ROUNDS = math.max(1, math.ceil(SECONDS / ROUND_SECONDS))
math.randomseed(SEED)
local R = math.random

local NEVER = {syscall = true, syscall_async = true, ioctl = true, clock = true, __set_classic = false}
-- numeric arguments of calls that wait are kept short: a long wait that the
-- caller asked for is not a hang
local WAITS = {next = true, read_until = true, expect = true, drain = true, wait = true, await = true,
  join = true, sleep = true, wait_until = true, barrier = true, close = true}
local COMMANDS = {"true", "false", "echo fuzz", "printf 'a\\0b'", "exit 3", "sleep 0.01", "head -c 100000 /dev/zero",
  "kill -9 $$", "echo err >&2"}
local STRINGS = {"", "x", "a\0b", string.rep("y", 5000), "\xff\xfe\x80", "fuzzdir/sub", "timeout",
  "timeout_ms", "env", "env_clear", "cwd", "stdin", "args", "thread", "start", "end", "beginning", "perm",
  "parents", "read", "write", "create", "truncate", "append", "exclusive", "SIGKILL", "term", "usr1", "9",
  "500ms", "0s", "-1s", "1e400", "2m", "%s%n%d", "\27]0;t\7", "nan", "local", "default", "nosuch", "\n", " "}
local NUMBERS = {0, 1, -1, 2, 3, 7, 64, 0.5, -0.5, 0.01, 2 ^ 31, 2 ^ 31 - 1, 2 ^ 32, 2 ^ 53, -2 ^ 53,
  math.maxinteger, math.mininteger, math.huge, -math.huge, 0 / 0, 1e30, -1e30, 4096, 65536}

local pool = {} -- objects made so far (VMs, processes, streams, files, ...)
local counts = {calls = 0, errors = 0, created = 0}

local function remember(v)
  local ty = type(v)
  if (ty == "userdata" or ty == "table") and #pool < 60 then
    pool[#pool + 1] = v
    counts.created = counts.created + 1
  elseif ty == "userdata" and R(4) == 1 then
    pool[R(#pool)] = v -- the one replaced is garbage now: its __gc runs later
  end
end

local function random_string()
  local n = R(0, 24)
  local b = {}
  for i = 1, n do b[i] = string.char(R(i == 1 and 33 or 0, 255)) end
  local s = table.concat(b)
  if s:sub(1, 1) == "/" or s:find("..", 1, true) then s = "f" .. s:gsub("%.%.", "_") end
  return s
end

local value
local function random_table(depth)
  local t = {}
  for _ = 1, R(0, 4) do
    local k = R(3) == 1 and R(-1, 4) or STRINGS[R(#STRINGS)]
    t[k] = value(depth + 1)
  end
  return t
end

value = function(depth)
  depth = depth or 0
  local c = R(depth > 2 and 7 or 10)
  if c == 1 then return nil
  elseif c == 2 then return R(2) == 1
  elseif c == 3 then return NUMBERS[R(#NUMBERS)]
  elseif c == 4 then return STRINGS[R(#STRINGS)]
  elseif c == 5 then return random_string()
  elseif c == 6 then return #pool > 0 and pool[R(#pool)] or nil
  elseif c == 7 then return R(-3, 100)
  elseif c == 8 then return random_table(depth)
  elseif c == 9 then return function(...) return value(depth + 1) end
  else return coroutine.create(function() end)
  end
end

local function clamp(args, n)
  for i = 1, n do
    if type(args[i]) == "number" and (args[i] ~= args[i] or args[i] > 0.05 or args[i] < -0.05) then
      args[i] = R(2) == 1 and 0.02 or -0.02
    elseif type(args[i]) == "table" then
      for _, k in ipairs({"timeout", "interval", "timeout_ms"}) do
        if args[i][k] ~= nil then args[i][k] = 0.02 end
      end
    end
  end
end

-- Calls obj:name(random args...) or fn(random args...) under pcall.
local function call(fn, self, name)
  local n = R(0, 5)
  local args = {n = n}
  for i = 1, n do args[i] = value() end
  if WAITS[name] then clamp(args, n) end
  if name == "run" or name == "run_async" or name == "exec" then
    -- only harmless commands, with random options
    if R(3) == 1 then
      args = {{args = {"/bin/echo", value()}, cwd = value(), env = value(), timeout = 1}, n = 1}
    else
      args = {COMMANDS[R(#COMMANDS)], random_table(1), n = 2}
      if name == "run_async" then args[2].timeout, args[2].timeout_ms = nil, nil end
      if name ~= "run_async" then args[2].timeout = 2 end
      if type(args[2].cwd) == "string" and args[2].cwd:sub(1, 1) == "/" then args[2].cwd = nil end
    end
  end
  counts.calls = counts.calls + 1
  local res = table.pack(pcall(fn, self, table.unpack(args, 1, args.n)))
  if not res[1] then
    counts.errors = counts.errors + 1
    -- an error must be a string (or the framework's own markers)
    assert(type(res[2]) == "string" or type(res[2]) == "table", "non-string error: " .. type(res[2]))
  else
    for i = 2, res.n do remember(res[i]) end
  end
end

local function methods_of(obj)
  local mt = debug.getmetatable(obj)
  local idx = mt and mt.__index
  local out = {}
  while type(idx) == "table" do
    for k, v in pairs(idx) do
      if type(v) == "function" and not NEVER[k] then out[#out + 1] = k end
    end
    local m = getmetatable(idx)
    idx = m and m.__index
  end
  table.sort(out)
  return out
end

local vm
local nvms = 0
local function fresh_vm()
  nvms = nvms + 1
  vm = provium:vm("fuzz" .. nvms, "local"):boot()
  remember(vm)
end

local globals = {
  function() call(provium.vm, provium, "vm") end,
  function() call(provium.pack, provium, "pack") end,
  function() call(provium.unpack, provium, "unpack") end,
  function() call(provium.barrier, provium, "barrier") end,
  function() call(provium.vm_fixture, provium, "vm_fixture") end,
  function() call(json.encode, value(), "encode") end,
  function() call(json.decode, STRINGS[R(#STRINGS)], "decode") end,
  function() call(wait_until, function() return R(3) == 1 end, "wait_until") end,
  function() collectgarbage() end,
  function()
    -- a freed object must refuse use, not crash
    local o = pool[R(math.max(1, #pool))]
    local mt = o and debug.getmetatable(o)
    if mt and mt.__gc and R(4) == 1 then pcall(mt.__gc, o) end
  end,
}

local function one_call()
  local ok, st = pcall(function() return vm:state() end)
  if not ok or st ~= "booted" then fresh_vm() end
  if R(8) == 1 then
    globals[R(#globals)]()
    return
  end
  local obj = R(3) == 1 and vm or pool[R(#pool)]
  if type(obj) ~= "userdata" then obj = vm end
  local names = methods_of(obj)
  if #names == 0 then return end
  local name = names[R(#names)]
  local fn = obj[name]
  if type(fn) == "function" then call(fn, obj, name) end
  if #pool >= 60 then
    -- let most of them go: their __gc runs with the VM in any state
    for i = #pool, 10, -1 do pool[i] = nil end
  end
end

for round = 1, ROUNDS do
  test("fuzz round " .. round, {timeout = ROUND_SECONDS * 3}, function(t)
    local stop = os.clock() + ROUND_SECONDS
    local started = os.time()
    while os.clock() < stop and os.time() - started < ROUND_SECONDS do one_call() end
    t:log(string.format("seed %d: %d calls, %d raised errors, %d objects kept", SEED, counts.calls, counts.errors,
      counts.created))
  end)
end
