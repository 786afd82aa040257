/* Async processes and streams (tails, descriptor streams, process output).
 * The agent pushes data on the object's channel; reads here pull from the
 * channel log the VM layer keeps (host/vmm/router.c), so bytes are never
 * lost between calls; a tail drops what it read through vm_chan_consume. */
#include <ctype.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "lua_internal.h"

#define PROC_MT "provium.Process"
#define STREAM_MT "provium.Stream"

typedef struct {
    uint32_t chan;
    int64_t pid;
    bool waited, closed;
    bool timed_out; /* wait(timeout) expired and killed it */
    char *site;
} lproc;

typedef struct {
    uint32_t chan;
    int idx;        /* which log of the channel: 0 stdout, 1 stderr, 2 tail */
    size_t cursor;  /* next unread byte of the log */
    bool owns_chan; /* tails own their channel; process streams share it */
    bool closed;
    char *site;
    const char *kind;
    unsigned item;
    unsigned generation; /* of the guest boot the stream belongs to */
} lstream;

/* ---- helpers ---- */

static lvm *owner_vm(lua_State *L, int idx)
{
    lua_getiuservalue(L, idx, 1);
    lvm *v = pv_check_vm(L, -1);
    lua_pop(L, 1);
    return v;
}

static void pump_or_raise(lua_State *L, lvm *v, int64_t deadline)
{
    char err[PV_ERR_MAX];
    if (vm_pump(v->vm, deadline, err, sizeof(err)) < 0)
        luaL_error(L, "%s", err);
}

static int64_t opt_timeout(lua_State *L, int idx, int64_t dflt, const char *what)
{
    if (lua_isnoneornil(L, idx))
        return dflt;
    return pv_lua_duration_ms(L, idx, what);
}

void pv_track(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "provium.track");
    if (lua_isfunction(L, -1)) {
        lua_pushvalue(L, -2);
        lua_call(L, 1, 0);
    } else {
        lua_pop(L, 1);
    }
}

/* ---- signals ---- */

static const struct {
    const char *name;
    int sig;
} signames[] = {
    {"term", SIGTERM}, {"kill", SIGKILL}, {"int", SIGINT},   {"hup", SIGHUP},   {"quit", SIGQUIT},
    {"stop", SIGSTOP}, {"cont", SIGCONT}, {"usr1", SIGUSR1}, {"usr2", SIGUSR2}, {"alrm", SIGALRM},
    {"pipe", SIGPIPE}, {"chld", SIGCHLD}, {"winch", SIGWINCH}, {"abrt", SIGABRT}, {"segv", SIGSEGV},
};

int pv_check_signal(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx))
        return SIGTERM;
    if (lua_isinteger(L, idx)) {
        lua_Integer s = lua_tointeger(L, idx);
        if (s < 0 || s > 64)
            luaL_error(L, "signal number %d is out of range", (int)s);
        return (int)s;
    }
    const char *name = luaL_checkstring(L, idx);
    char low[32];
    size_t i;
    for (i = 0; name[i] && i < sizeof(low) - 1; i++)
        low[i] = (char)tolower((unsigned char)name[i]);
    low[i] = 0;
    const char *bare = strncmp(low, "sig", 3) == 0 ? low + 3 : low;
    for (size_t k = 0; k < sizeof(signames) / sizeof(signames[0]); k++)
        if (strcmp(bare, signames[k].name) == 0)
            return signames[k].sig;
    char *end;
    long n = strtol(low, &end, 10);
    if (*low && !*end && n >= 0 && n <= 64)
        return (int)n;
    return luaL_error(L, "unknown signal name `%s`", name);
}

/* ---- Process ---- */

