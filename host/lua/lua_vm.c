/* VM objects as Lua userdata: lifecycle, commands and files. Errors are
 * raised as Lua errors whose message names the VM. */
#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "../vmm/boot_cache.h"
#include "../vmm/qpool.h"
#include "../vmm/vm.h"
#include "../vmm/vm_buffers.h"
#include "lua_api.h"
#include "lua_internal.h"

static lvm *all_vms;

lvm *pv_test_owner(lua_State *L, int idx)
{
    lvm *v = luaL_testudata(L, idx, WORKER_MT);
    return v ? v : luaL_testudata(L, idx, VM_MT);
}

/* Accepts a VM or a Worker (an lvm on another channel: lua_worker.c); its
 * requests go to v->chan_base. */
lvm *pv_check_vm(lua_State *L, int idx)
{
    lvm *v = pv_test_owner(L, idx);
    if (!v)
        v = luaL_checkudata(L, idx, VM_MT); /* raises, naming the type expected */
    if (!v->vm)
        luaL_error(L, "vm: this VM object was already freed (its __gc ran); it cannot be used");
    return v;
}
#define check_vm pv_check_vm

unsigned pv_item_add(lvm *v, const char *kind, const char *site)
{
    open_item *it = xcalloc(1, sizeof(*it));
    it->id = ++v->next_item;
    it->kind = kind;
    it->site = xstrdup(site);
    it->next = v->items;
    v->items = it;
    return it->id;
}

void pv_item_remove(lvm *v, unsigned id)
{
    for (open_item **p = &v->items; *p; p = &(*p)->next)
        if ((*p)->id == id) {
            open_item *it = *p;
            *p = it->next;
            free(it->site);
            free(it);
            return;
        }
}

/* A new guest boot: files and streams of the previous one are gone. */
void pv_forget_open(lvm *v)
{
    v->open_files = v->open_streams = 0;
    while (v->items)
        pv_item_remove(v, v->items->id);
}

void pv_refuse_nul(lua_State *L, const char *s, size_t len, const char *what)
{
    const char *nul = memchr(s, 0, len);
    if (nul)
        luaL_error(L, "%s contains a NUL byte (at offset %d), which would cut it to \"%s\"", what, (int)(nul - s), s);
}

const char *pv_check_cstr(lua_State *L, int idx, const char *what)
{
    size_t len;
    const char *s = luaL_checklstring(L, idx, &len);
    pv_refuse_nul(L, s, len, what);
    return s;
}

/* Levenshtein distance, for "did you mean" (short keys only). */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 31 || lb > 31)
        return 99;
    size_t d[32][32];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

void pv_check_opt_keys(lua_State *L, int idx, const char *what, const char *const *known)
{
    if (!lua_istable(L, idx))
        return;
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            continue;
        const char *key = lua_tostring(L, -1);
        const char *near = NULL;
        size_t best = 3;
        bool ok = false;
        strbuf all;
        sb_init(&all);
        for (const char *const *k = known; *k; k++) {
            ok |= strcmp(key, *k) == 0;
            size_t d = edit_distance(key, *k);
            if (d < best)
                best = d, near = *k;
            sb_addf(&all, "%s%s", k == known ? "" : ", ", *k);
        }
        if (!ok) {
            lua_pushfstring(L, "%s: unknown option '%s'%s%s%s (known: %s)", what, key, near ? " (did you mean '" : "",
                            near ? near : "", near ? "'?)" : "", all.s);
            sb_free(&all);
            lua_error(L);
        }
        sb_free(&all);
    }
}

void pv_add_methods(lua_State *L, int idx, const luaL_Reg *fns)
{
    idx = lua_absindex(L, idx);
    for (; fns->name; fns++) {
        lua_pushcfunction(L, fns->func);
        lua_setfield(L, idx, fns->name);
    }
}

char *pv_caller_site(lua_State *L)
{
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        lua_getinfo(L, "Sl", &ar);
        if (ar.currentline > 0 && ar.source[0] == '@')
            return xasprintf("%s:%d", ar.short_src, ar.currentline);
    }
    return xstrdup("?");
}

char *pv_caller_file(lua_State *L)
{
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        lua_getinfo(L, "S", &ar);
        if (ar.source[0] == '@')
            return path_absolute(ar.source + 1);
    }
    return NULL;
}

char *pv_caller_dir(lua_State *L)
{
    char *file = pv_caller_file(L);
    if (!file)
        return xstrdup(".");
    char *dir = path_dirname(file);
    free(file);
    return dir;
}

/* ---- option parsing ---- */

int64_t pv_lua_size(lua_State *L, int idx, const char *what)
{
    if (lua_type(L, idx) == LUA_TNUMBER) {
        lua_Integer n = lua_isinteger(L, idx) ? lua_tointeger(L, idx) : 0;
        if (n <= 0)
            luaL_error(L, "%s must be a positive number of bytes or a string like \"512M\"", what);
        return n;
    }
    if (lua_type(L, idx) == LUA_TSTRING) {
        int64_t n = parse_size(lua_tostring(L, idx));
        if (n <= 0)
            luaL_error(L, "%s: cannot parse \"%s\" as a size (use bytes, \"512M\", \"2G\")", what, lua_tostring(L, idx));
        return n;
    }
    return luaL_error(L, "%s must be a number or a string, not %s", what, luaL_typename(L, idx));
}

