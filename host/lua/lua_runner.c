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

#include <jansson.h>

#include "../runner/runner.h"
#include "../vmm/vm.h"
#include "../util/util.h"
#include "lua_api.h"

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

/* P.event(kind, payload): forwarded to the runner, which adds the path. */
static int l_event(lua_State *L)
{
    const char *kind = luaL_checkstring(L, 1);
    if (ctl < 0)
        return 0;
    char err[256];
    char *payload = lua_isnoneornil(L, 2) ? xstrdup("{}") : pv_lua_to_json_lossy(L, 2, err, sizeof(err));
    if (!payload)
        return 0;
    char *msg = xasprintf("{\"t\":\"event\",\"kind\":\"%s\",\"ts\":%lld,\"payload\":%s}", kind,
                          (long long)wall_ns(), payload);
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
        if (!lua_isinteger(L, idx) || lua_tointeger(L, idx) <= 0)
            luaL_error(L, "provium:claim: memory must be a positive number of bytes or a size like \"512M\"");
        return lua_tointeger(L, idx);
    }
    if (lua_type(L, idx) == LUA_TSTRING) {
        int64_t v = parse_size(lua_tostring(L, idx));
        if (v <= 0)
            luaL_error(L, "provium:claim: cannot parse memory '%s' (use bytes or a size like \"512M\", \"2G\")",
                       lua_tostring(L, idx));
        return v;
    }
    return luaL_error(L, "provium:claim: memory must be a number of bytes or a size string");
}

/* provium:claim({memory = "1G", cpus = 2}) at file scope, once. */
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
    lua_pop(L, 2);
    if (in_tests)
        return luaL_error(L, "provium:claim: claims are made at file scope, not inside a test");
    if (claim_where[0])
        return luaL_error(L, "provium:claim: claim already taken (first claim at %s)", claim_where);
    if (vms_booted)
        return luaL_error(L, "provium:claim: claim before booting any VM (a VM of this file is already running)");
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        if (strcmp(k, "memory") && strcmp(k, "cpus"))
            return luaL_error(L, "provium:claim: unknown key '%s' (known: memory, cpus)", k);
        lua_pop(L, 1);
    }
    lua_getfield(L, 2, "memory");
    int64_t mem = claim_memory(L, -1);
    lua_getfield(L, 2, "cpus");
    double cpus = 0;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) <= 0)
            return luaL_error(L, "provium:claim: cpus must be a positive number");
        cpus = lua_tonumber(L, -1);
    }
    lua_pop(L, 2);
    if (!mem && cpus == 0)
        return luaL_error(L, "provium:claim: give memory, cpus or both");
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
    int rc = send_msg(msg);
    free(msg);
    if (rc != 0)
        return luaL_error(L, "provium:claim: cannot reach the runner: %s", strerror(errno));
    char reply[4096];
    ssize_t n;
    do
        n = recv(ctl, reply, sizeof(reply) - 1, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return luaL_error(L, "provium:claim: the runner did not answer");
    reply[n] = 0;
    if (strncmp(reply, "ok", 2) == 0)
        return 0;
    return luaL_error(L, "%s", strncmp(reply, "err ", 4) == 0 ? reply + 4 : reply);
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

static const char vm_hooks[] =
    "local P, M = ...\n"
    "local boot, shutdown, close = M.boot, M.shutdown, M.close\n"
    "local up = setmetatable({}, {__mode = 'k'})\n"
    "local function live(vm) local s = vm:state() return s == 'booted' or s == 'paused' end\n"
    "local function ended(vm)\n"
    "  if up[vm] and not live(vm) then\n"
    "    P.event('vm_shutdown', {vm_name = vm:name(), duration_ns = math.floor((P.clock() - up[vm]) * 1e9)})\n"
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
    "  local r = table.pack(pcall(boot, vm, ...))\n"
    "  if not r[1] then rethrow(r[2]) end\n"
    "  r = table.pack(table.unpack(r, 2, r.n))\n"
    "  up[vm] = P.clock()\n"
    "  local ok, cid = pcall(vm.cid, vm)\n"
    "  P.event('vm_spawned', {vm_name = vm:name(), profile = vm:profile(), boot_seconds = vm:boot_seconds(),\n"
    "    cid = ok and cid or nil})\n"
    "  return table.unpack(r, 1, r.n)\n"
    "end\n"
    "M.shutdown = function(vm, ...)\n"
    "  local r = table.pack(pcall(shutdown, vm, ...))\n"
    "  ended(vm)\n"
    "  if not r[1] then rethrow(r[2]) end\n"
    "  return table.unpack(r, 2, r.n)\n"
    "end\n"
    "M.close = function(vm, ...)\n"
    "  local r = table.pack(close(vm, ...))\n"
    "  ended(vm)\n"
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
    lua_pushcfunction(L, l_event);
    lua_setfield(L, P, "event");
    lua_pushcfunction(L, l_select_reason);
    lua_setfield(L, P, "select_reason");
    lua_pushcfunction(L, l_vm_booted);
    lua_setfield(L, P, "__vm_booted");
    lua_pushboolean(L, mode == CHILD_LIST);
    lua_setfield(L, P, "list_mode");
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
