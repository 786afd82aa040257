/* The Disk type and vm:attach_disk / vm:disk, plus the boot option
 * `disks`: the Lua face of host/vmm/disk*.c.
 *
 * A Disk userdata holds its VM's userdata as a user value (so the VM lives
 * as long as any of its disks) and the disk's index; every call looks the
 * disk up again, so a handle of a disk gone with a snapshot restore says so
 * instead of touching freed memory. Two kinds of faults exist and are kept
 * apart in names: fault_inject's modes (eio_read, eio_write, slow) act on
 * this handle's read_sectors/write_sectors only, as in the reference; the
 * fail_* and delay methods change what the guest's own I/O gets, through
 * QEMU (host/vmm/disk_fault.c). */
#include <errno.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../vmm/disk.h"
#include "lua_internal.h"

#define DISK_MT "provium.Disk"
#define DEFAULT_MODELED_SIZE (4LL << 30)
#define MAX_IO_BYTES (64u << 20)
#define DETACH_TIMEOUT_MS 10000

typedef struct {
    unsigned index;
} ldisk;

/* ---- disk declarations ---- */

static const char *const disk_keys[] = {"id",       "path",     "image",     "template", "format", "size",
                                        "scratch",  "readonly", "persist",   "power_cut", NULL};

/* Reads one declaration table at idx into d; where names it in errors. */
static void parse_spec(lua_State *L, int idx, pv_disk_spec *d, size_t index, const char *where)
{
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    pv_check_opt_keys(L, idx, where, disk_keys);
    memset(d, 0, sizeof(*d));
    const char *given[3] = {0};
    size_t ngiven = 0;
    static const char *const sources[] = {"path", "image", "template", "scratch", "size"};
    for (int i = 0; i < 5; i++) {
        int t = lua_getfield(L, idx, sources[i]);
        lua_pop(L, 1);
        if (t == LUA_TNIL)
            continue;
        if (ngiven < 3)
            given[ngiven] = sources[i];
        ngiven++;
    }
    if (ngiven > 1)
        luaL_error(L, "%s names both %s and %s: a disk takes exactly one source (path or template: an image; "
                      "scratch or size: a blank disk)",
                   where, given[0], given[1]);
    /* everything that can raise comes first: the strings stay in the table,
     * and nothing is allocated until the last check has passed */
    const char *id = NULL, *path = NULL, *format = NULL;
    if (lua_getfield(L, idx, "id") != LUA_TNIL)
        id = pv_check_cstr(L, -1, "disk id");
    lua_pop(L, 1);
    for (int i = 0; i < 3; i++) {
        if (lua_getfield(L, idx, sources[i]) != LUA_TNIL) {
            path = pv_check_cstr(L, -1, sources[i]);
            d->copy = i == 2;
        }
        lua_pop(L, 1);
    }
    for (int i = 3; i < 5; i++) {
        if (lua_getfield(L, idx, sources[i]) != LUA_TNIL) {
            char what[160];
            snprintf(what, sizeof(what), "%s: %s", where, sources[i]);
            d->size = pv_lua_size(L, -1, what);
        }
        lua_pop(L, 1);
    }
    if (lua_getfield(L, idx, "format") != LUA_TNIL)
        format = luaL_checkstring(L, -1);
    lua_pop(L, 1);
    static const char *const flags[] = {"readonly", "persist", "power_cut"};
    bool *dst[] = {&d->readonly, &d->persist, &d->power_cut};
    for (int i = 0; i < 3; i++) {
        int t = lua_getfield(L, idx, flags[i]);
        if (t != LUA_TNIL && t != LUA_TBOOLEAN)
            luaL_error(L, "%s: %s must be true or false", where, flags[i]);
        *dst[i] = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    d->id = id ? xstrdup(id) : NULL;
    d->format = format ? xstrdup(format) : NULL;
    if (path) {
        char *dir = pv_caller_dir(L);
        char *joined = path[0] == '/' || !dir ? xstrdup(path) : path_join(dir, path);
        d->path = path_absolute(joined);
        free(joined);
        free(dir);
    }
    char err[PV_ERR_MAX];
    if (disk_spec_check(d, index, where, err, sizeof(err)) != 0) {
        disk_spec_free(d);
        lua_pushstring(L, err);
        lua_error(L);
    }
}

/* keep false: only the checks (they raise), nothing stays allocated; the
 * caller runs it before its first copy to the C heap, so that an error in
 * disks[3] leaks neither disks[1] nor anything else. */
static void read_disks(lua_State *L, int idx, const char *vm_name, pv_disk_spec **out, size_t *n, bool keep_them)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    idx = lua_absindex(L, idx);
    lua_Integer len = luaL_len(L, idx);
    size_t base = *n;
    for (int keep = 0; keep <= (int)keep_them; keep++) {
        for (lua_Integer i = 1; i <= len; i++) {
            lua_geti(L, idx, i);
            char where[200];
            snprintf(where, sizeof(where), "vm '%s': boot option disks[%d]", vm_name, (int)i);
            if (!lua_istable(L, -1))
                luaL_error(L, "%s must be a table like {size = \"64M\"} or {path = \"disk.img\"}", where);
            pv_disk_spec d;
            parse_spec(L, -1, &d, base + (size_t)(i - 1), where);
            if (keep) {
                *out = xrealloc(*out, (*n + 1) * sizeof(pv_disk_spec));
                (*out)[(*n)++] = d;
            } else
                disk_spec_free(&d);
            lua_pop(L, 1);
        }
    }
}