/* Numbers are seconds; strings may carry ms/s/m/h. */
int64_t pv_lua_duration_ms(lua_State *L, int idx, const char *what)
{
    if (lua_type(L, idx) == LUA_TNUMBER) {
        double s = lua_tonumber(L, idx);
        if (!(s > 0) || !isfinite(s))
            luaL_error(L, "%s must be a positive number of seconds", what);
        return (int64_t)(s * 1000 + 0.5);
    }
    if (lua_type(L, idx) == LUA_TSTRING) {
        int64_t ms = parse_duration_ms(lua_tostring(L, idx));
        if (ms <= 0)
            luaL_error(L, "%s: cannot parse \"%s\" as a duration (use seconds, \"500ms\", \"5s\", \"2m\", \"1h\")",
                       what, lua_tostring(L, idx));
        return ms;
    }
    return luaL_error(L, "%s must be a number of seconds or a string like \"5s\", not %s", what,
                      luaL_typename(L, idx));
}

static void free_opts(vm_boot_opts *o)
{
    free(o->kernel_cmdline);
    for (size_t i = 0; i < o->nfiles; i++) {
        free(o->files[i].path);
        free(o->files[i].content);
    }
    free(o->files);
    for (size_t i = 0; i < o->ndisks; i++)
        disk_spec_free(&o->disks[i]);
    free(o->disks);
    memset(o, 0, sizeof(*o));
}

static const char *const boot_keys[] = {"memory",   "cpus",       "kernel_cmdline", "files", "initial_time",
                                        "rng_seed", "boot_cache", "disks",          NULL};

/* Raises unless every entry of the files list at idx is {path=absolute
 * string without NUL, content=string}. */
static void check_boot_files(lua_State *L, int idx)
{
    lua_Integer n = luaL_len(L, idx);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, idx, i);
        if (!lua_istable(L, -1))
            luaL_error(L, "files[%d] must be a table {path=..., content=...}", (int)i);
        lua_getfield(L, -1, "path");
        lua_getfield(L, -2, "content");
        size_t plen;
        const char *path = lua_tolstring(L, -2, &plen);
        if (path)
            pv_refuse_nul(L, path, plen, "files: path");
        if (!path || path[0] != '/' || !lua_tostring(L, -1))
            luaL_error(L, "files[%d] needs an absolute string path and a string content", (int)i);
        lua_pop(L, 3);
    }
}

/* Reads a boot-options table at idx into o (fields present override). */
static void parse_boot_opts(lua_State *L, int idx, vm_boot_opts *o, const char *vm_name)
{
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        bool known = false;
        if (lua_type(L, -2) == LUA_TSTRING)
            for (int i = 0; boot_keys[i]; i++)
                known |= strcmp(lua_tostring(L, -2), boot_keys[i]) == 0;
        if (!known) {
            lua_pushvalue(L, -2);
            luaL_error(L, "unknown boot option '%s' (known: memory, cpus, kernel_cmdline, files, initial_time, rng_seed, "
                          "boot_cache, disks)",
                       luaL_tolstring(L, -1, NULL));
        }
        lua_pop(L, 1);
    }
    if (lua_getfield(L, idx, "memory") != LUA_TNIL)
        o->memory = pv_lua_size(L, -1, "memory"); /* bounds are checked at boot (l_vm_boot) */
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "cpus") != LUA_TNIL) {
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > 64)
            luaL_error(L, "cpus must be an integer from 1 to 64");
        o->cpus = (int)lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "rng_seed") != LUA_TNIL) {
        if (!lua_isinteger(L, -1))
            luaL_error(L, "rng_seed must be an integer");
        o->rng_seed = (uint64_t)lua_tointeger(L, -1);
        o->has_rng_seed = true;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "boot_cache") != LUA_TNIL) {
        if (!lua_isboolean(L, -1))
            luaL_error(L, "boot_cache must be true or false");
        o->no_boot_cache = !lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "initial_time") != LUA_TNIL) {
        double t = luaL_checknumber(L, -1);
        if (!(t > 0) || t > 1e11)
            luaL_error(L, "initial_time must be seconds since the epoch (a positive, finite number)");
        o->initial_time = t;
    }
    lua_pop(L, 1);
    /* kernel_cmdline and files are copied to the C heap: every check that
     * may raise runs before the first copy, so a raise leaks nothing */
    if (lua_getfield(L, idx, "kernel_cmdline") != LUA_TNIL)
        luaL_checkstring(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "files") != LUA_TNIL) {
        luaL_checktype(L, -1, LUA_TTABLE);
        check_boot_files(L, lua_gettop(L));
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "disks") != LUA_TNIL)
        pv_lua_check_disks(L, -1, vm_name); /* lua_disk.c */
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "kernel_cmdline") != LUA_TNIL) {
        free(o->kernel_cmdline);
        o->kernel_cmdline = xstrdup(lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "files") != LUA_TNIL) {
        lua_Integer n = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_geti(L, -1, i);
            lua_getfield(L, -1, "path");
            lua_getfield(L, -2, "content");
            const char *path = lua_tostring(L, -2);
            size_t len;
            const char *content = lua_tolstring(L, -1, &len);
            o->files = xrealloc(o->files, (o->nfiles + 1) * sizeof(pv_inject_file));
            pv_inject_file *f = &o->files[o->nfiles++];
            f->path = xstrdup(path);
            f->content = xmalloc(len + 1);
            memcpy(f->content, content, len);
            f->len = len;
            lua_pop(L, 3);
        }
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "disks") != LUA_TNIL)
        pv_lua_parse_disks(L, -1, vm_name, &o->disks, &o->ndisks); /* checked above: cannot raise now */
    lua_pop(L, 1);
}

