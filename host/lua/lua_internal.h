/* Shared between the Lua binding files; not part of the public Lua API. */
#ifndef PROVIUM_LUA_INTERNAL_H
#define PROVIUM_LUA_INTERNAL_H
#include <lauxlib.h>
#include <lua.h>

#include "../vmm/vm.h"
#include "lua_api.h"

#define VM_MT "provium.VM"
#define FILE_MT "provium.File"
#define RESULT_MT "provium.RunResult"
#define WORKER_MT "provium.Worker"
#define OP_TIMEOUT_MS 60000

/* An open file or stream, remembered so a snapshot can say what blocks it. */
typedef struct open_item {
    unsigned id;
    const char *kind;
    char *site;
    struct open_item *next;
} open_item;

typedef struct lvm {
    pv_vm *vm;
    vm_boot_opts opts; /* creation-time options */
    int open_files;
    int open_streams;
    open_item *items;
    unsigned next_item;
    struct lvm *next; /* all VMs of this process, for last-resort cleanup */
    uint32_t chan_base; /* where its requests go: 0 for a VM; a Worker's channel (lua_worker.c) */
    bool classic; /* created by the classic dialect: classic result shapes (a Worker takes its VM's) */
    unsigned long long taint; /* the kernel's taint flags at the last health check */
    unsigned taint_generation; /* vm->generation + 1 when taint was read (0: never) */
} lvm;

/* The VM or Worker at idx (raises otherwise, or when it was freed). */
lvm *pv_check_vm(lua_State *L, int idx);
/* The VM or Worker at idx, or NULL for anything else: the one owner test
 * of the objects they create (processes, streams, files, async calls). */
lvm *pv_test_owner(lua_State *L, int idx);
void pv_require_booted(lua_State *L, lvm *v, const char *op);
/* Sends v->vm->out and raises a Lua error on failure. */
void pv_call(lua_State *L, lvm *v, vm_reply *r, int64_t timeout_ms);
/* Adds the methods in fns to the table at idx. */
void pv_add_methods(lua_State *L, int idx, const luaL_Reg *fns);
/* luaL_checkstring for what reaches the guest as a C string (paths, program
 * names, cwd, env): a NUL byte inside would cut it, so it raises instead. */
const char *pv_check_cstr(lua_State *L, int idx, const char *what);
/* The same check for a string already fetched. */
void pv_refuse_nul(lua_State *L, const char *s, size_t len, const char *what);
void pv_lua_workers_vm_freed(const pv_vm *vm);
/* Raises on a string key of the options table at idx that is not in known
 * (NULL-terminated), suggesting the nearest known key. Other keys (array
 * items) are left alone. */
void pv_check_opt_keys(lua_State *L, int idx, const char *what, const char *const *known);
/* Directory of the Lua file that called into the API (for host-relative paths). */
char *pv_caller_dir(lua_State *L);
/* Absolute path of the innermost Lua file (not a string chunk) on the call
 * stack, or NULL. */
char *pv_caller_file(lua_State *L);
/* "file:line" of the calling Lua code, for creation sites (new string). */
char *pv_caller_site(lua_State *L);

int64_t pv_build_exec(lua_State *L, lvm *v, uint32_t chan, bool async);
void pv_push_run_result(lua_State *L, lvm *v, const pv_msg *m, const char *out, size_t outlen, const char *err,
                        size_t errlen);
const char *pv_signal_name(int sig);
/* Registers a closable object (at the top of the stack) with the current scope. */
void pv_track(lua_State *L);
/* A signal argument: nil (SIGTERM), a number, or a name ("TERM", "sigkill"). */
int pv_check_signal(lua_State *L, int idx);
/* Opens a Tail stream on a fresh channel; request fields already added by fill. */
void pv_lua_proc_init(lua_State *L, int methods_idx);
int pv_open_fd_stream(lua_State *L, lvm *v, int vm_idx, int64_t fd, const char *kind);

void pv_push_stat(lua_State *L, const pv_msg *m);
void pv_push_listdir(lua_State *L, const pv_msg *m);
void pv_push_syscall_result(lua_State *L, const vm_reply *r, size_t skip_bufs);
/* A system call's result in v's dialect: the table of pv_push_syscall_result,
 * or for classic the integer result (-errno on failure). */
void pv_push_syscall_value(lua_State *L, const lvm *v, const pv_msg *m);
void pv_put_syscall_arg(lua_State *L, pv_buf *b, int idx, int slot, size_t *nbufs);
void pv_lua_batch_init(lua_State *L, int methods_idx);

unsigned pv_item_add(lvm *v, const char *kind, const char *site);
void pv_forget_open(lvm *v);
/* A descriptor argument: an integer or an open File (raises otherwise). */
lua_Integer pv_check_fd(lua_State *L, int idx, const char *op);
void pv_item_remove(lvm *v, unsigned id);
void pv_lua_snapshot_init(lua_State *L, int methods_idx);

void pv_lua_fixture_init(lua_State *L, int internal_idx);
void pv_lua_forget_vms(void);
/* Every VM of this Lua state, newest first (a linked list through ->next). */
lvm *pv_lua_all_vms(void);
/* Kernel health checks (lua_health.c): registers P.kernel_check. */
void pv_lua_health_init(lua_State *L, int internal_idx);
/* Remembers host_path when it is a kernel module (*.ko), so stack frames of
 * that module in kernel reports decode to file:line. */
void pv_health_note_module(const char *host_path);
/* KTAP parsing for t:ktap / vm:kselftest / vm:kunit (lua_ktap.c): registers P.ktap_parse. */
void pv_lua_ktap_init(lua_State *L, int internal_idx);
/* P.ext4_image (lua_image.c) */
void pv_lua_image_init(lua_State *L, int internal_idx);
/* Bridges and NICs (lua_net.c): registers P.net (the switch, VM NICs, and lua/net.lua as P.net.module). */
void pv_lua_net_init(lua_State *L, int internal_idx);
extern char *pv_fixture_snapshot_target;
/* A VM of this profile booted or was restored: a fixture build records it. */
void pv_fixture_note_profile(lua_State *L, const char *profile);
/* Adds a warning to the file's report (as fixture warnings are), under name. */
void pv_fixture_note_warning(lua_State *L, const char *name, const char *warning);

void pv_lua_files_init(lua_State *L, int methods_idx);
/* Workers (lua_worker.c): registers spawn_worker/spawn and the Worker type. */
void pv_lua_worker_init(lua_State *L, int vm_methods_idx);
/* NULL while v is a VM or a live worker; else why the worker is gone. */
const char *pv_worker_gone(lvm *v);
void pv_lua_sys_init(lua_State *L, int methods_idx, int internal_idx);
/* luaL_error with C printf formats (lua_pushfstring lacks %u, %lld, %.1f). */
int pv_raisef(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A size argument: bytes or a string like "64M" (raises, quoting it). */
int64_t pv_lua_size(lua_State *L, int idx, const char *what);
/* Disks (lua_disk.c): the Disk type, vm:disk/disks/attach_disk, the boot
 * option disks, and readying a boot's disks (0, or -1 with err set). */
void pv_lua_disk_init(lua_State *L, int vm_methods_idx);
void pv_lua_parse_disks(lua_State *L, int idx, const char *vm_name, pv_disk_spec **out, size_t *n);
/* Only the checks of pv_lua_parse_disks (raises; allocates nothing). */
void pv_lua_check_disks(lua_State *L, int idx, const char *vm_name);
int pv_lua_prepare_disks(lvm *v, const vm_boot_opts *o, char *err, size_t errlen);
#endif