void pv_lua_check_disks(lua_State *L, int idx, const char *vm_name)
{
    pv_disk_spec *none = NULL;
    size_t n = 0;
    read_disks(L, idx, vm_name, &none, &n, false);
}

void pv_lua_parse_disks(lua_State *L, int idx, const char *vm_name, pv_disk_spec **out, size_t *n)
{
    read_disks(L, idx, vm_name, out, n, true);
}

/* Readies the profile's and the boot option's disks before a boot. */
int pv_lua_prepare_disks(lvm *v, const vm_boot_opts *o, char *err, size_t errlen)
{
    pv_vm *vm = v->vm;
    size_t n = vm->profile.ndisks + o->ndisks;
    if (!n)
        return 0;
    pv_disk_spec *all = xcalloc(n, sizeof(pv_disk_spec));
    for (size_t i = 0; i < vm->profile.ndisks; i++)
        all[i] = vm->profile.disks[i];
    for (size_t i = 0; i < o->ndisks; i++)
        all[vm->profile.ndisks + i] = o->disks[i];
    int rc = disk_prepare(vm, all, n, o->has_rng_seed, err, errlen);
    free(all); /* shallow: the specs stay with their owners */
    return rc;
}

/* ---- the Disk handle ---- */

static vm_disk *by_index(pv_vm *vm, unsigned index)
{
    for (size_t i = 0; vm->disks && i < vm->disks->n; i++)
        if (vm->disks->v[i]->index == index)
            return vm->disks->v[i];
    return NULL;
}

/* The disk behind the handle at idx; its VM in *vmp. */
static vm_disk *check_disk(lua_State *L, int idx, pv_vm **vmp)
{
    ldisk *h = luaL_checkudata(L, idx, DISK_MT);
    lua_getiuservalue(L, idx, 1);
    lvm *v = pv_check_vm(L, -1);
    lua_pop(L, 1);
    vm_disk *d = v->vm ? by_index(v->vm, h->index) : NULL;
    if (!d)
        luaL_error(L, "disk: its VM no longer has this disk (the VM was freed or restored from a snapshot)");
    *vmp = v->vm;
    return d;
}

static void push_disk(lua_State *L, int vm_idx, const vm_disk *d)
{
    vm_idx = lua_absindex(L, vm_idx);
    ldisk *h = lua_newuserdatauv(L, sizeof(ldisk), 1);
    h->index = d->index;
    luaL_setmetatable(L, DISK_MT);
    lua_pushvalue(L, vm_idx);
    lua_setiuservalue(L, -2, 1);
}

