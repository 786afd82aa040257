/* vm:snapshot / vm:restore and the Snapshot object. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/util.h"
#include "lua_internal.h"

#define SNAP_MT "provium.Snapshot"

typedef struct {
    char *path;
    bool deleted;
} lsnap;

static int push_snapshot(lua_State *L, const char *path)
{
    lsnap *s = lua_newuserdatauv(L, sizeof(lsnap), 0);
    s->path = xstrdup(path);
    s->deleted = false;
    luaL_setmetatable(L, SNAP_MT);
    return 1;
}

static bool dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return false;
    struct dirent *e;
    bool empty = true;
    while (empty && (e = readdir(d)))
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return empty;
}

/* Lists the open files and streams that make a snapshot unsafe. */
static void refuse_if_busy(lua_State *L, lvm *v)
{
    if (!v->items)
        return;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_pushfstring(L, "vm '%s': cannot snapshot while files or streams are open; close them first:", v->vm->name);
    luaL_addvalue(&b);
    for (open_item *it = v->items; it; it = it->next) {
        lua_pushfstring(L, "\n  %s opened at %s", it->kind, it->site);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    lua_error(L);
}

static int l_snapshot(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    /* internal third argument: the VM is paused by a lab snapshot */
    bool paused = lua_toboolean(L, 3);
    if (paused) {
        if (v->vm->state != VM_PAUSED)
            return luaL_error(L, "vm '%s': internal: expected a paused VM", v->vm->name);
    } else {
        pv_require_booted(L, v, "snapshot");
    }
    refuse_if_busy(L, v);
    char *path;
    if (lua_isnoneornil(L, 2) && pv_fixture_snapshot_target && !file_exists(pv_fixture_snapshot_target)) {
        path = xstrdup(pv_fixture_snapshot_target); /* building a fixture: straight into the cache */
    } else if (lua_isnoneornil(L, 2)) {
        static unsigned n;
        path = xasprintf("%s.snap%u", v->vm->dir, n++);
    } else {
        path = path_absolute(pv_check_cstr(L, 2, "snapshot: path"));
    }
    /* a snapshot goes into a new (or empty) directory: what a failed one
     * leaves is removed, and that must never be the user's own files */
    struct stat st;
    bool existed = lstat(path, &st) == 0;
    if (existed && !(S_ISDIR(st.st_mode) && dir_is_empty(path))) {
        lua_pushfstring(L, "vm '%s': cannot snapshot to %s: it already exists and is not an empty directory",
                        v->vm->name, path);
        free(path);
        return lua_error(L);
    }
    char err[PV_ERR_MAX];
    if ((paused ? vm_snapshot_paused(v->vm, path, err, sizeof(err)) : vm_snapshot(v->vm, path, err, sizeof(err))) !=
        0) {
        if (existed) {
            /* it was empty: take out only what this attempt wrote */
            static const char *const parts[] = {"state", "ram", "meta.json"};
            for (size_t i = 0; i < 3; i++) {
                char *f = xasprintf("%s/%s", path, parts[i]);
                unlink(f);
                free(f);
            }
        } else {
            rm_rf(path);
        }
        free(path);
        return luaL_error(L, "%s", err);
    }
    push_snapshot(L, path);
    free(path);
    return 1;
}

static int l_restore(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    const char *path;
    lsnap *s = luaL_testudata(L, 2, SNAP_MT);
    if (s) {
        if (!s->path)
            return luaL_error(L, "vm:restore: the Snapshot object was already freed (its __gc ran)");
        if (s->deleted)
            return luaL_error(L, "vm:restore: the snapshot %s was deleted", s->path);
        path = s->path;
    } else {
        path = luaL_checkstring(L, 2);
    }
    if (v->vm->state != VM_CREATED && v->vm->state != VM_SHUTDOWN)
        return luaL_error(L, "vm '%s': cannot restore: the VM is %s (restore needs a created or shut down VM)",
                          v->vm->name, vm_state_name(v->vm->state));
    char err[PV_ERR_MAX];
    char *abs = path_absolute(path);
    pv_forget_open(v);
    int rc = vm_restore(v->vm, abs, err, sizeof(err));
    free(abs);
    if (rc != 0)
        return luaL_error(L, "%s", err);
    pv_fixture_note_profile(L, v->vm->profile.name);
    lua_settop(L, 1);
    return 1;
}

static lsnap *check_snap(lua_State *L)
{
    lsnap *s = luaL_checkudata(L, 1, SNAP_MT);
    if (!s->path)
        luaL_error(L, "snapshot: this Snapshot object was already freed (its __gc ran); it cannot be used");
    return s;
}

static int l_snap_path(lua_State *L)
{
    lua_pushstring(L, check_snap(L)->path);
    return 1;
}

static int l_snap_size(lua_State *L)
{
    lsnap *s = check_snap(L);
    lua_pushinteger(L, s->deleted ? 0 : disk_usage(s->path));
    return 1;
}

static int l_snap_delete(lua_State *L)
{
    lsnap *s = check_snap(L);
    if (!s->deleted)
        rm_rf(s->path);
    s->deleted = true;
    return 0;
}

static int l_snap_gc(lua_State *L)
{
    lsnap *s = luaL_checkudata(L, 1, SNAP_MT);
    free(s->path);
    s->path = NULL;
    return 0;
}

static int l_snap_tostring(lua_State *L)
{
    lsnap *s = check_snap(L);
    lua_pushfstring(L, "snapshot %s%s", s->path, s->deleted ? " (deleted)" : "");
    return 1;
}

/* P.snapshot_from_path(path): internal, used by fixtures */
int pv_push_snapshot(lua_State *L, const char *path) { return push_snapshot(L, path); }

void pv_lua_snapshot_init(lua_State *L, int methods_idx)
{
    static const luaL_Reg vm_fns[] = {{"snapshot", l_snapshot}, {"restore", l_restore}, {NULL, NULL}};
    pv_add_methods(L, methods_idx, vm_fns);
    static const luaL_Reg fns[] = {
        {"path", l_snap_path}, {"size", l_snap_size}, {"delete", l_snap_delete}, {NULL, NULL}};
    luaL_newmetatable(L, SNAP_MT);
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_snap_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_snap_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}