static int l_run_async(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    pv_require_booted(L, v, "run_async");
    uint32_t chan = vm_chan_open(v->vm, v->chan_base, true)->id;
    pv_build_exec(L, v, chan, true);
    vm_reply r;
    char err[PV_ERR_MAX];
    if (vm_call(v->vm, &r, OP_TIMEOUT_MS, NULL, err, sizeof(err)) != 0) {
        vm_chan_free(v->vm, chan);
        return luaL_error(L, "%s", err);
    }
    lproc *p = lua_newuserdatauv(L, sizeof(lproc), 1);
    memset(p, 0, sizeof(*p));
    p->chan = chan;
    p->pid = (int64_t)pv_msg_u64(&r.msg, PV_T_PID, 0);
    p->site = pv_caller_site(L);
    vm_reply_free(&r);
    luaL_setmetatable(L, PROC_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    pv_track(L);
    return 1;
}

static lproc *check_proc(lua_State *L)
{
    lproc *p = luaL_checkudata(L, 1, PROC_MT);
    if (!p->site)
        luaL_error(L, "process: this Process object was already freed (its __gc ran); it cannot be used");
    return p;
}

static const vm_chan *proc_chan(lua_State *L, lproc *p, lvm **vp)
{
    lvm *v = owner_vm(L, 1);
    *vp = v;
    return vm_chan_find(v->vm, p->chan);
}

static int send_signal(lua_State *L, lvm *v, lproc *p, int sig, bool raise)
{
    if (v->vm->state != VM_BOOTED)
        return raise ? luaL_error(L, "process %d: the VM is %s", (int)p->pid, vm_state_name(v->vm->state)) : 0;
    vm_begin_on(v->vm, PV_MSG_PROC_SIGNAL, v->chan_base);
    pv_put_u64(&v->vm->out, PV_T_CHAN, p->chan);
    pv_put_u64(&v->vm->out, PV_T_SIGNAL, (uint64_t)sig);
    vm_reply r;
    char err[PV_ERR_MAX];
    int gerr;
    if (vm_call(v->vm, &r, OP_TIMEOUT_MS, &gerr, err, sizeof(err)) != 0)
        return raise ? luaL_error(L, "%s", err) : 0;
    vm_reply_free(&r);
    return 0;
}

static int l_proc_kill(lua_State *L)
{
    lproc *p = check_proc(L);
    int sig = pv_check_signal(L, 2);
    lvm *v;
    const vm_chan *ch = proc_chan(L, p, &v);
    if (!ch || ch->done)
        return luaL_error(L, "process %d has already exited", (int)p->pid);
    send_signal(L, v, p, sig, true);
    return 0;
}

/* Waits for the final result; returns false on deadline. */
static bool wait_done(lua_State *L, lvm *v, uint32_t chan, int64_t deadline)
{
    for (;;) {
        const vm_chan *ch = vm_chan_find(v->vm, chan);
        if (!ch)
            luaL_error(L, "process channel vanished");
        if (ch->done)
            return true;
        if (ch->lost)
            luaL_error(L, "vm '%s': the process is lost: the guest rebooted, was restored or died before it ended",
                       v->vm->name);
        if (v->vm->state == VM_DEAD)
            luaL_error(L, "vm '%s': the VM died while waiting for the process: %s", v->vm->name,
                       v->vm->dead_reason ? v->vm->dead_reason : "");
        if (deadline >= 0 && now_ms() >= deadline)
            return false;
        pump_or_raise(L, v, deadline);
    }
}

static int l_proc_wait(lua_State *L)
{
    lproc *p = check_proc(L);
    if (lua_isnumber(L, 2) && lua_tonumber(L, 2) == 0)
        return luaL_error(L, "proc:wait(0) is not allowed; use proc:status() to poll without waiting");
    int64_t timeout = opt_timeout(L, 2, -1, "proc:wait timeout");
    lvm *v = owner_vm(L, 1);
    if (!vm_chan_find(v->vm, p->chan))
        return luaL_error(L, "process %d: no longer tracked", (int)p->pid);
    if (!wait_done(L, v, p->chan, timeout < 0 ? -1 : now_ms() + timeout)) {
        /* the deadline passed: kill it and report a timeout */
        send_signal(L, v, p, SIGKILL, false);
        wait_done(L, v, p->chan, now_ms() + OP_TIMEOUT_MS);
        p->timed_out = true;
    }
    const vm_chan *ch = vm_chan_find(v->vm, p->chan);
    p->waited = true;
    pv_push_run_result(L, v, &ch->result.msg, ch->log[0].s ? ch->log[0].s : "", ch->log[0].len,
                       ch->log[1].s ? ch->log[1].s : "", ch->log[1].len);
    if (p->timed_out) {
        lua_pushstring(L, "timed_out");
        lua_setfield(L, -2, "status");
        lua_pushinteger(L, -2);
        lua_setfield(L, -2, "exit_code");
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "timed_out");
    }
    return 1;
}