static int l_disk_id(lua_State *L)
{
    pv_vm *vm;
    lua_pushstring(L, check_disk(L, 1, &vm)->id);
    return 1;
}

static int l_disk_is_detached(lua_State *L)
{
    pv_vm *vm;
    lua_pushboolean(L, check_disk(L, 1, &vm)->detached);
    return 1;
}

static int l_disk_size(lua_State *L)
{
    pv_vm *vm;
    lua_pushinteger(L, disk_size(check_disk(L, 1, &vm)));
    return 1;
}

/* The host file behind the disk (an overlay, a scratch file, or the image). */
static int l_disk_path(lua_State *L)
{
    pv_vm *vm;
    vm_disk *d = check_disk(L, 1, &vm);
    if (d->file)
        lua_pushstring(L, d->file);
    else
        lua_pushnil(L);
    return 1;
}

static lua_Integer check_sector(lua_State *L, int idx, const char *op, const char *what, vm_disk *d, pv_vm *vm)
{
    if (!lua_isinteger(L, idx))
        luaL_error(L, "disk '%s' of VM '%s': disk:%s: %s must be an integer, not %s", d->id, vm->name, op, what,
                   luaL_typename(L, idx));
    lua_Integer v = lua_tointeger(L, idx);
    if (v < 0)
        pv_raisef(L, "disk '%s' of VM '%s': disk:%s: %s %lld is negative", d->id, vm->name, op, what, (long long)v);
    return v;
}

static void check_range(lua_State *L, vm_disk *d, pv_vm *vm, const char *op, lua_Integer off, lua_Integer bytes)
{
    int64_t size = disk_size(d);
    if (bytes > (lua_Integer)MAX_IO_BYTES)
        pv_raisef(L, "disk '%s' of VM '%s': disk:%s: %lld bytes in one call is more than the %d MiB allowed", d->id,
                   vm->name, op, (long long)bytes, (int)(MAX_IO_BYTES >> 20));
    if (d->file && (off > size / DISK_SECTOR || off * DISK_SECTOR + bytes > size))
        pv_raisef(L, "disk '%s' of VM '%s': disk:%s: sectors %lld..%lld are out of range: the disk has %lld "
                      "sectors",
                   d->id, vm->name, op, (long long)off, (long long)(off + (bytes + DISK_SECTOR - 1) / DISK_SECTOR - 1),
                   (long long)(size / DISK_SECTOR));
}

static int l_disk_read_sectors(lua_State *L)
{
    pv_vm *vm;
    vm_disk *d = check_disk(L, 1, &vm);
    lua_Integer off = check_sector(L, 2, "read_sectors", "offset", d, vm);
    lua_Integer n = check_sector(L, 3, "read_sectors", "count", d, vm);
    if (n > (lua_Integer)(MAX_IO_BYTES / DISK_SECTOR))
        n = MAX_IO_BYTES / DISK_SECTOR + 1; /* check_range names the limit */
    check_range(L, d, vm, "read_sectors", off, n * DISK_SECTOR);
    size_t len = (size_t)n * DISK_SECTOR;
    char *buf = xmalloc(len ? len : 1);
    char err[PV_ERR_MAX];
    if (disk_host_read(vm, d, off * DISK_SECTOR, buf, len, err, sizeof(err)) != 0) {
        free(buf);
        lua_pushstring(L, err);
        return lua_error(L);
    }
    lua_pushlstring(L, buf, len);
    free(buf);
    return 1;
}

static int l_disk_write_sectors(lua_State *L)
{
    pv_vm *vm;
    vm_disk *d = check_disk(L, 1, &vm);
    lua_Integer off = check_sector(L, 2, "write_sectors", "offset", d, vm);
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);
    check_range(L, d, vm, "write_sectors", off, (lua_Integer)len);
    char err[PV_ERR_MAX];
    if (disk_host_write(vm, d, off * DISK_SECTOR, data, len, err, sizeof(err)) != 0) {
        lua_pushstring(L, err);
        return lua_error(L);
    }
    return 0;
}