/* ---- state checks ---- */

void pv_require_booted(lua_State *L, lvm *v, const char *op)
{
    pv_vm *vm = v->vm;
    const char *gone = pv_worker_gone(v);
    if (gone)
        luaL_error(L, "%s: cannot %s", gone, op);
    if (vm->state == VM_BOOTED)
        return;
    if (vm->state == VM_DEAD)
        luaL_error(L, "vm '%s': cannot %s: the VM is dead (%s); create a new VM to go on", vm->name, op,
                   vm->dead_reason ? vm->dead_reason : "QEMU exited");
    if (vm->state == VM_PAUSED)
        luaL_error(L, "vm '%s': cannot %s: the VM is paused (call :resume() first)", vm->name, op);
    luaL_error(L, "vm '%s': cannot %s: the VM is not booted (it is %s; call :boot() first)", vm->name, op,
               vm_state_name(vm->state));
}

/* ---- methods ---- */

static int l_vm_boot(lua_State *L)
{
    lvm *v = check_vm(L, 1);
    if (v->vm->state == VM_DEAD)
        return luaL_error(L, "vm '%s': cannot boot: the VM is dead (%s); create a new VM", v->vm->name,
                          v->vm->dead_reason ? v->vm->dead_reason : "QEMU exited");
    if (v->vm->state != VM_CREATED && v->vm->state != VM_SHUTDOWN)
        return luaL_error(L, "vm '%s': cannot boot: the VM is already booted (it is %s)", v->vm->name,
                          vm_state_name(v->vm->state));
    vm_boot_opts o = v->opts;
    vm_boot_opts per = {0};
    parse_boot_opts(L, 2, &per, v->vm->name);
    if (per.memory)
        o.memory = per.memory;
    if (per.cpus)
        o.cpus = per.cpus;
    if (per.kernel_cmdline)
        o.kernel_cmdline = per.kernel_cmdline;
    if (per.initial_time > 0)
        o.initial_time = per.initial_time;
    if (per.has_rng_seed) {
        o.has_rng_seed = true;
        o.rng_seed = per.rng_seed;
    }
    if (per.nfiles) {
        o.files = per.files;
        o.nfiles = per.nfiles;
    }
    if (per.ndisks) {
        o.disks = per.disks;
        o.ndisks = per.ndisks;
    }
    o.no_boot_cache |= per.no_boot_cache;
    char err[PV_ERR_MAX];
    /* a local profile has no guest kernel: its memory only counts in the pool */
    if (o.memory && !v->vm->profile.local && config_check_memory(o.memory, err, sizeof(err)) != 0) {
        free_opts(&per);
        return luaL_error(L, "vm '%s': cannot boot: boot option %s", v->vm->name, err);
    }
    if (pv_lua_prepare_disks(v, &o, err, sizeof(err)) != 0) {
        free_opts(&per);
        return luaL_error(L, "%s", err);
    }
    pv_forget_open(v);
    int rc = boot_cache_boot(v->vm, &o, pv_lua_env_get()->config, err, sizeof(err));
    qpool_settle(); /* spares this boot did not use are no longer counted */
    free_opts(&per);
    if (v->vm->boot_warning)
        pv_fixture_note_warning(L, "boot cache", v->vm->boot_warning);
    if (rc != 0)
        return luaL_error(L, "%s", err);
    pv_fixture_note_profile(L, v->vm->profile.name);
    lua_settop(L, 1);
    return 1;
}

static int l_vm_shutdown(lua_State *L)
{
    lvm *v = check_vm(L, 1);
    if (v->vm->state == VM_CREATED)
        return luaL_error(L, "vm '%s': cannot shutdown: the VM is not booted (it is created; it was never booted)", v->vm->name);
    char err[PV_ERR_MAX];
    if (v->vm->state != VM_SHUTDOWN && v->vm->state != VM_DEAD && vm_shutdown(v->vm, err, sizeof(err)) != 0)
        return luaL_error(L, "%s", err);
    return 0;
}

/* Idempotent teardown used by the scope walker: never raises. */
static int l_vm_close(lua_State *L)
{
    lvm *v = check_vm(L, 1);
    char err[PV_ERR_MAX];
    if (v->vm->state == VM_BOOTED || v->vm->state == VM_PAUSED)
        vm_shutdown(v->vm, err, sizeof(err));
    else
        vm_kill(v->vm);
    return 0;
}

static int lifecycle(lua_State *L, const char *op, vm_state need, int (*fn)(pv_vm *, char *, size_t))
{
    lvm *v = check_vm(L, 1);
    if (v->vm->state != need && (v->vm->state == VM_DEAD || v->vm->state == VM_CREATED || v->vm->state == VM_SHUTDOWN))
        pv_require_booted(L, v, op); /* raises: dead, not booted */
    if (v->vm->state != need)
        return luaL_error(L, "vm '%s': cannot %s: the VM is %s (%s needs a %s VM)", v->vm->name, op,
                          vm_state_name(v->vm->state), op, vm_state_name(need));
    char err[PV_ERR_MAX];
    if (fn(v->vm, err, sizeof(err)) != 0)
        return luaL_error(L, "%s", err);
    return 0;
}

