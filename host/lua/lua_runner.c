/* The runner's hooks inside a test file's Lua state: provium:claim (asks the
 * dispatcher for resources over the control socket and waits for the grant),
 * P.event (test and VM events for --save-events), P.select_reason (--filter,
 * --tag, --tag-meta inside the file) and list mode (no VM boots). */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../fixtures/fixtures.h"
#include <jansson.h>

#include "../runner/runner.h"
#include "../vmm/qpool.h"
#include "../vmm/vm.h"
#include "../util/util.h"
#include "lua_api.h"
#include "lua_internal.h"
#include <jansson.h>

static int ctl = -1;
static child_mode the_mode;
static const test_select *the_sel;
static int vms_booted;
static char claim_where[512];

static int send_msg(const char *msg)
{
    if (ctl < 0)
        return -1;
    for (;;) {
        ssize_t n = send(ctl, msg, strlen(msg), MSG_NOSIGNAL);
        if (n >= 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* Sends msg and waits for the runner's answer: 0 for "ok", else -1 with the
 * reason in err. The runner always answers (it grants, refuses or breaks a
 * deadlock); the wait ends with the runner, which kills this process. */
static int ask_runner(const char *msg, char *err, size_t errlen)
{
    if (send_msg(msg) != 0) {
        snprintf(err, errlen, "cannot reach the runner: %s", strerror(errno));
        return -1;
    }
    char reply[4096];
    ssize_t n;
    do
        n = recv(ctl, reply, sizeof(reply) - 1, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        snprintf(err, errlen, "the runner did not answer");
        return -1;
    }
    reply[n] = 0;
    if (strncmp(reply, "ok", 2) == 0)
        return 0;
    snprintf(err, errlen, "%s", strncmp(reply, "err ", 4) == 0 ? reply + 4 : reply);
    return -1;
}

/* P.event(kind, payload[, ts_ns]): forwarded to the runner, which adds the
 * path (or, for vm_* and fixture_* events, the file). ts defaults to now. */
static int l_event(lua_State *L)
{
    const char *kind = luaL_checkstring(L, 1);
    long long ts = lua_isinteger(L, 3) ? (long long)lua_tointeger(L, 3) : (long long)wall_ns();
    if (ctl < 0)
        return 0;
    char err[PV_ERR_MAX];
    char *payload = lua_isnoneornil(L, 2) ? xstrdup("{}") : pv_lua_to_json_lossy(L, 2, err, sizeof(err));
    if (!payload)
        return 0;
    char *msg = xasprintf("{\"t\":\"event\",\"kind\":\"%s\",\"ts\":%lld,\"payload\":%s}", kind, ts, payload);
    send_msg(msg);
    free(msg);
    free(payload);
    return 0;
}

static int64_t claim_memory(lua_State *L, int idx)
{
    if (lua_isnil(L, idx))
        return 0;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        if (!lua_isinteger(L, idx) || lua_tointeger(L, idx) < 0)
            luaL_error(L, "provium:claim: memory must be a whole number of bytes (0 or more) or a size like \"512M\"");
        return lua_tointeger(L, idx);
    }
    if (lua_type(L, idx) == LUA_TSTRING) {
        int64_t v = parse_size(lua_tostring(L, idx));
        if (v < 0)
            luaL_error(L, "provium:claim: cannot parse memory '%s' (use bytes or a size like \"512M\", \"2G\")",
                       lua_tostring(L, idx));
        return v;
    }
    return luaL_error(L, "provium:claim: memory must be a number of bytes or a size string");
}

/* provium:claim({memory = "1G", cpus = 2}) at file scope, once. Inside a
 * test a claim is that test's own: once per test, with no effect on the
 * pool (the file's reservation is made before its tests run). */
static int l_claim(lua_State *L)
{
    lua_getglobal(L, "provium");
    bool colon = lua_rawequal(L, 1, -1);
    lua_pop(L, 1);
    if (!colon)
        return luaL_error(L, "call provium:claim({memory = ..., cpus = ...}) with a colon");
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, LUA_REGISTRYINDEX, "provium.P");
    lua_getfield(L, -1, "phase");
    bool in_tests = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "tests") == 0;
    lua_getfield(L, -2, "test_index");
    lua_Integer test_index = lua_tointeger(L, -1);
    lua_pop(L, 3);
    static lua_Integer test_claimed;
    if (in_tests && test_claimed == test_index)
        return luaL_error(L, "provium:claim: claim already taken in this test (a claim is one-shot per test, and "
                             "per file at file scope)");
    if (!in_tests && claim_where[0])
        return luaL_error(L, "provium:claim: claim already taken (one-shot per file; first claim at %s)",
                          claim_where);
    if (!in_tests && vms_booted)
        return luaL_error(L, "provium:claim: claim before booting any VM (a VM of this file is already running)");
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        if (strcmp(k, "memory") && strcmp(k, "memory_bytes") && strcmp(k, "cpus"))
            return luaL_error(L, "provium:claim: unknown key '%s' (known: memory, memory_bytes, cpus)", k);
        lua_pop(L, 1);
    }
    lua_getfield(L, 2, "memory");
    lua_getfield(L, 2, "memory_bytes");
    if (!lua_isnil(L, -1) && !lua_isnil(L, -2))
        return luaL_error(L, "provium:claim: give memory or memory_bytes, not both");
    if (!lua_isnil(L, -1) && !lua_isinteger(L, -1))
        return luaL_error(L, "provium:claim: memory_bytes must be a whole number of bytes");
    int64_t mem = claim_memory(L, lua_isnil(L, -1) ? -2 : -1);
    lua_pop(L, 2);
    lua_getfield(L, 2, "cpus");
    double cpus = 0;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) >= 0))
            return luaL_error(L, "provium:claim: cpus must be a number, 0 or more");
        cpus = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    if (in_tests) {
        test_claimed = test_index;
        return 0;
    }
    luaL_where(L, 1);
    const char *w = lua_tostring(L, -1);
    snprintf(claim_where, sizeof(claim_where), "%.*s", (int)(strlen(w) > 2 ? strlen(w) - 2 : strlen(w)), w);
    if (!claim_where[0])
        snprintf(claim_where, sizeof(claim_where), "?");
    lua_pop(L, 1);
    /* remember it for list mode and for the report */
    lua_getfield(L, LUA_REGISTRYINDEX, "provium.P");
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, mem);
    lua_setfield(L, -2, "memory");
    lua_pushnumber(L, cpus);
    lua_setfield(L, -2, "cpus");
    lua_setfield(L, -2, "claim");
    lua_pop(L, 1);
    if (ctl < 0 || the_mode == CHILD_LIST)
        return 0;
    char *msg = xasprintf("{\"t\":\"claim\",\"memory\":%lld,\"cpus\":%.17g}", (long long)mem, cpus);
    char err[PV_ERR_MAX];
    int rc = ask_runner(msg, err, sizeof(err));
    free(msg);
    if (rc != 0)
        return strncmp(err, "provium:claim", 13) == 0 ? luaL_error(L, "%s", err)
                                                      : luaL_error(L, "provium:claim: %s", err);
    return 0;
}