static const char *const host_modes[] = {"eio_read", "eio_write", "slow", NULL};

static int l_disk_fault_inject(lua_State *L)
{
    pv_vm *vm;
    vm_disk *d = check_disk(L, 1, &vm);
    const char *mode = luaL_checkstring(L, 2);
    for (int i = 0; host_modes[i]; i++)
        if (strcmp(mode, host_modes[i]) == 0) {
            d->host_faults |= 1u << i;
            return 0;
        }
    return luaL_error(L,
                      "disk '%s' of VM '%s': disk:fault_inject: unknown mode `%s` (valid: eio_read, eio_write, slow; "
                      "faults the guest sees: disk:fail_reads, fail_writes, fail_range, fail_after, delay)",
                      d->id, vm->name, mode);
}

static void require_mediated(lua_State *L, vm_disk *d, pv_vm *vm, const char *op)
{
    if (d->detached)
        luaL_error(L, "disk '%s' of VM '%s': disk:%s: disk is detached", d->id, vm->name, op);
    if (vm->profile.local || !d->file)
        luaL_error(L,
                   "disk '%s' of VM '%s': disk:%s needs a mediated disk (one QEMU serves to a guest); %s has no guest "
                   "I/O to fail",
                   d->id, vm->name, op, vm->profile.local ? "a local profile" : "a modeled disk");
    if (vm->state != VM_BOOTED && vm->state != VM_PAUSED)
        luaL_error(L, "disk '%s' of VM '%s': disk:%s: the VM is %s; guest faults are set while QEMU runs", d->id,
                   vm->name, op, vm_state_name(vm->state));
}

static int errno_of(lua_State *L, int idx, vm_disk *d, pv_vm *vm)
{
    if (lua_isinteger(L, idx) && lua_tointeger(L, idx) > 0 && lua_tointeger(L, idx) < 4096)
        return (int)lua_tointeger(L, idx);
    static const struct {
        const char *name;
        int value;
    } names[] = {{"EIO", EIO}, {"ENOSPC", ENOSPC}, {"EROFS", EROFS}, {"EINVAL", EINVAL},
                 {"ENOMEM", ENOMEM}, {"EAGAIN", EAGAIN}, {"ETIMEDOUT", ETIMEDOUT}, {"ENODEV", ENODEV}};
    const char *s = lua_tostring(L, idx);
    for (size_t i = 0; s && i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i].name) == 0)
            return names[i].value;
    return luaL_error(L, "disk '%s' of VM '%s': errno must be a positive number or one of EIO, ENOSPC, EROFS, "
                         "EINVAL, ENOMEM, EAGAIN, ETIMEDOUT, ENODEV",
                      d->id, vm->name);
}

/* A readable line for active_faults. */
static char *describe(const json_t *r)
{
    strbuf b;
    sb_init(&b);
    const char *op = json_string_value(json_object_get(r, "op"));
    if (json_object_get(r, "errno"))
        sb_addf(&b, "guest: errno %lld on %s", (long long)json_integer_value(json_object_get(r, "errno")),
                strcmp(op, "any") == 0 ? "reads and writes" : op);
    else
        sb_addf(&b, "guest: delay %lld ms", (long long)json_integer_value(json_object_get(r, "delay_ms")));
    if (json_object_get(r, "sector"))
        sb_addf(&b, ", sectors %lld+%lld", (long long)json_integer_value(json_object_get(r, "sector")),
                (long long)json_integer_value(json_object_get(r, "count")));
    if (json_object_get(r, "after"))
        sb_addf(&b, ", after %lld", (long long)json_integer_value(json_object_get(r, "after")));
    if (json_is_true(json_object_get(r, "once")))
        sb_adds(&b, ", once");
    return sb_take(&b);
}

static const char *const rule_keys[] = {"op", "errno", "sector", "count", "once", "after", "delay", NULL};

