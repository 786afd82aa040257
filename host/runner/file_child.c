/* The child side of the runner: one test file, one Lua state, one report. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "../lua/lua_api.h"
#include "../util/util.h"
#include "runner.h"

static void write_report(int fd, const char *json)
{
    size_t len = strlen(json);
    while (len) {
        ssize_t n = write(fd, json, len);
        if (n <= 0)
            return;
        json += n;
        len -= (size_t)n;
    }
}

/* A report for errors that happen before the framework can produce one. */
static void write_chunk_error(int fd, const char *path, const char *msg)
{
    lua_State *L = luaL_newstate();
    lua_createtable(L, 0, 4);
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "passed");
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "chunk_error");
    lua_newtable(L);
    lua_setfield(L, -2, "tests");
    char err[PV_ERR_MAX];
    char *json = pv_lua_to_json_lossy(L, -1, err, sizeof(err));
    if (json)
        write_report(fd, json);
    free(json);
    lua_close(L);
}

/* Under ASan a leak must fail the file: the child ends with _exit, which
 * skips LeakSanitizer's check at exit, and the runner reads the report, not
 * the exit status. So the check runs before the report is written (what the
 * live Lua state still points to is not a leak; heap a luaL_error jumped
 * over is). LeakSanitizer prints to stderr, which is the file's log: the
 * part it printed becomes the error message (new string), or NULL when
 * nothing leaked. */
static char *leak_report(void)
{
#if defined(__SANITIZE_ADDRESS__)
    off_t start = lseek(2, 0, SEEK_END);
    if (__lsan_do_recoverable_leak_check() == 0)
        return NULL;
    size_t len = 0;
    char *log = read_whole_file("/proc/self/fd/2", &len);
    char *msg = xasprintf("LeakSanitizer: C heap leaked while the file ran:\n%.3000s",
                          log && start >= 0 && (size_t)start <= len ? log + start : "(the report is not readable)");
    free(log);
    return msg;
#else
    return NULL;
#endif
}

int run_file_child(const pv_config *cfg, const char *scratch_root, const char *path, int report_fd, int ctl_fd,
                   child_mode mode, const test_select *sel, const char *shown)
{
    pv_lua_env env = {cfg, scratch_root, path};
    char err[PV_ERR_MAX];
    lua_State *L = pv_lua_new(&env, err, sizeof(err));
    if (!L) {
        write_chunk_error(report_fd, path, err);
        return 2;
    }
    pv_lua_runner_install(L, ctl_fd, mode, sel, shown);
    /* Relative dofile()/loadfile() paths resolve against the project root
     * (the directory of provium.toml), as the seeds' examples expect. */
    if (cfg->dir && chdir(cfg->dir) != 0)
        fprintf(stderr, "provium: cannot enter %s\n", cfg->dir);
    int rc = 0;
    if (luaL_loadfile(L, path) != LUA_OK) {
        write_chunk_error(report_fd, path, lua_tostring(L, -1));
        rc = 1;
    } else {
        lua_getfield(L, LUA_REGISTRYINDEX, "provium.P");
        lua_getfield(L, -1, "run_file");
        lua_pushvalue(L, -3);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
            write_chunk_error(report_fd, path, lua_tostring(L, -1));
            rc = 2;
        } else {
            char *json = pv_lua_to_json_lossy(L, -1, err, sizeof(err));
            char *leaks = json ? leak_report() : NULL;
            if (leaks) {
                write_chunk_error(report_fd, path, leaks);
                free(leaks);
                free(json);
                rc = 2;
            } else if (json) {
                write_report(report_fd, json);
                free(json);
            } else {
                write_chunk_error(report_fd, path, err);
                rc = 2;
            }
        }
    }
    pv_lua_kill_all_vms();
    lua_close(L);
    return rc;
}
