/* vm:batch(fn): the operations fn records on its builder travel to the agent
 * as one BATCH frame and come back as one BATCH_RESULT, one round trip for
 * all of them. A failing operation does not stop the others. */
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "lua_internal.h"

#define BATCH_MT "provium.Batch"

typedef enum { OP_NONE, OP_READ, OP_STAT, OP_LISTDIR, OP_SYSCALL } op_kind;

typedef struct {
    pv_buf frames;  /* the recorded request frames, each as an OP field */
    pv_buf one;     /* scratch for building one frame */
    uint8_t *kinds; /* how to present each reply */
    size_t n, cap;
    bool sent;
} lbatch;

static lbatch *check_batch(lua_State *L)
{
    lbatch *b = luaL_checkudata(L, 1, BATCH_MT);
    if (b->sent)
        luaL_error(L, "batch: the batch has already been sent; record operations inside the batch function");
    return b;
}

static pv_buf *begin(lbatch *b, uint16_t type)
{
    pv_buf_reset(&b->one);
    pv_frame_begin(&b->one, type, 0, (uint32_t)b->n + 1);
    return &b->one;
}

static void commit(lua_State *L, lbatch *b, op_kind kind)
{
    if (pv_frame_end(&b->one) != 0)
        luaL_error(L, "batch: operation too large");
    if (b->n >= PV_MAX_BATCH)
        luaL_error(L, "batch: more than %d operations", PV_MAX_BATCH);
    pv_put_bytes(&b->frames, PV_T_OP, b->one.buf, b->one.len);
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->kinds = xrealloc(b->kinds, b->cap);
    }
    b->kinds[b->n++] = (uint8_t)kind;
}

static int path_only(lua_State *L, uint16_t type, op_kind kind)
{
    lbatch *b = check_batch(L);
    pv_put_str(begin(b, type), PV_T_PATH, pv_check_cstr(L, 2, "batch: path"));
    commit(L, b, kind);
    return 0;
}

static int b_read_file(lua_State *L) { return path_only(L, PV_MSG_READ_FILE, OP_READ); }
static int b_stat(lua_State *L) { return path_only(L, PV_MSG_STAT, OP_STAT); }
static int b_listdir(lua_State *L) { return path_only(L, PV_MSG_LISTDIR, OP_LISTDIR); }
static int b_unlink(lua_State *L) { return path_only(L, PV_MSG_UNLINK, OP_NONE); }

static int b_write_file(lua_State *L)
{
    lbatch *b = check_batch(L);
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);
    pv_buf *f = begin(b, PV_MSG_WRITE_FILE);
    pv_put_str(f, PV_T_PATH, pv_check_cstr(L, 2, "batch: path"));
    pv_put_bytes(f, PV_T_DATA, data, len);
    commit(L, b, OP_NONE);
    return 0;
}

static int b_mkdir(lua_State *L)
{
    lbatch *b = check_batch(L);
    pv_buf *f = begin(b, PV_MSG_MKDIR);
    pv_put_str(f, PV_T_PATH, pv_check_cstr(L, 2, "batch: path"));
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "parents");
        pv_put_u64(f, PV_T_PARENTS, lua_toboolean(L, -1));
        lua_getfield(L, 3, "perm");
        if (lua_isinteger(L, -1))
            pv_put_u64(f, PV_T_MODE, (uint64_t)lua_tointeger(L, -1) & 07777);
        lua_pop(L, 2);
    }
    commit(L, b, OP_NONE);
    return 0;
}

static int b_rename(lua_State *L)
{
    lbatch *b = check_batch(L);
    pv_buf *f = begin(b, PV_MSG_RENAME);
    pv_put_str(f, PV_T_PATH, pv_check_cstr(L, 2, "batch: path"));
    pv_put_str(f, PV_T_PATH2, pv_check_cstr(L, 3, "batch: new path"));
    commit(L, b, OP_NONE);
    return 0;
}

static int b_syscall(lua_State *L)
{
    lbatch *b = check_batch(L);
    lua_Integer nr = luaL_checkinteger(L, 2);
    int top = lua_gettop(L);
    if (top - 2 > 6)
        return luaL_error(L, "batch:syscall: at most 6 arguments");
    pv_buf *f = begin(b, PV_MSG_SYSCALL);
    pv_put_i64(f, PV_T_NR, nr);
    size_t nbufs = 0;
    for (int i = 3; i <= top; i++) {
        if (lua_istable(L, i))
            return luaL_error(L, "batch:syscall: the table form is not supported in a batch; use vm:syscall");
        pv_put_syscall_arg(L, f, i, i - 3, &nbufs);
    }
    commit(L, b, OP_SYSCALL);
    return 0;
}