/* Builds one rule from opts (at opts_idx, may be none) with op forced
 * when op is non-NULL, adds it to the disk's rules and swaps the filter. */
static int add_rule(lua_State *L, const char *method, const char *op, int opts_idx, bool want_errno,
                    lua_Integer sector, lua_Integer count, lua_Integer after, int64_t delay_ms)
{
    pv_vm *vm;
    vm_disk *d = check_disk(L, 1, &vm);
    char what[200];
    snprintf(what, sizeof(what), "disk '%s' of VM '%s': disk:%s", d->id, vm->name, method);
    int err_no = 0, once = 0;
    if (opts_idx && !lua_isnoneornil(L, opts_idx)) {
        luaL_checktype(L, opts_idx, LUA_TTABLE);
        pv_check_opt_keys(L, opts_idx, what, rule_keys);
        int pushed = 6;
        if (!op && ++pushed && lua_getfield(L, opts_idx, "op") != LUA_TNIL)
            op = lua_tostring(L, -1);
        if (op && strcmp(op, "read") && strcmp(op, "write") && strcmp(op, "flush") && strcmp(op, "any"))
            return luaL_error(L, "%s: op must be \"read\", \"write\", \"flush\" or \"any\", not \"%s\"", what, op);
        if (lua_getfield(L, opts_idx, "errno") != LUA_TNIL)
            err_no = errno_of(L, -1, d, vm);
        if (lua_getfield(L, opts_idx, "sector") != LUA_TNIL)
            sector = luaL_checkinteger(L, -1);
        if (lua_getfield(L, opts_idx, "count") != LUA_TNIL)
            count = luaL_checkinteger(L, -1);
        if (lua_getfield(L, opts_idx, "after") != LUA_TNIL)
            after = luaL_checkinteger(L, -1);
        if (lua_getfield(L, opts_idx, "once") != LUA_TNIL)
            once = lua_toboolean(L, -1);
        if (lua_getfield(L, opts_idx, "delay") != LUA_TNIL)
            delay_ms = pv_lua_duration_ms(L, -1, "delay");
        lua_pop(L, pushed);
    }
    if (want_errno && !err_no)
        err_no = EIO;
    if (count < 1 || (after != -1 && after < 1))
        return pv_raisef(L, "%s: %s must be at least 1 (got %lld)", what, count < 1 ? "the sector count" : "after",
                     (long long)(count < 1 ? count : after));
    int64_t sectors = disk_size(d) / DISK_SECTOR;
    if (sector != -1 && (sector < 0 || sector + count > sectors))
        return pv_raisef(L, "%s: sectors %lld..%lld are out of range: the disk has %lld sectors", what,
                     (long long)sector, (long long)(sector + count - 1), (long long)sectors);
    require_mediated(L, d, vm, method); /* after the arguments: bad input is named first */
    json_t *r = json_pack("{s:s}", "op", op ? op : "any");
    if (err_no)
        json_object_set_new(r, "errno", json_integer(err_no));
    if (once)
        json_object_set_new(r, "once", json_true());
    if (sector != -1) {
        json_object_set_new(r, "sector", json_integer(sector));
        json_object_set_new(r, "count", json_integer(count));
    }
    if (after != -1)
        json_object_set_new(r, "after", json_integer(after));
    if (delay_ms > 0)
        json_object_set_new(r, "delay_ms", json_integer(delay_ms));
    json_t *rules = d->rules ? json_deep_copy(d->rules) : json_array();
    json_array_append_new(rules, r);
    char err[PV_ERR_MAX];
    if (disk_set_rules(vm, d, rules, err, sizeof(err)) != 0) {
        lua_pushstring(L, err);
        return lua_error(L);
    }
    return 0;
}

