/* Workers: vm:spawn_worker([{thread=true}]) (classic: vm:spawn) returns a
 * Worker, another agent inside the same guest with its own channel.
 *
 * A Worker userdata begins with an lvm that points at the VM's pv_vm and
 * whose chan_base is the worker's channel (id << PV_WORKER_SHIFT).
 * pv_check_vm accepts Workers, and the bindings begin every request on
 * v->chan_base, so every VM method (run, exec, syscall, ioctl, files,
 * streams, batch, clock) and every object it creates (File, Process, Stream,
 * Clock keep the Worker as their owner) addresses the worker with no change
 * of its own; results have the VM's shapes, classic included. The agent
 * relays the channel to the worker (agent/worker.c). The Worker's method
 * table falls back to the VM's methods, minus the VM lifecycle. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "lua_internal.h"

#define ASYNC_MT "provium.AsyncSyscall"
#define KILL_WAIT_MS 10000
#define JOIN_DEFAULT_MS 30000
#define UID_ASK_MS 2000
#define SYS_geteuid 107

typedef struct lworker {
    lvm base; /* first: VM methods take a Worker for an lvm */
    uint32_t id;
    int64_t pid;
    int64_t uid; /* effective uid when last asked; -1: not asked yet */
    bool thread;
    bool ended;  /* killed, exited, or its VM is gone */
    bool asking; /* asking for the uid: no nested asks */
    char *site;
    char gone[512];
    struct lworker *next_live; /* every Worker not yet collected */
} lworker;

static lworker *live_workers;

typedef struct {
    uint32_t chan;
    int64_t nr;
    bool done, closed;
} lasync;

int pv_raisef(lua_State *L, const char *fmt, ...)
{
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    luaL_where(L, 1);
    lua_pushstring(L, msg);
    lua_concat(L, 2);
    return lua_error(L);
}

static lworker *check_worker(lua_State *L, int idx)
{
    lworker *w = luaL_checkudata(L, idx, WORKER_MT);
    if (!w->base.vm)
        luaL_error(L, "worker: its VM object was already freed (its __gc ran); the worker cannot be used");
    return w;
}

static const char *kind(const lworker *w) { return w->thread ? "thread" : "fork"; }

/* "worker 2 (fork, pid 91, uid 1000) of VM 'box'" */
static const char *describe(const lworker *w, char *buf, size_t len)
{
    char uid[32] = "";
    if (w->uid >= 0)
        snprintf(uid, sizeof(uid), ", uid %lld", (long long)w->uid);
    snprintf(buf, len, "worker %u (%s, %s %lld%s) of VM '%s'", w->id, kind(w), w->thread ? "tid" : "pid",
             (long long)w->pid, uid, w->base.vm ? w->base.vm->name : "?");
    return buf;
}

/* vm_who_fn: names the worker whose channels begin at worker_chan. refresh
 * asks the worker for its effective uid first (one geteuid round trip). */
static void who_fn(pv_vm *vm, uint32_t worker_chan, bool refresh, char *buf, size_t len)
{
    lworker *w = NULL;
    for (lworker *l = live_workers; l; l = l->next_live)
        if (l->base.vm == vm && l->base.chan_base == worker_chan && (!w || w->ended))
            w = l;
    if (!w) {
        snprintf(buf, len, "worker %u of VM '%s'", PV_CHAN_WORKER(worker_chan), vm->name);
        return;
    }
    if (refresh && !w->asking && !w->ended && vm->state == VM_BOOTED) {
        w->asking = true;
        vm_begin_on(vm, PV_MSG_SYSCALL, w->base.chan_base);
        pv_put_i64(&vm->out, PV_T_NR, SYS_geteuid);
        vm_reply r;
        char err[PV_ERR_MAX];
        if (vm_call(vm, &r, UID_ASK_MS, NULL, err, sizeof(err)) == 0) {
            w->uid = pv_msg_i64(&r.msg, PV_T_RET, -1);
            vm_reply_free(&r);
        }
        w->asking = false;
    }
    describe(w, buf, len);
}