static int l_vm_pause(lua_State *L) { return lifecycle(L, "pause", VM_BOOTED, vm_pause); }
static int l_vm_resume(lua_State *L) { return lifecycle(L, "resume", VM_PAUSED, vm_resume); }
static int l_vm_reset(lua_State *L)
{
    lvm *v = check_vm(L, 1);
    lifecycle(L, "reset", VM_BOOTED, vm_reset);
    pv_forget_open(v);
    return 0;
}
static int l_vm_reconnect(lua_State *L)
{
    lvm *v = check_vm(L, 1);
    lifecycle(L, "reconnect", VM_BOOTED, vm_reconnect);
    pv_forget_open(v); /* the agent closed what the old connection had open */
    return 0;
}

static int l_vm_power_button(lua_State *L) { return lifecycle(L, "power_button", VM_BOOTED, vm_power_button); }

static int l_vm_cid(lua_State *L)
{
    lvm *v = check_vm(L, 1);
    /* no vsock here: the transport id is the virtio-serial port name */
    if (v->vm->state == VM_BOOTED || v->vm->state == VM_PAUSED)
        lua_pushstring(L, "virtio-serial:org.provium.agent.0");
    else
        lua_pushnil(L);
    return 1;
}

static int l_vm_is_quiescent(lua_State *L)
{
    lvm *v = check_vm(L, 1);
    lua_pushboolean(L, v->open_files == 0 && v->open_streams == 0);
    return 1;
}

static int l_vm_console_write(lua_State *L)
{
    lvm *v = check_vm(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    if (v->vm->state != VM_BOOTED && v->vm->state != VM_PAUSED)
        return luaL_error(L, "vm '%s': cannot write to the console: the VM is %s", v->vm->name,
                          vm_state_name(v->vm->state));
    int64_t timeout_ms = 10000;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            lua_pop(L, 1);
            const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
            if (strcmp(k, "timeout_ms") == 0)
                return luaL_error(L, "vm '%s': console write: opts.timeout_ms is not supported (use timeout = \"500ms\" "
                                     "or timeout = 0.5)", v->vm->name);
            if (strcmp(k, "timeout") != 0)
                return luaL_error(L, "vm '%s': console write: unknown option '%s' (known: timeout)", v->vm->name, k);
        }
        lua_getfield(L, 3, "timeout");
        if (!lua_isnil(L, -1)) {
            bool zero = (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) == 0) ||
                        (lua_type(L, -1) == LUA_TSTRING && parse_duration_ms(lua_tostring(L, -1)) == 0);
            timeout_ms = zero ? 0 : pv_lua_duration_ms(L, -1, "console write: opts.timeout");
        }
        lua_pop(L, 1);
    }
    char err[PV_ERR_MAX];
    if (vm_console_write(v->vm, data, len, timeout_ms, err, sizeof(err)) != 0)
        return luaL_error(L, "%s", err);
    return 0;
}

static int l_vm_set_classic(lua_State *L)
{
    check_vm(L, 1)->classic = lua_toboolean(L, 2);
    return 0;
}

/* vm:__channel_count(): channels the VM layer holds for this VM (every
 * worker's included), for tests that prove objects free theirs. */
static int l_vm_channel_count(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)vm_chan_count(check_vm(L, 1)->vm));
    return 1;
}

static int l_vm_name(lua_State *L)
{
    lua_pushstring(L, check_vm(L, 1)->vm->name);
    return 1;
}

static int l_vm_profile(lua_State *L)
{
    lua_pushstring(L, check_vm(L, 1)->vm->profile.name);
    return 1;
}

static int l_vm_state(lua_State *L)
{
    lua_pushstring(L, vm_state_name(check_vm(L, 1)->vm->state));
    return 1;
}

static int l_vm_boot_seconds(lua_State *L)
{
    lua_pushnumber(L, check_vm(L, 1)->vm->boot_seconds);
    return 1;
}

static int l_vm_console_log(lua_State *L)
{
    lvm *v = check_vm(L, 1);
    size_t len = 0;
    char *text = read_whole_file(v->vm->console_path, &len);
    lua_pushlstring(L, text ? text : "", text ? len : 0);
    free(text);
    return 1;
}

static int l_vm_tostring(lua_State *L)
{
    lvm *v = check_vm(L, 1);
    lua_pushfstring(L, "VM(%s, %s, %s)", v->vm->name, v->vm->profile.name, vm_state_name(v->vm->state));
    return 1;
}

static int l_vm_gc(lua_State *L)
{
    lvm *v = luaL_checkudata(L, 1, VM_MT);
    if (!v->vm)
        return 0;
    for (lvm **p = &all_vms; *p; p = &(*p)->next)
        if (*p == v) {
            *p = v->next;
            break;
        }
    pv_lua_workers_vm_freed(v->vm);
    vm_free(v->vm);
    v->vm = NULL;
    free_opts(&v->opts);
    while (v->items)
        pv_item_remove(v, v->items->id);
    return 0;
}

/* In a forked fixture builder: the parent's VMs are not ours to touch. */
void pv_lua_forget_vms(void) { all_vms = NULL; }

lvm *pv_lua_all_vms(void) { return all_vms; }

void pv_lua_kill_all_vms(void)
{
    for (lvm *v = all_vms; v; v = v->next)
        if (v->vm)
            vm_kill(v->vm);
    qpool_drain();
}

/* Performs a call and raises on failure. */
void pv_call(lua_State *L, lvm *v, vm_reply *r, int64_t timeout_ms)
{
    char err[PV_ERR_MAX];
    int gerr;
    int rc = vm_call(v->vm, r, timeout_ms, &gerr, err, sizeof(err));
    vm_trim_buffers(v->vm); /* the reply has its own copy */
    if (rc != 0)
        luaL_error(L, "%s", err);
}