static int l_disk_fail(lua_State *L) { return add_rule(L, "fail", NULL, 2, true, -1, 1, -1, 0); }
static int l_disk_fail_reads(lua_State *L) { return add_rule(L, "fail_reads", "read", 2, true, -1, 1, -1, 0); }
static int l_disk_fail_writes(lua_State *L) { return add_rule(L, "fail_writes", "write", 2, true, -1, 1, -1, 0); }
static int l_disk_fail_flushes(lua_State *L) { return add_rule(L, "fail_flushes", "flush", 2, true, -1, 1, -1, 0); }

static int l_disk_fail_range(lua_State *L)
{
    lua_Integer start = luaL_checkinteger(L, 2), count = luaL_checkinteger(L, 3);
    return add_rule(L, "fail_range", NULL, 4, true, start, count, -1, 0);
}

static int l_disk_fail_after(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 2);
    return add_rule(L, "fail_after", NULL, 3, true, -1, 1, n, 0);
}

static int l_disk_delay(lua_State *L)
{
    int64_t ms = pv_lua_duration_ms(L, 2, "disk:delay");
    return add_rule(L, "delay", NULL, 0, false, -1, 1, -1, ms);
}

static int l_disk_clear_faults(lua_State *L)
{
    pv_vm *vm;
    vm_disk *d = check_disk(L, 1, &vm);
    d->host_faults = 0;
    if (d->rules && json_array_size(d->rules) && (vm->state == VM_BOOTED || vm->state == VM_PAUSED)) {
        char err[PV_ERR_MAX];
        if (disk_set_rules(vm, d, NULL, err, sizeof(err)) != 0) {
            lua_pushstring(L, err);
            return lua_error(L);
        }
    }
    return 0;
}