/* Has the worker ended? Fills w->gone from what is known. */
static bool worker_ended(lworker *w)
{
    if (w->ended)
        return true;
    pv_vm *vm = w->base.vm;
    if (!vm)
        return true;
    char who[256];
    if (vm->state != VM_BOOTED && vm->state != VM_PAUSED) {
        snprintf(w->gone, sizeof(w->gone), "%s ended with its VM (%s)", describe(w, who, sizeof(who)),
                 vm_state_name(vm->state));
        w->ended = true;
        return true;
    }
    const vm_chan *ch = vm_chan_find(vm, w->base.chan_base);
    if (ch && ch->done) {
        char *msg = pv_msg_strdup(&ch->result.msg, PV_T_MESSAGE);
        snprintf(w->gone, sizeof(w->gone), "VM '%s': %s", vm->name, msg ? msg : "worker exited");
        free(msg);
        w->ended = true;
        return true;
    }
    return false;
}

const char *pv_worker_gone(lvm *v)
{
    if (!v->chan_base)
        return NULL;
    lworker *w = (lworker *)v;
    return worker_ended(w) ? w->gone : NULL;
}

/* vm:spawn_worker([{thread = bool}]) / classic vm:spawn([opts]) */
static int l_spawn_worker(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    if (v->chan_base)
        return luaL_error(L, "spawn_worker: a worker cannot spawn workers; spawn them from the VM");
    bool thread = false;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 2)) {
            if (lua_type(L, -2) != LUA_TSTRING || strcmp(lua_tostring(L, -2), "thread") != 0) {
                lua_pushvalue(L, -2);
                return luaL_error(L, "spawn_worker: unknown option '%s' (known: thread)", luaL_tolstring(L, -1, NULL));
            }
            lua_pop(L, 1);
        }
        if (lua_getfield(L, 2, "thread") != LUA_TNIL && !lua_isboolean(L, -1))
            return luaL_error(L, "spawn_worker: thread must be a boolean, not a %s", luaL_typename(L, -1));
        thread = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    pv_require_booted(L, v, "spawn_worker");
    vm_begin_on(v->vm, PV_MSG_WORKER_SPAWN, v->chan_base);
    pv_put_u64(&v->vm->out, PV_T_THREAD, thread);
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS);
    uint32_t id = (uint32_t)pv_msg_u64(&r.msg, PV_T_WORKER, 0);
    int64_t pid = (int64_t)pv_msg_u64(&r.msg, PV_T_PID, 0);
    vm_reply_free(&r);
    uint32_t base = id << PV_WORKER_SHIFT;
    /* the worker's own channel: WORKER_EXIT is pushed there */
    vm_chan_open_worker(v->vm, base);
    lworker *w = lua_newuserdatauv(L, sizeof(lworker), 1);
    memset(w, 0, sizeof(*w));
    w->base.vm = v->vm;
    w->base.chan_base = base;
    w->base.classic = v->classic;
    w->id = id;
    w->pid = pid;
    w->uid = -1;
    w->thread = thread;
    w->site = pv_caller_site(L);
    w->next_live = live_workers;
    live_workers = w;
    vm_set_who_fn(v->vm, who_fn);
    luaL_setmetatable(L, WORKER_MT);
    lua_pushvalue(L, 1); /* keeps the VM alive */
    lua_setiuservalue(L, -2, 1);
    pv_track(L);
    return 1;
}

/* Pumps until the worker's WORKER_EXIT arrives or the deadline passes. */
static bool wait_ended(lua_State *L, lworker *w, int64_t deadline)
{
    char err[PV_ERR_MAX];
    while (!worker_ended(w)) {
        int r = vm_pump(w->base.vm, deadline, err, sizeof(err));
        if (r < 0) {
            if (L)
                luaL_error(L, "%s", err);
            return worker_ended(w);
        }
        if (r == 0)
            return false;
    }
    return true;
}

