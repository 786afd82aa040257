/* Shared between the Lua binding files; not part of the public Lua API. */
#ifndef PROVIUM_LUA_INTERNAL_H
#define PROVIUM_LUA_INTERNAL_H
#include <lauxlib.h>
#include <lua.h>

#include "../vmm/vm.h"

#define VM_MT "provium.VM"
#define FILE_MT "provium.File"
#define RESULT_MT "provium.RunResult"
#define OP_TIMEOUT_MS 60000

typedef struct lvm {
    pv_vm *vm;
    vm_boot_opts opts; /* creation-time options */
    int open_files;
    int open_streams;
    struct lvm *next; /* all VMs of this process, for last-resort cleanup */
} lvm;

lvm *pv_check_vm(lua_State *L, int idx);
void pv_require_booted(lua_State *L, lvm *v, const char *op);
/* Sends v->vm->out and raises a Lua error on failure. */
void pv_call(lua_State *L, lvm *v, vm_reply *r, int64_t timeout_ms);
/* Adds the methods in fns to the table at idx. */
void pv_add_methods(lua_State *L, int idx, const luaL_Reg *fns);
/* Directory of the Lua file that called into the API (for host-relative paths). */
char *pv_caller_dir(lua_State *L);
/* "file:line" of the calling Lua code, for creation sites (new string). */
char *pv_caller_site(lua_State *L);

void pv_lua_files_init(lua_State *L, int methods_idx);
void pv_lua_sys_init(lua_State *L, int methods_idx, int internal_idx);
#endif