/* Builds an EXEC request from the Lua arguments at 2..:
 * (cmd [, opts]) / (prog, {args...} [, opts]) / ({args=..., ...}).
 * Returns the timeout in ms (0: none). */
int64_t pv_build_exec(lua_State *L, lvm *v, uint32_t chan, bool async)
{
    const char *what = async ? "run_async" : "run";
    int opts_idx = 0;
    vm_begin_on(v->vm, PV_MSG_EXEC, chan);
    if (async)
        pv_put_u64(&v->vm->out, PV_T_ASYNC, 1);
    pv_buf *b = &v->vm->out;
    if (lua_type(L, 2) == LUA_TSTRING) {
        /* (prog, {"a", "b", key=opt...}) and (prog, {args={...}, key=opt...})
         * run prog directly; (cmd[, {opts}]) runs cmd through the shell */
        bool has_args = lua_istable(L, 3) && lua_getfield(L, 3, "args") == LUA_TTABLE;
        if (lua_istable(L, 3))
            lua_pop(L, 1);
        if (lua_istable(L, 3) && (luaL_len(L, 3) > 0 || has_args)) {
            if (has_args && luaL_len(L, 3) > 0)
                return luaL_error(L, "vm:%s: give the arguments either as array items or as args={...}, not both",
                                  what);
            pv_put_str(b, PV_T_ARGV, pv_check_cstr(L, 2, "vm:run: program"));
            if (has_args)
                lua_getfield(L, 3, "args");
            else
                lua_pushvalue(L, 3);
            lua_Integer n = luaL_len(L, -1);
            for (lua_Integer i = 1; i <= n; i++) {
                lua_geti(L, -1, i);
                size_t len;
                const char *s = lua_tolstring(L, -1, &len);
                if (!s)
                    return luaL_error(L, "vm:%s: argument %d must be a string", what, (int)i);
                pv_refuse_nul(L, s, len, "vm:run: an argument");
                pv_put_bytes(b, PV_T_ARGV, s, len);
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
            opts_idx = lua_istable(L, 4) ? 4 : 3;
        } else {
            size_t len;
            const char *cmd = lua_tolstring(L, 2, &len);
            pv_put_bytes(b, PV_T_SHELL, cmd, len);
            opts_idx = lua_istable(L, 3) ? 3 : 0;
        }
    } else if (lua_istable(L, 2)) {
        opts_idx = 2;
        if (lua_getfield(L, 2, "args") != LUA_TTABLE || luaL_len(L, -1) < 1)
            return luaL_error(L, "vm:%s{...}: needs args = {program, arg1, ...}", what);
        lua_Integer n = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_geti(L, -1, i);
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            if (!s)
                return luaL_error(L, "vm:%s: args[%d] must be a string", what, (int)i);
            pv_refuse_nul(L, s, len, "vm:run: an argument");
            pv_put_bytes(b, PV_T_ARGV, s, len);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    } else {
        return luaL_error(L, "vm:%s: expected a command string or a table, got %s", what, luaL_typename(L, 2));
    }
    int64_t timeout_ms = 0;
    static const char *const run_keys[] = {"timeout", "timeout_ms", "cwd", "stdin", "env", "env_clear", "args", NULL};
    static const char *const async_keys[] = {"cwd", "stdin", "env", "env_clear", "args", "timeout", "timeout_ms",
                                             NULL};
    if (opts_idx)
        pv_check_opt_keys(L, opts_idx, async ? "vm:run_async" : "vm:run", async ? async_keys : run_keys);
    if (opts_idx && async) {
        lua_getfield(L, opts_idx, "timeout");
        lua_getfield(L, opts_idx, "timeout_ms");
        if (!lua_isnil(L, -1) || !lua_isnil(L, -2))
            return luaL_error(L, "vm:run_async does not take a timeout; pass it to proc:wait(timeout) instead");
        lua_pop(L, 2);
    }
    if (opts_idx) {
        if (lua_getfield(L, opts_idx, "timeout") != LUA_TNIL)
            timeout_ms = pv_lua_duration_ms(L, -1, "timeout");
        lua_pop(L, 1);
        if (lua_getfield(L, opts_idx, "timeout_ms") != LUA_TNIL) {
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) <= 0)
                return luaL_error(L, "timeout_ms must be a positive integer");
            timeout_ms = lua_tointeger(L, -1);
        }
        lua_pop(L, 1);
        if (lua_getfield(L, opts_idx, "cwd") != LUA_TNIL)
            pv_put_str(b, PV_T_CWD, pv_check_cstr(L, -1, "vm:run: cwd"));
        lua_pop(L, 1);
        if (lua_getfield(L, opts_idx, "stdin") != LUA_TNIL) {
            size_t len;
            const char *s = luaL_checklstring(L, -1, &len);
            pv_put_bytes(b, PV_T_STDIN, s, len);
        }
        lua_pop(L, 1);
        if (lua_getfield(L, opts_idx, "env_clear") != LUA_TNIL) {
            if (!lua_isboolean(L, -1))
                return luaL_error(L, "vm:%s: env_clear must be a boolean, not a %s", what, luaL_typename(L, -1));
            pv_put_u64(b, PV_T_ENV_CLEAR, lua_toboolean(L, -1));
        }
        lua_pop(L, 1);
        int env_type = lua_getfield(L, opts_idx, "env");
        if (env_type != LUA_TNIL && env_type != LUA_TTABLE)
            return luaL_error(L, "vm:%s: env must be a table of name = value, not a %s", what, luaL_typename(L, -1));
        if (env_type == LUA_TTABLE) {
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                if (lua_type(L, -2) != LUA_TSTRING)
                    return luaL_error(L, "env keys must be strings");
                size_t klen, vlen;
                const char *key = lua_tolstring(L, -2, &klen);
                pv_refuse_nul(L, key, klen, "vm:run: an env key");
                if (!klen || strchr(key, '='))
                    return luaL_error(L, "vm:run: env key \"%s\" is empty or contains '='", key);
                const char *val = luaL_tolstring(L, -1, &vlen);
                pv_refuse_nul(L, val, vlen, "vm:run: an env value");
                lua_pushfstring(L, "%s=%s", key, val);
                pv_put_str(b, PV_T_ENV, lua_tostring(L, -1));
                lua_pop(L, 3);
            }
        }
        lua_pop(L, 1);
    }
    if (timeout_ms)
        pv_put_u64(b, PV_T_TIMEOUT_MS, (uint64_t)timeout_ms);
    return timeout_ms;
}