/* Closes the worker's channel and waits for it to go. raise=false: never
 * raises (scope cleanup). */
static int do_kill(lua_State *L, lworker *w, bool raise)
{
    if (worker_ended(w))
        return 0;
    pv_vm *vm = w->base.vm;
    char who[256];
    describe(w, who, sizeof(who));
    if (vm->state != VM_BOOTED) {
        if (raise)
            return pv_raisef(L, "%s: cannot kill: the VM is %s", who, vm_state_name(vm->state));
        return 0;
    }
    vm_begin(vm, PV_MSG_WORKER_KILL); /* a VM request: the worker's channel is closing */
    pv_put_u64(&vm->out, PV_T_WORKER, w->id);
    vm_reply r;
    char err[PV_ERR_MAX];
    int gerr = 0;
    if (vm_call(vm, &r, OP_TIMEOUT_MS, &gerr, err, sizeof(err)) != 0) {
        if (gerr == ESRCH) { /* it had already gone */
            snprintf(w->gone, sizeof(w->gone), "%s has exited", who);
            w->ended = true;
            return 0;
        }
        if (raise)
            return luaL_error(L, "%s", err);
        return 0;
    }
    vm_reply_free(&r);
    if (!wait_ended(raise ? L : NULL, w, now_ms() + KILL_WAIT_MS)) {
        if (raise)
            return pv_raisef(L, "%s did not exit within %d s of kill", who, KILL_WAIT_MS / 1000);
        return 0;
    }
    snprintf(w->gone, sizeof(w->gone), "%s was killed", who);
    return 0;
}

/* In-flight work of w: its run_async processes that have not exited and its
 * syscall_async calls that have not returned. */
static size_t in_flight(lworker *w, bool procs_only, uint32_t *ids, size_t max)
{
    size_t n = 0;
    for (const vm_chan *ch = vm_chan_first(w->base.vm); ch; ch = ch->next) {
        if (PV_CHAN_WORKER(ch->id) != w->id || ch->id == w->base.chan_base || ch->done || ch->lost)
            continue;
        if (!ch->proc && (procs_only || !ch->await_req))
            continue;
        if (ids && n < max)
            ids[n] = ch->id;
        n++;
    }
    return n;
}

/* w:kill(sig): sends sig to every process the worker started with run_async
 * that is still running; the worker itself carries on. Returns how many. */
static int signal_procs(lua_State *L, lworker *w, int sig)
{
    char who[256];
    if (worker_ended(w))
        return pv_raisef(L, "%s: cannot kill(%d)", w->gone, sig);
    pv_vm *vm = w->base.vm;
    if (vm->state != VM_BOOTED)
        return pv_raisef(L, "%s: cannot kill(%d): the VM is %s", describe(w, who, sizeof(who)), sig,
                      vm_state_name(vm->state));
    size_t n = in_flight(w, true, NULL, 0);
    uint32_t *ids = xcalloc(n + 1, sizeof(uint32_t));
    in_flight(w, true, ids, n);
    int sent = 0;
    char err[PV_ERR_MAX];
    for (size_t i = 0; i < n; i++) {
        vm_begin_on(vm, PV_MSG_PROC_SIGNAL, w->base.chan_base);
        pv_put_u64(&vm->out, PV_T_CHAN, ids[i]);
        pv_put_u64(&vm->out, PV_T_SIGNAL, (uint64_t)sig);
        vm_reply r;
        int gerr = 0;
        if (vm_call(vm, &r, OP_TIMEOUT_MS, &gerr, err, sizeof(err)) != 0) {
            if (gerr == ESRCH) /* it exited meanwhile */
                continue;
            free(ids);
            return luaL_error(L, "%s", err);
        }
        vm_reply_free(&r);
        sent++;
    }
    free(ids);
    lua_pushinteger(L, sent);
    return 1;
}

