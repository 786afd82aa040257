-- The editor stubs that `provium lsp-setup` writes (lua/types.lua) against
-- the real API: real objects of every kind are made and their metatables
-- walked; every method they have must be declared in the stubs for the right
-- class (inherited declarations count), and every method the stubs declare
-- for a class must really exist on its objects. The stubs file is
-- $PROVIUM_STUBS when set (tests/cli/lsp.sh points it at what lsp-setup wrote,
-- and at a copy with a method removed, which must fail), else lua/types.lua.

local function stubs_path()
  local env = os.getenv("PROVIUM_STUBS")
  if env and env ~= "" then return env end
  local here = debug.getinfo(1, "S").source:gsub("^@", "")
  local dir = here:match("^(.*)/[^/]*$") or "."
  return dir .. "/../../lua/types.lua"
end

-- Parses the stubs: classes (with their parent), and for each the methods
-- declared as `function Var:m(` or `function Var.m(`, where Var is the
-- variable assigned right after the class's ---@class line.
local function parse_stubs(path)
  local f = assert(io.open(path, "r"))
  local classes, var_class, pending = {}, {}, nil
  for line in f:lines() do
    local name, parent = line:match("^%-%-%-@class%s+([%w_]+)%s*:?%s*([%w_]*)")
    if name then
      classes[name] = classes[name] or {parent = parent ~= "" and parent or nil, methods = {}}
      pending = name
    else
      local var = line:match("^local%s+([%w_]+)%s*=%s*{") or line:match("^([%w_]+)%s*=%s*{")
      if var and pending then var_class[var] = pending end
      if not line:match("^%-%-%-") then pending = nil end
      local v, m = line:match("^function%s+([%w_]+)[:.]([%w_]+)%s*%(")
      if v and var_class[v] then classes[var_class[v]].methods[m] = true end
      local g = line:match("^function%s+([%w_]+)%s*%(")
      if g then
        classes._G = classes._G or {methods = {}}
        classes._G.methods[g] = true
      end
    end
  end
  f:close()
  return classes
end

local classes = parse_stubs(stubs_path())

local function declared(class, seen)
  local c = classes[class]
  local out = {}
  if not c then return out end
  seen = seen or {}
  if seen[class] then return out end
  seen[class] = true
  if c.parent then
    for m in pairs(declared(c.parent, seen)) do out[m] = true end
  end
  for m in pairs(c.methods) do out[m] = true end
  return out
end

