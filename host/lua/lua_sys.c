/* Raw kernel access from Lua: vm:syscall, vm:ioctl, and the guest clock. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "lua_internal.h"

#define CLOCK_MT "provium.Clock"
#define SYS_IOCTL 16
#define MAX_ARGS 6

typedef struct {
    size_t nbufs;
} sysreq;

static void put_arg(lua_State *L, pv_buf *b, int idx, int slot, sysreq *s);

static void put_buf(pv_buf *b, const char *data, size_t len, int64_t slot, sysreq *s)
{
    pv_put_bytes(b, PV_T_BUF, data, len);
    pv_put_i64(b, PV_T_BUF_SLOT, slot);
    s->nbufs++;
}

static void put_ptr(pv_buf *b, uint32_t buf, uint32_t off, uint32_t target)
{
    uint8_t p[12];
    uint32_t v[3] = {buf, off, target};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 4; k++)
            p[i * 4 + k] = (uint8_t)(v[i] >> (8 * k));
    pv_put_bytes(b, PV_T_PTR, p, sizeof(p));
}

/* An integer argument; strings become NUL-terminated buffers in that slot. */
void pv_put_syscall_arg(lua_State *L, pv_buf *b, int idx, int slot, size_t *nbufs)
{
    sysreq s = {*nbufs};
    put_arg(L, b, idx, slot, &s);
    *nbufs = s.nbufs;
}

static void put_arg(lua_State *L, pv_buf *b, int idx, int slot, sysreq *s)
{
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t len;
        const char *str = lua_tolstring(L, idx, &len);
        char *z = xmalloc(len + 1);
        memcpy(z, str, len);
        z[len] = 0;
        put_buf(b, z, len + 1, slot, s);
        free(z);
        pv_put_i64(b, PV_T_ARG, 0);
    } else if (lua_isboolean(L, idx)) {
        pv_put_i64(b, PV_T_ARG, lua_toboolean(L, idx));
    } else if (lua_isinteger(L, idx)) {
        pv_put_i64(b, PV_T_ARG, lua_tointeger(L, idx));
    } else if (lua_type(L, idx) == LUA_TNUMBER && lua_tonumber(L, idx) == floor(lua_tonumber(L, idx))) {
        pv_put_i64(b, PV_T_ARG, (int64_t)lua_tonumber(L, idx));
    } else {
        luaL_error(L, "syscall: argument %d must be an integer or a string, not %s", slot + 1, luaL_typename(L, idx));
    }
}

/* Table form: {args={...}, bufs={...}, ptrs={slot...}, nested={{buf=, offset=, target=}}} */
static void put_table_form(lua_State *L, pv_buf *b, int t, sysreq *s)
{
    lua_getfield(L, t, "args");
    if (!lua_isnil(L, -1)) {
        luaL_checktype(L, -1, LUA_TTABLE);
        lua_Integer n = luaL_len(L, -1);
        if (n > MAX_ARGS)
            luaL_error(L, "syscall: at most %d args", MAX_ARGS);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_geti(L, -1, i);
            put_arg(L, b, lua_gettop(L), (int)i - 1, s);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "bufs");
    lua_getfield(L, t, "ptrs");
    lua_Integer nb = lua_istable(L, -2) ? luaL_len(L, -2) : 0;
    if (nb + (lua_Integer)s->nbufs > PV_MAX_SYSCALL_BUFS)
        luaL_error(L, "syscall: at most %d buffers", PV_MAX_SYSCALL_BUFS);
    size_t first = s->nbufs;
    for (lua_Integer i = 1; i <= nb; i++) {
        lua_geti(L, -2, i);
        size_t len;
        const char *data = lua_tolstring(L, -1, &len);
        if (!data)
            luaL_error(L, "syscall: bufs[%d] must be a string", (int)i);
        int64_t slot = -1;
        if (lua_istable(L, -2)) {
            lua_geti(L, -2, i);
            if (!lua_isnil(L, -1)) {
                if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) >= MAX_ARGS)
                    luaL_error(L, "syscall: ptrs[%d] must be an argument slot from 0 to 5", (int)i);
                slot = lua_tointeger(L, -1);
            }
            lua_pop(L, 1);
        }
        put_buf(b, data, len, slot, s);
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    lua_getfield(L, t, "nested");
    if (lua_istable(L, -1)) {
        lua_Integer nn = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= nn; i++) {
            lua_geti(L, -1, i);
            luaL_checktype(L, -1, LUA_TTABLE);
            lua_getfield(L, -1, "buf");
            lua_getfield(L, -2, "offset");
            lua_getfield(L, -3, "target");
            lua_Integer bi = luaL_checkinteger(L, -3), off = luaL_checkinteger(L, -2), ti = luaL_checkinteger(L, -1);
            if (bi < 1 || bi > nb || ti < 1 || ti > nb || off < 0)
                luaL_error(L, "syscall: nested[%d] refers to a missing buffer or a negative offset", (int)i);
            put_ptr(b, (uint32_t)(first + (size_t)bi - 1), (uint32_t)off, (uint32_t)(first + (size_t)ti - 1));
            lua_pop(L, 4);
        }
    }
    lua_pop(L, 1);
}