/* One argument as a shell would need it to read it back. */
static void add_shell_word(strbuf *b, const char *s)
{
    if (*s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == strlen(s)) {
        sb_adds(b, s);
        return;
    }
    sb_adds(b, "'");
    for (; *s; s++)
        if (*s == '\'')
            sb_adds(b, "'\\''");
        else
            sb_add(b, s, 1);
    sb_adds(b, "'");
}

/* Pushes the command line of vm:run's arguments at 2.., for assert_ok. */
static void push_run_command(lua_State *L)
{
    strbuf b;
    sb_init(&b);
    int list = 0;
    if (lua_type(L, 2) == LUA_TSTRING) {
        if (lua_istable(L, 3)) {
            if (lua_getfield(L, 3, "args") == LUA_TTABLE)
                list = lua_gettop(L);
            else if (lua_pop(L, 1), luaL_len(L, 3) > 0)
                lua_pushvalue(L, 3), list = lua_gettop(L);
            else
                lua_pushnil(L);
        } else {
            lua_pushnil(L);
        }
        if (list)
            add_shell_word(&b, lua_tostring(L, 2));
        else
            sb_adds(&b, lua_tostring(L, 2));
    } else if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "args");
        list = lua_istable(L, -1) ? lua_gettop(L) : 0;
    } else {
        lua_pushnil(L);
    }
    if (list) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, list);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, list, i);
            if (lua_isstring(L, -1)) {
                if (b.len)
                    sb_adds(&b, " ");
                add_shell_word(&b, lua_tostring(L, -1));
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    lua_pushstring(L, b.s ? b.s : "");
    sb_free(&b);
}

#define RUN_COMMANDS "provium.run_commands"

/* Remembers, for assert_ok, which command on which VM produced the result at
 * the top of the stack (a weak table: results stay plain tables). */
static void note_run_command(lua_State *L, lvm *v, int cmd_idx)
{
    if (luaL_getsubtable(L, LUA_REGISTRYINDEX, RUN_COMMANDS) == 0) {
        lua_createtable(L, 0, 1);
        lua_pushstring(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
    }
    lua_pushvalue(L, -2);
    if (v->chan_base)
        lua_pushfstring(L, "a worker of vm '%s'", v->vm->name);
    else
        lua_pushfstring(L, "vm '%s'", v->vm->name);
    lua_pushfstring(L, "%s: %s", lua_tostring(L, -1), lua_tostring(L, cmd_idx));
    lua_remove(L, -2);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

/* vm:run(...): see pv_build_exec for the argument forms. */
static int l_vm_run(lua_State *L)
{
    lvm *v = check_vm(L, 1);
    pv_require_booted(L, v, "run");
    /* the command line is pushed above the arguments: absent ones must stay
     * absent (nil) at their own slots, not become that string */
    if (lua_gettop(L) < 4)
        lua_settop(L, 4);
    push_run_command(L);
    int cmd_idx = lua_gettop(L);
    int64_t timeout_ms = pv_build_exec(L, v, v->chan_base, false);
    vm_reply r;
    /* The agent enforces the command timeout; allow it time to report. */
    pv_call(L, v, &r, timeout_ms ? timeout_ms + 30000 : -1);
    const pv_field *out = pv_msg_get(&r.msg, PV_T_STDOUT), *err = pv_msg_get(&r.msg, PV_T_STDERR);
    pv_push_run_result(L, v, &r.msg, out ? (const char *)out->data : "", out ? out->len : 0,
                       err ? (const char *)err->data : "", err ? err->len : 0);
    vm_reply_free(&r);
    note_run_command(L, v, cmd_idx);
    return 1;
}

void pv_push_run_result(lua_State *L, lvm *v, const pv_msg *m, const char *out, size_t outlen, const char *err,
                        size_t errlen)
{
    (void)v;
    uint64_t status = pv_msg_u64(m, PV_T_STATUS, 0);
    lua_createtable(L, 0, 8);
    lua_pushinteger(L, pv_msg_i64(m, PV_T_EXIT_CODE, 0));
    lua_setfield(L, -2, "exit_code");
    lua_pushlstring(L, out, outlen);
    lua_setfield(L, -2, "stdout");
    lua_pushlstring(L, err, errlen);
    lua_setfield(L, -2, "stderr");
    lua_pushstring(L, status == PV_EXEC_EXITED ? "exited" : status == PV_EXEC_SIGNALLED ? "signalled" : "timed_out");
    lua_setfield(L, -2, "status");
    if (pv_msg_has(m, PV_T_SIGNAL)) {
        lua_pushinteger(L, (lua_Integer)pv_msg_u64(m, PV_T_SIGNAL, 0));
        lua_setfield(L, -2, "signal");
    }
    lua_pushboolean(L, status == PV_EXEC_TIMED_OUT);
    lua_setfield(L, -2, "timed_out");
    /* output over the agent's cap was dropped: say so, never silently */
    uint64_t cut = pv_msg_u64(m, PV_T_TRUNCATED, 0);
    lua_pushboolean(L, cut != 0);
    lua_setfield(L, -2, "truncated");
    if (cut & 1) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "stdout_truncated");
    }
    if (cut & 2) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "stderr_truncated");
    }
    luaL_setmetatable(L, RESULT_MT);
}

