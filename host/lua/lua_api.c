/* Builds the Lua state a test file runs in. */
#include "lua_api.h"

#include <lauxlib.h>
#include <math.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "../vmm/embedded.h"
#include "../vmm/vm.h"
#include "lua_internal.h"

static const pv_lua_env *the_env;

const pv_lua_env *pv_lua_env_get(void) { return the_env; }

static int l_clock(lua_State *L)
{
    lua_pushnumber(L, now_s());
    return 1;
}

vm_deadline *pv_lua_deadline(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "provium.deadline");
    vm_deadline *d = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return d;
}

/* P.set_deadline(seconds_from_now or nil): the state's deadline, which
 * every VM of the state honours (vm_set_deadline_source in lua_vm.c). */
static int l_set_deadline(lua_State *L)
{
    vm_deadline *d = pv_lua_deadline(L);
    if (lua_isnoneornil(L, 1))
        d->ms = 0;
    else
        /* +1: now_ms() is truncated, and a wait must not end before the
         * framework's own clock says the time is up */
        d->ms = now_ms() + (int64_t)ceil(luaL_checknumber(L, 1) * 1000) + 1;
    return 0;
}

static int l_duration(lua_State *L)
{
    lua_pushnumber(L, (double)pv_lua_duration_ms(L, 1, "duration") / 1000.0);
    return 1;
}

static int l_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    if (s > 0)
        sleep_ms((int)(s * 1000));
    return 0;
}

/* getmetatable() on a provium object returns a stand-in that carries only
 * __name: Lua code cannot reach __gc (and free an object still in use) or
 * replace methods. The C side still sees the real metatable. */
static void seal_metatables(lua_State *L)
{
    static const char *const names[] = {VM_MT,           FILE_MT,           RESULT_MT,        WORKER_MT,
                                        "provium.Batch", "provium.Process", "provium.Stream", "provium.Snapshot",
                                        "provium.Clock", "provium.AsyncSyscall"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (luaL_getmetatable(L, names[i]) == LUA_TTABLE) {
            lua_createtable(L, 0, 1);
            lua_getfield(L, -2, "__name");
            lua_setfield(L, -2, "__name");
            lua_setfield(L, -2, "__metatable");
        }
        lua_pop(L, 1);
    }
}

lua_State *pv_lua_new(const pv_lua_env *env, char *err, size_t errlen)
{
    the_env = env;
    lua_State *L = luaL_newstate();
    if (!L) {
        snprintf(err, errlen, "cannot create a Lua state (out of memory)");
        return NULL;
    }
    luaL_openlibs(L);
    /* the deadline lives as long as the state and its VMs */
    vm_deadline *d = lua_newuserdatauv(L, sizeof(vm_deadline), 0);
    d->ms = 0;
    lua_setfield(L, LUA_REGISTRYINDEX, "provium.deadline");
    pv_lua_open_json(L);
    /* The framework gets an internal table P with the C entry points. */
    const char *src = (const char *)provium_framework_lua;
    if (luaL_loadbuffer(L, src, EMBEDDED_SIZE(provium_framework_lua), "=provium/framework.lua") != LUA_OK) {
        snprintf(err, errlen, "internal error loading the framework: %s", lua_tostring(L, -1));
        lua_close(L);
        return NULL;
    }
    lua_newtable(L);
    pv_lua_register_vm(L, -1);
    pv_lua_image_init(L, -1);
    pv_lua_open_paths(L, -1);
    seal_metatables(L);
    lua_pushcfunction(L, l_clock);
    lua_setfield(L, -2, "clock");
    lua_pushcfunction(L, l_set_deadline);
    lua_setfield(L, -2, "set_deadline");
    lua_pushcfunction(L, l_sleep);
    lua_setfield(L, -2, "sleep");
    lua_pushcfunction(L, l_duration);
    lua_setfield(L, -2, "duration");
    /* P.include_slow comes with the runner's selection (pv_lua_runner_install) */
    lua_pushstring(L, env->file_path ? env->file_path : "");
    lua_setfield(L, -2, "file_path");
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "provium.P");
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        snprintf(err, errlen, "internal error starting the framework: %s", lua_tostring(L, -1));
        lua_close(L);
        return NULL;
    }
    /* require() finds helpers under the configured roots. */
    if (env->config && env->config->nroots) {
        lua_getglobal(L, "package");
        strbuf b;
        sb_init(&b);
        for (size_t i = 0; i < env->config->nroots; i++)
            sb_addf(&b, "%s/?.lua;%s/?/init.lua;", env->config->roots[i], env->config->roots[i]);
        lua_getfield(L, -1, "path");
        sb_adds(&b, lua_tostring(L, -1));
        lua_pop(L, 1);
        lua_pushstring(L, b.s);
        lua_setfield(L, -2, "path");
        sb_free(&b);
        lua_pop(L, 1);
    }
    return L;
}