/* Pushes {ret, result, errno, out_bufs} (modern) and returns the raw values. */
void pv_push_syscall_result(lua_State *L, const vm_reply *r, size_t skip_bufs)
{
    int64_t ret = pv_msg_i64(&r->msg, PV_T_RET, -1);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, ret);
    lua_setfield(L, -2, "ret");
    lua_pushinteger(L, ret);
    lua_setfield(L, -2, "result");
    lua_pushinteger(L, pv_msg_i64(&r->msg, PV_T_ERRNO, 0));
    lua_setfield(L, -2, "errno");
    lua_newtable(L);
    size_t pos = 0, i = 0;
    int k = 1;
    const pv_field *f;
    while ((f = pv_msg_next(&r->msg, PV_T_BUF, &pos))) {
        if (i++ < skip_bufs)
            continue;
        lua_pushlstring(L, (const char *)f->data, f->len);
        lua_rawseti(L, -2, k++);
    }
    lua_setfield(L, -2, "out_bufs");
}

void pv_push_syscall_value(lua_State *L, const lvm *v, const pv_msg *m)
{
    if (v->classic) {
        /* classic dialect (seed 002): the integer result, -errno on failure */
        int64_t ret = pv_msg_i64(m, PV_T_RET, -1);
        int64_t e = pv_msg_i64(m, PV_T_ERRNO, 0);
        lua_pushinteger(L, ret == -1 && e ? -e : ret);
    } else {
        vm_reply r = {*m, NULL};
        pv_push_syscall_result(L, &r, 0);
    }
}

static int l_syscall(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    if (lua_type(L, 2) != LUA_TNUMBER)
        return luaL_error(L, "VM '%s': syscall: the syscall number nr must be an integer, not %s", v->vm->name,
                          luaL_typename(L, 2));
    lua_Integer nr = luaL_checkinteger(L, 2);
    pv_require_booted(L, v, "syscall");
    sysreq s = {0};
    pv_buf *b = &v->vm->out;
    vm_begin_on(v->vm, PV_MSG_SYSCALL, v->chan_base);
    pv_put_i64(b, PV_T_NR, nr);
    int top = lua_gettop(L);
    if (top == 3 && lua_istable(L, 3)) {
        put_table_form(L, b, 3, &s);
    } else {
        if (top - 2 > MAX_ARGS)
            return luaL_error(L, "syscall: at most %d arguments", MAX_ARGS);
        for (int i = 3; i <= top; i++)
            put_arg(L, b, i, i - 3, &s);
    }
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS);
    pv_push_syscall_value(L, v, &r.msg);
    vm_reply_free(&r);
    return 1;
}

