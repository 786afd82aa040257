/* Builds the Lua state a test file runs in. */
#include "lua_api.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "../util/util.h"
#include "../vmm/embedded.h"

static const pv_lua_env *the_env;

const pv_lua_env *pv_lua_env_get(void) { return the_env; }

static int l_clock(lua_State *L)
{
    lua_pushnumber(L, now_s());
    return 1;
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
    lua_pushcfunction(L, l_clock);
    lua_setfield(L, -2, "clock");
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