static int l_proc_status(lua_State *L)
{
    lproc *p = check_proc(L);
    lvm *v;
    const vm_chan *ch = proc_chan(L, p, &v);
    while (ch && !ch->done && v->vm->state == VM_BOOTED) {
        char err[PV_ERR_MAX];
        if (vm_pump(v->vm, now_ms(), err, sizeof(err)) != 1)
            break;
        ch = vm_chan_find(v->vm, p->chan);
    }
    if (!ch || !ch->done) {
        lua_pushstring(L, v->vm->state == VM_BOOTED && ch && !ch->lost ? "running" : "lost");
        return 1;
    }
    if (p->timed_out) {
        lua_pushstring(L, "timed_out");
        return 1;
    }
    uint64_t st = pv_msg_u64(&ch->result.msg, PV_T_STATUS, 0);
    lua_pushstring(L, st == PV_EXEC_EXITED ? "exited" : st == PV_EXEC_SIGNALLED ? "signalled" : "timed_out");
    return 1;
}

static int l_proc_pid(lua_State *L)
{
    lua_pushinteger(L, check_proc(L)->pid);
    return 1;
}

static int l_proc_handle(lua_State *L)
{
    lua_pushinteger(L, check_proc(L)->chan);
    return 1;
}

static int proc_stdin(lua_State *L, const char *data, size_t len, bool eof)
{
    lproc *p = check_proc(L);
    lvm *v = owner_vm(L, 1);
    pv_require_booted(L, v, eof ? "close_stdin" : "stdin_write");
    vm_begin_on(v->vm, PV_MSG_PROC_STDIN, v->chan_base);
    pv_put_u64(&v->vm->out, PV_T_CHAN, p->chan);
    if (data)
        pv_put_bytes(&v->vm->out, PV_T_DATA, data, len);
    if (eof)
        pv_put_u64(&v->vm->out, PV_T_EOF, 1);
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS);
    lua_pushinteger(L, pv_msg_i64(&r.msg, PV_T_COUNT, 0));
    vm_reply_free(&r);
    return 1;
}

static int l_proc_stdin_write(lua_State *L)
{
    size_t len;
    const char *d = luaL_checklstring(L, 2, &len);
    return proc_stdin(L, d, len, false);
}

static int l_proc_close_stdin(lua_State *L)
{
    proc_stdin(L, NULL, 0, true);
    return 0;
}

/* TERM, a grace period, then KILL. Idempotent; never raises. */
static int l_proc_close(lua_State *L)
{
    lproc *p = check_proc(L);
    if (p->closed || p->waited)
        return 0;
    p->closed = true;
    lvm *v = owner_vm(L, 1);
    const vm_chan *ch = vm_chan_find(v->vm, p->chan);
    if (!ch || ch->done || v->vm->state != VM_BOOTED)
        return 0;
    send_signal(L, v, p, SIGTERM, false);
    char err[PV_ERR_MAX];
    int64_t deadline = now_ms() + 2000;
    while ((ch = vm_chan_find(v->vm, p->chan)) && !ch->done && v->vm->state == VM_BOOTED &&
           vm_pump(v->vm, deadline, err, sizeof(err)) == 1) {
    }
    if (ch && !ch->done && v->vm->state == VM_BOOTED) {
        send_signal(L, v, p, SIGKILL, false);
        deadline = now_ms() + 5000;
        while ((ch = vm_chan_find(v->vm, p->chan)) && !ch->done && v->vm->state == VM_BOOTED &&
               vm_pump(v->vm, deadline, err, sizeof(err)) == 1) {
        }
    }
    return 0;
}

static int l_proc_gc(lua_State *L)
{
    lproc *p = luaL_checkudata(L, 1, PROC_MT);
    if (!p->site)
        return 0;
    lua_getiuservalue(L, 1, 1);
    lvm *v = pv_test_owner(L, -1);
    if (v && v->vm)
        vm_chan_free(v->vm, p->chan);
    free(p->site);
    p->site = NULL;
    return 0;
}

static int push_stream(lua_State *L, int owner_idx, uint32_t chan, int idx, bool owns, const char *kind);

static int l_proc_stdout_stream(lua_State *L)
{
    lproc *p = check_proc(L);
    return push_stream(L, 1, p->chan, 0, false, "proc_stdout_stream");
}