static int b_ping(lua_State *L)
{
    lbatch *b = check_batch(L);
    begin(b, PV_MSG_PING);
    commit(L, b, OP_NONE);
    return 0;
}

static int b_gc(lua_State *L)
{
    lbatch *b = luaL_checkudata(L, 1, BATCH_MT);
    pv_buf_free(&b->frames);
    pv_buf_free(&b->one);
    free(b->kinds);
    b->kinds = NULL;
    b->n = b->cap = 0; /* a second __gc, or a use after it, finds nothing */
    b->sent = true;
    return 0;
}

/* Turns one reply frame into {ok=value} or {err=message}. */
static void push_entry(lua_State *L, lvm *v, const pv_field *f, op_kind kind)
{
    lua_createtable(L, 0, 2);
    pv_hdr hdr;
    pv_msg m;
    char why[256];
    if (f->len < PV_HDR_SIZE || pv_hdr_decode(f->data, &hdr) != 0 || hdr.len != f->len - PV_HDR_SIZE ||
        pv_msg_decode(&hdr, f->data + PV_HDR_SIZE, &m, why, sizeof(why)) != 0) {
        lua_pushstring(L, "malformed reply in batch");
        lua_setfield(L, -2, "err");
        return;
    }
    if (hdr.type == PV_MSG_ERROR) {
        const pv_field *msg = pv_msg_get(&m, PV_T_MESSAGE);
        lua_pushlstring(L, (const char *)msg->data, msg->len);
        lua_setfield(L, -2, "err");
    } else if (kind == OP_READ && hdr.type == PV_MSG_FILE_DATA) {
        const pv_field *d = pv_msg_get(&m, PV_T_DATA);
        lua_pushlstring(L, (const char *)d->data, d->len);
        lua_setfield(L, -2, "ok");
    } else if (kind == OP_STAT && hdr.type == PV_MSG_STAT_RESULT) {
        pv_push_stat(L, &m);
        lua_setfield(L, -2, "ok");
    } else if (kind == OP_LISTDIR && hdr.type == PV_MSG_LISTDIR_RESULT) {
        pv_push_listdir(L, &m);
        lua_setfield(L, -2, "ok");
    } else if (kind == OP_SYSCALL && hdr.type == PV_MSG_SYSCALL_RESULT) {
        pv_push_syscall_value(L, v, &m);
        lua_setfield(L, -2, "ok");
    }
    pv_msg_free(&m);
}

static int l_batch(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    pv_require_booted(L, v, "batch");
    lbatch *b = lua_newuserdatauv(L, sizeof(lbatch), 0);
    memset(b, 0, sizeof(*b));
    pv_buf_init(&b->frames);
    pv_buf_init(&b->one);
    luaL_setmetatable(L, BATCH_MT);
    int bidx = lua_gettop(L);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, bidx);
    lua_call(L, 1, 0);
    b->sent = true;
    lua_newtable(L);
    if (b->n == 0)
        return 1;
    /* b->frames holds the recorded frames as OP fields; they become the
     * payload of one BATCH frame */
    vm_begin_on(v->vm, PV_MSG_BATCH, v->chan_base);
    pv_buf *out = &v->vm->out;
    for (size_t off = 0; off < b->frames.len;) {
        const uint8_t *p = b->frames.buf + off;
        uint32_t len = (uint32_t)p[2] | (uint32_t)p[3] << 8 | (uint32_t)p[4] << 16 | (uint32_t)p[5] << 24;
        pv_put_bytes(out, PV_T_OP, p + PV_FIELD_HDR_SIZE, len);
        off += PV_FIELD_HDR_SIZE + len;
    }
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS + (int64_t)b->n);
    size_t pos = 0, i = 0;
    const pv_field *f;
    while ((f = pv_msg_next(&r.msg, PV_T_REPLY, &pos)) && i < b->n) {
        push_entry(L, v, f, (op_kind)b->kinds[i]);
        lua_rawseti(L, -2, (lua_Integer)++i);
    }
    vm_reply_free(&r);
    return 1;
}

void pv_lua_batch_init(lua_State *L, int methods_idx)
{
    static const luaL_Reg vm_fns[] = {{"batch", l_batch}, {NULL, NULL}};
    pv_add_methods(L, methods_idx, vm_fns);
    static const luaL_Reg fns[] = {
        {"read_file", b_read_file}, {"write_file", b_write_file}, {"stat", b_stat},       {"listdir", b_listdir},
        {"mkdir", b_mkdir},         {"unlink", b_unlink},         {"rename", b_rename},   {"syscall", b_syscall},
        {"ping", b_ping},           {NULL, NULL},
    };
    luaL_newmetatable(L, BATCH_MT);
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, b_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}
