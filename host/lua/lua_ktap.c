/* P.ktap_parse(text[, suite]) for the framework's t:ktap, vm:kselftest and
 * vm:kunit (lua/framework.lua): the KTAP parser of host/health/ktap.c.
 * Returns {found = bool, cases = {{name, status, message, diag}, ...}}
 * with status "passed", "failed", "skipped" or "todo". */
#include <lauxlib.h>
#include <lua.h>

#include "../health/ktap.h"
#include "lua_internal.h"

static void set_str(lua_State *L, const char *key, const char *value)
{
    if (!value)
        return;
    lua_pushstring(L, value);
    lua_setfield(L, -2, key);
}

static int l_ktap_parse(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    const char *suite = luaL_optstring(L, 2, NULL);
    ktap_node *root = ktap_parse(text, len);
    ktap_cases cases = {0};
    ktap_flatten(root, suite, &cases);
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, ktap_found(root));
    lua_setfield(L, -2, "found");
    lua_createtable(L, (int)cases.n, 0);
    for (size_t i = 0; i < cases.n; i++) {
        lua_createtable(L, 0, 4);
        set_str(L, "name", cases.v[i].name);
        set_str(L, "status", ktap_status_name(cases.v[i].status));
        set_str(L, "message", cases.v[i].message);
        set_str(L, "diag", cases.v[i].diag);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "cases");
    ktap_cases_free(&cases);
    ktap_free(root);
    return 1;
}

void pv_lua_ktap_init(lua_State *L, int internal_idx)
{
    lua_pushcfunction(L, l_ktap_parse);
    lua_setfield(L, internal_idx, "ktap_parse");
}
