/* Fixture plumbing for the framework: find or build a fixture's snapshot.
 * A missing fixture is built in a forked child with a fresh Lua state, so
 * the test file's own state and VMs are untouched; a per-key lock makes
 * concurrent files build it once. */
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../fixtures/fixtures.h"
#include "../util/util.h"
#include "lua_internal.h"

#define BUILD_TIMEOUT_MS (30 * 60 * 1000)
#define LOCK_TIMEOUT_MS (30 * 60 * 1000)

/* Where the next argument-less vm:snapshot() goes while building. */
char *pv_fixture_snapshot_target;

/* The fixtures being built by this process and its builder ancestors,
 * outermost first: a builder inherits the list when it forks. */
#define MAX_NESTED 16
static const char *building[MAX_NESTED];
static int nbuilding;

void pv_fixture_note_profile(lua_State *L, const char *profile)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "provium.profiles");
    if (lua_istable(L, -1)) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, profile);
    }
    lua_pop(L, 1);
}

void pv_fixture_note_warning(lua_State *L, const char *name, const char *warning)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "provium.P");
    if (lua_istable(L, -1) && lua_getfield(L, -1, "fixture_log") == LUA_TTABLE) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, warning);
        lua_setfield(L, -2, "warning");
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    }
    lua_settop(L, lua_gettop(L) - 2);
}

/* Writes the keys of the registry table `field` (strings), one a line, to path. */
static void write_set(lua_State *L, const char *field, const char *path, bool keys)
{
    strbuf b;
    sb_init(&b);
    lua_getfield(L, LUA_REGISTRYINDEX, field);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        sb_addf(&b, "%s\n", lua_tostring(L, keys ? -2 : -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    write_whole_file(path, b.s ? b.s : "", b.len, 0644);
    sb_free(&b);
}

/* Reads a file written by write_set into at most max lines of text (which
 * the lines point into); returns the number of lines. */
static size_t read_lines(const char *dir, const char *file, char **text, char **lines, size_t max)
{
    char *path = xasprintf("%s/%s", dir, file);
    size_t len, n = 0;
    *text = read_whole_file(path, &len);
    free(path);
    char *save = NULL;
    for (char *l = *text ? strtok_r(*text, "\n", &save) : NULL; l && n < max; l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    return n;
}

static void write_text(const char *path, const char *text)
{
    write_whole_file(path, text, strlen(text), 0644);
}

/* Runs in the forked child: builds fixture `name` into out_dir. */
static int build_child(const pv_lua_env *parent_env, const char *name, const char *path, const char *out_dir)
{
    char *errpath = xasprintf("%s/error.txt", out_dir);
    char *snapdir = xasprintf("%s/snapshot", out_dir);
    pv_lua_forget_vms();
    pv_lua_env env = {parent_env->config, parent_env->scratch_root, path};
    char err[PV_ERR_MAX];
    lua_State *L = pv_lua_new(&env, err, sizeof(err));
    if (!L) {
        write_text(errpath, err);
        return 1;
    }
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "provium.deps");
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "provium.profiles");
    if (nbuilding < MAX_NESTED)
        building[nbuilding++] = name;
    pv_fixture_snapshot_target = snapdir;
    int rc = 1;
    if (luaL_loadfile(L, path) != LUA_OK) {
        write_text(errpath, lua_tostring(L, -1));
        goto out;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "provium.P");
    lua_getfield(L, -1, "build_fixture");
    lua_pushvalue(L, -3);
    lua_pushstring(L, name);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        write_text(errpath, lua_tostring(L, -1));
        goto out;
    }
    /* the framework returns the snapshot's directory */
    const char *made = lua_tostring(L, -1);
    if (!made || strcmp(made, snapdir) != 0) {
        /* a snapshot written elsewhere (an explicit path): move it in */
        if (!made || rename(made, snapdir) != 0) {
            snprintf(err, sizeof(err), "fixture '%s': cannot move its snapshot %s into the cache: %s", name,
                     made ? made : "(none)", strerror(errno));
            write_text(errpath, err);
            goto out;
        }
    }
    /* host files the build read and profiles it booted, for the entry's validity check */
    char *deps_path = xasprintf("%s/deps.txt", out_dir);
    write_set(L, "provium.deps", deps_path, false);
    free(deps_path);
    char *profiles_path = xasprintf("%s/profiles.txt", out_dir);
    write_set(L, "provium.profiles", profiles_path, true);
    free(profiles_path);
    rc = 0;
out:
    pv_lua_kill_all_vms();
    lua_close(L);
    free(errpath);
    free(snapdir);
    return rc;
}

