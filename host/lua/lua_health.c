/* Kernel health checks for the framework: P.kernel_check() drains the kernel
 * log of every booted VM of the file through the agent (/dev/kmsg, which a
 * quiet console does not filter), compares the taint flags with the last
 * check, and returns what the kernel reported since then:
 *   { reports = { {vm=, kind=, title=, text=, allowed=}, ... },
 *     logs = { [vm name] = "lines written since the last check" } }
 * The framework calls it before and after every test (lua/framework.lua). */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../health/decode.h"
#include "../health/kreport.h"
#include "../util/util.h"
#include "../vmm/vm.h"
#include "lua_internal.h"

/* Taint flags that mean the kernel itself went wrong (not O/E/N, which
 * loading a test's own module sets): M, B, D, W, L. */
#define BAD_TAINT ((1ULL << 4) | (1ULL << 5) | (1ULL << 7) | (1ULL << 9) | (1ULL << 14))
#define KMSG_TIMEOUT_MS 10000
#define DECODE_TIMEOUT_MS 20000
#define MAX_MODULES 32

/* Modules the file pushed into its VMs: name as the kernel prints it
 * (file name without .ko, '-' read as '_') and host path. */
static decode_module modules[MAX_MODULES];
static size_t nmodules;

void pv_health_note_module(const char *host_path)
{
    size_t len = strlen(host_path);
    if (len < 4 || strcmp(host_path + len - 3, ".ko") != 0)
        return;
    const char *base = strrchr(host_path, '/');
    base = base ? base + 1 : host_path;
    char *name = xasprintf("%.*s", (int)(strlen(base) - 3), base);
    for (char *c = name; *c; c++)
        if (*c == '-')
            *c = '_';
    for (size_t i = 0; i < nmodules; i++)
        if (strcmp(modules[i].name, name) == 0) {
            free((char *)modules[i].path);
            modules[i].path = xstrdup(host_path);
            free(name);
            return;
        }
    if (nmodules == MAX_MODULES) {
        free(name);
        return;
    }
    modules[nmodules].name = name;
    modules[nmodules++].path = xstrdup(host_path);
}

/* The ELF image with the kernel's symbols: the profile's kernel when it is
 * one, else a vmlinux beside the (resolved) bzImage, as the image cache
 * keeps them; NULL when there is none. New string. */
static char *symbol_file(const char *kernel)
{
    if (!kernel)
        return NULL;
    unsigned char magic[4] = {0};
    FILE *f = fopen(kernel, "rb");
    size_t n = f ? fread(magic, 1, 4, f) : 0;
    if (f)
        fclose(f);
    if (n == 4 && memcmp(magic, "\177ELF", 4) == 0)
        return xstrdup(kernel);
    char *real = realpath(kernel, NULL);
    if (!real)
        return NULL;
    char *dir = path_dirname(real);
    char *beside = xasprintf("%s/vmlinux", dir);
    free(dir);
    free(real);
    if (file_exists(beside))
        return beside;
    free(beside);
    return NULL;
}

/* The report's text with its frames decoded where possible. */
static char *decoded_text(const pv_vm *vm, const char *text)
{
    char *symbols = symbol_file(vm->profile.kernel);
    char *out = kreport_decode(text, symbols, modules, nmodules, DECODE_TIMEOUT_MS);
    free(symbols);
    return out ? out : xstrdup(text);
}

static void push_report(lua_State *L, int list, const char *vm, const char *kind, const char *title, const char *text,
                        bool allowed)
{
    lua_createtable(L, 0, 5);
    lua_pushstring(L, vm);
    lua_setfield(L, -2, "vm");
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, title);
    lua_setfield(L, -2, "title");
    lua_pushstring(L, text);
    lua_setfield(L, -2, "text");
    lua_pushboolean(L, allowed);
    lua_setfield(L, -2, "allowed");
    lua_rawseti(L, list, (lua_Integer)lua_rawlen(L, list) + 1);
}

/* Drains one VM; returns 0, or -1 when its agent did not answer (skipped:
 * the call that broke it has already failed with the reason). */
static int check_vm(lua_State *L, lvm *v, int reports, int logs)
{
    pv_vm *vm = v->vm;
    vm_begin(vm, PV_MSG_KMSG_READ); /* the VM's own agent, whichever object asked */
    vm_reply r;
    char err[PV_ERR_MAX];
    int gerr = 0;
    if (vm_call(vm, &r, KMSG_TIMEOUT_MS, &gerr, err, sizeof(err)) != 0)
        return -1;
    const pv_field *data = pv_msg_get(&r.msg, PV_T_DATA);
    unsigned long long taint = pv_msg_u64(&r.msg, PV_T_FLAGS, 0);
    char *text = kmsg_to_text(data ? (const char *)data->data : "", data ? data->len : 0);
    bool allowed = vm->profile.kernel_reports_allowed;
    kreport_list found = {0};
    kreport_scan(text, &found);
    for (size_t i = 0; i < found.n; i++) {
        char *shown = decoded_text(vm, found.v[i].text);
        push_report(L, reports, vm->name, found.v[i].kind, found.v[i].title, shown, allowed);
        free(shown);
    }
    /* the taint moved to a bad flag but no report was readable (e.g. the
     * records were overwritten): still a failure, with what is known */
    /* generation + 1: a first boot leaves generation at 0, and 0 means "never" */
    bool same_boot = v->taint_generation == vm->generation + 1;
    unsigned long long before = same_boot ? v->taint : 0;
    unsigned long long fresh = taint & ~before & BAD_TAINT;
    if (fresh && found.n == 0 && same_boot) {
        char *names = kreport_taint_text(fresh);
        char *title = xasprintf("kernel tainted: %s", names);
        push_report(L, reports, vm->name, "taint", title, "", allowed);
        free(title);
        free(names);
    }
    /* the first drain after a boot holds the boot log: its reports count,
     * but it is not "what the kernel wrote during the test" */
    bool boot_log = !same_boot;
    v->taint = taint;
    v->taint_generation = vm->generation + 1;
    if (*text && !boot_log) {
        lua_pushstring(L, text);
        lua_setfield(L, logs, vm->name);
    }
    kreport_list_free(&found);
    free(text);
    vm_reply_free(&r);
    return 0;
}

static int l_kernel_check(lua_State *L)
{
    lua_newtable(L);
    int result = lua_gettop(L);
    lua_newtable(L);
    int reports = lua_gettop(L);
    lua_newtable(L);
    int logs = lua_gettop(L);
    for (lvm *v = pv_lua_all_vms(); v; v = v->next) {
        if (!v->vm || v->vm->profile.local || v->vm->state != VM_BOOTED || v->vm->agent_fd < 0)
            continue;
        check_vm(L, v, reports, logs);
    }
    lua_pushvalue(L, reports);
    lua_setfield(L, result, "reports");
    lua_pushvalue(L, logs);
    lua_setfield(L, result, "logs");
    lua_settop(L, result);
    return 1;
}

void pv_lua_health_init(lua_State *L, int internal_idx)
{
    lua_pushcfunction(L, l_kernel_check);
    lua_setfield(L, internal_idx, "kernel_check");
}