static int l_proc_stderr_stream(lua_State *L)
{
    lproc *p = check_proc(L);
    return push_stream(L, 1, p->chan, 1, false, "proc_stderr_stream");
}

/* ---- Stream ---- */

/* owner_idx holds the object keeping the VM alive: the VM itself or a Process. */
static int push_stream(lua_State *L, int owner_idx, uint32_t chan, int idx, bool owns, const char *kind)
{
    owner_idx = lua_absindex(L, owner_idx);
    lstream *s = lua_newuserdatauv(L, sizeof(lstream), 2);
    memset(s, 0, sizeof(*s));
    s->chan = chan;
    s->idx = idx;
    s->owns_chan = owns;
    s->site = pv_caller_site(L);
    s->kind = kind;
    luaL_setmetatable(L, STREAM_MT);
    /* uservalue 1: the VM; uservalue 2: the owner (keeps a Process alive).
     * A Worker's or a Process's uservalue 1 is the VM (or the Worker), so a
     * Worker's streams are counted and listed with its VM's. */
    if (luaL_testudata(L, owner_idx, VM_MT)) {
        lua_pushvalue(L, owner_idx);
    } else {
        lua_getiuservalue(L, owner_idx, 1);
    }
    lua_setiuservalue(L, -2, 1);
    lua_pushvalue(L, owner_idx);
    lua_setiuservalue(L, -2, 2);
    lvm *v = owner_vm(L, lua_gettop(L));
    s->generation = v->vm->generation;
    v->open_streams++;
    s->item = pv_item_add(v, kind, s->site);
    pv_track(L);
    return 1;
}

static lstream *check_stream(lua_State *L)
{
    lstream *s = luaL_checkudata(L, 1, STREAM_MT);
    if (!s->site)
        luaL_error(L, "stream: this Stream object was already freed (its __gc ran); it cannot be used");
    return s;
}

static const vm_chan *stream_chan(lua_State *L, lstream *s, lvm **vp)
{
    lvm *v = owner_vm(L, 1);
    if (vp)
        *vp = v;
    return vm_chan_find(v->vm, s->chan);
}

static size_t pending(const vm_chan *ch, lstream *s) { return ch ? ch->log[s->idx].len - s->cursor : 0; }

/* Tails have one reader: drop what it consumed so the log stays small. */
static void trim(lua_State *L, lstream *s)
{
    if (!s->owns_chan || s->cursor == 0)
        return;
    vm_chan_consume(owner_vm(L, 1)->vm, s->chan, s->idx, s->cursor);
    s->cursor = 0;
}

/* Waits until more than `have` unread bytes, EOF or the deadline. */
static const vm_chan *await_more(lua_State *L, lstream *s, size_t have, int64_t deadline)
{
    lvm *v;
    const vm_chan *ch = stream_chan(L, s, &v);
    while (ch && !s->closed && pending(ch, s) <= have && !ch->eof[s->idx] && v->vm->state == VM_BOOTED &&
           now_ms() < deadline) {
        char err[PV_ERR_MAX];
        if (vm_pump(v->vm, deadline, err, sizeof(err)) < 0)
            break;
        ch = vm_chan_find(v->vm, s->chan);
    }
    return ch;
}

static const vm_chan *await_data(lua_State *L, lstream *s, int64_t deadline) { return await_more(L, s, 0, deadline); }

static int l_stream_next(lua_State *L)
{
    lstream *s = check_stream(L);
    int64_t deadline = now_ms() + opt_timeout(L, 2, 10000, "stream:next timeout");
    if (s->closed) {
        lua_pushnil(L);
        return 1;
    }
    const vm_chan *ch = await_data(L, s, deadline);
    size_t n = pending(ch, s);
    if (!n) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushlstring(L, ch->log[s->idx].s + s->cursor, n);
    s->cursor += n;
    trim(L, s);
    return 1;
}