/* vm:ioctl(fd_or_file, cmd[, data[, {bufs=, ptr_offsets=, arg=}]]) */
static int l_ioctl(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    lua_Integer fd = pv_check_fd(L, 2, "ioctl");
    lua_Integer cmd = luaL_checkinteger(L, 3);
    pv_require_booted(L, v, "ioctl");
    size_t dlen = 0;
    const char *data = lua_isnoneornil(L, 4) ? NULL : luaL_checklstring(L, 4, &dlen);
    if (!lua_isnoneornil(L, 5))
        luaL_checktype(L, 5, LUA_TTABLE);
    sysreq s = {0};
    pv_buf *b = &v->vm->out;
    vm_begin_on(v->vm, PV_MSG_SYSCALL, v->chan_base);
    pv_put_i64(b, PV_T_NR, SYS_IOCTL);
    pv_put_i64(b, PV_T_ARG, fd);
    pv_put_i64(b, PV_T_ARG, cmd);
    if (data) {
        pv_put_i64(b, PV_T_ARG, 0);
        put_buf(b, data, dlen, 2, &s);
    } else {
        lua_Integer arg = 0;
        if (lua_istable(L, 5) && lua_getfield(L, 5, "arg") != LUA_TNIL)
            arg = luaL_checkinteger(L, -1);
        if (lua_istable(L, 5))
            lua_pop(L, 1);
        pv_put_i64(b, PV_T_ARG, arg);
    }
    if (lua_istable(L, 5)) {
        lua_getfield(L, 5, "bufs");
        lua_getfield(L, 5, "ptr_offsets");
        lua_Integer nb = lua_istable(L, -2) ? luaL_len(L, -2) : 0;
        if (nb && (!lua_istable(L, -1) || luaL_len(L, -1) != nb))
            return luaL_error(L, "ioctl: opts.ptr_offsets must give one offset per entry of opts.bufs");
        if (nb && !data)
            return luaL_error(L, "ioctl: opts.bufs needs a data string to hold their addresses");
        if (nb + 1 > PV_MAX_SYSCALL_BUFS)
            return luaL_error(L, "ioctl: at most %d bufs", PV_MAX_SYSCALL_BUFS - 1);
        for (lua_Integer i = 1; i <= nb; i++) {
            lua_geti(L, -2, i);
            size_t len;
            const char *bd = lua_tolstring(L, -1, &len);
            if (!bd)
                return luaL_error(L, "ioctl: bufs[%d] must be a string", (int)i);
            put_buf(b, bd, len, -1, &s);
            lua_pop(L, 1);
            lua_geti(L, -1, i);
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || (size_t)lua_tointeger(L, -1) + 8 > dlen)
                return luaL_error(L, "ioctl: ptr_offsets[%d] must be an offset with 8 bytes of room inside data",
                                  (int)i);
            put_ptr(b, 0, (uint32_t)lua_tointeger(L, -1), (uint32_t)i);
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    }
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS);
    pv_push_syscall_result(L, &r, data ? 1 : 0);
    if (data) {
        const pv_field *f = pv_msg_get(&r.msg, PV_T_BUF);
        lua_pushlstring(L, f ? (const char *)f->data : "", f ? f->len : 0);
        lua_setfield(L, -2, "out_data");
    }
    vm_reply_free(&r);
    return 1;
}

/* ---- Clock ---- */

static lvm *clock_vm(lua_State *L, const char *op)
{
    luaL_checkudata(L, 1, CLOCK_MT);
    lua_getiuservalue(L, 1, 1);
    lvm *v = pv_check_vm(L, -1);
    lua_pop(L, 1);
    pv_require_booted(L, v, op);
    return v;
}

static int64_t clock_call(lua_State *L, lvm *v)
{
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS);
    int64_t ns = pv_msg_i64(&r.msg, PV_T_TIME_NS, 0);
    vm_reply_free(&r);
    return ns;
}

static double check_finite(lua_State *L, int idx, const char *what)
{
    double d = luaL_checknumber(L, idx);
    if (!isfinite(d))
        luaL_error(L, "clock:%s: value must be finite (got %f)", what, d);
    return d;
}

/* A clock duration: a number of seconds or a string such as "500ms", "2s",
 * "5m", "1h"; signed ("-2s") only where negative is allowed. */