-- The public methods of a real object: the functions of its metatable's
-- __index chain (or, for a plain table, its own and its metatable's).
-- Names starting with "__" are internal.
local function real_methods(obj)
  local out, visited = {}, {}
  local t = obj
  if type(obj) ~= "table" then
    local mt = debug.getmetatable(obj) -- getmetatable is guarded (__metatable)
    t = mt and mt.__index
  end
  while type(t) == "table" and not visited[t] do
    visited[t] = true
    for k, v in pairs(t) do
      if type(k) == "string" and type(v) == "function" and k:sub(1, 2) ~= "__" and out[k] == nil then
        out[k] = v
      end
    end
    local mt = debug.getmetatable(t)
    t = mt and (type(mt.__index) == "table" and mt.__index or mt) or nil
  end
  return out
end

local function sorted(set)
  local l = {}
  for k in pairs(set) do l[#l + 1] = k end
  table.sort(l)
  return l
end

-- Checks one kind of object; collects what is missing on either side.
local missing, extra = {}, {}
local function check(class, methods, allow_extra)
  if not classes[class] then
    missing[#missing + 1] = "the class " .. class
    return
  end
  local decl = declared(class)
  for _, m in ipairs(sorted(methods)) do
    if not decl[m] then missing[#missing + 1] = class .. ":" .. m end
  end
  for _, m in ipairs(sorted(decl)) do
    if not methods[m] and not (allow_extra and allow_extra[m]) then extra[#extra + 1] = class .. ":" .. m end
  end
end

local function report(t)
  local msg = {}
  if #missing > 0 then
    msg[#msg + 1] = "methods of real objects missing from the stubs " .. stubs_path() .. ": " ..
      table.concat(missing, ", ")
  end
  if #extra > 0 then
    msg[#msg + 1] = "methods the stubs declare that the real objects lack: " .. table.concat(extra, ", ")
  end
  if #msg > 0 then t:fail(table.concat(msg, "\n")) end
end

test("the lsp-setup stubs declare every method of the real objects, and no other", function(t)
  local lan = provium:bridge("stubs_lan") -- before the boot: microvm gets its NIC at boot
  local vm = provium:vm("stubs", "default"):boot()
  lan:attach(vm)
  check("Bridge", real_methods(lan))
  check("Nic", real_methods(vm:nic("stubs_lan")))
  local cap = lan:capture()
  check("Capture", real_methods(cap))
  cap:close()

  local vm_methods = real_methods(vm)
  check("VM", vm_methods)

  -- a worker inherits the VM's methods; the VM-only ones are refusals
  local w = vm:spawn_worker()
  local w_methods = {}
  local refused = {}
  for name, fn in pairs(real_methods(w)) do
    if debug.getupvalue(fn, 1) ~= nil then
      local ok, err = pcall(fn, w)
      if not ok and tostring(err):find("is a VM operation", 1, true) then refused[name] = true end
    end
  end
  for name in pairs(real_methods(w)) do
    if not refused[name] then w_methods[name] = true end
  end
  t:assert(refused.boot and refused.snapshot, "the worker refuses boot and snapshot")
  check("Worker", w_methods)
  -- what VMs and workers share
  local shared = {}
  for name in pairs(vm_methods) do
    if w_methods[name] then shared[name] = true end
  end
  check("Guest", shared, nil)

  local h = w:syscall_async(39)
  check("AsyncSyscall", real_methods(h))
  h:await()
  w:close()

  local p = vm:run_async("sleep 30")
  check("Process", real_methods(p))
  local s = p:stdout_stream()
  check("Stream", real_methods(s))
  s:close()
  p:kill()
  p:wait()

  local r = vm:run("true")
  check("RunResult", real_methods(r))

  local e = vm:exec("echo hi")
  check("Output", real_methods(e.stdout))

  local f = vm:open_file("/tmp/stubs.txt", {write = true, create = true})
  check("File", real_methods(f))
  f:close()

  check("Clock", real_methods(vm:clock()))

  local batch
  vm:batch(function(b) batch = b end)
  check("Batch", real_methods(batch))

  local con = vm:console()
  check("Console", real_methods(con))
  check("ConsoleStream", real_methods(con:read()))

  local snap = vm:snapshot()
  check("Snapshot", real_methods(snap))
  snap:delete()

  local lab = provium:lab("stubs_lab")
  check("Lab", real_methods(lab))
  local lvm = lab:vm("stubs_member", "default"):boot()
  local ls = lab:snapshot()
  check("LabSnapshot", real_methods(ls))
  ls:delete()
  lvm:shutdown()

  -- the provium table; the stubs declare its colon-or-dot calls once
  local pv = {}
  for k, v in pairs(provium) do
    if type(k) == "string" and type(v) == "function" and k:sub(1, 2) ~= "__" then pv[k] = true end
  end
  check("Provium", pv)

  check("T", real_methods(t))
  check("Json", real_methods(json))

  -- the framework's global functions (not the standard library's)
  local std = {}
  for _, n in ipairs({"assert", "collectgarbage", "dofile", "error", "getmetatable", "ipairs", "load",
                      "loadfile", "next", "pairs", "pcall", "print", "rawequal", "rawget", "rawlen", "rawset",
                      "require", "select", "setmetatable", "tonumber", "tostring", "type", "warn", "xpcall"}) do
    std[n] = true
  end
  local globals = {}
  for k, v in pairs(_G) do
    if type(v) == "function" and not std[k] then globals[k] = true end
  end
  check("_G", globals)

  report(t)
end)