/* w:kill(): ends the worker. w:kill(sig): signals its processes. */
static int l_worker_kill(lua_State *L)
{
    lworker *w = check_worker(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        if (!lua_isinteger(L, 2) && lua_type(L, 2) != LUA_TSTRING)
            return luaL_error(L, "worker:kill(sig): sig must be a signal number or name, not a %s",
                              luaL_typename(L, 2));
        return signal_procs(L, w, pv_check_signal(L, 2));
    }
    do_kill(L, w, true);
    return 0;
}

static int l_worker_close(lua_State *L)
{
    do_kill(L, check_worker(L, 1), false);
    return 0;
}

/* w:join([timeout]): waits until nothing the worker started is in flight
 * (run_async processes, syscall_async calls) or the worker has ended.
 * Returns {alive = bool, waited = n}; raises naming it on timeout. */
static int l_worker_join(lua_State *L)
{
    lworker *w = check_worker(L, 1);
    int64_t ms = lua_isnoneornil(L, 2) ? JOIN_DEFAULT_MS : pv_lua_duration_ms(L, 2, "join timeout");
    int64_t deadline = now_ms() + ms;
    size_t waited = worker_ended(w) ? 0 : in_flight(w, false, NULL, 0);
    char err[PV_ERR_MAX];
    while (!worker_ended(w) && in_flight(w, false, NULL, 0) > 0) {
        int r = vm_pump(w->base.vm, deadline, err, sizeof(err));
        if (r < 0)
            return luaL_error(L, "%s", err);
        if (r == 0) {
            char who[256];
            size_t procs = in_flight(w, true, NULL, 0), all = in_flight(w, false, NULL, 0);
            return pv_raisef(L, "%s: join: %zu process(es) and %zu system call(s) still running after %.1f s",
                          describe(w, who, sizeof(who)), procs, all - procs, ms / 1000.0);
        }
    }
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, !worker_ended(w));
    lua_setfield(L, -2, "alive");
    lua_pushinteger(L, (lua_Integer)waited);
    lua_setfield(L, -2, "waited");
    return 1;
}

static int l_worker_handle(lua_State *L)
{
    lua_pushinteger(L, check_worker(L, 1)->id);
    return 1;
}

static int l_worker_pid(lua_State *L)
{
    lua_pushinteger(L, check_worker(L, 1)->pid);
    return 1;
}

static int l_worker_id(lua_State *L)
{
    lua_pushinteger(L, check_worker(L, 1)->id);
    return 1;
}

static int l_worker_is_thread(lua_State *L)
{
    lua_pushboolean(L, check_worker(L, 1)->thread);
    return 1;
}

static int l_worker_alive(lua_State *L)
{
    lworker *w = check_worker(L, 1);
    /* take what the agent has pushed meanwhile */
    char err[PV_ERR_MAX];
    if (!worker_ended(w) && w->base.vm->state == VM_BOOTED)
        while (vm_pump(w->base.vm, now_ms(), err, sizeof(err)) == 1 && !worker_ended(w)) {
        }
    lua_pushboolean(L, !worker_ended(w));
    return 1;
}

static int l_worker_tostring(lua_State *L)
{
    lworker *w = luaL_checkudata(L, 1, WORKER_MT);
    lua_pushfstring(L, "Worker(%d, %s, pid %d, VM %s%s)", (int)w->id, kind(w), (int)w->pid,
                    w->base.vm ? w->base.vm->name : "?", worker_ended(w) ? ", ended" : "");
    return 1;
}

/* The VM's own __gc ran (only possible by calling it explicitly): its
 * workers must not keep the freed pv_vm. */
void pv_lua_workers_vm_freed(const pv_vm *vm)
{
    for (lworker *w = live_workers; w; w = w->next_live)
        if (w->base.vm == vm) {
            w->base.vm = NULL;
            w->ended = true;
        }
}