static double clock_seconds(lua_State *L, int idx, const char *what, bool signed_ok)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        return check_finite(L, idx, what);
    const char *s = lua_tostring(L, idx);
    bool neg = signed_ok && s[0] == '-';
    int64_t ms = parse_duration_ms(neg ? s + 1 : s);
    if (ms < 0)
        luaL_error(L, "clock:%s: cannot parse \"%s\" as a duration (use seconds, \"500ms\", \"5s\", \"2m\", \"1h\"%s)",
                   what, s, signed_ok ? ", or \"-5s\" to go back" : "");
    return (neg ? -1.0 : 1.0) * (double)ms / 1000.0;
}

static int l_clock_get(lua_State *L)
{
    lvm *v = clock_vm(L, "clock:get");
    vm_begin_on(v->vm, PV_MSG_CLOCK_GET, v->chan_base);
    lua_pushnumber(L, (double)clock_call(L, v) / 1e9);
    return 1;
}

static int l_clock_get_ns(lua_State *L)
{
    lvm *v = clock_vm(L, "clock:get_ns");
    vm_begin_on(v->vm, PV_MSG_CLOCK_GET, v->chan_base);
    lua_pushinteger(L, clock_call(L, v));
    return 1;
}

static int clock_set(lua_State *L, int64_t ns)
{
    lvm *v = clock_vm(L, "clock:set");
    if (ns < 0)
        return luaL_error(L, "clock:set: %f s is before 1970, and Linux refuses to set CLOCK_REALTIME before the "
                             "epoch (EINVAL)", (double)ns / 1e9);
    vm_begin_on(v->vm, PV_MSG_CLOCK_SET, v->chan_base);
    pv_put_i64(&v->vm->out, PV_T_TIME_NS, ns);
    clock_call(L, v);
    vm_note_clock_set(v->vm);
    return 0;
}

static int l_clock_set(lua_State *L)
{
    double secs = check_finite(L, 2, "set");
    /* past year 2262 the nanoseconds do not fit in 64 bits */
    if (secs >= 9.2e9)
        return luaL_error(L, "clock:set: %f s is past the year 2262, the limit of 64-bit nanoseconds", secs);
    return clock_set(L, (int64_t)(secs * 1e9));
}

static int l_clock_set_ns(lua_State *L) { return clock_set(L, luaL_checkinteger(L, 2)); }

static int l_clock_advance(lua_State *L)
{
    double secs = clock_seconds(L, 2, "advance", true);
    if (fabs(secs) >= 9.2e9)
        return luaL_error(L, "clock:advance: %f s does not fit in 64-bit nanoseconds", secs);
    lvm *v = clock_vm(L, "clock:advance");
    vm_begin_on(v->vm, PV_MSG_CLOCK_ADVANCE, v->chan_base);
    pv_put_i64(&v->vm->out, PV_T_DELTA_NS, (int64_t)(secs * 1e9));
    lua_pushnumber(L, (double)clock_call(L, v) / 1e9);
    return 1;
}

/* Real time passes for the guest too: the host just waits. */
static int l_clock_sleep(lua_State *L)
{
    double secs = clock_seconds(L, 2, "sleep", false);
    clock_vm(L, "clock:sleep");
    if (secs < 0)
        return luaL_error(L, "clock:sleep: duration must not be negative");
    sleep_ms((int)(secs * 1000));
    return 0;
}

static int l_vm_clock(lua_State *L)
{
    pv_check_vm(L, 1);
    lua_newuserdatauv(L, 1, 1);
    luaL_setmetatable(L, CLOCK_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    return 1;
}

void pv_lua_sys_init(lua_State *L, int methods_idx, int internal_idx)
{
    (void)internal_idx;
    static const luaL_Reg vm_fns[] = {{"syscall", l_syscall}, {"ioctl", l_ioctl}, {"clock", l_vm_clock}, {NULL, NULL}};
    pv_add_methods(L, methods_idx, vm_fns);
    static const luaL_Reg clock_fns[] = {
        {"get", l_clock_get},         {"get_ns", l_clock_get_ns}, {"set", l_clock_set}, {"set_ns", l_clock_set_ns},
        {"advance", l_clock_advance}, {"sleep", l_clock_sleep},   {NULL, NULL},
    };
    luaL_newmetatable(L, CLOCK_MT);
    luaL_newlib(L, clock_fns);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}