/* ---- selection ---- */

/* meta[key] "contains" value: equal as strings, or an element of a list is. */
static bool meta_has(lua_State *L, int meta, const char *key, const char *value)
{
    bool hit = false;
    lua_getfield(L, meta, key);
    if (lua_istable(L, -1)) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= n && !hit; i++) {
            lua_rawgeti(L, -1, i);
            const char *s = luaL_tolstring(L, -1, NULL);
            hit = strcmp(s, value) == 0;
            lua_pop(L, 2);
        }
    } else if (!lua_isnil(L, -1)) {
        const char *s = luaL_tolstring(L, -1, NULL);
        hit = strcmp(s, value) == 0;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return hit;
}

static bool has_tag(lua_State *L, int meta, const char *tag) { return meta_has(L, meta, "tags", tag); }

/* "KEY=VALUE" matches meta; a malformed entry never matches. */
static bool kv_match(lua_State *L, int meta, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq)
        return false;
    char key[256];
    snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
    return meta_has(L, meta, key, eq + 1);
}

/* P.select_reason(name, meta) -> nil (selected) or the reason it is not. */
static int l_select_reason(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    if (!lua_istable(L, 2)) {
        lua_newtable(L);
        lua_replace(L, 2);
    }
    const test_select *s = the_sel;
    if (!s) {
        lua_pushnil(L);
        return 1;
    }
    for (size_t i = 0; i < s->nno_tags; i++)
        if (has_tag(L, 2, s->no_tags[i])) {
            lua_pushfstring(L, "excluded by --no-tag %s", s->no_tags[i]);
            return 1;
        }
    if (s->ntags) {
        bool any = false;
        for (size_t i = 0; i < s->ntags && !any; i++)
            any = has_tag(L, 2, s->tags[i]);
        if (!any) {
            strbuf b;
            sb_init(&b);
            for (size_t i = 0; i < s->ntags; i++)
                sb_addf(&b, "%s--tag %s", i ? " " : "", s->tags[i]);
            lua_pushfstring(L, "not selected by %s", b.s);
            sb_free(&b);
            return 1;
        }
    }
    for (size_t i = 0; i < s->nno_tag_meta; i++)
        if (kv_match(L, 2, s->no_tag_meta[i])) {
            lua_pushfstring(L, "excluded by --no-tag-meta %s", s->no_tag_meta[i]);
            return 1;
        }
    /* AND across keys, OR within a key */
    for (size_t i = 0; i < s->ntag_meta; i++) {
        const char *eq = strchr(s->tag_meta[i], '=');
        size_t klen = eq ? (size_t)(eq - s->tag_meta[i]) : strlen(s->tag_meta[i]);
        bool seen_before = false;
        for (size_t j = 0; j < i && !seen_before; j++)
            seen_before = strncmp(s->tag_meta[j], s->tag_meta[i], klen) == 0 && s->tag_meta[j][klen] == '=';
        if (seen_before)
            continue;
        bool any = false;
        for (size_t j = i; j < s->ntag_meta && !any; j++)
            if (strncmp(s->tag_meta[j], s->tag_meta[i], klen) == 0 && s->tag_meta[j][klen] == '=')
                any = kv_match(L, 2, s->tag_meta[j]);
        if (!any) {
            lua_pushlstring(L, s->tag_meta[i], klen);
            lua_pushfstring(L, "not selected by --tag-meta %s=...", lua_tostring(L, -1));
            return 1;
        }
    }
    if (s->filter && !strstr(name, s->filter)) {
        lua_pushfstring(L, "not selected by --filter %s", s->filter);
        return 1;
    }
    lua_pushnil(L);
    return 1;
}