/* Returns 0 with *dir_out set, or -1 with the reason in why. */
static int build(const pv_config *cfg, const char *name, const char *key, char **dir_out, char *why_out,
                 size_t why_len)
{
    char err[PV_ERR_MAX];
    char *path = fixture_find(cfg, name, err, sizeof(err));
    if (!path) {
        snprintf(why_out, why_len, "%s", err);
        return -1;
    }
    char *out = xasprintf("%s/%s.build-%d", fixture_cache_dir(cfg), key, (int)getpid());
    rm_rf(out);
    if (mkdir_p(out, 0755) != 0) {
        free(path);
        snprintf(why_out, why_len, "fixture '%s': cannot create %s: %s", name, out, strerror(errno));
        free(out);
        return -1;
    }
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        _exit(build_child(pv_lua_env_get(), name, path, out));
    }
    free(path);
    if (pid < 0) {
        rm_rf(out);
        free(out);
        snprintf(why_out, why_len, "fixture '%s': fork: %s", name, strerror(errno));
        return -1;
    }
    int st = 0;
    int64_t deadline = now_ms() + BUILD_TIMEOUT_MS;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            rm_rf(out);
            free(out);
            snprintf(why_out, why_len, "fixture '%s': the build did not finish within %d minutes", name,
                     BUILD_TIMEOUT_MS / 60000);
            return -1;
        }
        sleep_ms(10);
    }
    fixture_builds++;
    char *errpath = xasprintf("%s/error.txt", out);
    size_t len;
    char *why = read_whole_file(errpath, &len);
    free(errpath);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || why) {
        snprintf(why_out, why_len, "fixture '%s' failed to build: %s", name,
                 why ? why : WIFSIGNALED(st) ? "the build process was killed" : "the build process failed");
        free(why);
        rm_rf(out);
        free(out);
        return -1;
    }
    /* the snapshot directory becomes the entry; deps and profiles come along */
    char *deps_text, *deps[256], *prof_text, *profs[64];
    size_t ndeps = read_lines(out, "deps.txt", &deps_text, deps, 256);
    size_t nprofs = read_lines(out, "profiles.txt", &prof_text, profs, 64);
    char *snap = xasprintf("%s/snapshot", out);
    int rc = fixture_install(cfg, key, name, snap, deps, ndeps, profs, nprofs, err, sizeof(err));
    free(deps_text);
    free(prof_text);
    free(snap);
    rm_rf(out);
    free(out);
    if (rc != 0) {
        snprintf(why_out, why_len, "%s", err);
        return -1;
    }
    *dir_out = fixture_lookup(cfg, key);
    if (!*dir_out) {
        snprintf(why_out, why_len, "fixture '%s': the entry vanished right after it was built", name);
        return -1;
    }
    return 0;
}

/* P.fixture_dir(name [, force_rebuild]) -> snapshot directory, profile, built */
static int l_fixture_dir(lua_State *L)
{
    const char *name = pv_check_cstr(L, 1, "fixture name");
    bool force = lua_toboolean(L, 2);
    const pv_config *cfg = pv_lua_env_get()->config;
    for (int i = 0; i < nbuilding; i++)
        if (strcmp(building[i], name) == 0) {
            strbuf chain;
            sb_init(&chain);
            for (int k = 0; k < nbuilding; k++)
                sb_addf(&chain, "%s -> ", building[k]);
            lua_pushfstring(L, "fixture '%s': it needs itself to build (%s%s)", name, chain.s, name);
            sb_free(&chain);
            return lua_error(L);
        }
    char err[PV_ERR_MAX];
    char *key = fixture_key(cfg, name, err, sizeof(err));
    if (!key)
        return luaL_error(L, "%s", err);
    char *dir = force ? NULL : fixture_lookup(cfg, key);
    bool built = false;
    if (!dir) {
        int lock = fixture_lock(cfg, key, LOCK_TIMEOUT_MS, err, sizeof(err));
        if (lock < 0) {
            free(key);
            return luaL_error(L, "fixture '%s': %s", name, err);
        }
        /* someone else may have built it while we waited */
        dir = force ? NULL : fixture_lookup(cfg, key);
        if (!dir) {
            int rc = build(cfg, name, key, &dir, err, sizeof(err));
            built = true;
            if (rc != 0) {
                fixture_unlock(lock);
                free(key);
                return luaL_error(L, "%s", err);
            }
        }
        fixture_unlock(lock);
    }
    free(key);
    char *meta = xasprintf("%s/meta.json", dir);
    size_t len;
    char *text = read_whole_file(meta, &len);
    free(meta);
    const char *p = text ? strstr(text, "\"profile\": \"") : NULL;
    lua_pushstring(L, dir);
    if (p) {
        p += strlen("\"profile\": \"");
        const char *e = strchr(p, '"');
        lua_pushlstring(L, p, e ? (size_t)(e - p) : 0);
    } else {
        lua_pushnil(L);
    }
    lua_pushboolean(L, built);
    free(text);
    free(dir);
    return 3;
}

/* P.fixture_discard(dir): drops a corrupt entry so it is rebuilt. */
static int l_fixture_discard(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    const char *cache = fixture_cache_dir(pv_lua_env_get()->config);
    if (strncmp(dir, cache, strlen(cache)) == 0)
        rm_rf(dir);
    return 0;
}

/* P.add_dep(host_path): a host file the fixture being built depends on. */
static int l_add_dep(lua_State *L)
{
    const char *p = pv_check_cstr(L, 1, "depends_on_file: path");
    lua_getfield(L, LUA_REGISTRYINDEX, "provium.deps");
    if (lua_istable(L, -1)) {
        char *abs = path_absolute(p);
        lua_pushstring(L, abs);
        free(abs);
        lua_rawseti(L, -2, luaL_len(L, -2) + 1);
    }
    return 0;
}

static int l_snapshot_target(lua_State *L)
{
    if (pv_fixture_snapshot_target)
        lua_pushstring(L, pv_fixture_snapshot_target);
    else
        lua_pushnil(L);
    return 1;
}

void pv_lua_fixture_init(lua_State *L, int internal_idx)
{
    static const luaL_Reg fns[] = {{"fixture_dir", l_fixture_dir},
                                   {"fixture_discard", l_fixture_discard},
                                   {"add_dep", l_add_dep},
                                   {"snapshot_target", l_snapshot_target},
                                   {NULL, NULL}};
    pv_add_methods(L, internal_idx, fns);
}