static int read_until(lua_State *L, bool keep)
{
    lstream *s = check_stream(L);
    size_t plen;
    const char *pat = luaL_checklstring(L, 2, &plen);
    int64_t deadline = now_ms() + opt_timeout(L, 3, 10000, "timeout");
    if (s->closed)
        return luaL_error(L, "stream closed");
    for (;;) {
        lvm *v;
        const vm_chan *ch = stream_chan(L, s, &v);
        size_t n = pending(ch, s);
        const char *base = n ? ch->log[s->idx].s + s->cursor : "";
        const char *hit = plen ? memmem(base, n, pat, plen) : base;
        if (hit) {
            size_t upto = (size_t)(hit - base) + plen;
            if (keep)
                lua_pushlstring(L, base, upto);
            s->cursor += upto;
            trim(L, s);
            return keep ? 1 : 0;
        }
        if (!ch || ch->eof[s->idx] || v->vm->state != VM_BOOTED)
            return luaL_error(L, "stream EOF while waiting for `%s`", pat);
        if (now_ms() >= deadline)
            return luaL_error(L, "read_until timed out waiting for `%s`", pat);
        size_t before = n;
        ch = await_more(L, s, before, deadline);
        if (pending(ch, s) == before && now_ms() >= deadline)
            return luaL_error(L, "read_until timed out waiting for `%s`", pat);
    }
}

static int l_stream_read_until(lua_State *L) { return read_until(L, true); }
static int l_stream_expect(lua_State *L) { return read_until(L, false); }

static int l_stream_drain(lua_State *L)
{
    lstream *s = check_stream(L);
    int64_t deadline = now_ms() + opt_timeout(L, 2, 500, "stream:drain timeout");
    lua_newtable(L);
    int k = 1;
    while (!s->closed) {
        const vm_chan *ch = await_data(L, s, deadline);
        size_t n = pending(ch, s);
        if (!n)
            break;
        lua_pushlstring(L, ch->log[s->idx].s + s->cursor, n);
        lua_rawseti(L, -2, k++);
        s->cursor += n;
        trim(L, s);
    }
    return 1;
}

static int l_stream_eof(lua_State *L)
{
    lstream *s = check_stream(L);
    const vm_chan *ch = stream_chan(L, s, NULL);
    lua_pushboolean(L, s->closed || !ch || (ch->eof[s->idx] && pending(ch, s) == 0));
    return 1;
}

static int l_stream_close(lua_State *L)
{
    lstream *s = check_stream(L);
    if (s->closed)
        return 0;
    s->closed = true;
    lvm *v = owner_vm(L, 1);
    if (v->open_streams > 0 && s->generation == v->vm->generation)
        v->open_streams--;
    pv_item_remove(v, s->item);
    if (s->owns_chan) {
        if (v->vm->state == VM_BOOTED && s->generation == v->vm->generation) {
            vm_begin_on(v->vm, PV_MSG_STREAM_CLOSE, s->chan);
            vm_reply r;
            char err[PV_ERR_MAX];
            if (vm_call(v->vm, &r, OP_TIMEOUT_MS, NULL, err, sizeof(err)) == 0)
                vm_reply_free(&r);
        }
        vm_chan_free(v->vm, s->chan);
    }
    return 0;
}

static int l_stream_creation_site(lua_State *L)
{
    lstream *s = check_stream(L);
    const char *colon = strrchr(s->site, ':');
    if (!colon) {
        lua_pushnil(L);
        return 1;
    }
    lua_createtable(L, 0, 2);
    lua_pushlstring(L, s->site, (size_t)(colon - s->site));
    lua_setfield(L, -2, "file");
    lua_pushinteger(L, atoi(colon + 1));
    lua_setfield(L, -2, "line");
    return 1;
}

static int l_stream_kind(lua_State *L)
{
    lua_pushstring(L, check_stream(L)->kind);
    return 1;
}

static int l_stream_gc(lua_State *L)
{
    lstream *s = luaL_checkudata(L, 1, STREAM_MT);
    if (!s->site)
        return 0;
    if (s->owns_chan && !s->closed) {
        lua_getiuservalue(L, 1, 1);
        lvm *v = pv_test_owner(L, -1);
        if (v && v->vm)
            vm_chan_free(v->vm, s->chan);
    }
    free(s->site);
    s->site = NULL;
    return 0;
}

/* Opens an agent-side stream on a new channel; the request is built by the
 * caller-supplied fields (path or fd). */