/* ---- VM lifecycle hooks ---- */

static int l_vm_booted(lua_State *L)
{
    (void)L;
    vms_booted++;
    return 0;
}

/* The size a boot of the VM at 1 (with per-boot options at 2) takes. */
static void boot_size(lua_State *L, int64_t *mem, int *cpus)
{
    lvm *v = luaL_checkudata(L, 1, VM_MT);
    *mem = v->opts.memory ? v->opts.memory : v->vm->profile.memory;
    *cpus = v->opts.cpus ? v->opts.cpus : v->vm->profile.cpus;
    if (!lua_istable(L, 2))
        return; /* bad options are the boot's own error */
    lua_getfield(L, 2, "memory");
    int64_t m = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : lua_isstring(L, -1) ? parse_size(lua_tostring(L, -1)) : 0;
    if (m > 0)
        *mem = m;
    lua_getfield(L, 2, "cpus");
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0 && lua_tointeger(L, -1) <= PV_MAX_CPUS)
        *cpus = (int)lua_tointeger(L, -1);
    lua_pop(L, 2);
}

/* P.__vm_charge(vm[, opts]) -> memory, cpus charged (nothing without a
 * runner): asks the runner for room for this boot; raises when it refuses. */
static int l_vm_charge(lua_State *L)
{
    int64_t mem;
    int cpus;
    boot_size(L, &mem, &cpus);
    if (ctl < 0 || the_mode == CHILD_LIST)
        return 0;
    lvm *v = luaL_checkudata(L, 1, VM_MT);
    qpool_before_boot(v->vm->profile.name, mem, cpus); /* spares give their room back first */
    json_t *req = json_pack("{s:s,s:s,s:I,s:i}", "t", "boot", "vm", v->vm->name, "memory", (json_int_t)mem, "cpus",
                            cpus);
    char *msg = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    char err[PV_ERR_MAX];
    int rc = ask_runner(msg, err, sizeof(err));
    free(msg);
    if (rc != 0)
        return luaL_error(L, "%s", err);
    lua_pushinteger(L, mem);
    lua_pushinteger(L, cpus);
    return 2;
}

/* The QEMU pool's spares count in the pool like VMs of their memory, with
 * no vCPUs (they do not run); the runner grants one only from free room
 * and answers at once. */
static int charge_spare(int64_t memory, bool take)
{
    char *msg = xasprintf("{\"t\":\"%s\",\"memory\":%lld,\"cpus\":0}", take ? "spare" : "release",
                          (long long)memory);
    char err[PV_ERR_MAX];
    int rc = take ? ask_runner(msg, err, sizeof(err)) : send_msg(msg);
    free(msg);
    return rc;
}