static int l_vm_read_file(lua_State *L)
{
    lvm *v = check_vm(L, 1);
    const char *path = pv_check_cstr(L, 2, "read_file: path");
    pv_require_booted(L, v, "read_file");
    vm_begin_on(v->vm, PV_MSG_READ_FILE, v->chan_base);
    pv_put_str(&v->vm->out, PV_T_PATH, path);
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS);
    const pv_field *f = pv_msg_get(&r.msg, PV_T_DATA);
    lua_pushlstring(L, (const char *)f->data, f->len);
    vm_reply_free(&r);
    return 1;
}

static int l_vm_write_file(lua_State *L)
{
    lvm *v = check_vm(L, 1);
    const char *path = pv_check_cstr(L, 2, "write_file: path");
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);
    lua_Integer mode = luaL_optinteger(L, 4, -1); /* checked before the request is begun */
    if (!lua_isnoneornil(L, 4) && (mode < 0 || mode > 07777))
        return luaL_error(L, "write_file: mode must be between 0 and 0o7777");
    pv_require_booted(L, v, "write_file");
    if (len > PV_STREAM_CHUNK) { /* in 1 MiB requests, as push_file sends a file */
        char err[PV_ERR_MAX];
        if (pv_write_stream(v, path, data, len, mode >= 0 ? mode : 0644, err, sizeof(err)) != 0)
            return luaL_error(L, "%s", err);
        return 0;
    }
    vm_begin_on(v->vm, PV_MSG_WRITE_FILE, v->chan_base);
    pv_put_str(&v->vm->out, PV_T_PATH, path);
    if (mode >= 0)
        pv_put_u64(&v->vm->out, PV_T_MODE, (uint64_t)mode);
    /* DATA last: the agent can then read it straight into the file */
    pv_put_bytes(&v->vm->out, PV_T_DATA, data, len);
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS);
    vm_reply_free(&r);
    return 0;
}

static int l_vm_ping(lua_State *L)
{
    lvm *v = check_vm(L, 1);
    pv_require_booted(L, v, "ping");
    vm_begin_on(v->vm, PV_MSG_PING, v->chan_base);
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS);
    vm_reply_free(&r);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- RunResult ---- */

const char *pv_signal_name(int sig)
{
    static const char *names[] = {
        [SIGHUP] = "SIGHUP",   [SIGINT] = "SIGINT",   [SIGQUIT] = "SIGQUIT", [SIGILL] = "SIGILL",
        [SIGTRAP] = "SIGTRAP", [SIGABRT] = "SIGABRT", [SIGBUS] = "SIGBUS",   [SIGFPE] = "SIGFPE",
        [SIGKILL] = "SIGKILL", [SIGUSR1] = "SIGUSR1", [SIGSEGV] = "SIGSEGV", [SIGUSR2] = "SIGUSR2",
        [SIGPIPE] = "SIGPIPE", [SIGALRM] = "SIGALRM", [SIGTERM] = "SIGTERM", [SIGCHLD] = "SIGCHLD",
        [SIGCONT] = "SIGCONT", [SIGSTOP] = "SIGSTOP", [SIGTSTP] = "SIGTSTP", [SIGSYS] = "SIGSYS",
    };
    if (sig > 0 && sig < (int)(sizeof(names) / sizeof(names[0])) && names[sig])
        return names[sig];
    return "signal";
}

static int l_result_ok(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "status");
    lua_getfield(L, 1, "exit_code");
    lua_pushboolean(L, lua_tostring(L, -2) && strcmp(lua_tostring(L, -2), "exited") == 0 && lua_tointeger(L, -1) == 0);
    return 1;
}

/* Adds "  NAME: TEXT" with the last 2000 bytes of TEXT, continuation lines
 * indented. */
static void add_output_tail(luaL_Buffer *b, const char *name, const char *text, size_t len)
{
    const size_t keep = 2000;
    lua_State *L = b->L;
    luaL_addstring(b, "\n  ");
    luaL_addstring(b, name);
    luaL_addstring(b, ":");
    if (!len) {
        luaL_addstring(b, " (empty)");
        return;
    }
    const char *p = text;
    if (len > keep) {
        p = text + len - keep;
        lua_pushfstring(L, " (last %d of %d bytes)", (int)keep, (int)len);
        luaL_addvalue(b);
    }
    luaL_addstring(b, p == text ? " " : "\n    ");
    const char *end = text + len;
    if (end > p && end[-1] == '\n')
        end--;
    for (; p < end; p++) {
        if (*p == '\n')
            luaL_addstring(b, "\n    ");
        else
            luaL_addchar(b, *p);
    }
}

