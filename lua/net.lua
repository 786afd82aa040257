-- Bridges, NICs and captures (the reference's Bridge, Nic and Capture).
--
-- A Bridge is graph state first: members, partitions, impairments, isolation
-- and routes are recorded here whether or not any VM has booted, so bare
-- names ("a") work as the reference says. It becomes real in the file's
-- user-space switch (host/net/netsw.h, through P.net in host/lua/lua_net.c)
-- when the first VM gets a port on it; from then on every change is pushed
-- to the switch at once. A port is a virtio-net NIC of the VM whose backend
-- is a unix socket of the switch.
--
-- Addresses: bridge number n (in creation order in the file) has the subnet
-- 10.n.0.0/24; each VM gets host number 10, 11, ... on it in the order it
-- first got a port there, kept for the bridge's life. The MAC address is
-- 52:54:00:n:host:01. Inside the guest the interfaces of the bridges a VM is
-- attached to are named eth0, eth1, ... by bridge name (the reference's
-- rule); NICs made at boot for bridges it is not (yet) attached to are down
-- and named pvoffN. /etc/hosts holds "<vm>.<bridge>" and "<vm>" for every
-- member, rewritten on every member when membership changes.
--
-- Called by lua/framework.lua with its glue (ctx); returns the module.
local P, ctx = ...
local N = P.net
local M = {}

local Bridge = {}
Bridge.__index = Bridge
Bridge.__name = "provium.Bridge"
local Nic = {}
Nic.__index = Nic
Nic.__name = "provium.Nic"
local Capture = {}
Capture.__index = Capture
Capture.__name = "provium.Capture"

local live = {}        -- every open bridge, in creation order
local bridge_count = 0 -- subnet numbers
local uid_count = 0
local keys = {}        -- switch names in use

local MAX_LATENCY_MS = 60000
local closed_vms = setmetatable({}, {__mode = "k"}) -- VMs whose scope ended

local function is_vm(x) return ctx.is_vm(x) end
local function is_bridge(x) return getmetatable(x) == Bridge end
M.is_bridge = is_bridge

local function name_of(x)
  if is_vm(x) then return x:name() end
  if type(x) == "string" then return x end
  return nil
end

local function fail(b, op, msg, level)
  error(string.format("bridge '%s': %s: %s", b._name, op, msg), (level or 1) + 2)
end

local function check_self(b, op)
  if not is_bridge(b) then error("call bridge:" .. op .. "(...) with a colon", 3) end
  if b._closed then error(string.format("bridge '%s': %s: the bridge is closed (its scope ended)", b._name, op), 3) end
end

function M.new_bridge(name, opts, owner)
  if opts ~= nil and type(opts) ~= "table" then
    error(string.format("provium:bridge('%s', opts): opts must be a table", name), 0)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "seed" then
      error(string.format("provium:bridge('%s'): unknown option '%s' (known: seed)", name, tostring(k)), 0)
    end
  end
  if opts.seed ~= nil and math.type(opts.seed) ~= "integer" then
    error(string.format("provium:bridge('%s'): seed must be an integer, got %s", name, tostring(opts.seed)), 0)
  end
  bridge_count = bridge_count + 1
  uid_count = uid_count + 1
  local key = owner and owner ~= "provium" and (owner .. "/" .. name) or name
  local base, n = key, 1
  while keys[key] do n = n + 1; key = base .. "#" .. n end
  keys[key] = true
  local b = setmetatable({_name = name, _key = key, _lab = owner, _subnet = ((bridge_count - 1) % 250) + 1,
    _uid = uid_count, _seed = opts.seed, _seed_from = opts.seed and "the bridge's seed option" or nil,
    _members = {}, _member = {}, _hosts = {}, _next_host = 10, _sym = {}, _dir = {}, _full = false,
    _isolated = {}, _whole = {latency_ms = 0, jitter_ms = 0, drop_pct = 0, rate_bps = 0}, _pairs = {},
    _routes = {}, _uplink = false, _ports = {}, _captures = {}, _realized = false}, Bridge)
  live[#live + 1] = b
  return b
end

---------------------------------------------------------------- switch state
local function pair_key(a, b) return a .. "\0" .. b end
local function sym_key(a, b) if a > b then a, b = b, a end; return a .. "\0" .. b end

-- the rule for frames from -> to: the pair's own fields, else the bridge's
local function effective(b, from, to)
  local p = b._pairs[pair_key(from, to)]
  local w = b._whole
  if not p then return nil end
  return {latency_ms = p.latency_ms or w.latency_ms, jitter_ms = p.jitter_ms or w.jitter_ms,
    drop_pct = p.drop_pct or w.drop_pct, rate_bps = p.rate_bps or w.rate_bps}
end

local function blocked(b, from, to)
  return b._full or b._sym[sym_key(from, to)] or b._dir[pair_key(from, to)] or false
end

-- Pushes the graph state to the switch (a no-op before the first port).
local function sync(b)
  if not b._realized then return end
  N.reset(b._key)
  N.set_impair(b._key, nil, nil, b._whole)
  local ported = {}
  for n in pairs(b._ports) do ported[#ported + 1] = n end
  table.sort(ported)
  for _, from in ipairs(ported) do
    N.set_isolated(b._key, from, b._isolated[from] or false)
    for _, to in ipairs(ported) do
      if from ~= to then
        if blocked(b, from, to) then N.set_blocked(b._key, from, to, true) end
        local e = effective(b, from, to)
        if e then N.set_impair(b._key, from, to, e) end
      end
    end
  end
end

local function attached(b, n) return b._member[n] ~= nil end

-- The switch bridge exists once a port does; its seed is the bridge's seed
-- option, else the lab's or the first VM's rng_seed, else a random one
-- (printed in failure reports so the run can be replayed).
local function realize(b, vm)
  if b._realized then return end
  if not b._seed then
    local lab_seed = ctx.lab_rng_seed(b)
    local vm_seed = vm and N.vm_rng_seed(vm)
    if lab_seed then
      b._seed, b._seed_from = lab_seed, "the lab's rng_seed"
    elseif vm_seed then
      b._seed, b._seed_from = vm_seed, "VM '" .. vm:name() .. "''s rng_seed"
    else
      b._seed, b._seed_from = N.random_seed(), "random"
    end
  end
  N.bridge_add(b._key, b._seed)
  b._realized = true
  if b._uplink then N.uplink(b._key, true, b:subnet()) end
end

local function host_of(b, n)
  local h = b._hosts[n]
  if not h then
    h = b._next_host
    if h > 250 then fail(b, "attach", "no address left for VM '" .. n .. "' (240 VMs per bridge)", 3) end
    b._next_host = h + 1
    b._hosts[n] = h
  end
  return h
end

function Bridge:subnet() return string.format("10.%d.0.0/24", self._subnet) end
local function address(b, n) return string.format("10.%d.0.%d", b._subnet, host_of(b, n)) end
local function mac_of(b, n) return string.format("52:54:00:%02x:%02x:01", b._subnet, host_of(b, n)) end

-- The port of VM vm on b, made when missing.
local function ensure_port(b, vm, netdev_id)
  local n = vm:name()
  local p = b._ports[n]
  if p and p.vm == vm then return p end
  if p then N.port_remove(p.id) end
  realize(b, vm)
  local mac = mac_of(b, n)
  local id = N.port_add(b._key, n, mac)
  netdev_id = netdev_id or ("pvn" .. b._uid)
  p = {id = id, vm = vm, mac = mac, netdev_id = netdev_id, netdev = N.port_netdev(id, netdev_id), up = true}
  b._ports[n] = p
  sync(b)
  return p
end

-- Link as both sides see it: up when attached and not disconnected.
local function push_link(b, n)
  local p = b._ports[n]
  if not p then return end
  local up = attached(b, n) and p.up
  N.port_set_link(p.id, up)
  local st = p.vm:state()
  if p.in_vm and (st == "booted" or st == "paused") then N.vm_set_link(p.vm, p.netdev_id, up) end
end

---------------------------------------------------------------- guest side
local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Every bridge with a port in vm, and which are attached (sorted by name).
local function vm_ports(vm)
  local on, off = {}, {}
  for _, b in ipairs(live) do
    local p = b._ports[vm:name()]
    if p and p.vm == vm and p.in_vm then
      if attached(b, vm:name()) then on[#on + 1] = b else off[#off + 1] = b end
    end
  end
  local by_name = function(x, y) if x._name ~= y._name then return x._name < y._name end return x._uid < y._uid end
  table.sort(on, by_name)
  table.sort(off, by_name)
  return on, off
end

local function hosts_text(vm)
  local lines, plain = {"127.0.0.1 localhost provium"}, {}
  local on = vm_ports(vm)
  for _, b in ipairs(on) do
    local names = {}
    for _, n in ipairs(b._members) do if b._ports[n] and b._ports[n].in_vm then names[#names + 1] = n end end
    table.sort(names)
    for _, n in ipairs(names) do
      local a = address(b, n)
      local l = a .. " " .. n .. "." .. b._name
      if not plain[n] then plain[n] = true; l = l .. " " .. n end
      lines[#lines + 1] = l
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

local function guest_up(vm) return vm:state() == "booted" end

-- Names, addresses and links of vm's interfaces, then its /etc/hosts.
local function configure(vm)
  if not guest_up(vm) then return end
  local on, off = vm_ports(vm)
  local want = {}
  for i, b in ipairs(on) do want[#want + 1] = {b = b, name = "eth" .. (i - 1), up = true} end
  for i, b in ipairs(off) do want[#want + 1] = {b = b, name = "pvoff" .. (i - 1), up = false} end
  if #want == 0 then return end
  local s = {"find() { for d in /sys/class/net/*; do [ \"$(cat $d/address 2>/dev/null)\" = \"$1\" ] && " ..
    "{ echo ${d##*/}; return; }; done; }"}
  for i, w in ipairs(want) do
    local mac = w.b._ports[vm:name()].mac
    s[#s + 1] = string.format("n=0; c=$(find %s); while [ -z \"$c\" ] && [ $n -lt 100 ]; do " ..
      "[ -w /sys/bus/pci/rescan ] && echo 1 > /sys/bus/pci/rescan; sleep 0.1; n=$((n+1)); c=$(find %s); done", mac, mac)
    s[#s + 1] = string.format("[ -n \"$c\" ] || { echo 'no interface with MAC %s (bridge %s)' >&2; exit 1; }",
      mac, w.b._name)
    s[#s + 1] = string.format("if [ \"$c\" != %s ]; then ip link set \"$c\" down && ip link set \"$c\" name pvtmp%d; fi",
      w.name, i)
  end
  for i, w in ipairs(want) do
    s[#s + 1] = string.format("[ -e /sys/class/net/pvtmp%d ] && ip link set pvtmp%d name %s", i, i, w.name)
    s[#s + 1] = "ip addr flush dev " .. w.name
    if w.up then
      s[#s + 1] = string.format("ip addr add %s/24 dev %s && ip link set %s up", address(w.b, vm:name()), w.name,
        w.name)
      if w.b._uplink then
        s[#s + 1] = string.format("ip route replace default via %s dev %s", w.b:gateway(), w.name)
      end
    else
      s[#s + 1] = "ip link set " .. w.name .. " down"
    end
  end
  s[#s + 1] = "true"
  local r = vm:run(table.concat(s, "\n"), {timeout = 60})
  if r.exit_code ~= 0 then
    error(string.format("VM '%s': configuring its network interfaces failed (exit %s): %s", vm:name(),
      tostring(r.exit_code), tostring(r.stderr)), 0)
  end
  vm:write_file("/etc/hosts", hosts_text(vm))
end

-- After a membership change on the bridges given: every booted member of
-- them (and extra) again, each VM once.
local function reconfigure(bridges, extra)
  local done = {}
  local function one(vm)
    if vm and not done[vm] and guest_up(vm) then done[vm] = true; configure(vm) end
  end
  one(extra)
  for _, b in ipairs(is_bridge(bridges) and {bridges} or bridges) do
    for _, n in ipairs(b._members) do
      local p = b._ports[n]
      one(p and p.vm)
    end
  end
end

---------------------------------------------------------------- membership
local function member_vm(b, n)
  local m = b._member[n]
  return m and m.vm
end

-- Makes a port and a NIC for vm on b when the VM runs already: hot-plug on
-- pc/q35, an error on microvm.
local function plug_running(b, vm)
  local p = ensure_port(b, vm)
  if p.in_vm then return p end
  local ok, err = pcall(N.vm_nic_hotplug, vm, p.netdev_id, p.netdev, p.mac)
  if not ok then
    N.port_remove(p.id)
    b._ports[vm:name()] = nil
    fail(b, "attach", tostring(err):gsub("^VM '[^']*': ", "VM '" .. vm:name() .. "': ")
      .. (tostring(err):find("microvm", 1, true) and
        string.format(" (e.g. provium:bridge(%q) before %s:boot())", b._name, vm:name()) or ""), 3)
  end
  p.in_vm = true
  return p
end

function Bridge:attach(x)
  check_self(self, "attach")
  local items = (type(x) == "table" and not is_vm(x)) and x or {x}
  if type(x) == "table" and not is_vm(x) and #x == 0 then fail(self, "attach", "the list of VMs is empty") end
  local seen = {}
  for i, item in ipairs(items) do
    local n = name_of(item)
    if not n or n == "" then
      fail(self, "attach", string.format("element %d is a %s, expected a VM or a VM name (nothing was attached)", i,
        type(item)))
    end
    if is_vm(item) and closed_vms[item] then
      fail(self, "attach", "unknown VM '" .. n .. "' (its scope ended)")
    end
    if attached(self, n) or seen[n] then
      fail(self, "attach", "VM '" .. n .. "' is already attached (nothing was attached)")
    end
    seen[n] = true
  end
  local vms = {}
  for _, item in ipairs(items) do
    local n = name_of(item)
    local vm = is_vm(item) and item or ctx.find_vm(n)
    if vm and (vm:state() == "booted" or vm:state() == "paused") then
      local ok, err = pcall(plug_running, self, vm)
      if not ok then error(err, 2) end
    end
    self._member[n] = {vm = vm}
    self._members[#self._members + 1] = n
    if vm then vms[#vms + 1] = vm; host_of(self, n); push_link(self, n) end
  end
  sync(self)
  if #vms > 0 then reconfigure(self, nil) end
  return self
end

local function forget_member(b, n)
  b._member[n] = nil
  for i, m in ipairs(b._members) do if m == n then table.remove(b._members, i); break end end
  for k in pairs(b._dir) do
    local from, to = k:match("^(.-)%z(.*)$")
    if from == n or to == n then b._dir[k] = nil end
  end
end

function Bridge:detach(x)
  check_self(self, "detach")
  local n = name_of(x)
  if not n then fail(self, "detach", "expected a VM or a VM name, got a " .. type(x)) end
  if not attached(self, n) then fail(self, "detach", "VM '" .. n .. "' is not attached") end
  local vm = member_vm(self, n)
  forget_member(self, n)
  push_link(self, n)
  sync(self)
  reconfigure(self, vm)
end

function Bridge:members()
  check_self(self, "members")
  local out = {}
  for i, n in ipairs(self._members) do out[i] = n end
  return out
end

function Bridge:name() return self._name end

---------------------------------------------------------------- partitions
local function endpoints(b, op, spec)
  local from, to = name_of(spec.from), name_of(spec.to)
  if not from or not to then
    fail(b, op, "a directional rule needs {from = VM, to = VM} (VMs or VM names)", 2)
  end
  return from, to
end

local function need_attached(b, op, from, to)
  for _, n in ipairs({from, to}) do
    if not attached(b, n) then
      fail(b, op, string.format("VM '%s' is not attached to the bridge (call bridge:attach first)", n), 2)
    end
  end
end

function Bridge:partition(a, c)
  check_self(self, "partition")
  if type(a) == "table" and not is_vm(a) then
    local from, to = endpoints(self, "partition", a)
    need_attached(self, "partition", from, to)
    self._dir[pair_key(from, to)] = true
  else
    local x, y = name_of(a), name_of(c)
    if not x or not y then fail(self, "partition", "expected two VMs (or names), or {from = VM, to = VM}") end
    if x == y then fail(self, "partition", "VM '" .. x .. "' cannot be partitioned from itself") end
    self._sym[sym_key(x, y)] = true
  end
  sync(self)
end

function Bridge:unpartition(a, c)
  check_self(self, "unpartition")
  if type(a) == "table" and not is_vm(a) then
    local from, to = endpoints(self, "unpartition", a)
    self._dir[pair_key(from, to)] = nil
  else
    local x, y = name_of(a), name_of(c)
    if not x or not y then fail(self, "unpartition", "expected two VMs (or names), or {from = VM, to = VM}") end
    self._sym[sym_key(x, y)] = nil
  end
  sync(self)
end

function Bridge:partition_all() check_self(self, "partition_all"); self._full = true; sync(self) end
function Bridge:restore_all() check_self(self, "restore_all"); self._full = false; sync(self) end

function Bridge:is_partitioned(a, c)
  check_self(self, "is_partitioned")
  local x, y = name_of(a), name_of(c)
  if not x or not y then fail(self, "is_partitioned", "expected two VMs or VM names") end
  return blocked(self, x, y) and true or false
end

---------------------------------------------------------------- impairments
local function check_number(b, op, what, v, lo, hi, who)
  local at = who and (" (" .. who .. ")") or ""
  if type(v) ~= "number" then fail(b, op, string.format("%s must be a number%s, got %s", what, at, type(v)), 3) end
  if v ~= v then fail(b, op, string.format("%s is NaN%s", what, at), 3) end
  if v < lo or v > hi then
    fail(b, op, string.format("%s %s is out of range%s: it must be within %s..%s", what, tostring(v), at,
      tostring(lo), tostring(hi)), 3)
  end
  return v
end

-- scalar: whole bridge; {from, to, <field>}: one direction; {<field>} alone: whole bridge.
local function impair(b, op, arg, field, key, lo, hi, extra)
  local who, from, to, v
  if type(arg) == "table" then
    if arg.from ~= nil or arg.to ~= nil then
      from, to = endpoints(b, op, arg)
      who = string.format("from VM '%s' to VM '%s'", from, to)
      need_attached(b, op, from, to)
    end
    v = arg[field]
    if v == nil then fail(b, op, "missing field '" .. field .. "'" .. (who and (" (" .. who .. ")") or ""), 2) end
  else
    v = arg
  end
  check_number(b, op, field, v, lo, hi, who)
  local rec = {[key] = v}
  if extra and type(arg) == "table" and arg[extra.field] ~= nil then
    rec[extra.key] = check_number(b, op, extra.field, arg[extra.field], 0, hi, who)
  end
  if from then
    local k = pair_key(from, to)
    local p = b._pairs[k] or {from = from, to = to}
    for kk, vv in pairs(rec) do p[kk] = vv end
    b._pairs[k] = p
  else
    for kk, vv in pairs(rec) do b._whole[kk] = vv end
  end
  sync(b)
end

function Bridge:add_latency(x)
  check_self(self, "add_latency")
  impair(self, "add_latency", x, "ms", "latency_ms", 0, MAX_LATENCY_MS, {field = "jitter", key = "jitter_ms"})
end
function Bridge:add_directional_latency(x)
  check_self(self, "add_directional_latency")
  if type(x) ~= "table" or x.from == nil then fail(self, "add_directional_latency", "expected {from, to, ms}") end
  self:add_latency(x)
end
function Bridge:drop_rate(x)
  check_self(self, "drop_rate")
  impair(self, "drop_rate", x, "p", "drop_pct", 0, 100)
end
function Bridge:directional_drop_rate(x)
  check_self(self, "directional_drop_rate")
  if type(x) ~= "table" or x.from == nil then fail(self, "directional_drop_rate", "expected {from, to, p}") end
  self:drop_rate(x)
end
function Bridge:bandwidth_limit(x)
  check_self(self, "bandwidth_limit")
  local v = type(x) == "table" and x.bps or x
  if v == 0 then
    fail(self, "bandwidth_limit", "bps must be positive (bandwidth 0 would drop everything: use partition_all, " ..
      "or reset to lift the limit)")
  end
  impair(self, "bandwidth_limit", x, "bps", "rate_bps", 1, 1e12)
end

function Bridge:reset()
  check_self(self, "reset")
  self._whole = {latency_ms = 0, jitter_ms = 0, drop_pct = 0, rate_bps = 0}
  self._pairs, self._sym, self._dir, self._full, self._isolated = {}, {}, {}, false, {}
  sync(self)
end

function Bridge:latency_ms() return self._whole.latency_ms end
function Bridge:jitter_ms() return self._whole.jitter_ms end
function Bridge:drop_rate_pct() return self._whole.drop_pct end
function Bridge:bandwidth_bps() return self._whole.rate_bps end
function Bridge:seed() return self._seed end

---------------------------------------------------------------- isolation, routes, uplink
function Bridge:isolate(x)
  check_self(self, "isolate")
  local n = name_of(x)
  if not n then fail(self, "isolate", "expected a VM or a VM name, got a " .. type(x)) end
  self._isolated[n] = true
  sync(self)
end
function Bridge:unisolate(x)
  check_self(self, "unisolate")
  local n = name_of(x)
  if not n then fail(self, "unisolate", "expected a VM or a VM name, got a " .. type(x)) end
  self._isolated[n] = nil
  sync(self)
end
function Bridge:is_isolated(x)
  local n = name_of(x)
  if not n then fail(self, "is_isolated", "expected a VM or a VM name, got a " .. type(x)) end
  return self._isolated[n] == true
end

local route_warned = {}
function Bridge:route(x)
  check_self(self, "route")
  local items = (type(x) == "table" and not is_bridge(x)) and x or {x}
  local names = {}
  for i, item in ipairs(items) do
    local n = is_bridge(item) and item._name or (type(item) == "string" and item)
    if not n then fail(self, "route", string.format("element %d is a %s, expected a bridge or its name", i, type(item))) end
    names[#names + 1] = n
  end
  for _, n in ipairs(names) do
    local dup = false
    for _, r in ipairs(self._routes) do if r == n then dup = true end end
    if not dup then self._routes[#self._routes + 1] = n end
  end
  if not route_warned[self._key] then
    route_warned[self._key] = true
    io.stderr:write(string.format("provium: bridge:route on '%s' is recorded only: no IP routing between bridges " ..
      "is done, so traffic to %s will not flow\n", self._name, table.concat(names, ", ")))
  end
end
function Bridge:routes()
  local out = {}
  for i, r in ipairs(self._routes) do out[i] = r end
  return out
end

-- The uplink's gateway: the switch's NAT helper takes the last usable address (host/net/netsw_uplink.c).
function Bridge:gateway() return N.uplink_gateway(self:subnet()) end

function Bridge:enable_uplink()
  check_self(self, "enable_uplink")
  if self._uplink then return end
  if self._realized then N.uplink(self._key, true, self:subnet()) end
  self._uplink = true
  for _, n in ipairs(self._members) do local vm = member_vm(self, n); if vm then configure(vm) end end
end
function Bridge:disable_uplink()
  check_self(self, "disable_uplink")
  if not self._uplink then return end
  if self._realized then N.uplink(self._key, false) end
  self._uplink = false
  for _, n in ipairs(self._members) do
    local vm = member_vm(self, n)
    if vm and guest_up(vm) then vm:run("ip route del default 2>/dev/null; true") end
  end
end
function Bridge:uplink_enabled() return self._uplink end

---------------------------------------------------------------- NICs
local function new_nic(b, n, vm)
  return setmetatable({_bridge = b, _vm_name = n, _vm = vm}, Nic)
end

function Bridge:nic(x)
  check_self(self, "nic")
  local n = name_of(x)
  if not n then fail(self, "nic", "expected a VM or a VM name, got a " .. type(x)) end
  if not attached(self, n) and not self._ports[n] then
    fail(self, "nic", "VM '" .. n .. "' is not attached (call bridge:attach first)")
  end
  return new_nic(self, n, is_vm(x) and x or member_vm(self, n))
end

-- vm:nic("lan") by bridge name, or vm:nic("eth1") by guest name.
function M.vm_nic(vm, name)
  if type(name) ~= "string" then error(string.format("VM '%s': nic(name): name must be a string", vm:name()), 2) end
  local names = {}
  local on = {}
  for _, b in ipairs(live) do
    if attached(b, vm:name()) and ctx.bridge_visible(b) then on[#on + 1] = b; names[#names + 1] = b._name end
  end
  table.sort(on, function(x, y) return x._name < y._name end)
  table.sort(names)
  for _, b in ipairs(on) do if b._name == name then return new_nic(b, vm:name(), vm) end end
  local idx = name:match("^eth(%d+)$") or name:match("^ens(%d+)$") or name:match("^enp0s(%d+)$")
  if idx and on[tonumber(idx) + 1] then return new_nic(on[tonumber(idx) + 1], vm:name(), vm) end
  error(string.format("VM '%s': nic('%s'): not attached to a bridge of that name (attached to: %s)", vm:name(), name,
    #names > 0 and table.concat(names, ", ") or "none"), 2)
end

function Nic:vm_name() return self._vm_name end
function Nic:bridge() return self._bridge._name end
function Nic:address() return address(self._bridge, self._vm_name) end
function Nic:mac() return mac_of(self._bridge, self._vm_name) end

local function nic_port(nic)
  local p = nic._bridge._ports[nic._vm_name]
  if p and (not nic._vm or p.vm == nic._vm) then return p end
  return nil
end

function Nic:counters()
  local p = nic_port(self)
  if not p then return {rx_bytes = 0, tx_bytes = 0, rx_packets = 0, tx_packets = 0, errors = 0, dropped = 0} end
  return N.counters(p.id)
end

local function set_up(nic, up)
  local p = nic_port(nic)
  if not p then return end -- graph state only: nothing to switch
  p.up = up
  push_link(nic._bridge, nic._vm_name)
end
function Nic:disconnect() set_up(self, false) end
function Nic:reconnect() set_up(self, true) end
function Nic:is_connected()
  local p = nic_port(self)
  return p ~= nil and p.up and attached(self._bridge, self._vm_name)
end

---------------------------------------------------------------- captures
local capture_count = 0

local function start_capture(b, port, opts, what)
  if opts ~= nil and type(opts) ~= "table" then fail(b, "capture", "opts must be a table ({file = path})", 2) end
  opts = opts or {}
  if not b._realized then
    fail(b, "capture", "no VM has booted with a port on the bridge yet, so there is nothing to capture " ..
      "(attach a booted VM first)", 2)
  end
  capture_count = capture_count + 1
  local path = opts.file or string.format("%s/capture-%d.pcap", N.dir(), capture_count)
  local ok, id = pcall(N.capture_start, b._key, port, path)
  if not ok then fail(b, "capture", tostring(id), 2) end
  local c = setmetatable({_bridge = b, _id = id, _path = path, _owned = opts.file == nil, _offset = 0,
    _pending = "", _closed = false, _what = what, _site = ctx.creation_site()}, Capture)
  b._captures[c] = true
  debug.getregistry()["provium.track"](c)
  return c
end

function Bridge:capture(opts)
  check_self(self, "capture")
  return start_capture(self, 0, opts, "bridge '" .. self._name .. "'")
end

function Nic:capture(opts)
  local b = self._bridge
  local p = nic_port(self)
  if not p or not p.in_vm or not attached(b, self._vm_name) then
    error(string.format("nic:capture: vm '%s' has no port (TAP) on bridge '%s' (not attached, or not booted?). " ..
      "Call bridge:attach(vm) and vm:boot() first.", self._vm_name, b._name), 2)
  end
  return start_capture(b, p.id, opts, "NIC of VM '" .. self._vm_name .. "' on bridge '" .. b._name .. "'")
end

local function read_more(c)
  local f = io.open(c._path, "rb")
  if not f then return nil end
  f:seek("set", c._offset)
  local s = f:read(65536)
  f:close()
  if s and #s > 0 then c._offset = c._offset + #s; return s end
  return nil
end

local function seconds(t, default)
  if t == nil then return default end
  if type(t) == "string" then return P.duration(t) end
  return t
end

function Capture:next(timeout)
  if self._closed then return nil end
  if self._pending ~= "" then local s = self._pending; self._pending = ""; return s end
  local deadline = P.clock() + seconds(timeout, 10)
  while true do
    local s = read_more(self)
    if s then return s end
    if P.clock() >= deadline then return nil end
    P.sleep(0.02)
  end
end

function Capture:read_until(pattern, timeout)
  if self._closed then error("capture closed", 2) end
  local deadline = P.clock() + seconds(timeout, 10)
  local buf = self._pending
  self._pending = ""
  while true do
    local i, j = buf:find(pattern, 1, true)
    if i then self._pending = buf:sub(j + 1); return buf:sub(1, j) end
    local left = deadline - P.clock()
    if left <= 0 then self._pending = buf; error("read_until timed out waiting for `" .. pattern .. "`", 2) end
    local s = read_more(self)
    if s then buf = buf .. s else P.sleep(0.02) end
  end
end

function Capture:expect(pattern, timeout) self:read_until(pattern, timeout) end

function Capture:drain(timeout)
  local out = {}
  local t = seconds(timeout, 0.5)
  while true do
    local s = self:next(t)
    if not s then break end
    out[#out + 1] = s
  end
  return out
end

function Capture:close()
  if self._closed then return end
  self._closed = true
  self._pending = ""
  self._bridge._captures[self] = nil
  pcall(N.capture_stop, self._id)
  if self._owned then os.remove(self._path) end
end

function Capture:eof() return self._closed and self._pending == "" end
function Capture:path() return self._path end
function Capture:packets() return N.capture_packets(self._id) end
function Capture:creation_site() return self._site end

-- Writes the whole capture so far (pcap) to path; the capture goes on.
function Capture:save(path)
  local f = io.open(self._path, "rb")
  local data = f and f:read("a") or ""
  if f then f:close() end
  local o, err = io.open(path, "wb")
  if not o then error("capture:save: " .. tostring(err), 2) end
  o:write(data)
  o:close()
  return path
end

-- Live captures on bridges where vm has a port: snapshots refuse them.
function M.live_capture(vms)
  for _, b in ipairs(live) do
    for c in pairs(b._captures) do
      for _, vm in ipairs(vms) do
        local p = b._ports[vm:name()]
        if p and p.vm == vm then
          local site = c._site and (" opened at " .. c._site.file .. ":" .. c._site.line) or ""
          return string.format("a capture of %s is open%s: close it before the snapshot", c._what, site)
        end
      end
    end
  end
end

---------------------------------------------------------------- VM lifecycle
-- Before a boot: a NIC for every bridge the VM is attached to, then (for
-- hot-plug-less machines) for the other bridges declared so far, as many as
-- the machine takes.
function M.before_boot(vm)
  if N.vm_machine(vm) == "local" then return end
  local n = vm:name()
  local want, wanted = {}, {}
  for _, b in ipairs(live) do
    if attached(b, n) and (member_vm(b, n) == nil or member_vm(b, n) == vm) then
      want[#want + 1] = b; wanted[b] = true
    end
  end
  local _, max = N.vm_nic_count(vm)
  if #want > max then
    local names = {}
    for _, b in ipairs(want) do names[#names + 1] = b._name end
    error(string.format("VM '%s': boot: attached to %d bridges (%s) but machine '%s' takes at most %d NICs", n,
      #want, table.concat(names, ", "), N.vm_machine(vm), max), 0)
  end
  for _, b in ipairs(live) do
    if not wanted[b] and #want < max and ctx.bridge_visible(b) then want[#want + 1] = b; wanted[b] = true end
  end
  N.vm_nic_clear(vm)
  for _, b in ipairs(live) do
    local p = b._ports[n]
    if p and p.vm == vm then p.in_vm = false end
  end
  for _, b in ipairs(want) do
    local p = ensure_port(b, vm)
    N.vm_nic_add(vm, p.netdev_id, p.netdev, p.mac)
    p.in_vm = true
    if attached(b, n) then b._member[n].vm = vm end
  end
end

function M.after_boot(vm)
  local touched = {}
  for _, b in ipairs(live) do
    local p = b._ports[vm:name()]
    if p and p.vm == vm and p.in_vm then push_link(b, vm:name()); touched[#touched + 1] = b end
  end
  local on = {}
  for _, b in ipairs(touched) do if attached(b, vm:name()) then on[#on + 1] = b end end
  reconfigure(on, vm)
end

-- A VM whose scope ended: its ports go, and it leaves the bridges.
function M.vm_closed(vm)
  closed_vms[vm] = true
  for _, b in ipairs(live) do
    local n = vm:name()
    local p = b._ports[n]
    if p and p.vm == vm then
      pcall(N.port_remove, p.id)
      b._ports[n] = nil
      if member_vm(b, n) == vm then
        forget_member(b, n)
        pcall(sync, b)
        pcall(reconfigure, b, nil)
      end
    end
  end
end

function Bridge:close()
  if self._closed then return end
  for c in pairs(self._captures) do c:close() end
  for n, p in pairs(self._ports) do
    local st = p.vm:state()
    if p.in_vm and (st == "booted" or st == "paused") then
      pcall(N.vm_set_link, p.vm, p.netdev_id, false)
    end
    pcall(N.vm_nic_unplug, p.vm, p.netdev_id)
    pcall(N.port_remove, p.id)
    self._ports[n] = nil
  end
  if self._realized then pcall(N.bridge_remove, self._key) end
  self._closed = true
  keys[self._key] = nil
  for i, b in ipairs(live) do if b == self then table.remove(live, i); break end end
end

---------------------------------------------------------------- snapshots
local function set_list(set)
  local out = {}
  for k in pairs(set) do
    local a, c = k:match("^(.-)%z(.*)$")
    out[#out + 1] = {a, c}
  end
  table.sort(out, function(x, y) return x[1] .. "\0" .. x[2] < y[1] .. "\0" .. y[2] end)
  return out
end

-- The bridge as lab.json records it.
function M.record(b)
  local pairs_out = {}
  for _, p in pairs(b._pairs) do pairs_out[#pairs_out + 1] = p end
  table.sort(pairs_out, function(x, y) return x.from .. "\0" .. x.to < y.from .. "\0" .. y.to end)
  local iso = {}
  for n in pairs(b._isolated) do iso[#iso + 1] = n end
  table.sort(iso)
  local hosts = {}
  for n, h in pairs(b._hosts) do hosts[n] = h end
  return {name = b._name, seed = b._seed, subnet = b._subnet, members = b:members(), partitions = set_list(b._sym),
    directional = set_list(b._dir), fully_partitioned = b._full, isolated = iso, impair = b._whole,
    pairs = pairs_out, routes = b:routes(), uplink = b._uplink, hosts = hosts, next_host = b._next_host}
end

-- The NICs of vm, in QEMU's order, for lab.json.
function M.vm_record(vm)
  local out = {}
  for _, b in ipairs(live) do
    local p = b._ports[vm:name()]
    if p and p.vm == vm and p.in_vm then out[#out + 1] = {bridge = b._name, id = p.netdev_id, mac = p.mac} end
  end
  return out
end

-- Replaces b's graph state with a record (restore).
function M.apply(b, r)
  b._seed = r.seed or b._seed
  if r.seed then b._seed_from = "the snapshot's seed" end
  b._subnet = r.subnet or b._subnet
  b._members, b._member = {}, {}
  for _, n in ipairs(r.members or {}) do
    b._members[#b._members + 1] = n
    b._member[n] = {vm = nil}
  end
  b._sym, b._dir = {}, {}
  for _, p in ipairs(r.partitions or {}) do b._sym[sym_key(p[1], p[2])] = true end
  for _, p in ipairs(r.directional or {}) do b._dir[pair_key(p[1], p[2])] = true end
  b._full = r.fully_partitioned == true
  b._isolated = {}
  for _, n in ipairs(r.isolated or {}) do b._isolated[n] = true end
  b._whole = {latency_ms = 0, jitter_ms = 0, drop_pct = 0, rate_bps = 0}
  for k, v in pairs(r.impair or {}) do b._whole[k] = v end
  b._pairs = {}
  for _, p in ipairs(r.pairs or {}) do b._pairs[pair_key(p.from, p.to)] = p end
  b._routes = {}
  for _, n in ipairs(r.routes or {}) do b._routes[#b._routes + 1] = n end
  b._hosts = {}
  for n, h in pairs(r.hosts or {}) do b._hosts[n] = h end
  b._next_host = r.next_host or b._next_host
  if r.uplink and not b._uplink then
    b._uplink = true
    if b._realized then N.uplink(b._key, true, b:subnet()) end
  end
  sync(b)
end

-- Before vm:restore from a lab snapshot: the NICs it was saved with, on the
-- bridges find(name) returns.
function M.before_restore(vm, nics, find)
  N.vm_nic_clear(vm)
  for _, r in ipairs(nics or {}) do
    local b = find(r.bridge)
    if not b then error(string.format("lab:restore: VM '%s' had a NIC on bridge '%s', which the snapshot lacks",
      vm:name(), r.bridge), 0) end
    local p = ensure_port(b, vm, r.id)
    if p.mac ~= r.mac then
      error(string.format("lab:restore: VM '%s' on bridge '%s': MAC %s differs from the snapshot's %s", vm:name(),
        b._name, p.mac, r.mac), 0)
    end
    N.vm_nic_add(vm, p.netdev_id, p.netdev, p.mac)
    p.in_vm = true
    if attached(b, vm:name()) then b._member[vm:name()].vm = vm end
  end
end

function M.after_restore(vm)
  for _, b in ipairs(live) do
    local p = b._ports[vm:name()]
    if p and p.vm == vm and p.in_vm then push_link(b, vm:name()) end
  end
end

---------------------------------------------------------------- failure reports
-- One line per realised bridge: its seed and where it came from, with how
-- to replay a random one.
function M.seed_report()
  local lines = {}
  for _, b in ipairs(live) do
    if b._realized then
      local hint = ""
      if b._seed_from == "random" then
        hint = string.format("; replay with provium:bridge(%q, {seed = %d})", b._name, b._seed)
      end
      lines[#lines + 1] = string.format("bridge '%s': switch seed %d (%s)%s", b._name, b._seed, b._seed_from, hint)
    end
  end
  return table.concat(lines, "\n")
end

M.Bridge, M.Nic, M.Capture = Bridge, Nic, Capture
return M