static int l_worker_gc(lua_State *L)
{
    lworker *w = luaL_checkudata(L, 1, WORKER_MT);
    for (lworker **p = &live_workers; *p; p = &(*p)->next_live)
        if (*p == w) {
            *p = w->next_live;
            break;
        }
    free(w->site);
    w->site = NULL;
    while (w->base.items)
        pv_item_remove(&w->base, w->base.items->id);
    /* its own channel, unless a newer worker was given the same id */
    bool id_reused = false;
    for (lworker *l = live_workers; l; l = l->next_live)
        id_reused |= l->base.vm == w->base.vm && l->base.chan_base == w->base.chan_base;
    if (w->base.vm && !id_reused)
        vm_chan_free(w->base.vm, w->base.chan_base);
    w->base.vm = NULL; /* off the list: a later free of the VM cannot reach it */
    return 0;
}

static int l_not_on_worker(lua_State *L)
{
    return luaL_error(L, "%s is a VM operation; call it on the VM, not on a worker",
                      lua_tostring(L, lua_upvalueindex(1)));
}

/* ---- syscall_async ---- */

/* w:syscall_async(nr, args...) starts a system call on the worker and
 * returns at once; h:await([timeout]) collects its result (same shape as
 * w:syscall). The worker serves nothing else until the call returns. */
