/*
 * lua_paths.c - host file-system helpers for the Lua framework: make a
 * directory with its parents, remove a tree, measure a tree's disk usage.
 *
 * framework.lua used to run `mkdir -p`, `rm -rf` and `du -sk` through the
 * shell with the path pasted between single quotes, so a path holding a
 * quote, `$(...)` or a leading dash meant a different command. These call
 * the C helpers of host/util directly; a path is only ever a path. They go
 * into the framework's internal table P, not into the test-facing API.
 */
#include <errno.h>
#include <string.h>

#include "../util/util.h"
#include "lua_internal.h"

/* P.make_dirs(path) -> true | nil, message: mkdir -p (mode 0777 less umask). */
static int l_make_dirs(lua_State *L)
{
    const char *path = pv_check_cstr(L, 1, "make_dirs: path");
    const char *why = mkdir_p(path, 0777) != 0 ? strerror(errno) : !is_dir(path) ? "it exists and is not a directory"
                                                                                  : NULL;
    if (!why) {
        lua_pushboolean(L, 1);
        return 1;
    }
    luaL_pushfail(L);
    lua_pushfstring(L, "cannot create directory %s: %s", path, why);
    return 2;
}

/* P.remove_tree(path): rm -rf; a missing path is not an error. */
static int l_remove_tree(lua_State *L)
{
    rm_rf(pv_check_cstr(L, 1, "remove_tree: path"));
    return 0;
}

/* P.disk_usage(path) -> bytes the files under path take on disk. */
static int l_disk_usage(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)disk_usage(pv_check_cstr(L, 1, "disk_usage: path")));
    return 1;
}

void pv_lua_open_paths(lua_State *L, int idx)
{
    static const luaL_Reg fns[] = {
        {"make_dirs", l_make_dirs}, {"remove_tree", l_remove_tree}, {"disk_usage", l_disk_usage}, {NULL, NULL}};
    pv_add_methods(L, idx, fns);
}