static int open_tail(lua_State *L, lvm *v, int vm_idx, const char *path, int64_t fd, uint64_t start, int64_t off,
                     const char *kind)
{
    pv_require_booted(L, v, kind);
    uint32_t chan = vm_chan_open(v->vm, v->chan_base, false)->id;
    vm_begin_on(v->vm, PV_MSG_TAIL_OPEN, chan);
    if (path)
        pv_put_str(&v->vm->out, PV_T_PATH, path);
    else
        pv_put_i64(&v->vm->out, PV_T_FD, fd);
    pv_put_u64(&v->vm->out, PV_T_START, start);
    pv_put_i64(&v->vm->out, PV_T_OFFSET, off);
    vm_reply r;
    char err[PV_ERR_MAX];
    if (vm_call(v->vm, &r, OP_TIMEOUT_MS, NULL, err, sizeof(err)) != 0) {
        vm_chan_free(v->vm, chan);
        return luaL_error(L, "%s", err);
    }
    vm_reply_free(&r);
    return push_stream(L, vm_idx, chan, 2, true, kind);
}

/* vm:tail_file(path [, {start = "end" | "beginning" | offset}]) */
static int l_tail_file(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    const char *path = pv_check_cstr(L, 2, "tail_file: path");
    uint64_t start = 1;
    int64_t off = 0;
    static const char *const keys[] = {"start", NULL};
    pv_check_opt_keys(L, 3, "tail_file", keys);
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "start");
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *st = lua_tostring(L, -1);
            if (strcmp(st, "end") == 0)
                start = 1;
            else if (strcmp(st, "beginning") == 0 || strcmp(st, "start") == 0)
                start = 0;
            else
                return luaL_error(L, "tail_file: start must be \"end\", \"beginning\" or a byte offset, not \"%s\"", st);
        } else if (lua_type(L, -1) == LUA_TNUMBER) {
            double d = lua_tonumber(L, -1);
            if (d != d || d == 1.0 / 0.0 || d == -1.0 / 0.0)
                return luaL_error(L, "tail_file: start offset must be finite");
            off = (int64_t)d;
            start = off >= 0 ? 2 : 3;
            if (off < 0)
                off = -off;
        } else if (!lua_isnil(L, -1)) {
            return luaL_error(L, "tail_file: start must be a string or a number");
        }
        lua_pop(L, 1);
    }
    return open_tail(L, v, 1, path, -1, start, off, "tail_file");
}

int pv_open_fd_stream(lua_State *L, lvm *v, int vm_idx, int64_t fd, const char *kind)
{
    return open_tail(L, v, vm_idx, NULL, fd, 1, 0, kind);
}

/* vm:fd_stream(fd_or_file) */
static int l_fd_stream(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    lua_Integer fd = pv_check_fd(L, 2, "fd_stream");
    return pv_open_fd_stream(L, v, 1, fd, "fd_stream");
}

static int l_open_stream_count(lua_State *L)
{
    lua_pushinteger(L, pv_check_vm(L, 1)->open_streams);
    return 1;
}

void pv_lua_proc_init(lua_State *L, int methods_idx)
{
    static const luaL_Reg vm_fns[] = {{"run_async", l_run_async},
                                      {"tail_file", l_tail_file},
                                      {"fd_stream", l_fd_stream},
                                      {"open_stream_count", l_open_stream_count},
                                      {NULL, NULL}};
    pv_add_methods(L, methods_idx, vm_fns);
    static const luaL_Reg proc_fns[] = {
        {"wait", l_proc_wait},
        {"kill", l_proc_kill},
        {"signal", l_proc_kill},
        {"status", l_proc_status},
        {"pid", l_proc_pid},
        {"handle", l_proc_handle},
        {"stdin_write", l_proc_stdin_write},
        {"close_stdin", l_proc_close_stdin},
        {"stdout_stream", l_proc_stdout_stream},
        {"stderr_stream", l_proc_stderr_stream},
        {"close", l_proc_close},
        {NULL, NULL},
    };
    luaL_newmetatable(L, PROC_MT);
    luaL_newlib(L, proc_fns);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_proc_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    static const luaL_Reg stream_fns[] = {
        {"next", l_stream_next},   {"read_until", l_stream_read_until}, {"expect", l_stream_expect},
        {"drain", l_stream_drain}, {"eof", l_stream_eof},               {"close", l_stream_close},
        {"creation_site", l_stream_creation_site}, {"kind", l_stream_kind}, {NULL, NULL},
    };
    luaL_newmetatable(L, STREAM_MT);
    luaL_newlib(L, stream_fns);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_stream_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}
