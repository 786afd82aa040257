/* provium.ext4_image{dir=, path=, size=, label=}: an ext4 image of a host
 * directory for rootfs profiles and data disks (host/tools/ext4_image.c).
 * Relative paths resolve against the directory of the calling Lua file, as
 * vm:push_file's do. Returns the image's absolute path. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/ext4_image.h"
#include "../util/util.h"
#include "lua_internal.h"

static char *opt_path(lua_State *L, const char *key, bool required)
{
    lua_getfield(L, 1, key);
    if (lua_isnil(L, -1) && !required) {
        lua_pop(L, 1);
        return NULL;
    }
    if (lua_type(L, -1) != LUA_TSTRING || !*lua_tostring(L, -1))
        luaL_error(L, "provium.ext4_image: %s must be a non-empty string (a host path)", key);
    const char *s = lua_tostring(L, -1);
    char *full;
    if (s[0] == '/') {
        full = xstrdup(s);
    } else {
        char *dir = pv_caller_dir(L);
        char *joined = path_join(dir, s);
        full = path_absolute(joined);
        free(joined);
        free(dir);
    }
    lua_pop(L, 1);
    return full;
}

static int l_ext4_image(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    static const char *const known[] = {"dir", "path", "size", "label", NULL};
    pv_check_opt_keys(L, 1, "provium.ext4_image", known);
    ext4_image_opts o = {0};
    lua_getfield(L, 1, "size");
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0)
        o.size = lua_tointeger(L, -1);
    else if (lua_type(L, -1) == LUA_TSTRING)
        o.size = parse_size(lua_tostring(L, -1));
    else if (!lua_isnil(L, -1))
        o.size = -1;
    lua_pop(L, 1);
    if (o.size < 0)
        return luaL_error(L, "provium.ext4_image: size must be a positive byte count or a size like \"64M\"");
    lua_getfield(L, 1, "label");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "provium.ext4_image: label must be a string");
    char *label = lua_isnil(L, -1) ? NULL : xstrdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    char *dir = opt_path(L, "dir", true);
    char *path = opt_path(L, "path", true);
    o.dir = dir;
    o.path = path;
    o.label = label;
    char err[PV_ERR_MAX];
    int rc = ext4_image_build(&o, err, sizeof(err));
    free(dir);
    free(label);
    if (rc != 0) {
        free(path);
        return luaL_error(L, "provium.ext4_image: %s", err);
    }
    lua_pushstring(L, path);
    free(path);
    return 1;
}

void pv_lua_image_init(lua_State *L, int internal_idx)
{
    internal_idx = lua_absindex(L, internal_idx);
    lua_pushcfunction(L, l_ext4_image);
    lua_setfield(L, internal_idx, "ext4_image");
}