static int l_syscall_async(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    if (!v->chan_base)
        return luaL_error(L, "syscall_async runs on a worker (vm:spawn_worker()); on the VM it would stall its agent");
    lua_Integer nr = luaL_checkinteger(L, 2);
    pv_require_booted(L, v, "syscall_async");
    int top = lua_gettop(L);
    if (top - 2 > 6)
        return luaL_error(L, "syscall_async: at most 6 arguments");
    uint32_t chan = vm_chan_open_await(v->vm, v->chan_base, PV_MSG_SYSCALL)->id;
    pv_buf *b = &v->vm->out;
    pv_put_i64(b, PV_T_NR, nr);
    size_t nbufs = 0;
    for (int i = 3; i <= top; i++)
        pv_put_syscall_arg(L, b, i, i - 3, &nbufs);
    char err[PV_ERR_MAX];
    if (vm_send(v->vm, err, sizeof(err)) != 0) {
        vm_chan_free(v->vm, chan);
        return luaL_error(L, "%s", err);
    }
    lasync *a = lua_newuserdatauv(L, sizeof(lasync), 1);
    memset(a, 0, sizeof(*a));
    a->chan = chan;
    a->nr = nr;
    luaL_setmetatable(L, ASYNC_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    pv_track(L);
    return 1;
}

static int l_async_await(lua_State *L)
{
    lasync *a = luaL_checkudata(L, 1, ASYNC_MT);
    if (a->done || a->closed)
        return luaL_error(L, "syscall_async: this result was already collected");
    int64_t ms = lua_isnoneornil(L, 2) ? OP_TIMEOUT_MS : pv_lua_duration_ms(L, 2, "await timeout");
    lua_getiuservalue(L, 1, 1);
    lvm *v = pv_check_vm(L, -1);
    lua_pop(L, 1);
    int64_t deadline = now_ms() + ms;
    char err[PV_ERR_MAX];
    const vm_chan *ch;
    while ((ch = vm_chan_find(v->vm, a->chan)) && !ch->done) {
        if (v->vm->state != VM_BOOTED)
            return luaL_error(L, "syscall_async(%d): the VM is %s", (int)a->nr, vm_state_name(v->vm->state));
        int r = vm_pump(v->vm, deadline, err, sizeof(err));
        if (r < 0)
            return luaL_error(L, "%s", err);
        if (r == 0) {
            const char *gone = pv_worker_gone(v);
            return pv_raisef(L, "syscall_async(%d): no result within %.1f s (%s)", (int)a->nr, ms / 1000.0,
                              gone ? gone : "the call is still running on the worker");
        }
    }
    if (!ch)
        return luaL_error(L, "syscall_async(%d): the result is lost (channel closed)", (int)a->nr);
    a->done = true;
    if (ch->result.msg.hdr.type == PV_MSG_ERROR) {
        char *msg = pv_msg_strdup(&ch->result.msg, PV_T_MESSAGE);
        char who[256];
        if (msg && strncmp(msg, "worker ", 7) == 0) /* the agent named the worker already */
            snprintf(who, sizeof(who), "VM '%s'", v->vm->name);
        else
            describe((lworker *)v, who, sizeof(who));
        lua_pushfstring(L, "%s: %s", who, msg ? msg : "error");
        free(msg);
        vm_chan_free(v->vm, a->chan);
        return lua_error(L);
    }
    pv_push_syscall_value(L, v, &ch->result.msg);
    vm_chan_free(v->vm, a->chan);
    return 1;
}

/* h:done(): true once the result has arrived (never blocks). */
static int l_async_done(lua_State *L)
{
    lasync *a = luaL_checkudata(L, 1, ASYNC_MT);
    if (a->done || a->closed) {
        lua_pushboolean(L, a->done);
        return 1;
    }
    lua_getiuservalue(L, 1, 1);
    lvm *v = pv_check_vm(L, -1);
    char err[PV_ERR_MAX];
    const vm_chan *ch;
    while ((ch = vm_chan_find(v->vm, a->chan)) && !ch->done && v->vm->state == VM_BOOTED &&
           vm_pump(v->vm, now_ms(), err, sizeof(err)) == 1) {
    }
    lua_pushboolean(L, ch && ch->done);
    return 1;
}

static int l_async_close(lua_State *L)
{
    lasync *a = luaL_checkudata(L, 1, ASYNC_MT);
    if (a->closed || a->done)
        return 0;
    a->closed = true;
    lua_getiuservalue(L, 1, 1);
    lvm *v = pv_test_owner(L, -1);
    if (v && v->vm)
        vm_chan_free(v->vm, a->chan); /* a late result is dropped */
    return 0;
}

void pv_lua_worker_init(lua_State *L, int vm_methods_idx)
{
    vm_methods_idx = lua_absindex(L, vm_methods_idx);
    /* syscall_async on the VM explains itself instead of being a nil field */
    static const luaL_Reg vm_fns[] = {
        {"spawn_worker", l_spawn_worker}, {"spawn", l_spawn_worker}, {"syscall_async", l_syscall_async}, {NULL, NULL}};
    pv_add_methods(L, vm_methods_idx, vm_fns);

    static const luaL_Reg worker_fns[] = {
        {"kill", l_worker_kill}, {"close", l_worker_close},   {"join", l_worker_join},
        {"pid", l_worker_pid},   {"id", l_worker_id},         {"is_thread", l_worker_is_thread},
        {"alive", l_worker_alive}, {"syscall_async", l_syscall_async}, {"handle", l_worker_handle},
        {NULL, NULL},
    };
    luaL_newmetatable(L, WORKER_MT);
    luaL_newlib(L, worker_fns);
    static const char *const vm_only[] = {"boot", "shutdown", "pause", "resume", "reset", "power_button",
                                          "console_write", "snapshot", "restore", "spawn", "spawn_worker",
                                          "disk", "disks", "attach_disk", "__set_classic", NULL};
    for (int i = 0; vm_only[i]; i++) {
        lua_pushstring(L, vm_only[i]);
        lua_pushcclosure(L, l_not_on_worker, 1);
        lua_setfield(L, -2, vm_only[i]);
    }
    /* everything else: the VM's methods, including ones added later */
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, vm_methods_idx);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_worker_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_worker_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushstring(L, "Worker");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);

    static const luaL_Reg async_fns[] = {
        {"await", l_async_await}, {"done", l_async_done}, {"close", l_async_close}, {NULL, NULL}};
    luaL_newmetatable(L, ASYNC_MT);
    luaL_newlib(L, async_fns);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_async_close); /* a handle never awaited frees its channel too */
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}