/* P.__vm_memory(vm): the guest RAM the running VM was started with. */
static int l_vm_memory(lua_State *L)
{
    lvm *v = luaL_checkudata(L, 1, VM_MT);
    lua_pushinteger(L, v->vm->mem_bytes ? v->vm->mem_bytes : v->vm->profile.memory);
    return 1;
}

/* P.__wall_ns() -> now, ns since the epoch (event timestamps) */
static int l_wall_ns(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)wall_ns());
    return 1;
}

/* P.__dir_bytes(dir) -> bytes the files directly in dir take on disk */
static int l_dir_bytes(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)dir_bytes(luaL_checkstring(L, 1)));
    return 1;
}

/* P.__vm_release(memory, cpus): a charged VM is gone. */
static int l_vm_release(lua_State *L)
{
    char *msg = xasprintf("{\"t\":\"release\",\"memory\":%lld,\"cpus\":%lld}", (long long)luaL_checkinteger(L, 1),
                          (long long)luaL_checkinteger(L, 2));
    send_msg(msg);
    free(msg);
    return 0;
}

static const char vm_hooks[] =
    "local P, M = ...\n"
    "local boot, shutdown, close, restore = M.boot, M.shutdown, M.close, M.restore\n"
    "local up = setmetatable({}, {__mode = 'k'})\n"
    "local charged = setmetatable({}, {__mode = 'k'})\n"
    "local function live(vm) local s = vm:state() return s == 'booted' or s == 'paused' end\n"
    "local function uncharge(vm)\n"
    "  local c = charged[vm]\n"
    "  if c and not live(vm) then charged[vm] = nil; P.__vm_release(c[1], c[2]) end\n"
    "end\n"
    "-- with --html the runner names a directory: each VM's console is kept there for the report\n"
    "local keep, saved = os.getenv('PROVIUM_CONSOLE_DIR'), 0\n"
    "local function console_of(vm)\n"
    "  if not (keep and up[vm]) then return nil end\n"
    "  local ok, text = pcall(vm.console_log, vm)\n"
    "  return ok and type(text) == 'string' and text ~= '' and text or nil\n"
    "end\n"
    "local function save_console(vm, text)\n"
    "  if not text then return nil end\n"
    "  saved = saved + 1\n"
    "  local name = ((P.shown_path or '') .. '-' .. vm:name() .. '-' .. saved):gsub('[^%w%.%-]', '_')\n"
    "  local path = keep .. '/' .. name .. '.log'\n"
    "  local f = io.open(path, 'wb')\n"
    "  if not f then return nil end\n"
    "  f:write(text)\n"
    "  f:close()\n"
    "  return path\n"
    "end\n"
    "local function ended(vm, log)\n"
    "  uncharge(vm)\n"
    "  if up[vm] and not live(vm) then\n"
    "    P.event('vm_shutdown', {vm_name = vm:name(), duration_ns = math.floor((P.clock() - up[vm]) * 1e9),\n"
    "      console_log = save_console(vm, log)})\n"
    "    up[vm] = nil\n"
    "  end\n"
    "end\n"
    "-- errors keep the position of the caller, as if it had called the C function\n"
    "local function rethrow(e)\n"
    "  if type(e) == 'string' then\n"
    "    error(e:match('^provium/framework%.lua%(runner%):%d+: (.*)$') or e, 3)\n"
    "  end\n"
    "  error(e, 0)\n"
    "end\n"
    "M.boot = function(vm, ...)\n"
    "  P.__vm_booted()\n"
    "  local s = vm:state()\n"
    "  if not charged[vm] and (s == 'created' or s == 'shutdown') then\n"
    "    local ok, mem, cpus = pcall(P.__vm_charge, vm, ...)\n"
    "    if not ok then rethrow(mem) end\n"
    "    if mem then charged[vm] = {mem, cpus} end\n"
    "  end\n"
    "  local r = table.pack(pcall(boot, vm, ...))\n"
    "  if not r[1] then uncharge(vm); rethrow(r[2]) end\n"
    "  r = table.pack(table.unpack(r, 2, r.n))\n"
    "  up[vm] = P.clock()\n"
    "  local ok, cid = pcall(vm.cid, vm)\n"
    "  P.event('vm_spawned', {vm_name = vm:name(), profile = vm:profile(), boot_seconds = vm:boot_seconds(),\n"
    "    memory_bytes = charged[vm] and charged[vm][1] or P.__vm_memory(vm), cid = ok and cid or nil})\n"
    "  return table.unpack(r, 1, r.n)\n"
    "end\n"
    "-- a restore (fixtures, snapshots) starts the VM too: the report tells them from cold boots\n"
    "if restore then M.restore = function(vm, ...)\n"
    "  local t0 = P.clock()\n"
    "  local r = table.pack(pcall(restore, vm, ...))\n"
    "  if not r[1] then rethrow(r[2]) end\n"
    "  up[vm] = P.clock()\n"
    "  P.event('vm_restored', {vm_name = vm:name(), profile = vm:profile(), restore_seconds = up[vm] - t0})\n"
    "  return table.unpack(r, 2, r.n)\n"
    "end end\n"
    "M.shutdown = function(vm, ...)\n"
    "  local r = table.pack(pcall(shutdown, vm, ...))\n"
    "  ended(vm, console_of(vm))\n"
    "  if not r[1] then rethrow(r[2]) end\n"
    "  return table.unpack(r, 2, r.n)\n"
    "end\n"
    "M.close = function(vm, ...)\n"
    "  local log = console_of(vm)\n"
    "  local r = table.pack(close(vm, ...))\n"
    "  ended(vm, log)\n"
    "  return table.unpack(r, 1, r.n)\n"
    "end\n";