static int l_disk_active_faults(lua_State *L)
{
    pv_vm *vm;
    vm_disk *d = check_disk(L, 1, &vm);
    lua_newtable(L);
    int n = 0;
    for (int i = 0; host_modes[i]; i++)
        if (d->host_faults & (1u << i)) {
            lua_pushstring(L, host_modes[i]);
            lua_rawseti(L, -2, ++n);
        }
    size_t i;
    json_t *r;
    json_array_foreach(d->rules, i, r) {
        char *s = describe(r);
        lua_pushstring(L, s);
        free(s);
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

static int l_disk_power_cut(lua_State *L)
{
    pv_vm *vm;
    vm_disk *d = check_disk(L, 1, &vm);
    if (!d->power_cut)
        return luaL_error(L, "disk '%s' of VM '%s': disk:power_cut: the disk was not declared with power_cut = true "
                             "(its writes are logged only then)",
                          d->id, vm->name);
    if (vm->state != VM_BOOTED && vm->state != VM_PAUSED)
        return luaL_error(L, "disk '%s' of VM '%s': disk:power_cut: the VM is %s; there is no power to cut", d->id,
                          vm->name, vm_state_name(vm->state));
    long lost, kept;
    char err[PV_ERR_MAX];
    if (disk_power_cut(vm, &lost, &kept, err, sizeof(err)) != 0) {
        lua_pushstring(L, err);
        return lua_error(L);
    }
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, lost);
    lua_setfield(L, -2, "lost_writes");
    lua_pushinteger(L, kept);
    lua_setfield(L, -2, "kept_writes");
    return 1;
}

/* The guest's side of a PCI hot-plug for a kernel without a hot-plug
 * driver: a rescan finds a new device, a remove lets one go. Harmless with
 * one. */
static void guest_sh(lua_State *L, int vm_idx, const char *script)
{
    lua_getfield(L, vm_idx, "run");
    lua_pushvalue(L, vm_idx);
    lua_pushstring(L, script);
    lua_call(L, 2, 1);
    lua_pop(L, 1);
}

/* The guest's device node for the disk, found by its virtio serial (the
 * disk's id): "/dev/vdb". */
static int l_disk_guest_path(lua_State *L)
{
    pv_vm *vm;
    vm_disk *d = check_disk(L, 1, &vm);
    if (d->detached)
        return luaL_error(L, "disk '%s' of VM '%s': disk:guest_path: disk is detached", d->id, vm->name);
    lua_getiuservalue(L, 1, 1);
    int vm_idx = lua_gettop(L);
    lua_getfield(L, vm_idx, "run");
    lua_pushvalue(L, vm_idx);
    lua_pushfstring(L, "for b in /sys/block/*; do [ \"$(cat $b/serial 2>/dev/null)\" = '%s' ] && echo /dev/${b##*/}; "
                       "done; true",
                    d->id);
    lua_call(L, 2, 1);
    lua_getfield(L, -1, "stdout");
    const char *out = lua_tostring(L, -1);
    size_t n = out ? strcspn(out, "\n") : 0;
    if (!n)
        return luaL_error(L, "disk '%s' of VM '%s': disk:guest_path: the guest has no block device with serial "
                             "'%s' (on pc a hot-plugged disk appears after the PCI rescan attach_disk does)",
                          d->id, vm->name, d->id);
    lua_pushlstring(L, out, n);
    return 1;
}

static int l_disk_detach(lua_State *L)
{
    pv_vm *vm;
    vm_disk *d = check_disk(L, 1, &vm);
    int64_t timeout = DETACH_TIMEOUT_MS;
    if (lua_istable(L, 2)) {
        static const char *const keys[] = {"timeout", NULL};
        pv_check_opt_keys(L, 2, "disk:detach", keys);
        if (lua_getfield(L, 2, "timeout") != LUA_TNIL)
            timeout = pv_lua_duration_ms(L, -1, "disk:detach: timeout");
        lua_pop(L, 1);
    }
    if (!d->detached && !vm->profile.local && d->file && vm->state == VM_BOOTED &&
        strcmp(vm_machine(&vm->profile), "microvm") != 0) {
        lua_getiuservalue(L, 1, 1);
        char *script = xasprintf("for b in /sys/block/*; do [ \"$(cat $b/serial 2>/dev/null)\" = '%s' ] && "
                                 "sync && echo 1 > $b/device/../remove; done; true",
                                 d->id);
        guest_sh(L, lua_gettop(L), script);
        free(script);
        lua_pop(L, 1);
    }
    char err[PV_ERR_MAX];
    if (disk_detach(vm, d, timeout, err, sizeof(err)) != 0) {
        lua_pushstring(L, err);
        return lua_error(L);
    }
    return 0;
}

static int l_disk_tostring(lua_State *L)
{
    ldisk *h = luaL_checkudata(L, 1, DISK_MT);
    lua_getiuservalue(L, 1, 1);
    lvm *v = luaL_testudata(L, -1, VM_MT);
    vm_disk *d = v && v->vm ? by_index(v->vm, h->index) : NULL;
    lua_pushfstring(L, "Disk(%s of %s)", d ? d->id : "?", v && v->vm ? v->vm->name : "?");
    return 1;
}

/* ---- VM methods ---- */

static int l_vm_disk(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    const char *id = luaL_checkstring(L, 2);
    vm_disk *d = disk_find(v->vm, id);
    if (!d) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (size_t i = 0; v->vm->disks && i < v->vm->disks->n; i++)
            if (!v->vm->disks->v[i]->detached) {
                if (luaL_bufflen(&b))
                    luaL_addstring(&b, ", ");
                luaL_addstring(&b, v->vm->disks->v[i]->id);
            }
        luaL_pushresult(&b);
        return luaL_error(L, "vm '%s': no disk '%s' (its disks: %s)", v->vm->name, id,
                          lua_rawlen(L, -1) ? lua_tostring(L, -1) : "none");
    }
    push_disk(L, 1, d);
    return 1;
}

static int l_vm_disks(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    lua_newtable(L);
    int n = 0;
    for (size_t i = 0; v->vm->disks && i < v->vm->disks->n; i++)
        if (!v->vm->disks->v[i]->detached) {
            push_disk(L, 1, v->vm->disks->v[i]);
            lua_rawseti(L, -2, ++n);
        }
    return 1;
}

