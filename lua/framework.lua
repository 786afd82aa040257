-- Provium test framework. Embedded in the provium binary and run once per
-- test file, in that file's own process, before the file itself.
local P = ...

local FAIL = setmetatable({}, {__tostring = function() return "test failure" end})
local SKIP = setmetatable({}, {__tostring = function() return "test skipped" end})

local tests, by_name = {}, {}
local file_scope = {kind = "file", vms = {}, order = {}, resources = {}, labs = {}, lab_order = {}, bridges = {},
  bridge_order = {}}
local current = file_scope
-- set by provium.create / provium.fixture at the file's top level: from then
-- on the file is classic and every test() runs where it is declared (see
-- test() below)
local classic_file = false

-- file:line of the code that called into the framework `level` frames up
local function where(level)
  local info = debug.getinfo(level + 1, "Sl")
  if not info or info.currentline < 0 then return "?" end
  -- the test file as the runner shows it, not Lua's shortened "...path"
  if P.file_path and info.source == "@" .. P.file_path and P.shown_path and P.shown_path ~= "" then
    return P.shown_path .. ":" .. info.currentline
  end
  return info.short_src .. ":" .. info.currentline
end

-- Tracebacks end in the framework's own frames; users need only theirs.
-- The message itself is always kept whole: it may quote where the framework
-- re-raised it ("provium/framework.lua:N: "), which says nothing to a user
-- and is cut, but the rest of such a line is the cause.
local function user_traceback(msg, level)
  local tb = debug.traceback(msg, level + 1)
  local head, frames = tb:match("^(.-)\n(stack traceback:\n.*)$")
  if not head then head, frames = tb, "" end
  head = head:gsub("provium/framework%.lua:%d+: ", "")
  local keep = {}
  if head ~= "" then keep[1] = head end
  for line in frames:gmatch("[^\n]+") do
    if not line:find("provium/framework.lua", 1, true) and not line:find("in function 'xpcall'", 1, true)
      and not line:find("^%s*%[C%]: in %?$") then
      keep[#keep + 1] = line
    end
  end
  if keep[#keep] and keep[#keep]:find("stack traceback:", 1, true) then keep[#keep] = nil end
  return table.concat(keep, "\n")
end

-- A string as one double-quoted line: printable bytes (UTF-8 included) as
-- they are, \n \t \r \" \\ and other control bytes (\xNN) escaped once.
local escapes = {["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r", ['"'] = '\\"', ["\\"] = "\\\\"}
local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return escapes[c] or string.format("\\x%02X", c:byte()) end) .. '"'
end

local function show(v)
  if type(v) == "string" then return quote(v) end
  return tostring(v)
end

local function lines_of(s)
  local out = {}
  for line in (s .. "\n"):gmatch("(.-)\n") do out[#out + 1] = line end
  local eol = s:sub(-1) == "\n"
  if eol then out[#out] = nil end
  return out, eol
end

-- More than one line (a single trailing newline does not count).
local function multiline(s)
  return type(s) == "string" and s:find("\n", 1, true) ~= nil and s:find("\n", 1, true) < #s
end

-- A unified diff (3 lines of context) from expected to actual, by lines.
local function unified_diff(expected, actual)
  local a, a_eol = lines_of(expected)
  local b, b_eol = lines_of(actual)
  if #a * #b > 250000 then return nil end
  -- lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..]
  local lcs = {}
  for i = #a + 1, 1, -1 do
    lcs[i] = {}
    for j = #b + 1, 1, -1 do
      if i > #a or j > #b then lcs[i][j] = 0
      elseif a[i] == b[j] then lcs[i][j] = lcs[i + 1][j + 1] + 1
      else lcs[i][j] = math.max(lcs[i + 1][j], lcs[i][j + 1]) end
    end
  end
  local ops, i, j = {}, 1, 1 -- {kind, text, line in a, line in b}
  while i <= #a or j <= #b do
    if i <= #a and j <= #b and a[i] == b[j] then
      ops[#ops + 1] = {" ", a[i], i, j}; i, j = i + 1, j + 1
    elseif i <= #a and (j > #b or lcs[i + 1][j] >= lcs[i][j + 1]) then
      ops[#ops + 1] = {"-", a[i], i, j}; i = i + 1
    else
      ops[#ops + 1] = {"+", b[j], i, j}; j = j + 1
    end
  end
  -- the missing final newline shows as a changed last line
  if a_eol ~= b_eol then
    for k = #ops, 1, -1 do
      local o = ops[k]
      if o[1] == " " and o[3] == #a and o[4] == #b then
        table.remove(ops, k)
        table.insert(ops, k, {"+", o[2], o[3], o[4], not b_eol})
        table.insert(ops, k, {"-", o[2], o[3], o[4], not a_eol})
        break
      end
    end
  end
  for _, o in ipairs(ops) do
    if o[1] == "-" and o[3] == #a and not a_eol then o[5] = true end
    if o[1] == "+" and o[4] == #b and not b_eol then o[5] = true end
  end
  local out = {"--- expected", "+++ actual"}
  local k = 1
  while k <= #ops do
    while k <= #ops and ops[k][1] == " " do k = k + 1 end
    if k > #ops then break end
    local first = math.max(1, k - 3)
    local last = k
    -- extend the hunk while changes are at most 6 context lines apart
    local m = k
    while m <= #ops do
      if ops[m][1] ~= " " then last = m; m = m + 1
      elseif m - last > 6 then break
      else m = m + 1 end
    end
    last = math.min(#ops, last + 3)
    local a_start, b_start, a_n, b_n = ops[first][3], ops[first][4], 0, 0
    local body = {}
    for q = first, last do
      local o = ops[q]
      if o[1] ~= "+" then a_n = a_n + 1 end
      if o[1] ~= "-" then b_n = b_n + 1 end
      -- control characters other than tab stay visible (a \r of CRLF text)
      body[#body + 1] = o[1] .. o[2]:gsub("[%c]", function(c) return c == "\t" and c or escapes[c] or
        string.format("\\x%02X", c:byte()) end)
      if o[5] then body[#body + 1] = "\\ No newline at end of file" end
    end
    out[#out + 1] = string.format("@@ -%d,%d +%d,%d @@", a_n > 0 and a_start or a_start - 1, a_n,
      b_n > 0 and b_start or b_start - 1, b_n)
    for _, l in ipairs(body) do out[#out + 1] = l end
    k = last + 1
  end
  return table.concat(out, "\n")
end

-- "expected X, got Y", or a unified diff when either value has several lines.
local function mismatch(expected, actual)
  if type(expected) == "string" and type(actual) == "string" and (multiline(expected) or multiline(actual)) then
    local diff = unified_diff(expected, actual)
    if diff then return "expected and actual differ:\n" .. diff end
  end
  return "expected " .. show(expected) .. ", got " .. show(actual)
end

-- "expected HAYSTACK to contain NEEDLE"; a haystack of several lines follows
-- as an indented block.
local function not_contained(haystack, needle)
  if not multiline(haystack) then return "expected " .. show(haystack) .. " to contain " .. show(needle) end
  local lines, eol = lines_of(haystack)
  local out, cap = {"expected the text below to contain " .. show(needle) .. ":"}, 200
  for i = 1, math.min(#lines, cap) do out[#out + 1] = "  | " .. lines[i] end
  if #lines > cap then out[#out + 1] = string.format("  ... (%d more lines)", #lines - cap) end
  if not eol then out[#out + 1] = "  (no newline at the end)" end
  return table.concat(out, "\n")
end

---------------------------------------------------------------- provium
local provium = {}
local reserved = {vm = true, timeout = true, create = true, pack = true, unpack = true, lab = true,
  vm_fixture = true, fixture = true, depends_on_file = true, lab_fixture = true, include = true, remove = true,
  members = true, vm_names = true, sub_lab_names = true, bridge_names = true, boot = true, shutdown = true,
  pause = true, resume = true, snapshot = true, restore = true, name = true, bridge = true, rng_seed = true,
  reset_between_tests = true, shutdown_all = true, ext4_image = true}

-- "'NAME' is a reserved name (reserved: ...)": the names provium.NAME and
-- lab.NAME already mean something, so VMs and sub-labs cannot take them.
local function check_reserved(what, name)
  if not reserved[name] then return end
  local names = {}
  for k in pairs(reserved) do names[#names + 1] = k end
  table.sort(names)
  error(string.format("%s: '%s' is a reserved name (reserved: %s)", what, name, table.concat(names, ", ")), 3)
end

local function find_vm(name)
  return current.vms[name] or file_scope.vms[name] or (P.root_lab and P.root_lab._vms[name])
end

function provium.vm(self, name, profile, opts)
  if self ~= provium then error("call provium:vm(name, profile) with a colon", 2) end
  if type(name) ~= "string" or name == "" then error("provium:vm: name must be a non-empty string", 2) end
  if profile == nil then
    local vm = find_vm(name)
    if not vm then
      error(string.format("provium:vm: no vm named '%s' in this test or at file scope (create it with "
        .. "provium:vm(%q, PROFILE))", name, name), 2)
    end
    return vm
  end
  if type(profile) ~= "string" then error("provium:vm: profile must be a string", 2) end
  check_reserved("provium:vm", name)
  if current.vms[name] then
    error(string.format("provium:vm: the name '%s' is already used by a VM in this scope", name), 2)
  end
  if current ~= file_scope and file_scope.vms[name] then
    error(string.format("provium:vm: a VM named '%s' already exists at file scope; use provium:vm(%q) to reuse it",
      name, name), 2)
  end
  local ok, vm = pcall(P.new_vm, name, profile, opts)
  if not ok then error(vm, 2) end
  current.vms[name] = vm
  table.insert(current.order, vm)
  P.last_vm = vm
  return vm
end


-- Streams, processes and files opened through the API register here so the
-- scope that opened them closes them, newest first, before its VMs.
debug.getregistry()["provium.track"] = function(obj)
  table.insert(current.resources, obj)
end

local function close_scope(scope)
  for i = #scope.resources, 1, -1 do
    pcall(scope.resources[i].close, scope.resources[i])
  end
  for i = #scope.order, 1, -1 do
    pcall(scope.order[i].close, scope.order[i])
  end
  -- bridges after the VMs on them (lua/net.lua)
  for i = #(scope.bridge_order or {}), 1, -1 do
    pcall(scope.bridge_order[i].close, scope.bridge_order[i])
  end
  scope.vms, scope.order, scope.resources, scope.labs, scope.lab_order = {}, {}, {}, {}, {}
  scope.bridges, scope.bridge_order = {}, {}
end

---------------------------------------------------------------- binary helpers
-- provium:pack(fmt, ...) / provium:unpack(fmt, s[, pos]) use Lua's
-- string.pack formats. The classic provium.pack(fmt, ...) (seed 003) takes
-- space-separated named fields, little-endian unless suffixed "be":
--   u8 u16 u32 u64 i8 i16 i32 i64   integers
--   bytes      a string as is (unpack: the rest of the input)
--   bytesN     exactly N bytes (pack pads with NULs; longer strings error)
--   cstr       a NUL-terminated string
--   padN       N zero bytes (unpack skips them; no value)
local classic_codes = {u8 = "I1", u16 = "I2", u32 = "I4", u64 = "I8", i8 = "i1", i16 = "i2", i32 = "i4", i64 = "i8"}

local function classic_format(fmt, values, unpacking)
  if type(fmt) ~= "string" then error("provium.pack: format must be a string", 3) end
  local out, vi = {"<"}, 1
  for tok in fmt:gmatch("%S+") do
    local base, be = tok:match("^(%a%d+)(be)$")
    if base then tok = base end
    local code = classic_codes[tok]
    if code then
      out[#out + 1] = (be and ">" or "<") .. code
      vi = vi + 1
    elseif tok == "bytes" then
      if unpacking then
        out[#out + 1] = "<c0REST"
      else
        local v = values[vi]
        if type(v) ~= "string" then error("provium.pack: value " .. vi .. " for 'bytes' must be a string", 3) end
        out[#out + 1] = "c" .. #v
      end
      vi = vi + 1
    elseif tok:match("^bytes%d+$") then
      out[#out + 1] = "c" .. tok:sub(6)
      vi = vi + 1
    elseif tok == "cstr" then
      out[#out + 1] = "z"
      vi = vi + 1
    elseif tok:match("^pad%d+$") then
      out[#out + 1] = string.rep("x", tonumber(tok:sub(4)))
    else
      error("provium.pack: unknown field '" .. tok .. "' (known: u8..u64, i8..i64, bytes, bytesN, cstr, padN; "
        .. "suffix be for big-endian)", 3)
    end
  end
  return table.concat(out)
end

function provium.pack(first, ...)
  if first == provium then return string.pack(...) end
  local values = table.pack(...)
  local fmt = classic_format(first, values, false)
  local ok, res = pcall(string.pack, fmt, ...)
  if not ok then error("provium.pack: " .. res, 2) end
  return res
end

function provium.unpack(first, ...)
  if first == provium then return string.unpack(...) end
  local data, pos = ...
  if type(data) ~= "string" then error("provium.unpack: data must be a string", 2) end
  local fmt = classic_format(first, {}, true)
  local head, rest = fmt:match("^(.-)<c0REST(.*)$")
  if head then
    if rest ~= "" then error("provium.unpack: 'bytes' must be the last field", 2) end
    local vals = table.pack(string.unpack(head, data, pos))
    local nextpos = vals[vals.n]
    vals[vals.n] = data:sub(nextpos)
    return table.unpack(vals, 1, vals.n)
  end
  local vals = table.pack(pcall(string.unpack, fmt, data, pos))
  if not vals[1] then error("provium.unpack: " .. vals[2], 2) end
  return table.unpack(vals, 2, vals.n - 1)
end

---------------------------------------------------------------- t
local T = {}
T.__index = T

local function fail(t, msg, level)
  t.failed = true
  local text = where(level + 1) .. ": " .. msg
  table.insert(t.failures, text)
  error(FAIL, 0)
end

function T:assert(cond, msg)
  if not cond then fail(self, msg or "assertion failed", 2) end
  return cond
end

function T:assert_eq(actual, expected, msg)
  if actual ~= expected then
    fail(self, (msg and msg .. ": " or "") .. mismatch(expected, actual), 2)
  end
end

function T:assert_neq(actual, unexpected, msg)
  if actual == unexpected then
    fail(self, (msg and msg .. ": " or "") .. "expected a value other than " .. show(unexpected), 2)
  end
end

function T:assert_contains(haystack, needle, msg)
  if type(haystack) ~= "string" or type(needle) ~= "string" then
    fail(self, (msg and msg .. ": " or "") .. "assert_contains needs two strings, got " .. type(haystack)
      .. " and " .. type(needle), 2)
  end
  if not haystack:find(needle, 1, true) then
    fail(self, (msg and msg .. ": " or "") .. not_contained(haystack, needle), 2)
  end
end

-- t:assert_raises(fn[, msg]): runs fn and returns the error it raised; fails
-- the test if it returned. An assertion of t failing inside fn is the raise:
-- it leaves the test as it was (its text is returned). A single string after
-- fn is msg; any other arguments after fn are passed to it.
function T:assert_raises(fn, ...)
  local msg, args = nil, table.pack(...)
  if args.n == 1 and type(args[1]) == "string" then msg, args = args[1], {n = 0} end
  local mt = getmetatable(fn)
  if type(fn) ~= "function" and not (type(mt) == "table" and mt.__call) then
    fail(self, (msg and msg .. ": " or "") .. "assert_raises needs a function, got " .. type(fn), 2)
  end
  local failed, nfailures = self.failed, #self.failures
  local ok, err = pcall(fn, table.unpack(args, 1, args.n))
  if ok then fail(self, (msg and msg .. ": " or "") .. "expected to raise, but the function returned normally", 2) end
  if err == SKIP then error(err, 0) end
  if err == FAIL then err = self.failures[#self.failures] or "assertion failed" end
  self.failed = failed
  for i = #self.failures, nfailures + 1, -1 do self.failures[i] = nil end
  return err
end

function T:log(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
  -- one entry per call: a trailing newline does not add an empty line
  table.insert(self.logs, (table.concat(parts, " "):gsub("\r?\n$", "")))
end

function T:fail(msg)
  fail(self, msg or "failed", 2)
end

function T:skip(reason)
  self.skip_reason = reason or "skipped"
  error(SKIP, 0)
end

---------------------------------------------------------------- helpers
local TODO = setmetatable({}, {__tostring = function() return "todo" end})
local file_todo

-- todo([reason]): at file level, skips every test of the file; inside a test,
-- skips that test.
function todo(reason)
  reason = reason or "todo"
  if current == file_scope then
    file_todo = reason
  else
    current.todo_reason = reason
    error(SKIP, 0)
  end
end

-- wait_until(pred, {timeout=5, interval=0.05, desc=...}): polls pred until it
-- returns a truthy value, which is returned. Errors inside pred propagate.
function wait_until(pred, opts)
  if type(pred) ~= "function" then error("wait_until: the first argument must be a function, got " .. type(pred), 2) end
  if opts ~= nil and type(opts) ~= "table" then error("wait_until: options must be a table, got " .. type(opts), 2) end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "timeout" and k ~= "interval" and k ~= "desc" then
      error("wait_until: unknown option '" .. tostring(k) .. "' (known: timeout, interval, desc)", 2)
    end
  end
  local timeout = opts.timeout or 5
  local interval = opts.interval or 0.05
  if type(timeout) == "string" then timeout = P.duration(timeout) end
  if type(interval) == "string" then interval = P.duration(interval) end
  if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 or timeout == math.huge then
    error("wait_until: timeout must be a finite duration >= 0, got " .. tostring(opts.timeout), 2)
  end
  if type(interval) ~= "number" or interval ~= interval or interval <= 0 or interval == math.huge then
    error("wait_until: interval must be a finite duration > 0, got " .. tostring(opts.interval), 2)
  end
  local deadline = P.clock() + timeout
  while true do
    local v = pred()
    if v then return v end
    if P.clock() >= deadline then
      error(string.format("wait_until timed out after %gs%s", timeout, opts.desc and (": " .. opts.desc) or ""), 2)
    end
    P.sleep(interval)
  end
end

-- The classic dialect's global assertions (seeds 002, 004).
function assert_eq(a, b, msg)
  if a ~= b then
    error((msg and msg .. ": " or "") .. mismatch(b, a), 2)
  end
end

function assert_contains(haystack, needle, msg)
  if type(haystack) ~= "string" or not haystack:find(tostring(needle), 1, true) then
    error((msg and msg .. ": " or "") .. not_contained(haystack, needle), 2)
  end
end

-- Output of classic vm:exec: r.stdout.value plus helpers.
local Output = {}
Output.__index = Output
Output.__tostring = function(o) return o.value end
function Output:contains(sub) return self.value:find(sub, 1, true) ~= nil end
function Output:starts_with(prefix) return self.value:sub(1, #prefix) == prefix end
function Output:trim() return (self.value:gsub("^%s+", ""):gsub("%s+$", "")) end

local vm_methods = debug.getregistry()["provium.VM"].__index

-- vm:exec(cmd) — classic result shape {ok, exit_code, stdout, stderr}.
function vm_methods.exec(vm, ...)
  local r = vm:run(...)
  return {
    ok = r:ok(), exit_code = r.exit_code, status = r.status, signal = r.signal,
    stdout = setmetatable({value = r.stdout}, Output),
    stderr = setmetatable({value = r.stderr}, Output),
  }
end

-- vm:console(): the serial console, captured from its first byte.
local Console = {}
Console.__index = Console

function vm_methods.console(vm)
  return setmetatable({vm = vm, cursor = 0}, Console)
end

function Console:read_log() return self.vm:console_log() end

function Console:write(data, opts)
  local ok, err = pcall(self.vm.console_write, self.vm, data, opts)
  if not ok then error(err, 2) end
end

-- The serial port belongs to the VM: closing a Console only ends this
-- object's use (later calls still work, like a fresh vm:console()).
function Console:close() end

-- expect(pattern[, timeout]): waits until the console, past the previous
-- match, contains pattern (plain text); returns the text up to its end.
function Console:expect(pattern, timeout)
  local limit = timeout and (type(timeout) == "string" and P.duration(timeout) or timeout) or 10
  local deadline = P.clock() + limit
  while true do
    local log = self.vm:console_log()
    local s, e = log:find(pattern, self.cursor + 1, true)
    if s then
      local text = log:sub(self.cursor + 1, e)
      self.cursor = e
      return text
    end
    if P.clock() >= deadline then
      error(string.format("console:expect timed out after %gs waiting for `%s`", limit, pattern), 2)
    end
    P.sleep(0.02)
  end
end

-- read(): a stream over the console with the common stream methods.
local ConsoleStream = {}
ConsoleStream.__index = ConsoleStream

function Console:read()
  local s = setmetatable({console = self, cursor = #self.vm:console_log(), closed = false}, ConsoleStream)
  table.insert(current.resources, s)
  return s
end

local function console_wait(s, pred, timeout, default)
  local limit = timeout and (type(timeout) == "string" and P.duration(timeout) or timeout) or default
  local deadline = P.clock() + limit
  while true do
    local log = s.console.vm:console_log()
    local r = pred(log)
    if r ~= nil then return r end
    if P.clock() >= deadline then return nil, limit end
    P.sleep(0.02)
  end
end

function ConsoleStream:next(timeout)
  if self.closed then return nil end
  return console_wait(self, function(log)
    if #log > self.cursor then
      local chunk = log:sub(self.cursor + 1)
      self.cursor = #log
      return chunk
    end
  end, timeout, 10)
end

function ConsoleStream:read_until(pattern, timeout)
  if self.closed then error("console closed", 2) end
  local r, limit = console_wait(self, function(log)
    local _, e = log:find(pattern, self.cursor + 1, true)
    if e then
      local chunk = log:sub(self.cursor + 1, e)
      self.cursor = e
      return chunk
    end
  end, timeout, 10)
  if not r then error(string.format("read_until timed out after %gs waiting for `%s`", limit, pattern), 2) end
  return r
end

function ConsoleStream:expect(pattern, timeout) self:read_until(pattern, timeout) end

function ConsoleStream:drain(timeout)
  local out = {}
  local chunk = self:next(timeout or 0.5)
  while chunk do
    out[#out + 1] = chunk
    chunk = self:next(0)
  end
  return out
end

function ConsoleStream:eof()
  return self.closed or (self.console.vm:state() ~= "booted" and self.cursor >= #self.console.vm:console_log())
end

function ConsoleStream:close() self.closed = true end

-- provium.create(profile): the classic constructor; returns a booted VM whose
-- results follow the classic shapes (vm:syscall returns an integer).
local classic_count = 0
function provium.create(profile, opts)
  if profile == provium then error("call provium.create(profile) with a dot", 2) end
  if current == file_scope then classic_file = true end
  classic_count = classic_count + 1
  local name = "vm" .. classic_count
  while current.vms[name] or file_scope.vms[name] do
    classic_count = classic_count + 1
    name = "vm" .. classic_count
  end
  local vm = provium.vm(provium, name, profile, opts)
  vm:__set_classic(true)
  local ok, err = pcall(vm.boot, vm)
  if not ok then error(err, 2) end
  return vm
end

---------------------------------------------------------------- labs
-- A lab is a named set of VMs and sub-labs with batch operations and
-- coherent snapshots. `provium` is the root lab; its VMs live in the scopes
-- (test, then file). Sub-lab VMs are also owned by the scope that created
-- them, so the scope walker shuts them down.
local Lab = {}
local lab_counter = 0

local function is_lab(x) return type(x) == "table" and getmetatable(x) == Lab end
local function is_vm(x) local mt = getmetatable(x); return mt ~= nil and mt.__name == "VM" end

Lab.__index = function(self, key)
  local m = rawget(Lab, key)
  if m ~= nil then return m end
  if type(key) == "string" then return self._vms[key] or self._bridges[key] or self._labs[key] end
end

local function remove_from(list, item)
  for i, v in ipairs(list) do if v == item then table.remove(list, i); return end end
end

local function new_lab(name)
  return setmetatable({_name = name, _vms = {}, _vm_order = {}, _labs = {}, _lab_order = {}, _bridges = {},
    _bridge_order = {}}, Lab)
end

function Lab:name() return self._name end

function Lab:vm(name, profile, opts)
  if not is_lab(self) then error("call lab:vm(...) with a colon", 2) end
  if type(name) ~= "string" or name == "" then error("lab:vm: name must be a non-empty string", 2) end
  if profile == nil then
    local vm = self._vms[name]
    if not vm then error(string.format("lab '%s': no VM named '%s'", self._name, name), 2) end
    return vm
  end
  check_reserved("lab '" .. self._name .. "': vm", name)
  if self._vms[name] then
    error(string.format("lab '%s': a VM named '%s' already exists (the name is already used in this lab)",
      self._name, name), 2)
  end
  local ok, vm = pcall(P.new_vm, name, profile, opts)
  if not ok then error(vm, 2) end
  self._vms[name] = vm
  table.insert(self._vm_order, vm)
  table.insert(current.order, vm) -- the scope shuts it down
  P.last_vm = vm
  return vm
end

local function is_root(lab) return lab == P.root_lab or lab == provium end

-- Bridges (lua/net.lua, loaded below as Net): the root lab's live in the
-- scopes like its VMs, a sub-lab's in the lab.
local Net
local function find_bridge_root(name)
  return current.bridges[name] or file_scope.bridges[name] or P.root_lab._bridges[name]
end
local function lab_find_bridge(lab, name)
  if is_root(lab) then return find_bridge_root(name) end
  return lab._bridges[name]
end

-- The root lab's sub-labs belong to the scope that made them (a test's are
-- gone when it ends); a sub-lab's own sub-labs belong to it.
local function find_sub_lab(lab, name)
  if is_root(lab) then return current.labs[name] or file_scope.labs[name] end
  return lab._labs[name]
end

local function add_sub_lab(lab, sub)
  local map, order = lab._labs, lab._lab_order
  if is_root(lab) then map, order = current.labs, current.lab_order end
  map[sub._name] = sub
  table.insert(order, sub)
end

local function sub_lab_list(lab)
  if not is_root(lab) then return lab._lab_order end
  local out = {}
  for _, scope in ipairs({file_scope, current}) do
    for _, l in ipairs(scope.lab_order) do
      if scope.labs[l._name] == l then out[#out + 1] = l end
    end
    if scope == current then break end
  end
  return out
end

local function remove_sub_lab(lab, sub)
  if not is_root(lab) then
    if lab._labs[sub._name] ~= sub then return false end
    lab._labs[sub._name] = nil
    remove_from(lab._lab_order, sub)
    return true
  end
  for _, scope in ipairs({current, file_scope}) do
    if scope.labs[sub._name] == sub then
      scope.labs[sub._name] = nil
      remove_from(scope.lab_order, sub)
      return true
    end
  end
  return false
end

-- lab:lab(name): the sub-lab of that name, made when it does not exist yet.
function Lab:lab(name)
  if name == nil then
    name = "__lab_" .. lab_counter
    lab_counter = lab_counter + 1
  end
  if type(name) ~= "string" or name == "" then error("lab:lab: name must be a string", 2) end
  check_reserved("lab '" .. self._name .. "': lab", name)
  local sub = find_sub_lab(self, name)
  if sub then return sub end
  sub = new_lab(name)
  add_sub_lab(self, sub)
  return sub
end

-- The root lab's direct VMs are those provium:vm made in the file and the
-- current test scope (sub-lab VMs are in the scopes for cleanup only, so
-- they are not in scope.vms) plus those provium:include added.

local function root_vm_list()
  local out, seen = {}, {}
  for _, scope in ipairs({file_scope, current}) do
    for _, vm in ipairs(scope.order) do
      if not seen[vm] and scope.vms[vm:name()] == vm then seen[vm] = true; out[#out + 1] = vm end
    end
  end
  for _, vm in ipairs(P.root_lab._vm_order) do
    if not seen[vm] then seen[vm] = true; out[#out + 1] = vm end
  end
  return out
end

local function vm_taken(lab, n)
  if is_root(lab) then return find_vm(n) end
  return lab._vms[n]
end

function Lab:include(x)
  local items = (type(x) == "table" and not is_lab(x) and not Net.is_bridge(x)) and x or {x}
  for i, item in ipairs(items) do
    if is_vm(item) then
      local n = item:name()
      if vm_taken(self, n) then error(string.format("lab '%s': a VM named '%s' already exists", self._name, n), 2) end
      if is_root(self) then self = P.root_lab end
      self._vms[n] = item
      table.insert(self._vm_order, item)
    elseif Net.is_bridge(item) then
      local n = item._name
      if lab_find_bridge(self, n) then
        error(string.format("lab '%s': a bridge named '%s' already exists (DuplicateBridgeName)", self._name, n), 2)
      end
      local lab = is_root(self) and P.root_lab or self
      lab._bridges[n] = item
      table.insert(lab._bridge_order, item)
    elseif is_lab(item) then
      local n = item._name
      if find_sub_lab(self, n) then
        error(string.format("lab '%s': a sub-lab named '%s' already exists", self._name, n), 2)
      end
      add_sub_lab(self, item)
    else
      error(string.format("lab '%s': include: element %d is a %s, expected a VM or lab userdata, or a bridge (or a list of them)",
        self._name, i, type(item)), 2)
    end
  end
end

-- Graph only: the VM or sub-lab keeps running.
-- On the root lab a VM stays in its scope's cleanup list: removed or not,
-- the scope that created it shuts it down at its end.
local function remove_root_vm(x)
  local n, found = x:name(), false
  for _, scope in ipairs({current, file_scope}) do
    if scope.vms[n] == x then scope.vms[n] = nil; found = true end
  end
  if P.root_lab._vms[n] == x then
    P.root_lab._vms[n] = nil
    remove_from(P.root_lab._vm_order, x)
    found = true
  end
  return found
end

function Lab:remove(x)
  local what = x
  if type(x) == "string" then
    x = (is_root(self) and find_vm(x) or self._vms[x]) or lab_find_bridge(self, x) or find_sub_lab(self, x)
  end
  if Net.is_bridge(x) then
    for _, holder in ipairs(is_root(self) and {current, file_scope, P.root_lab} or {self}) do
      local map = holder.bridges or holder._bridges
      if map[x._name] == x then map[x._name] = nil; return end
    end
  end
  if is_vm(x) and is_root(self) and remove_root_vm(x) then
    return
  elseif is_vm(x) and self._vms[x:name()] == x then
    self._vms[x:name()] = nil
    remove_from(self._vm_order, x)
  elseif is_lab(x) and remove_sub_lab(self, x) then
    return
  else
    error(string.format("lab '%s': remove: no VM or sub-lab %s in this lab", self._name,
      type(what) == "string" and ("named '" .. what .. "'") or ("given as a " .. type(what))), 2)
  end
end

-- Names in lexical order, as the reference gives them.
function Lab:vm_names()
  local out = {}
  for _, vm in ipairs(is_root(self) and root_vm_list() or self._vm_order) do out[#out + 1] = vm:name() end
  table.sort(out)
  return out
end

function Lab:sub_lab_names()
  local out = {}
  for _, l in ipairs(sub_lab_list(self)) do out[#out + 1] = l._name end
  table.sort(out)
  return out
end

---------------------------------------------------------------- bridges
-- Bridge, Nic and Capture are lua/net.lua (P.net.module). Root-lab bridges
-- live in the scopes like VMs (a test's are closed at its end, after its
-- VMs); a sub-lab's in the lab, closed by the scope that made them.

-- provium:bridge(name[, opts]): the bridge of that name (test scope, then
-- file scope), made in the current scope when there is none. Options with
-- a name that exists already are refused: they could not take effect.
function provium.bridge(self, name, opts)
  if self ~= provium then error("call provium:bridge(name[, opts]) with a colon", 2) end
  if type(name) ~= "string" or name == "" then error("provium:bridge: name must be a non-empty string", 2) end
  check_reserved("provium:bridge", name)
  local here = current.bridges[name]
  local up = (current ~= file_scope and file_scope.bridges[name]) or P.root_lab._bridges[name]
  if here or up then
    if opts ~= nil then
      error(string.format("provium:bridge: a bridge named '%s' already exists %s; look it up with provium:bridge(%q) "
        .. "(no options), or pick another name", name, here and "in this scope" or "at file scope (lab 'provium')",
        name), 2)
    end
    return here or up
  end
  local ok, b = pcall(Net.new_bridge, name, opts, "provium")
  if not ok then error(b, 2) end
  b._lab_obj = provium
  current.bridges[name] = b
  table.insert(current.bridge_order, b)
  return b
end

function Lab:bridge(name, opts)
  if not is_lab(self) then error("call lab:bridge(name[, opts]) with a colon", 2) end
  if is_root(self) then
    local ok, b = pcall(provium.bridge, provium, name, opts)
    if not ok then error(b, 2) end
    return b
  end
  if type(name) ~= "string" or name == "" then error("lab:bridge: name must be a non-empty string", 2) end
  check_reserved("lab '" .. self._name .. "': bridge", name)
  local b = self._bridges[name]
  if b then
    if opts ~= nil then
      error(string.format("lab '%s': a bridge named '%s' already exists; look it up with lab:bridge(%q) (no options)",
        self._name, name, name), 2)
    end
    return b
  end
  local ok, made = pcall(Net.new_bridge, name, opts, self._name)
  if not ok then error(made, 2) end
  made._lab_obj = self
  self._bridges[name] = made
  table.insert(self._bridge_order, made)
  table.insert(current.bridge_order, made) -- the scope closes it
  return made
end

local function lab_bridges(lab)
  if not is_root(lab) then
    local out = {}
    for _, b in ipairs(lab._bridge_order) do if lab._bridges[b._name] == b then out[#out + 1] = b end end
    return out
  end
  local out, seen = {}, {}
  for _, scope in ipairs({file_scope, current, {bridges = P.root_lab._bridges, bridge_order = P.root_lab._bridge_order}}) do
    for _, b in ipairs(scope.bridge_order) do
      if not seen[b] and scope.bridges[b._name] == b then seen[b] = true; out[#out + 1] = b end
    end
  end
  return out
end

function Lab:bridge_names()
  local out = {}
  for _, b in ipairs(lab_bridges(self)) do out[#out + 1] = b._name end
  table.sort(out)
  return out
end

function Lab:members()
  local out = {}
  for _, n in ipairs(self:vm_names()) do out[#out + 1] = {kind = "vm", name = n} end
  for _, n in ipairs(self:bridge_names()) do out[#out + 1] = {kind = "bridge", name = n} end
  for _, n in ipairs(self:sub_lab_names()) do out[#out + 1] = {kind = "sub_lab", name = n} end
  return out
end

-- The VMs a lab operation applies to: a sub-lab's own, or for the root lab
-- those of the current scope and the file scope.
local function lab_vms(lab)
  if is_root(lab) then return root_vm_list() end
  return lab._vm_order
end

-- Boots every created VM; all or nothing: every member is tried, and when
-- any fails, those this call booted are shut down again and the error names
-- the action and each failed VM with its reason.
local function lab_boot(lab)
  local booted, failed = {}, {}
  for _, vm in ipairs(lab_vms(lab)) do
    if vm:state() == "created" or vm:state() == "shutdown" then
      local ok, err = pcall(vm.boot, vm)
      if ok then booted[#booted + 1] = vm else failed[#failed + 1] = {vm:name(), tostring(err)} end
    end
  end
  if #failed > 0 then
    for _, b in ipairs(booted) do pcall(b.shutdown, b) end
    if #failed == 1 and #booted == 0 then error(failed[1][2], 3) end
    local names, lines = {}, {}
    for _, f in ipairs(failed) do
      names[#names + 1] = f[1]
      lines[#lines + 1] = "  " .. f[1] .. ": " .. f[2]
    end
    error(string.format("lab '%s': boot failed for %d of %d VMs (%s):\n%s", lab:name(), #failed,
      #failed + #booted, table.concat(names, ", "), table.concat(lines, "\n")), 3)
  end
  return lab
end

local function lab_each(lab, method, states)
  for _, vm in ipairs(lab_vms(lab)) do
    if not states or states[vm:state()] then
      local ok, err = pcall(vm[method], vm)
      if not ok then error(err, 3) end
    end
  end
end

function Lab:boot() return lab_boot(self) end
function Lab:shutdown() lab_each(self, "shutdown", {booted = true, paused = true}) end
function Lab:pause() lab_each(self, "pause") end
function Lab:resume() lab_each(self, "resume") end

-- A lab snapshot: every VM paused first, then each saved, then all resumed,
-- so the members agree on the moment. lab.json lists the members.
local LabSnapshot = {}
LabSnapshot.__index = LabSnapshot
LabSnapshot.__name = "provium.LabSnapshot"
function LabSnapshot:path() return self._path end
-- Paths go to C helpers (host/lua/lua_paths.c), never through a shell.
function LabSnapshot:size()
  if self._deleted then return 0 end
  return P.disk_usage(self._path)
end
function LabSnapshot:delete()
  if not self._deleted then P.remove_tree(self._path) end
  self._deleted = true
end

-- lab.json (format 2) mirrors the lab's tree: its booted VMs as members
-- ({name, profile, dir}) and its sub-labs, each with its own members and
-- sub_labs. A VM found twice in the tree is saved once; later entries
-- point at the same dir.
local function snapshot_tree(lab, prefix, saved, used, order)
  local node = {name = lab:name(), members = {}, sub_labs = {}}
  for _, vm in ipairs(lab_vms(lab)) do
    if vm:state() == "booted" or saved[vm] then
      local d = saved[vm]
      if not d then
        d = prefix .. vm:name()
        local n = 1
        while used[d] do n = n + 1; d = prefix .. vm:name() .. "-" .. n end
        used[d], saved[vm] = true, d
        order[#order + 1] = {vm = vm, dir = d}
      end
      node.members[#node.members + 1] = {name = vm:name(), profile = vm:profile(), dir = d, nics = Net.vm_record(vm)}
    end
  end
  node.bridges = {}
  for _, b in ipairs(lab_bridges(lab)) do node.bridges[#node.bridges + 1] = Net.record(b) end
  for _, sub in ipairs(sub_lab_list(lab)) do
    node.sub_labs[#node.sub_labs + 1] = snapshot_tree(sub, prefix .. "lab." .. sub:name() .. "/", saved, used, order)
  end
  return node
end

local function lab_snapshot(lab, dir)
  local saves = {}
  local tree = snapshot_tree(lab, "", {}, {}, saves)
  local function has_bridges(node)
    if #node.bridges > 0 then return true end
    for _, sn in ipairs(node.sub_labs) do if has_bridges(sn) then return true end end
    return false
  end
  if #saves == 0 and not has_bridges(tree) then error("lab snapshot: no booted VM or bridge in the lab or its sub-labs", 3) end
  local vms = {}
  for _, sv in ipairs(saves) do vms[#vms + 1] = sv.vm end
  local busy = Net.live_capture(vms)
  if busy then error("lab snapshot: " .. busy, 3) end
  local explicit = dir ~= nil
  if not dir then
    dir = P.snapshot_target()
    if not dir then
      local tmp = os.tmpname()
      os.remove(tmp)
      dir = tmp .. ".lab"
    end
  end
  P.remove_tree(dir)
  local made, why = P.make_dirs(dir)
  if not made then error("lab snapshot: " .. why, 3) end
  for _, s in ipairs(saves) do s.vm:pause() end
  local ok, err = true, nil
  for _, s in ipairs(saves) do
    local made, why = P.make_dirs((dir .. "/" .. s.dir):match("^(.*)/"))
    if made then
      ok, err = pcall(s.vm.snapshot, s.vm, dir .. "/" .. s.dir, true)
    else
      ok, err = false, "lab snapshot: " .. why
    end
    if not ok then break end
  end
  for _, s in ipairs(saves) do pcall(s.vm.resume, s.vm) end
  if not ok then error(err, 3) end
  local f = assert(io.open(dir .. "/lab.json", "w"))
  f:write(json.encode({format = 2, lab = tree.name, members = tree.members, sub_labs = tree.sub_labs,
    bridges = tree.bridges}))
  f:close()
  if explicit then return dir end
  return setmetatable({_path = dir}, LabSnapshot)
end

-- Restores a lab.json node into lab: members it lacks are created (in the
-- root lab with provium:vm), missing sub-labs are made, running members are
-- shut down first. format 1 (no sub_labs) restores the same way.
local function restore_tree(lab, node, dir, restored)
  for _, br in ipairs(node.bridges or {}) do
    Net.apply(lab_find_bridge(lab, br.name) or Lab.bridge(lab, br.name), br)
  end
  local function bridge_for(n) return lab_find_bridge(lab, n) or find_bridge_root(n) end
  for _, m in ipairs(node.members or {}) do
    local vm = is_root(lab) and find_vm(m.name) or (not is_root(lab) and lab._vms[m.name])
    local again = restored[m.dir]
    if again and vm ~= again then
      if vm then error(string.format("lab:restore: lab '%s' already has a VM named '%s'", lab:name(), m.name), 0) end
      Lab.include(is_root(lab) and P.root_lab or lab, again)
    elseif not again then
      if not vm then
        local ok, made = pcall(is_root(lab) and function() return provium.vm(provium, m.name, m.profile) end
          or function() return Lab.vm(lab, m.name, m.profile) end)
        if not ok then error(made, 0) end
        vm = made
      end
      local st = vm:state()
      if st == "booted" or st == "paused" then vm:shutdown() end
      local nok, nerr = pcall(Net.before_restore, vm, m.nics, bridge_for)
      if not nok then error(nerr, 0) end
      local ok, err = pcall(vm.restore, vm, dir .. "/" .. m.dir)
      if not ok then error(err, 0) end
      restored[m.dir] = vm
    end
  end
  for _, sn in ipairs(node.sub_labs or {}) do
    restore_tree(Lab.lab(is_root(lab) and P.root_lab or lab, sn.name), sn, dir, restored)
  end
end

local function lab_restore(lab, snap)
  local dir = type(snap) == "string" and snap or (type(snap) == "table" and snap._path)
  if type(dir) ~= "string" then error("lab:restore: expected a lab snapshot or its directory", 3) end
  local f = io.open(dir .. "/lab.json")
  if not f then error("lab:restore: " .. dir .. " is not a lab snapshot (no lab.json)", 3) end
  local index = json.decode(f:read("a"))
  f:close()
  local ok, err = pcall(restore_tree, lab, index, dir, {})
  if not ok then error(err, 3) end
  return lab
end

function Lab:snapshot(dir) return lab_snapshot(self, dir) end
function Lab:restore(snap) return lab_restore(self, snap) end

-- The root lab has the same surface.
function provium.lab(self, name)
  if self ~= provium then error("call provium:lab([name]) with a colon", 2) end
  return Lab.lab(P.root_lab, name)
end
for _, m in ipairs({"include", "remove", "vm_names", "sub_lab_names", "bridge_names", "members"}) do
  provium[m] = function(self, ...)
    if self ~= provium then error("call provium:" .. m .. "(...) with a colon", 2) end
    return Lab[m](P.root_lab, ...)
  end
end
function provium.boot(self) if self ~= provium then error("call provium:boot() with a colon", 2) end; return lab_boot(provium) end
function provium.shutdown(self) lab_each(provium, "shutdown", {booted = true, paused = true}) end
function provium.pause(self) lab_each(provium, "pause") end
function provium.resume(self) lab_each(provium, "resume") end
function provium.snapshot(self, dir)
  if self ~= provium then error("call provium:snapshot([dir]) with a colon", 2) end
  return lab_snapshot(provium, dir)
end
function provium.restore(self, snap)
  if self ~= provium then error("call provium:restore(snapshot) with a colon", 2) end
  return lab_restore(provium, snap)
end
function provium.name() return "provium" end
P.root_lab = new_lab("provium")

-- The network module and the VM lifecycle around it: NICs are made before a
-- boot, the guest's interfaces and /etc/hosts set after a boot or reset, and
-- a VM whose scope ends leaves its bridges.
local function creation_site()
  for level = 2, 40 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    local src = info.source or ""
    if src:match("%.test%.lua$") or src:match("%.fixture%.lua$") then
      return {file = (src:gsub("^@", "")), line = info.currentline}
    end
  end
end

Net = P.net.module(P, {
  is_vm = is_vm,
  find_vm = find_vm,
  creation_site = creation_site,
  bridge_visible = function() return true end,
  lab_rng_seed = function(b)
    local lab = b._lab_obj
    if lab == provium or lab == nil then return rawget(provium, "rng_seed") end
    return rawget(lab, "rng_seed")
  end,
})

do
  local boot, reset, restore, close, snapshot = vm_methods.boot, vm_methods.reset, vm_methods.restore,
    vm_methods.close, vm_methods.snapshot
  vm_methods.boot = function(vm, ...)
    if is_vm(vm) then
      local ok, err = pcall(Net.before_boot, vm)
      if not ok then error(err, 2) end
    end
    -- boot's own errors name this wrapper's line, and the report hides
    -- framework lines: re-raise them at the caller's
    local ok, r = pcall(boot, vm, ...)
    if not ok then
      if type(r) ~= "string" then error(r, 0) end
      error((r:gsub("^provium/framework%.lua:%d+: ", "")), 2)
    end
    if is_vm(vm) then Net.after_boot(vm) end
    return r
  end
  vm_methods.reset = function(vm, ...)
    local r = reset(vm, ...)
    if is_vm(vm) then Net.after_boot(vm) end
    return r
  end
  vm_methods.restore = function(vm, ...)
    local r = restore(vm, ...)
    if is_vm(vm) then Net.after_restore(vm) end
    return r
  end
  vm_methods.close = function(vm, ...)
    local r = close(vm, ...)
    if is_vm(vm) then Net.vm_closed(vm) end
    return r
  end
  vm_methods.snapshot = function(vm, ...)
    local busy = is_vm(vm) and Net.live_capture({vm})
    if busy then error(string.format("VM '%s': snapshot: %s", vm:name(), busy), 2) end
    return snapshot(vm, ...)
  end
  vm_methods.nic = function(vm, name)
    if not is_vm(vm) then error("nic is a VM operation; call it on the VM, not on a worker", 2) end
    return Net.vm_nic(vm, name)
  end
end

---------------------------------------------------------------- fixtures
-- Called in the forked builder: runs the fixture chunk and returns the
-- directory of the snapshot it produced.
function P.build_fixture(chunk, name)
  local result = chunk()
  local mt = result ~= nil and getmetatable(result)
  if mt and (mt.__name == "provium.Snapshot" or mt.__name == "provium.LabSnapshot") then return result:path() end
  if result == nil and P.last_vm then
    -- classic fixtures (seed 002) return nothing: the last VM created is the fixture
    return P.last_vm:snapshot():path()
  end
  error("fixture '" .. name .. "' must return vm:snapshot() (or, classic style, create a VM and return nothing)", 0)
end

local function unique_vm_name(base)
  local name = base:gsub("[^%w_%-]", "_")
  local n = 1
  while current.vms[name] or file_scope.vms[name] do
    n = n + 1
    name = base:gsub("[^%w_%-]", "_") .. "-" .. n
  end
  return name
end

P.fixture_log = {}

-- --save-events: fixture_build_started/_done when this file built the
-- fixture, fixture_cache_hit after a cached snapshot restored.
local function fixture_events(name, built, dir, t0, wall0)
  if not P.event or not P.__wall_ns then return end
  if built then
    P.event("fixture_build_started", {path = name}, wall0)
    P.event("fixture_build_done", {path = name, duration_ns = math.floor((P.clock() - t0) * 1e9),
      snapshot_bytes = P.__dir_bytes(dir)})
  else
    P.event("fixture_cache_hit", {path = name})
  end
end

-- A booted VM restored from the fixture's cached snapshot (built first when
-- missing or stale). A cached entry that cannot be restored is discarded
-- with a warning and rebuilt.
local function vm_from_fixture(name, level)
  if type(name) ~= "string" or name == "" then error("fixture name must be a non-empty string", level + 1) end
  local t0, wall0 = P.clock(), P.__wall_ns and P.__wall_ns()
  local ok, dir, profile, built = pcall(P.fixture_dir, name)
  if not ok then error(dir, level + 1) end
  local vm = provium.vm(provium, unique_vm_name(name), profile or "default")
  local rok, rerr = pcall(vm.restore, vm, dir)
  if not rok then
    local warning = "warning: fixture '" .. name .. "': cached snapshot unusable, rebuilding (" ..
      tostring(rerr):match("[^\n]*") .. ")"
    io.stderr:write(warning, "\n")
    table.insert(P.fixture_log, {name = name, warning = warning})
    P.fixture_discard(dir)
    t0, wall0 = P.clock(), P.__wall_ns and P.__wall_ns()
    ok, dir, profile, built = pcall(P.fixture_dir, name, true)
    if not ok then error(dir, level + 1) end
    rok, rerr = pcall(vm.restore, vm, dir)
    if not rok then error(rerr, level + 1) end
  end
  fixture_events(name, built, dir, t0, wall0)
  table.insert(P.fixture_log, {name = name, built = built})
  return vm
end

-- provium:vm_fixture(name) and provium.vm_fixture(name)
function provium.vm_fixture(a, b)
  return vm_from_fixture(a == provium and b or a, 2)
end

-- provium:lab_fixture(name): a fixture whose chunk returns provium:snapshot();
-- returns a fresh sub-lab with every member restored.
function provium.lab_fixture(a, b)
  local name = a == provium and b or a
  if type(name) ~= "string" or name == "" then error("lab_fixture: name must be a non-empty string", 2) end
  local t0, wall0 = P.clock(), P.__wall_ns and P.__wall_ns()
  local ok, dir, _, built = pcall(P.fixture_dir, name)
  if not ok then error(dir, 2) end
  local lab = Lab.lab(P.root_lab, nil)
  local rok, rerr = pcall(lab_restore, lab, dir)
  if not rok then error(rerr, 2) end
  fixture_events(name, built, dir, t0, wall0)
  table.insert(P.fixture_log, {name = name, built = built})
  return lab
end

-- Classic (seed 002): provium.fixture(name) -> a booted classic-dialect VM.
function provium.fixture(name)
  if name == provium then error("call provium.fixture(name) with a dot", 2) end
  if current == file_scope then classic_file = true end
  local vm = vm_from_fixture(name, 2)
  vm:__set_classic(true)
  return vm
end

-- Host files a fixture depends on beyond what vm:push_file records.
-- provium.ext4_image{dir=, path=, size=, label=}: an ext4 image of a host
-- directory (mke2fs -d, no root needed), for rootfs profiles and disks.
function provium.ext4_image(opts)
  if type(opts) ~= "table" then error("provium.ext4_image{dir=, path=, size=, label=}: takes a table", 2) end
  return P.ext4_image(opts)
end

function provium.depends_on_file(a, b)
  local path = a == provium and b or a
  if type(path) ~= "string" then error("depends_on_file(path): path must be a string", 2) end
  P.add_dep(path)
end

---------------------------------------------------------------- parallel tasks and barriers
-- provium:parallel(fn1, fn2, ...) runs the functions as coroutines of this
-- test, round-robin, until all have returned. The Lua runner is one thread:
-- a task runs until it returns or waits at provium:barrier, so tasks
-- interleave only at barriers. Guest-side concurrency comes from workers
-- (vm:spawn_worker) and w:syscall_async, not from the tasks themselves.
-- The first error of a task is raised by parallel (the other tasks stop).
reserved.parallel, reserved.barrier = true, true
local parallel_sched -- the innermost running provium:parallel
local Barrier = {} -- metatable that tells a barrier wait from a plain coroutine.yield

function provium.parallel(self, ...)
  if self ~= provium then error("call provium:parallel(fn, ...) with a colon", 2) end
  local tasks = {}
  for i = 1, select("#", ...) do
    local fn = select(i, ...)
    if type(fn) ~= "function" then error("provium:parallel: argument " .. i .. " must be a function", 2) end
    tasks[i] = {co = coroutine.create(fn)}
  end
  local sched = {barriers = {}, cos = {}}
  for _, task in ipairs(tasks) do sched.cos[task.co] = true end
  local outer = parallel_sched
  parallel_sched = sched
  local ok, err = pcall(function()
    while true do
      local pending, progressed, blocked = 0, false, nil
      for _, task in ipairs(tasks) do
        if not task.done then
          local b = task.waiting
          if not b or b.released or b.failed then
            task.waiting = nil
            local rok, res = coroutine.resume(task.co)
            if not rok then error(res, 0) end
            if coroutine.status(task.co) == "dead" then
              task.done = true
            elseif type(res) == "table" and getmetatable(res) == Barrier then
              task.waiting = res
            end -- a plain coroutine.yield() only lets the other tasks run
            progressed = true
          elseif P.clock() >= b.deadline then
            b.failed = string.format("provium:barrier('%s'): %d of %d arrived within %gs", b.name, b.arrived,
              b.count, b.timeout)
            progressed = true
          else
            blocked = b
          end
          if not task.done then pending = pending + 1 end
        end
      end
      if pending == 0 then break end
      if not progressed and blocked then
        -- every task waits: no barrier can fill any more; they all fail now
        -- rather than at their timeouts
        for _, task in ipairs(tasks) do
          local b = task.waiting
          if b and not b.released and not b.failed then
            b.failed = string.format("provium:barrier('%s'): %d of %d arrived and no other task can run, so the "
              .. "rest never will (count larger than the number of tasks?)", b.name, b.arrived, b.count)
          end
        end
      end
    end
  end)
  parallel_sched = outer
  if not ok then error(err, 0) end
end

-- provium:barrier(name, count[, timeout]): waits until count tasks of the
-- running provium:parallel have reached the barrier of this name, then lets
-- them all continue (in task order) and returns true. The name is reusable
-- afterwards. timeout (seconds or a duration string, default 30) bounds how
-- long the others may take. A barrier that times out or can no longer fill
-- returns false and a message naming it (assert() it to raise). Outside
-- parallel nobody else can arrive: count 1 returns true, more returns false.
function provium.barrier(self, name, count, timeout)
  if self ~= provium then error("call provium:barrier(name, count[, timeout]) with a colon", 2) end
  if type(name) ~= "string" then error("provium:barrier: name must be a string", 2) end
  if math.type(count) ~= "integer" or count < 1 then error("provium:barrier: count must be a positive integer", 2) end
  if type(timeout) == "string" then timeout = P.duration(timeout) end
  timeout = timeout or 30
  if type(timeout) ~= "number" or timeout < 0 then
    error("provium:barrier: timeout must be a non-negative number of seconds or a duration string", 2)
  end
  local sched, co = parallel_sched, coroutine.running()
  if not sched or not sched.cos[co] then
    if count == 1 then return true end
    return false, string.format("provium:barrier('%s'): 1 of %d arrived; outside provium:parallel (or in a "
      .. "coroutine that is not one of its tasks) nobody else can arrive", name, count)
  end
  local b = sched.barriers[name]
  if not b or b.released or b.failed then
    b = setmetatable({name = name, count = count, arrived = 0, timeout = timeout, deadline = P.clock() + timeout},
      Barrier)
    sched.barriers[name] = b
  elseif b.count ~= count then
    error(string.format("provium:barrier('%s'): count %d differs from the %d given by the first task", name, count,
      b.count), 2)
  end
  b.arrived = b.arrived + 1
  if b.arrived >= b.count then b.released = true end
  coroutine.yield(b)
  if b.failed then return false, b.failed end
  return true
end

function provium.shutdown_all()
  close_scope(current)
  if current ~= file_scope then close_scope(file_scope) end
end

---------------------------------------------------------------- test()
-- Two dialects decide when a test body runs:
-- * classic (seeds 002, 004): the body runs right where test() is called,
--   so top-level code after it sees its effects and a final vm:shutdown()
--   comes last. A test is classic when its function declares no parameter
--   (function() ... end) or once the file's top level has called
--   provium.create or provium.fixture.
-- * newer (function(t) ...): test() only registers; the registered tests run
--   in declaration order after the file's top level has finished.
local run_in_place -- set by P.run_file while the top level runs

local function is_classic(fn)
  if classic_file then return true end
  local info = debug.getinfo(fn, "u")
  return info.nparams == 0 and not info.isvararg
end

function test(name, meta, fn)
  if fn == nil then meta, fn = nil, meta end
  if type(name) ~= "string" or name == "" then error("test: name must be a non-empty string", 2) end
  if type(fn) ~= "function" then error("test '" .. name .. "': missing test function", 2) end
  if meta ~= nil and type(meta) ~= "table" then error("test '" .. name .. "': meta must be a table", 2) end
  if meta and meta.tags ~= nil and type(meta.tags) ~= "table" then
    error("test '" .. name .. "': meta.tags must be a list of strings", 2)
  end
  if by_name[name] then error("test '" .. name .. "' is already defined", 2) end
  local entry = {name = name, meta = meta or {}, fn = fn, classic = is_classic(fn), site = where(2)}
  by_name[name] = entry
  table.insert(tests, entry)
  if entry.classic and run_in_place and current == file_scope then run_in_place(entry) end
end

-- The console lines each VM printed during the test (since marks[vm], the
-- console size when the test began; all of it for VMs the test created),
-- without the one line microvm's pci=off always prints.
local function console_tails(marks)
  local parts = {}
  for _, scope in ipairs({file_scope, current}) do
    for _, vm in ipairs(scope.order) do
      local ok, log = pcall(vm.console_log, vm)
      if ok then
        log = log:sub((marks and marks[vm] or 0) + 1)
        log = log:gsub("[^\n]*PCI: Fatal: No config space access function found[^\n]*\n?", "")
        if log ~= "" then
          parts[#parts + 1] = "--- console of vm '" .. vm:name() .. "' ---\n" .. log:sub(-4096)
        end
      end
    end
    if scope == current then break end
  end
  return table.concat(parts, "\n")
end

local function console_marks()
  local marks = {}
  for _, vm in ipairs(file_scope.order) do
    local ok, log = pcall(vm.console_log, vm)
    if ok then marks[vm] = #log end
  end
  return marks
end

---------------------------------------------------------------- kernel health
local file_kernel_reports = {}
-- Before and after every test the kernel log of every booted VM is drained
-- (P.kernel_check, host/lua/lua_health.c). A kernel report (oops, WARNING,
-- KASAN, lockdep, hung task, ...) during a test fails it; one between tests
-- fails the file. t:expect_kernel_report, meta.kernel_reports = "allow" and
-- the profile's kernel_reports = "allow" turn a report into a record.
local function kernel_check()
  if not P.kernel_check then return {reports = {}, logs = {}} end
  local ok, res = pcall(P.kernel_check)
  if not ok then return {reports = {}, logs = {}} end
  return res
end

local function report_matches(r, what)
  what = what:lower()
  return r.kind == what or r.title:lower():find(what, 1, true) ~= nil
end

local function emit_reports(reports, test_name)
  local event = P.event or function() end
  for _, r in ipairs(reports) do
    event("kernel_report", {vm = r.vm, kind = r.kind, title = r.title, test = test_name,
      expected = r.expected or r.allowed or nil, text = r.text}) -- text: the report, frames decoded
  end
end

local function describe_report(r)
  local text = r.text ~= "" and ("\n" .. r.text:gsub("\n$", "")) or ""
  return string.format("VM '%s': %s%s", r.vm, r.title, text)
end

local function kernel_log_excerpt(logs)
  local parts = {}
  for name, text in pairs(logs) do
    parts[#parts + 1] = "--- kernel log of vm '" .. name .. "' during the test ---\n" .. text:sub(-4096)
  end
  table.sort(parts)
  return table.concat(parts, "\n")
end

-- meta.fresh_vm = true: the test needs a healthy kernel. Every file-scope VM
-- whose kernel went wrong earlier (a bad taint flag: M, B, D, W or L, or its
-- agent died with the kernel) is rebooted first; what the reboot prints is
-- boot log, not the test's.
local BAD_TAINT = 16 | 32 | 128 | 512 | 16384
local function refresh_vms()
  for _, vm in ipairs(file_scope.order) do
    local state = vm:state()
    if state == "booted" then
      local ok, text = pcall(vm.read_file, vm, "/proc/sys/kernel/tainted")
      local taint = ok and tonumber(text) or BAD_TAINT
      if taint & BAD_TAINT ~= 0 then vm:reset() end
    elseif state == "dead" then
      vm:boot()
    end
  end
  kernel_check() -- the reboots' own log
end

-- t:expect_kernel_report(kind, fn): runs fn and passes only if the kernel
-- reported kind ("WARNING", "oops", "KASAN", "lockdep", "hung_task", ... or
-- any text of the report's title) meanwhile. Returns the matching reports.
function T:expect_kernel_report(what, fn)
  if type(what) ~= "string" then fail(self, "expect_kernel_report(kind, fn): kind must be a string", 2) end
  if type(fn) ~= "function" then fail(self, "expect_kernel_report(kind, fn): fn must be a function", 2) end
  self.kernel_pending = self.kernel_pending or {}
  for _, r in ipairs(kernel_check().reports) do table.insert(self.kernel_pending, r) end
  fn()
  local got, matched = kernel_check(), {}
  for _, r in ipairs(got.reports) do
    if report_matches(r, what) then
      r.expected = true
      matched[#matched + 1] = r
    end
    table.insert(self.kernel_pending, r)
  end
  for name, text in pairs(got.logs) do self.kernel_logs[name] = (self.kernel_logs[name] or "") .. text end
  if #matched == 0 then fail(self, "expected a kernel report matching '" .. what .. "', but the kernel reported none", 2) end
  return matched
end

---------------------------------------------------------------- KTAP sub-tests
-- t:ktap(text[, opts]) turns each case of KTAP/TAP text (KUnit, kselftest)
-- into a sub-test of the running test, named "<test> / <suite> / <case>"
-- (P.ktap_parse, host/health/ktap.c). A failed case fails the test without
-- stopping it. vm:kselftest and vm:kunit (below) feed it.
local running_t -- the t of the test being run, for vm:kselftest / vm:kunit

local function ktap_excerpt(text)
  local head = text:sub(1, 400)
  if head == "" then return " (the text is empty)" end
  return ":\n" .. head:gsub("[^\n]+", "  | %0") .. (#text > 400 and "\n  ..." or "")
end

-- Adds cases ({name, status, message, diag}, names relative to the test) as
-- sub-tests of t; returns the summary t:ktap returns.
local function add_subtests(t, cases, level)
  t.subtests = t.subtests or {}
  local sum = {passed = 0, failed = 0, skipped = 0, todo = 0, cases = {}}
  local failed = {}
  for _, c in ipairs(cases) do
    local status = c.status == "todo" and "skipped" or c.status
    local msg = c.message
    if status == "failed" and c.diag then msg = (msg and msg .. "\n" or "") .. c.diag end
    t.subtests[#t.subtests + 1] = {name = t.name .. " / " .. c.name, status = status, message = msg,
      log = c.diag or "", ktap_status = c.status, duration = 0}
    sum[c.status] = sum[c.status] + 1
    sum.cases[#sum.cases + 1] = {name = c.name, status = c.status, message = c.message}
    if status == "failed" then failed[#failed + 1] = c.name end
  end
  if #failed > 0 then
    t.failed = true
    local shown = {}
    for i = 1, math.min(#failed, 10) do shown[i] = "  " .. failed[i] end
    if #failed > 10 then shown[#shown + 1] = string.format("  ... and %d more", #failed - 10) end
    table.insert(t.failures, string.format("%s: %d KTAP case%s failed:\n%s", where(level + 1), #failed,
      #failed == 1 and "" or "s", table.concat(shown, "\n")))
  end
  return sum
end

function T:ktap(text, opts)
  if type(text) ~= "string" then fail(self, "t:ktap(text): text must be a string, got " .. type(text), 2) end
  if opts ~= nil and type(opts) ~= "table" then fail(self, "t:ktap(text, opts): opts must be a table", 2) end
  local suite = opts and opts.suite
  local res = P.ktap_parse(text, suite)
  if not res.found then
    fail(self, "t:ktap: no KTAP in the text (no version, plan or result line)" .. ktap_excerpt(text), 2)
  end
  local sum = add_subtests(self, res.cases, 2) -- not a tail call: where() needs this frame
  return sum
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function need_test(what, vm)
  if not running_t then
    error(string.format("vm '%s': %s: must be called inside a test (its cases become sub-tests of it)",
      vm:name(), what), 3)
  end
  return running_t
end

-- vm:kselftest(path_or_cmd[, opts]): runs a kselftest binary, a directory
-- with run_kselftest.sh (an installed collection) or a command line in the
-- guest and ingests its KTAP as sub-tests. opts: timeout (default 300 s),
-- env, cwd, args (extra arguments of a binary), tests (for a collection:
-- "collection:test" names passed as -t), suite (the name of a flat output;
-- default the binary's name).
local function vm_kselftest(vm, what, opts)
  local t = need_test("kselftest", vm)
  if type(what) ~= "string" or what == "" then
    error(string.format("vm '%s': kselftest(path_or_cmd): expected a path or a command line, got %s", vm:name(),
      type(what)), 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then error(string.format("vm '%s': kselftest: opts must be a table", vm:name()), 2) end
  local cmd, suite, cwd = what, opts.suite, opts.cwd
  if not what:find("%s") then
    local probe = vm:run("if [ -d " .. shell_quote(what) .. " ]; then echo dir; elif [ -e " .. shell_quote(what)
      .. " ]; then echo file; else echo none; fi")
    local kind = tostring(probe.stdout):match("%a+")
    local dir, base = what:match("^(.*)/([^/]+)$")
    if kind == "dir" or base == "run_kselftest.sh" then
      local root = kind == "dir" and what or dir
      -- the runner writes each binary's output to /dev/stdout, which a
      -- devtmpfs-only guest (busybox) lacks: without the link it would
      -- become a plain file
      cmd = ""
      for fd, name in ipairs({"stdin", "stdout", "stderr"}) do
        cmd = cmd .. string.format("[ -L /dev/%s ] || ln -sfn /proc/self/fd/%d /dev/%s; ", name, fd - 1, name)
      end
      cmd = cmd .. "./run_kselftest.sh"
      for _, name in ipairs(opts.tests or {}) do cmd = cmd .. " -t " .. shell_quote(name) end
      cwd = cwd or root
    elseif kind == "file" then
      base = base or what
      cwd = cwd or dir or "."
      if cwd == "" then cwd = "/" end
      cmd = "./" .. base
      for _, a in ipairs(opts.args or {}) do cmd = cmd .. " " .. shell_quote(a) end
      suite = suite or base
    else
      error(string.format("vm '%s': kselftest: %s does not exist in the guest", vm:name(), what), 2)
    end
  end
  local r = vm:run(cmd, {timeout = opts.timeout or 300, env = opts.env, cwd = cwd})
  local stdout = tostring(r.stdout) -- classic VMs give Output objects
  local res = P.ktap_parse(stdout, suite)
  local cases = res.cases
  local label = suite or what
  local nfail = 0
  for _, c in ipairs(cases) do if c.status == "failed" then nfail = nfail + 1 end end
  if r.timed_out then
    cases[#cases + 1] = {name = label .. " / (timeout)", status = "failed",
      message = string.format("%s did not finish within %s s and was killed", cmd, tostring(opts.timeout or 300))}
  elseif not res.found then
    -- not a KTAP program: its exit status is the verdict (4 is KSFT_SKIP)
    cases[#cases + 1] = {name = label, status = r.exit_code == 0 and "passed" or r.exit_code == 4 and "skipped"
      or "failed", message = r.exit_code ~= 0 and string.format("%s printed no KTAP and exited with %d%s", cmd,
      r.exit_code, r.exit_code == 4 and " (KSFT_SKIP)" or "") or nil, diag = stdout ~= "" and stdout or nil}
  elseif r.exit_code ~= 0 and r.exit_code ~= 4 and nfail == 0 then
    cases[#cases + 1] = {name = label .. " / (exit status)", status = "failed",
      message = string.format("%s exited with %d (%s) although no case failed", cmd, r.exit_code, r.status)}
  end
  local sum = add_subtests(t, cases, 2)
  sum.stdout, sum.stderr, sum.exit_code, sum.status = stdout, tostring(r.stderr), r.exit_code, r.status
  return sum
end

-- vm:kunit(module_or_suite[, opts]): KUnit results as sub-tests. A path
-- ending in ".ko" (on the host; relative to the calling file) is pushed,
-- loaded with finit_module (opts.params), its new suites' debugfs results
-- read, and unloaded again (unless opts.keep). Any other string names a
-- built-in suite, whose results (from boot) are read. Needs CONFIG_KUNIT and
-- CONFIG_KUNIT_DEBUGFS in the guest kernel.
local KUNIT_DIR = "/sys/kernel/debug/kunit"

-- The suites under KUNIT_DIR as a set; nil when there is no such directory.
local function kunit_suites(vm)
  local r = vm:run("[ -d " .. KUNIT_DIR .. " ] && ls -1 " .. KUNIT_DIR)
  if r.exit_code ~= 0 then return nil end
  local set = {}
  for name in tostring(r.stdout):gmatch("[^\n]+") do set[name] = true end
  return set
end

local function vm_kunit(vm, what, opts)
  local t = need_test("kunit", vm)
  local name = vm:name()
  if type(what) ~= "string" or what == "" then
    error(string.format("vm '%s': kunit(module_or_suite): expected a .ko path or a suite name, got %s", name,
      type(what)), 2)
  end
  opts = opts or {}
  vm:run("grep -q ' /sys/kernel/debug ' /proc/mounts || mount -t debugfs none /sys/kernel/debug")
  local before = kunit_suites(vm)
  if not before then
    error(string.format("vm '%s': kunit: %s is missing: the kernel has no KUnit (CONFIG_KUNIT and "
      .. "CONFIG_KUNIT_DEBUGFS)", name, KUNIT_DIR), 2)
  end
  local suites, loaded = {}, nil
  if what:match("%.ko$") then
    local host = what
    if host:sub(1, 1) ~= "/" and host:sub(1, 2) ~= "~/" then
      local src = debug.getinfo(2, "S").source
      local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$")
      if dir then host = dir .. "/" .. host end
    end
    local mod = host:match("([^/]+)%.ko$")
    local guest = "/root/" .. mod .. ".ko"
    vm:push_file(host, guest)
    local ko = vm:open_file(guest, {read = true})
    local r = vm:syscall(313, {args = {ko:fd(), 0, 0}, bufs = {(opts.params or "") .. "\0"}, ptrs = {1}})
    ko:close()
    if r.ret ~= 0 then
      local why = r.errno == 2 and " (unknown symbol: does the kernel have CONFIG_KUNIT?)" or ""
      error(string.format("vm '%s': kunit: finit_module(%s) failed with errno %d%s", name, guest, r.errno, why), 2)
    end
    loaded = mod:gsub("-", "_")
    for suite in pairs(kunit_suites(vm) or {}) do
      if not before[suite] then suites[#suites + 1] = suite end
    end
    table.sort(suites)
    if #suites == 0 then
      vm:syscall(176, {args = {0, 2048}, bufs = {loaded .. "\0"}, ptrs = {0}})
      error(string.format("vm '%s': kunit: %s registered no KUnit suite under %s", name, what, KUNIT_DIR), 2)
    end
  else
    if not before[what] then
      local known = {}
      for suite in pairs(before) do known[#known + 1] = suite end
      table.sort(known)
      error(string.format("vm '%s': kunit: no suite '%s' (known: %s)", name, what,
        #known > 0 and table.concat(known, ", ") or "none"), 2)
    end
    suites = {what}
  end
  local cases = {}
  for _, suite in ipairs(suites) do
    local text = tostring(vm:read_file(KUNIT_DIR .. "/" .. suite .. "/results"))
    local res = P.ktap_parse(text)
    for _, c in ipairs(res.cases) do cases[#cases + 1] = c end
    if not res.found then
      cases[#cases + 1] = {name = suite, status = "failed", message = "its debugfs results hold no KTAP",
        diag = text ~= "" and text or nil}
    end
  end
  if loaded and not opts.keep then
    vm:syscall(176, {args = {0, 2048}, bufs = {loaded .. "\0"}, ptrs = {0}})
  end
  local sum = add_subtests(t, cases, 2)
  sum.suites = suites
  return sum
end

do
  local mt = debug.getregistry()["provium.VM"]
  if mt and mt.__index then
    mt.__index.kselftest = vm_kselftest
    mt.__index.kunit = vm_kunit
  end
end

-- The test's time limit in seconds, nil for none; or nil and an error that
-- names the test, where it was declared and the bad value (the test then
-- fails; the other tests still run).
local function test_timeout(entry)
  local from = entry.meta.timeout ~= nil and "meta.timeout" or "provium.timeout"
  local tmo = entry.meta.timeout
  if tmo == nil then tmo = rawget(provium, "timeout") end
  if tmo == nil then return nil end
  local ok, secs = true, tmo
  if type(tmo) == "string" then ok, secs = pcall(P.duration, tmo) end
  if not ok or type(secs) ~= "number" or secs ~= secs or secs <= 0 or secs == math.huge then
    return nil, string.format("%s: test '%s': %s must be a positive number of seconds or a duration such as " ..
      "\"20s\", got %s%s", entry.site or "?", entry.name, from, type(tmo) == "string" and ("\"" .. tmo .. "\"")
      or tostring(tmo), ok and "" or " (" .. tostring(secs):gsub("^.-:%d+: ", "") .. ")")
  end
  return secs
end

local function run_test(entry)
  local t = setmetatable({name = entry.name, meta = entry.meta, failures = {}, logs = {}, failed = false,
    kernel_logs = {}}, T)
  local result = {name = entry.name}
  local skip = entry.meta.skip or file_todo
  if not skip and entry.meta.slow and not P.include_slow then skip = "slow test (run with --include-slow)" end
  if skip then
    result.status, result.message, result.duration = "skipped", type(skip) == "string" and skip or "skipped", 0
    return result
  end
  local phase = P.phase
  P.phase = "tests"
  running_t = t
  current = {kind = "test", vms = {}, order = {}, resources = {}, labs = {}, lab_order = {}, bridges = {},
    bridge_order = {}}
  -- what the kernel said before this test belongs to the file, not to it
  local before = kernel_check()
  for _, r in ipairs(before.reports) do table.insert(file_kernel_reports, r) end
  local fresh_ok, fresh_err = true, nil
  if entry.meta.fresh_vm then fresh_ok, fresh_err = pcall(refresh_vms) end
  local marks = console_marks()
  local started = P.clock()
  local timeout, bad_timeout = test_timeout(entry)
  local timed_out = false
  local in_handler = false
  if timeout then
    -- C waits stop at the deadline; a hook stops pure-Lua loops. The hook
    -- keeps raising once the time is up, so a pcall cannot swallow it.
    P.set_deadline(timeout)
    debug.sethook(function()
      if not in_handler and P.clock() - started > timeout then
        timed_out = true
        error("test timed out after " .. timeout .. "s", 2)
      end
    end, "", 10000)
  end
  local ok, err
  if bad_timeout then
    ok, err = false, bad_timeout
  elseif not fresh_ok then
    ok, err = false, "meta.fresh_vm: cannot reboot the file's VMs: " .. tostring(fresh_err)
  else
    ok, err = xpcall(entry.fn, function(e)
      if e == FAIL or e == SKIP then return e end
      in_handler = true
      local tb = user_traceback(tostring(e), 2)
      in_handler = false
      return tb
    end, t)
  end
  if timeout then
    debug.sethook()
    P.set_deadline(nil)
    -- sticky: a timeout fails the test even when the test caught the error
    if timed_out or P.clock() - started >= timeout then
      timed_out = true
      t.failed = true
      table.insert(t.failures, 1, string.format("test timed out after %gs (meta.timeout / provium.timeout)", timeout))
    end
  end
  result.log = table.concat(t.logs, "\n")
  running_t = nil
  result.subtests = t.subtests
  local after = kernel_check()
  local reports = t.kernel_pending or {}
  for _, r in ipairs(after.reports) do reports[#reports + 1] = r end
  for name, text in pairs(after.logs) do t.kernel_logs[name] = (t.kernel_logs[name] or "") .. text end
  local allow = entry.meta.kernel_reports == "allow"
  for _, r in ipairs(reports) do
    if not (r.expected or r.allowed or allow) then
      t.failed = true
      table.insert(t.failures, describe_report(r))
    end
  end
  if #reports > 0 then
    result.kernel_reports = {}
    for _, r in ipairs(reports) do
      table.insert(result.kernel_reports, {vm = r.vm, kind = r.kind, title = r.title,
        expected = (r.expected or r.allowed or allow) and true or false})
    end
    emit_reports(reports, entry.name)
  end
  if not ok and err ~= FAIL and err ~= SKIP and not timed_out then
    t.failed = true
    table.insert(t.failures, tostring(err))
  elseif timed_out and not ok and err ~= FAIL and err ~= SKIP then
    table.insert(t.failures, tostring(err))
  end
  if t.failed then
    result.status = "failed"
    local seeds = Net.seed_report() -- how to replay impairments drawn from random seeds
    if seeds ~= "" then t.failures[#t.failures + 1] = seeds end
    result.message = table.concat(t.failures, "\n")
    local klog, con = kernel_log_excerpt(t.kernel_logs), console_tails(marks)
    result.console = (klog ~= "" and con ~= "") and (klog .. "\n" .. con) or (klog .. con)
  elseif not ok and err == SKIP then
    result.status = "skipped"
    result.message = t.skip_reason or current.todo_reason
  else
    result.status = "passed"
  end
  close_scope(current)
  current = file_scope
  P.phase = phase
  result.duration = P.clock() - started
  return result
end

-- Called by the host after loading the file's chunk.
-- In list mode (provium list, selection pre-pass) VMs are inert and no test
-- runs: the report lists each test and whether the selection keeps it.
-- provium.reset_between_tests = true: after the file's top-level chunk,
-- every booted file-scope VM is snapshotted; before each test after the first
-- the VMs go back to that baseline, so tests cannot leak state into each
-- other. Returns the baseline (nil when not asked for), or false and an error
-- when the baseline cannot be taken (e.g. file-scope streams are open).
local function take_baseline()
  if not rawget(provium, "reset_between_tests") then return nil end
  local base = {}
  for _, vm in ipairs(file_scope.order) do
    if vm:state() == "booted" then
      local ok, snap = pcall(vm.snapshot, vm)
      if not ok then
        return false, "provium.reset_between_tests: cannot take the baseline at the end of the file's top level: " ..
          tostring(snap)
      end
      base[#base + 1] = {vm = vm, snap = snap}
    end
  end
  return base
end

local function restore_baseline(base)
  for _, b in ipairs(base) do
    if b.vm:state() == "booted" or b.vm:state() == "paused" then b.vm:shutdown() end
    b.vm:restore(b.snap)
  end
end

-- Runs one test (or reports why it did not run) with its events; the
-- result goes into entry.result. Returns false when it failed.
local function run_entry(entry, before)
  local event = P.event or function() end
  -- --filter / --tag / --no-tag / --tag-meta / --no-tag-meta (host/lua/lua_runner.c):
  -- a test the selection leaves out is not run and not reported (nor skipped)
  if P.select_reason and P.select_reason(entry.name, entry.meta) then
    entry.deselected = true
    return true
  end
  P.test_index = (P.test_index or 0) + 1 -- a claim inside a test is one-shot per test (lua_runner.c)
  event("test_started", {name = entry.name, meta = entry.meta})
  local r
  local rok, rerr = true, nil
  if before then rok, rerr = pcall(before) end
  if rok then
    r = run_test(entry)
  else
    r = {name = entry.name, status = "failed", duration = 0, message = rerr}
  end
  local payload = {name = r.name, meta = entry.meta, duration_ns = math.floor((r.duration or 0) * 1e9)}
  if r.status == "failed" then
    payload.reason, payload.console_excerpt = r.message, r.console
  elseif r.status == "skipped" then
    payload.reason = r.message
  end
  event("test_" .. r.status, payload)
  entry.result = r
  return r.status ~= "failed"
end

function P.run_file(chunk)
  local report = {path = P.file_path, tests = {}, passed = true}
  file_kernel_reports = {}
  if not P.list_mode then
    run_in_place = function(entry)
      if not run_entry(entry) then report.passed = false end
    end
  end
  local ok, err = xpcall(chunk, function(e) return user_traceback(tostring(e), 2) end)
  run_in_place = nil
  if P.list_mode then
    if not ok then report.chunk_error = tostring(err) end
    for _, entry in ipairs(tests) do
      local reason = entry.meta.skip or file_todo
      if not reason and entry.meta.slow and not P.include_slow then reason = "slow test (run with --include-slow)" end
      if not reason and P.select_reason then reason = P.select_reason(entry.name, entry.meta) end
      table.insert(report.tests, {name = entry.name, selected = not reason,
        reason = reason and (type(reason) == "string" and reason or "skipped") or nil})
    end
    report.claim = P.claim
    return report
  end
  if not ok then
    report.chunk_error = tostring(err)
    report.passed = false
    report.console = console_tails()
  else
    P.phase = "tests"
    local baseline, berr = take_baseline()
    if berr then
      report.chunk_error = berr
      report.passed = false
    end
    local n = 0
    for _, entry in ipairs(baseline ~= false and tests or {}) do
      if not entry.classic then
        local before
        if baseline and n > 0 then
          before = function()
            local rok, rerr = pcall(restore_baseline, baseline)
            if not rok then error("provium.reset_between_tests: restoring the baseline failed: " .. tostring(rerr), 0) end
          end
        end
        if not (P.select_reason and P.select_reason(entry.name, entry.meta)) then n = n + 1 end
        if not run_entry(entry, before) then report.passed = false end
      end
    end
  end
  if not P.list_mode then
    for _, r in ipairs(kernel_check().reports) do table.insert(file_kernel_reports, r) end
    local failing = {}
    for _, r in ipairs(file_kernel_reports) do
      if not r.allowed then failing[#failing + 1] = "outside any test: " .. describe_report(r) end
    end
    emit_reports(file_kernel_reports, nil)
    if #failing > 0 then
      report.passed = false
      local text = table.concat(failing, "\n")
      report.chunk_error = report.chunk_error and (report.chunk_error .. "\n" .. text) or text
    end
  end
  -- declaration order, whichever dialect ran them
  local deselected = 0
  for _, entry in ipairs(tests) do
    if entry.result then table.insert(report.tests, entry.result) end
    if entry.deselected then deselected = deselected + 1 end
  end
  if deselected > 0 then report.deselected = deselected end
  close_scope(file_scope)
  if #P.fixture_log > 0 then report.fixtures = P.fixture_log end
  return report
end

-- Lookups of unknown keys find VMs (provium.NAME); assignments are refused so
-- a typo cannot silently shadow the API.
setmetatable(provium, {
  __index = function(_, key)
    if type(key) == "string" then
      return find_vm(key) or (P.root_lab and (find_bridge_root(key) or find_sub_lab(P.root_lab, key)))
    end
  end,
  __newindex = function(t, key, value)
    if key == "timeout" or key == "reset_between_tests" or key == "rng_seed" then rawset(t, key, value); return end
    error(string.format("provium.%s cannot be assigned", tostring(key)), 2)
  end,
})
_G.provium = provium