/* List mode: VMs are inert proxies, so top-level code registers its tests
 * without booting anything. */
static const char list_stub[] =
    "local P = ...\n"
    "local proxy\n"
    "local mt = {__index = function() return function() return proxy end end,\n"
    "  __call = function() return proxy end, __tostring = function() return '' end,\n"
    "  __concat = function() return '' end}\n"
    "proxy = setmetatable({}, mt)\n"
    "P.new_vm = function() return proxy end\n";

/* vm_wait_hook: a wait over 2 s (or its end, what == NULL) goes to the
 * runner, which names it if the file times out. */
static void tell_wait(const char *what)
{
    json_t *m = json_pack("{s:s,s:o}", "t", "wait", "what", what ? json_string(what) : json_null());
    char *text = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    if (text)
        send_msg(text);
    free(text);
}

void pv_lua_runner_install(lua_State *L, int ctl_fd, child_mode mode, const test_select *sel, const char *shown)
{
    ctl = ctl_fd;
    if (ctl >= 0)
        vm_wait_hook = tell_wait;
    if (ctl >= 0 && mode != CHILD_LIST)
        qpool_install(charge_spare); /* spares need the runner to count them */
    the_mode = mode;
    the_sel = sel;
    int top = lua_gettop(L);
    lua_getglobal(L, "provium");
    if (lua_istable(L, -1)) {
        lua_pushstring(L, "claim");
        lua_pushcfunction(L, l_claim);
        lua_rawset(L, -3); /* provium refuses ordinary assignments */
    }
    lua_settop(L, top);
    lua_getfield(L, LUA_REGISTRYINDEX, "provium.P");
    int P = lua_gettop(L);
    static const luaL_Reg fns[] = {
        {"event", l_event},           {"select_reason", l_select_reason}, {"__vm_booted", l_vm_booted},
        {"__vm_charge", l_vm_charge}, {"__vm_release", l_vm_release},     {"__vm_memory", l_vm_memory},
        {"__wall_ns", l_wall_ns},     {"__dir_bytes", l_dir_bytes},       {NULL, NULL},
    };
    pv_add_methods(L, P, fns);
    lua_pushboolean(L, mode == CHILD_LIST);
    lua_setfield(L, P, "list_mode");
    /* the runner's choice, passed down with the selection (not through the environment) */
    lua_pushboolean(L, sel && sel->include_slow);
    lua_setfield(L, P, "include_slow");
    lua_pushstring(L, shown ? shown : "");
    lua_setfield(L, P, "shown_path");
    const char *code = mode == CHILD_LIST ? list_stub : vm_hooks;
    if (luaL_loadbuffer(L, code, strlen(code), "=provium/framework.lua(runner)") == LUA_OK) {
        lua_pushvalue(L, P);
        lua_getfield(L, LUA_REGISTRYINDEX, "provium.VM");
        if (lua_istable(L, -1))
            lua_getfield(L, -1, "__index");
        else
            lua_pushnil(L);
        lua_remove(L, -2);
        if (mode == CHILD_LIST || lua_istable(L, -1))
            lua_pcall(L, 2, 0, 0);
    }
    lua_settop(L, top);
}
