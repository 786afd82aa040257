/* The Lua side of Provium: the `provium` global, VM objects, results. */
#ifndef PROVIUM_LUA_API_H
#define PROVIUM_LUA_API_H
#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "../config/config.h"

typedef struct {
    const pv_config *config;
    const char *scratch_root; /* private per-run directory for VM sockets and logs */
    const char *file_path;    /* the test file being run (absolute) */
} pv_lua_env;

/* Creates a Lua state with the standard libraries, the framework and the
 * `provium` global. Returns NULL (message in err) on failure. */
lua_State *pv_lua_new(const pv_lua_env *env, char *err, size_t errlen);
/* Registers the VM type and the internal functions into table at index idx. */
void pv_lua_register_vm(lua_State *L, int idx);
/* Adds make_dirs, remove_tree and disk_usage (lua_paths.c) to the table at idx. */
void pv_lua_open_paths(lua_State *L, int idx);
/* Kills every VM that is still running (last-resort cleanup). */
void pv_lua_kill_all_vms(void);
const pv_lua_env *pv_lua_env_get(void);
/* The state's deadline (host/vmm/vm.h): every VM the state makes honours
 * it; the REPL moves it to interrupt a call. */
struct vm_deadline;
struct vm_deadline *pv_lua_deadline(lua_State *L);
/* Seconds as a number, or a string with ms/s/m/h; raises on bad input. */
int64_t pv_lua_duration_ms(lua_State *L, int idx, const char *what);
/* json.encode / json.decode backed by jansson; also used for results. */
void pv_lua_open_json(lua_State *L);
/* Encodes the value at idx as compact JSON (new string) or NULL with err. */
char *pv_lua_to_json(lua_State *L, int idx, char *err, size_t errlen);
/* Same, but bytes that are not UTF-8 are written as \xNN instead of failing
 * (for reports, which carry arbitrary guest output). */
char *pv_lua_to_json_lossy(lua_State *L, int idx, char *err, size_t errlen);
#endif