static int l_result_assert_ok(lua_State *L)
{
    /* an optional message comes first in the report */
    const char *note = lua_isstring(L, 2) ? lua_tostring(L, 2) : NULL;
    char *saved = note ? xstrdup(note) : NULL;
    lua_settop(L, 1);
    l_result_ok(L);
    if (lua_toboolean(L, -1)) {
        free(saved);
        lua_settop(L, 1);
        return 1;
    }
    lua_getfield(L, 1, "signal");
    lua_getfield(L, 1, "stdout");
    lua_getfield(L, 1, "stderr");
    lua_getfield(L, LUA_REGISTRYINDEX, RUN_COMMANDS);
    if (lua_istable(L, -1)) {
        lua_pushvalue(L, 1);
        lua_rawget(L, -2);
        lua_remove(L, -2);
    }
    const char *status = lua_tostring(L, 2);
    const char *cmd = lua_tostring(L, 8); /* "vm 'x': command line", when vm:run made it */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (saved) {
        lua_pushfstring(L, "%s: ", saved);
        free(saved);
        luaL_addvalue(&b);
    }
    if (status && strcmp(status, "exited") == 0)
        lua_pushfstring(L, "command failed: exited with status %d", (int)lua_tointeger(L, 3));
    else if (status && strcmp(status, "signalled") == 0)
        lua_pushfstring(L, "command failed: killed by %s", pv_signal_name((int)lua_tointeger(L, 5)));
    else
        lua_pushfstring(L, "command failed: timed out");
    luaL_addvalue(&b);
    if (cmd) {
        luaL_addstring(&b, "\n  command on ");
        luaL_addstring(&b, cmd);
    }
    size_t outlen = 0, errlen = 0;
    const char *out = lua_isstring(L, 6) ? lua_tolstring(L, 6, &outlen) : "";
    const char *err = lua_isstring(L, 7) ? lua_tolstring(L, 7, &errlen) : "";
    add_output_tail(&b, "stdout", out, outlen);
    add_output_tail(&b, "stderr", err, errlen);
    lua_getfield(L, 1, "stdout_truncated");
    lua_getfield(L, 1, "stderr_truncated");
    bool cut_out = lua_toboolean(L, -2), cut_err = lua_toboolean(L, -1);
    lua_pop(L, 2);
    if (cut_out || cut_err) {
        lua_pushfstring(L, "\n  (output cut: %s%s%s went over the %d MiB kept per stream; the rest was dropped)",
                        cut_out ? "stdout" : "", cut_out && cut_err ? " and " : "", cut_err ? "stderr" : "",
                        (int)(PV_EXEC_MAX_OUTPUT >> 20));
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
    return lua_error(L);
}

/* ---- registration ---- */

/* P.new_vm(name, profile, opts) -> VM (created state) */
static int l_new_vm(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *profile = luaL_checkstring(L, 2);
    const pv_lua_env *env = pv_lua_env_get();
    const pv_profile *p = config_profile(env->config, profile);
    if (!p) {
        char *names = config_profile_names(env->config);
        lua_pushfstring(L, "unknown profile '%s' (profiles in %s: %s)", profile,
                        env->config->path ? env->config->path : "(no provium.toml found)", names);
        free(names);
        return lua_error(L);
    }
    lvm *v = lua_newuserdatauv(L, sizeof(lvm), 0);
    memset(v, 0, sizeof(*v));
    luaL_setmetatable(L, VM_MT);
    parse_boot_opts(L, 3, &v->opts, name);
    v->vm = vm_new(name, p, env->scratch_root);
    vm_set_deadline_source(v->vm, pv_lua_deadline(L));
    v->next = all_vms;
    all_vms = v;
    return 1;
}

static const luaL_Reg vm_methods[] = {
    {"boot", l_vm_boot},
    {"shutdown", l_vm_shutdown},
    {"close", l_vm_close},
    {"name", l_vm_name},
    {"profile", l_vm_profile},
    {"state", l_vm_state},
    {"boot_seconds", l_vm_boot_seconds},
    {"console_log", l_vm_console_log},
    {"run", l_vm_run},
    {"read_file", l_vm_read_file},
    {"write_file", l_vm_write_file},
    {"ping", l_vm_ping},
    {"pause", l_vm_pause},
    {"resume", l_vm_resume},
    {"reset", l_vm_reset},
    {"power_button", l_vm_power_button},
    {"reconnect", l_vm_reconnect},
    {"cid", l_vm_cid},
    {"is_quiescent", l_vm_is_quiescent},
    {"console_write", l_vm_console_write},
    {"__set_classic", l_vm_set_classic},
    {"__channel_count", l_vm_channel_count},
    {NULL, NULL},
};

void pv_lua_register_vm(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    luaL_newmetatable(L, VM_MT);
    luaL_newlib(L, vm_methods);
    pv_lua_files_init(L, -1);
    pv_lua_sys_init(L, -1, idx);
    pv_lua_proc_init(L, -1);
    pv_lua_batch_init(L, -1);
    pv_lua_worker_init(L, -1);
    pv_lua_snapshot_init(L, -1);
    pv_lua_disk_init(L, -1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_vm_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_vm_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushstring(L, "VM");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);

    luaL_newmetatable(L, RESULT_MT);
    lua_newtable(L);
    lua_pushcfunction(L, l_result_ok);
    lua_setfield(L, -2, "ok");
    lua_pushcfunction(L, l_result_assert_ok);
    lua_setfield(L, -2, "assert_ok");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    lua_pushcfunction(L, l_new_vm);
    lua_setfield(L, idx, "new_vm");
    pv_lua_fixture_init(L, idx);
    pv_lua_health_init(L, idx);
    pv_lua_ktap_init(L, idx);
    pv_lua_net_init(L, idx);
}