static int l_vm_attach_disk(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    pv_vm *vm = v->vm;
    if (lua_isnoneornil(L, 2))
        lua_newtable(L), lua_replace(L, 2);
    luaL_checktype(L, 2, LUA_TTABLE);
    pv_require_booted(L, v, "attach_disk");
    /* the reference's defaults: id "attached-<vm>", a modeled 4 GiB */
    bool has_source = false;
    static const char *const srcs[] = {"path", "image", "template", "scratch", "size"};
    for (int i = 0; i < 5; i++) {
        has_source |= lua_getfield(L, 2, srcs[i]) != LUA_TNIL;
        lua_pop(L, 1);
    }
    bool has_image = false;
    for (int i = 0; i < 3; i++) {
        has_image |= lua_getfield(L, 2, srcs[i]) != LUA_TNIL;
        lua_pop(L, 1);
    }
    bool modeled = vm->profile.local && !has_image;
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_settable(L, -4);
    }
    if (!has_source) {
        lua_pushinteger(L, DEFAULT_MODELED_SIZE);
        lua_setfield(L, -2, "size");
    }
    if (has_image) {
        /* attach_disk{image = ..., size = ...}: the size is only the model's */
        lua_pushnil(L);
        lua_setfield(L, -2, "size");
    }
    if (lua_getfield(L, -1, "id") == LUA_TNIL) {
        lua_pushfstring(L, "attached-%s", vm->name);
        lua_setfield(L, -3, "id");
    }
    lua_pop(L, 1);
    char where[200];
    snprintf(where, sizeof(where), "vm '%s': attach_disk", vm->name);
    int64_t modeled_size = 0; /* read before parse_spec allocates: it may raise */
    if (has_image && lua_getfield(L, 2, "size") != LUA_TNIL)
        modeled_size = pv_lua_size(L, -1, "attach_disk: size");
    if (has_image)
        lua_pop(L, 1);
    pv_disk_spec spec;
    parse_spec(L, -1, &spec, 0, where);
    if (!has_image)
        modeled_size = spec.size;
    char err[PV_ERR_MAX];
    vm_disk *d = disk_attach(vm, &spec, modeled, err, sizeof(err));
    disk_spec_free(&spec);
    if (!d) {
        lua_pushstring(L, err);
        return lua_error(L);
    }
    if (!d->file)
        d->size = modeled_size;
    if (d->hotplugged)
        guest_sh(L, 1, "echo 1 > /sys/bus/pci/rescan");
    push_disk(L, 1, d);
    return 1;
}

static const luaL_Reg disk_methods[] = {
    {"id", l_disk_id},
    {"size", l_disk_size},
    {"path", l_disk_path},
    {"guest_path", l_disk_guest_path},
    {"read_sectors", l_disk_read_sectors},
    {"write_sectors", l_disk_write_sectors},
    {"fault_inject", l_disk_fault_inject},
    {"clear_faults", l_disk_clear_faults},
    {"active_faults", l_disk_active_faults},
    {"fail", l_disk_fail},
    {"fail_reads", l_disk_fail_reads},
    {"fail_writes", l_disk_fail_writes},
    {"fail_flushes", l_disk_fail_flushes},
    {"fail_range", l_disk_fail_range},
    {"fail_after", l_disk_fail_after},
    {"delay", l_disk_delay},
    {"power_cut", l_disk_power_cut},
    {"detach", l_disk_detach},
    {"is_detached", l_disk_is_detached},
    {NULL, NULL},
};

static const luaL_Reg vm_disk_methods[] = {
    {"disk", l_vm_disk},
    {"disks", l_vm_disks},
    {"attach_disk", l_vm_attach_disk},
    {NULL, NULL},
};

void pv_lua_disk_init(lua_State *L, int vm_methods_idx)
{
    vm_methods_idx = lua_absindex(L, vm_methods_idx);
    pv_add_methods(L, vm_methods_idx, vm_disk_methods);
    luaL_newmetatable(L, DISK_MT);
    luaL_newlib(L, disk_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_disk_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushstring(L, "Disk");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
}
