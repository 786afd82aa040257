/* provium repl PROFILE [--name N]: boots one VM and reads Lua lines with
 * readline; each line is tried as an expression first, then as a statement.
 * The VM is shut down when the input ends. */
#include <errno.h>
#include <lauxlib.h>
#include <readline/history.h>
#include <readline/readline.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lua/lua_api.h"
#include "../util/util.h"
#include "tools.h"

/* Prints the values a line produced; tables as JSON when possible. */
static void print_results(lua_State *L, int base)
{
    int n = lua_gettop(L) - base;
    for (int i = 1; i <= n; i++) {
        int idx = base + i;
        if (lua_istable(L, idx)) {
            char err[256];
            char *js = pv_lua_to_json_lossy(L, idx, err, sizeof(err));
            if (js) {
                printf("%s%s", i > 1 ? "\t" : "", js);
                free(js);
                continue;
            }
        }
        printf("%s%s", i > 1 ? "\t" : "", luaL_tolstring(L, idx, NULL));
        lua_pop(L, 1);
    }
    if (n > 0)
        printf("\n");
    lua_settop(L, base);
}

static int run_line(lua_State *L, const char *line)
{
    int base = lua_gettop(L);
    char *expr = xasprintf("return %s", line);
    int rc = luaL_loadbuffer(L, expr, strlen(expr), "=repl");
    free(expr);
    if (rc != LUA_OK) {
        lua_settop(L, base);
        rc = luaL_loadbuffer(L, line, strlen(line), "=repl");
    }
    if (rc == LUA_OK)
        rc = lua_pcall(L, 0, LUA_MULTRET, 0);
    if (rc != LUA_OK) {
        fprintf(stderr, "error: %s\n", lua_tostring(L, -1));
        lua_settop(L, base);
        return 1;
    }
    print_results(L, base);
    return 0;
}

int repl_main(const pv_config *cfg, const char *profile, const char *name)
{
    char tmpl[] = "/tmp/provium-XXXXXX";
    if (!mkdtemp(tmpl)) {
        fprintf(stderr, "provium repl: mkdtemp: %s\n", strerror(errno));
        return 2;
    }
    pv_lua_env env = {cfg, tmpl, NULL};
    char err[4096];
    lua_State *L = pv_lua_new(&env, err, sizeof(err));
    if (!L) {
        fprintf(stderr, "provium repl: %s\n", err);
        rm_rf(tmpl);
        return 2;
    }
    int rc = 0;
    lua_getglobal(L, "provium");
    lua_getfield(L, -1, "vm");
    lua_pushvalue(L, -2);
    lua_pushstring(L, name ? name : "repl");
    lua_pushstring(L, profile);
    if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
        fprintf(stderr, "provium repl: %s\n", lua_tostring(L, -1));
        rc = 2;
        goto out;
    }
    lua_getfield(L, -1, "boot");
    lua_pushvalue(L, -2);
    fprintf(stderr, "booting '%s' (profile '%s')...\n", name ? name : "repl", profile);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "provium repl: %s\n", lua_tostring(L, -1));
        rc = 2;
        goto out;
    }
    lua_setglobal(L, "vm");
    lua_settop(L, 0);
    fprintf(stderr, "the VM is `vm` (try vm:run(\"uname -a\").stdout); Ctrl-D quits\n");
    bool tty = isatty(0);
    for (;;) {
        char *line = readline(tty ? "provium> " : "");
        if (!line)
            break;
        if (*line) {
            add_history(line);
            if (run_line(L, line) != 0 && !tty)
                rc = 1; /* scripted input: report failures in the exit status */
        }
        free(line);
        fflush(stdout);
    }
    lua_getglobal(L, "vm");
    if (!lua_isnil(L, -1)) {
        lua_getfield(L, -1, "close");
        lua_pushvalue(L, -2);
        lua_pcall(L, 1, 0, 0);
    }
out:
    pv_lua_kill_all_vms();
    lua_close(L);
    rm_rf(tmpl);
    return rc;
}
