/* The host end of the agent connection: sending requests, waiting for
 * frames (with the deadline, the QEMU exit, the agent's port closing and a
 * console oops as ways a wait ends), and the one death path of a VM whose
 * connection failed. What a frame means, and which channel it goes to, is
 * decided by router.c; this file does the I/O around it. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../util/util.h"
#include "router.h"
#include "vm_internal.h"

/* After an oops line, how long a reply may still come (the oops may have
 * hit an unrelated process, or the one the agent waits for, which then
 * reports a signal) before the wait ends as "kernel oops". */
#define OOPS_GRACE_MS 1000
#define PORT_GRACE_MS 300
#define IDLE_LOOK_MS 5
#define AGENT_DIED "the guest closed its virtio-serial port: the agent was killed or crashed"
/* read_frame's results besides 1 (a frame), 0 (deadline) and -1 (gone) */
#define FRAME_OOPS (-2)
#define FRAME_AGENT_DIED (-3)

void vm_mark_dead(pv_vm *vm, const char *why)
{
    vm->state = VM_DEAD;
    free(vm->dead_reason);
    vm->dead_reason = xstrdup(why);
}

void vm_die(pv_vm *vm, char *err, size_t errlen)
{
    vm_console_explain(vm, err, errlen);
    vm_mark_dead(vm, err);
    vm_kill(vm);
}

void vm_connection_reset(pv_vm *vm)
{
    vm->in_len = 0;
    vm->generation++;
    chans_end_all(&vm->chans);
}

void vm_set_deadline_source(pv_vm *vm, const vm_deadline *d) { vm->deadline = d; }

int64_t vm_outer_deadline(const pv_vm *vm) { return vm->deadline ? vm->deadline->ms : 0; }

int64_t vm_cap_deadline(const pv_vm *vm, int64_t deadline)
{
    int64_t outer = vm_outer_deadline(vm);
    return outer > 0 && (deadline < 0 || deadline > outer) ? outer : deadline;
}

void (*vm_wait_hook)(const char *what);
void (*vm_idle_hook)(void);

/* "exec" for PV_MSG_EXEC: the protocol name, lower case, spaces */
static void op_name(uint16_t type, char *buf, size_t len)
{
    snprintf(buf, len, "%s", pv_msg_name(type));
    for (char *c = buf; *c; c++)
        *c = *c == '_' ? ' ' : (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
}

/* After 2 s of waiting, tells the hook once what this wait is for. */
static void note_long_wait(pv_vm *vm, int64_t started, int64_t *told)
{
    if (*told || !vm_wait_hook || now_ms() - started < 2000)
        return;
    char what[300], op[40];
    if (vm->wait_op) {
        op_name(vm->wait_op, op, sizeof(op));
        snprintf(what, sizeof(what), "VM '%s': the guest agent's reply to %s", vm->name, op);
    } else {
        snprintf(what, sizeof(what), "VM '%s': output of a process or stream, or the guest agent", vm->name);
    }
    vm_wait_hook(what);
    *told = 1;
}

/* The agent socket said EOF or failed: QEMU closed it, so it is exiting;
 * give it a moment to be reaped, and say how it ended. */
static int connection_closed(pv_vm *vm, char *err, size_t errlen)
{
    char how[64];
    if (qemu_death(vm, how, sizeof(how)))
        snprintf(err, errlen, "VM '%s': the agent connection closed: QEMU exited unexpectedly (%s)", vm->name, how);
    else
        snprintf(err, errlen, "VM '%s': the agent connection closed (QEMU exited)", vm->name);
    return -1;
}

/* After a poll that brought no agent bytes: has QEMU exited, the agent's
 * port closed (QMP tells), or an oops appeared on the console? 0: keep
 * waiting; else read_frame's result. */
static int check_guest(pv_vm *vm, bool watch_port, bool qmp_ready, char *err, size_t errlen)
{
    int st = 0;
    if (qemu_exited(vm, &st)) {
        char *why = describe_exit(st);
        snprintf(err, errlen, "VM '%s': QEMU exited unexpectedly (%s)", vm->name, why);
        free(why);
        return -1;
    }
    if (watch_port) {
        if (qmp_ready)
            qmp_drain_events(&vm->qmp);
        if (vm->qmp.port_open == 0 && !vm->port_closed_ms)
            vm->port_closed_ms = now_ms();
        else if (vm->qmp.port_open == 1)
            vm->port_closed_ms = 0;
    }
    vm_console_watch(vm);
    /* a short grace lets a last reply (SHUTDOWN's) arrive first; an agent
     * killed by a kernel oops is reported as the oops */
    if (watch_port && vm->port_closed_ms && now_ms() - vm->port_closed_ms >= PORT_GRACE_MS) {
        if (vm->oops_seen_ms) {
            snprintf(err, errlen, "VM '%s': kernel oops: %s", vm->name, vm->oops_line);
            return FRAME_OOPS;
        }
        snprintf(err, errlen, "VM '%s': the guest agent died (%s)", vm->name, AGENT_DIED);
        return FRAME_AGENT_DIED;
    }
    if (vm->oops_seen_ms && now_ms() - vm->oops_seen_ms >= OOPS_GRACE_MS) {
        snprintf(err, errlen, "VM '%s': kernel oops: %s", vm->name, vm->oops_line);
        return FRAME_OOPS;
    }
    return 0;
}

/* Waits until a whole frame is buffered. Returns 1, 0 on timeout, -1 when
 * the connection or QEMU is gone, FRAME_OOPS or FRAME_AGENT_DIED (err set). */
static int read_frame_inner(pv_vm *vm, pv_hdr *hdr, int64_t deadline, char *err, size_t errlen, int64_t *told)
{
    int64_t started = now_ms();
    for (;;) {
        note_long_wait(vm, started, told);
        /* re-read each slice: the REPL's Ctrl-C moves it during a wait */
        deadline = vm_cap_deadline(vm, deadline);
        size_t need;
        frame_status fs = router_frame(vm->in, vm->in_len, hdr, &need);
        if (fs == FRAME_OVERSIZE) {
            snprintf(err, errlen, "VM '%s': agent sent a frame of %u bytes, over the %u byte limit", vm->name,
                     hdr->len, PV_MAX_PAYLOAD);
            return -1;
        }
        if (fs == FRAME_READY)
            return 1;
        if (need > vm->in_cap) {
            vm->in = xrealloc(vm->in, need);
            vm->in_cap = need;
        }
        int64_t left = deadline < 0 ? -1 : deadline - now_ms();
        if (deadline >= 0 && left <= 0)
            return 0;
        /* QMP too: QEMU tells when the guest closes the agent's port, which
         * happens when the agent dies (kill -9, a crash) */
        bool watch_port = vm->agent_up && vm->qmp.fd >= 0;
        struct pollfd p[3] = {{vm->agent_fd, POLLIN, 0}, {vm->pidfd, POLLIN, 0}};
        int np = vm->pidfd >= 0 ? 2 : 1;
        if (watch_port)
            p[np++] = (struct pollfd){vm->qmp.fd, POLLIN, 0};
        int slice = left < 0 || left > 100 ? 100 : (int)left;
        /* a short first look: when the guest takes longer, the idle time
         * serves the QEMU pool (qpool.c) */
        int r = poll(p, (nfds_t)np, vm_idle_hook && slice > IDLE_LOOK_MS ? IDLE_LOOK_MS : slice);
        if (r == 0 && vm_idle_hook && slice > IDLE_LOOK_MS) {
            vm_idle_hook();
            int64_t rest = deadline < 0 ? slice : deadline - now_ms();
            r = poll(p, (nfds_t)np, rest <= 0 ? 0 : rest > 100 ? 100 : (int)rest);
        }
        if (r < 0 && errno != EINTR) {
            snprintf(err, errlen, "VM '%s': poll: %s", vm->name, strerror(errno));
            return -1;
        }
        if (r > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = read(vm->agent_fd, vm->in + vm->in_len, vm->in_cap - vm->in_len);
            if (n > 0)
                vm->in_len += (size_t)n;
            else if (n == 0 || (errno != EINTR && errno != EAGAIN))
                return connection_closed(vm, err, errlen);
            continue;
        }
        int rc = check_guest(vm, watch_port, r > 0 && watch_port && p[np - 1].revents, err, errlen);
        if (rc != 0)
            return rc;
    }
}

static int read_frame(pv_vm *vm, pv_hdr *hdr, int64_t deadline, char *err, size_t errlen)
{
    int64_t told = 0;
    int r = read_frame_inner(vm, hdr, deadline, err, errlen, &told);
    if (told && vm_wait_hook)
        vm_wait_hook(NULL);
    return r;
}

static void drop_frame(pv_vm *vm, const pv_hdr *hdr)
{
    size_t used = PV_HDR_SIZE + hdr->len;
    memmove(vm->in, vm->in + used, vm->in_len - used);
    vm->in_len -= used;
}

static int send_all(pv_vm *vm, const void *data, size_t len, char *err, size_t errlen)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(vm->agent_fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            char how[64];
            if (qemu_death(vm, how, sizeof(how)))
                snprintf(err, errlen, "VM '%s': cannot send to the agent: QEMU exited unexpectedly (%s)", vm->name,
                         how);
            else
                snprintf(err, errlen, "VM '%s': cannot send to the agent: %s", vm->name, strerror(e));
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int vm_wait_ready(pv_vm *vm, int64_t deadline, char *err, size_t errlen)
{
    vm->agent_up = false;
    vm->port_closed_ms = 0;
    for (;;) {
        pv_hdr hdr;
        int r = read_frame(vm, &hdr, deadline, err, errlen);
        if (r == 0) {
            snprintf(err, errlen, "VM '%s' (profile '%s'): the guest agent did not connect within %.0f s", vm->name,
                     vm->profile.name, vm->profile.boot_timeout_ms / 1000.0);
            return -1;
        }
        if (r < 0)
            return -1;
        if (hdr.type != PV_MSG_READY) {
            drop_frame(vm, &hdr);
            continue;
        }
        uint64_t proto;
        char why[256], *version;
        int rc = router_ready(&hdr, vm->in + PV_HDR_SIZE, &proto, &version, why, sizeof(why));
        drop_frame(vm, &hdr);
        if (rc != 0) {
            snprintf(err, errlen, "VM '%s': malformed handshake from the agent: %s", vm->name, why);
            return -1;
        }
        free(vm->agent_version);
        vm->agent_version = version;
        if (proto != PV_PROTO_VERSION) {
            snprintf(err, errlen,
                     "VM '%s': the guest agent speaks protocol version %llu but this provium speaks %d; "
                     "the initrd probably carries a stale agent",
                     vm->name, (unsigned long long)proto, PV_PROTO_VERSION);
            return -1;
        }
        vm->agent_up = true;
        return 0;
    }
}

/* After a restore the agent believes its host never left: ask it to say
 * hello again, which also proves the channel works. */
int vm_hello_send(pv_vm *vm, char *err, size_t errlen)
{
    vm_begin(vm, PV_MSG_HELLO);
    pv_put_u64(&vm->out, PV_T_PROTO_VERSION, PV_PROTO_VERSION);
    if (pv_frame_end(&vm->out) != 0 || send_all(vm, vm->out.buf, vm->out.len, err, errlen) != 0)
        return -1;
    return 0;
}

int vm_hello(pv_vm *vm, int64_t deadline, char *err, size_t errlen)
{
    if (vm_hello_send(vm, err, errlen) != 0)
        return -1;
    return vm_wait_ready(vm, deadline, err, errlen);
}

/* ---- requests ---- */

uint32_t vm_begin_on(pv_vm *vm, uint16_t type, uint32_t chan)
{
    uint32_t req = vm->next_req++;
    if (vm->next_req == 0)
        vm->next_req = 1;
    pv_buf_reset(&vm->out);
    pv_frame_begin(&vm->out, type, chan, req);
    return req;
}

uint32_t vm_begin(pv_vm *vm, uint16_t type) { return vm_begin_on(vm, type, 0); }

int vm_send(pv_vm *vm, char *err, size_t errlen)
{
    if (pv_frame_end(&vm->out) != 0) {
        snprintf(err, errlen, "VM '%s': request larger than the %u byte protocol limit", vm->name, PV_MAX_PAYLOAD);
        return -1;
    }
    return send_all(vm, vm->out.buf, vm->out.len, err, errlen);
}

/* ---- channels ---- */

const vm_chan *vm_chan_open(pv_vm *vm, uint32_t base, bool proc)
{
    vm_chan *ch = chans_open(&vm->chans, base);
    ch->proc = proc;
    return ch;
}

const vm_chan *vm_chan_open_worker(pv_vm *vm, uint32_t base) { return chans_open_exact(&vm->chans, base); }

const vm_chan *vm_chan_open_await(pv_vm *vm, uint32_t base, uint16_t type)
{
    vm_chan *ch = chans_open(&vm->chans, base);
    ch->await_req = vm_begin_on(vm, type, ch->id);
    return ch;
}

const vm_chan *vm_chan_find(const pv_vm *vm, uint32_t id) { return chans_find(&vm->chans, id); }

const vm_chan *vm_chan_first(const pv_vm *vm) { return vm->chans.head; }

size_t vm_chan_count(const pv_vm *vm) { return chans_count(&vm->chans); }

void vm_chan_consume(pv_vm *vm, uint32_t id, int stream, size_t n)
{
    vm_chan *ch = chans_find(&vm->chans, id);
    if (ch && stream >= 0 && stream < VM_STREAMS)
        chans_consume(ch, stream, n);
}

void vm_chan_free(pv_vm *vm, uint32_t id) { chans_free(&vm->chans, id); }

int vm_pump(pv_vm *vm, int64_t deadline_ms, char *err, size_t errlen)
{
    if (vm->state == VM_DEAD || vm->agent_fd < 0) {
        snprintf(err, errlen, "VM '%s' is not running", vm->name);
        return -1;
    }
    pv_hdr hdr;
    int r = read_frame(vm, &hdr, deadline_ms, err, errlen);
    if (r < 0) {
        vm_die(vm, err, errlen);
        return -1;
    }
    if (r == 0)
        return 0;
    router_route(&vm->chans, &hdr, vm->in + PV_HDR_SIZE, 0, 0);
    drop_frame(vm, &hdr);
    return 1;
}

/* ---- vm_call ---- */

void vm_set_who_fn(pv_vm *vm, vm_who_fn fn) { vm->who_fn = fn; }

/* Who a request on channel chan speaks for, for error messages: "VM 'x'",
 * or the worker whose channels chan lies in (see vm_set_who_fn). */
static const char *vm_who(pv_vm *vm, uint32_t chan, bool refresh, char *buf, size_t len)
{
    uint32_t worker = PV_CHAN_WORKER(chan) << PV_WORKER_SHIFT;
    if (worker && vm->who_fn)
        vm->who_fn(vm, worker, refresh, buf, len);
    else
        snprintf(buf, len, "VM '%s'", vm->name);
    return buf;
}

/* An ERROR reply: -1 with its message in err, naming whom it refuses. */
static int error_reply(pv_vm *vm, uint32_t chan, vm_reply *reply, int *guest_errno, char *err, size_t errlen)
{
    char who[256];
    char *msg = pv_msg_strdup(&reply->msg, PV_T_MESSAGE);
    int ge = (int)pv_msg_i64(&reply->msg, PV_T_ERRNO, 0);
    if (guest_errno)
        *guest_errno = ge;
    vm_reply_free(reply);
    /* a worker is named with its current uid: that decides most refusals
     * (this may ask the worker, so the reply is done with) */
    bool refresh = ge == EACCES || ge == EPERM;
    if (msg && strncmp(msg, "worker ", 7) == 0) /* the agent named the worker already */
        snprintf(who, sizeof(who), "VM '%s'", vm->name);
    else
        vm_who(vm, chan, refresh, who, sizeof(who));
    snprintf(err, errlen, "%s: %s", who, msg ? msg : "error");
    free(msg);
    return -1;
}

/* The wait for the reply to a request of type req_type on chan ended
 * without it (read_frame said r). Returns -1; the VM is dead unless the
 * deadline passed. */
static int wait_failed(pv_vm *vm, int r, uint16_t req_type, uint32_t chan, int64_t timeout_ms, char *err,
                       size_t errlen)
{
    char who[256], op[40];
    if (r == 0) {
        if (vm_outer_deadline(vm) > 0 && now_ms() >= vm_outer_deadline(vm))
            snprintf(err, errlen, "test timeout: gave up waiting for %s (the request is abandoned)",
                     vm_who(vm, chan, false, who, sizeof(who)));
        else
            snprintf(err, errlen, "%s: no reply from the guest agent within %.1f s",
                     vm_who(vm, chan, false, who, sizeof(who)), timeout_ms / 1000.0);
        return -1;
    }
    /* the agent, or the process serving this call, died in the oops; or
     * the agent itself died */
    op_name(req_type, op, sizeof(op));
    if (r == FRAME_OOPS)
        snprintf(err, errlen, "VM '%s': kernel oops while running %s: %s", vm->name, op, vm->oops_line);
    else if (r == FRAME_AGENT_DIED)
        snprintf(err, errlen, "VM '%s': the guest agent died while running %s (%s); the VM is marked dead",
                 vm->name, op, AGENT_DIED);
    vm_die(vm, err, errlen);
    return -1;
}

int vm_call(pv_vm *vm, vm_reply *reply, int64_t timeout_ms, int *guest_errno, char *err, size_t errlen)
{
    memset(reply, 0, sizeof(*reply));
    if (guest_errno)
        *guest_errno = 0;
    uint32_t req = 0, chan = 0;
    uint16_t req_type = 0;
    if (vm->out.len >= PV_HDR_SIZE) {
        pv_hdr h;
        pv_hdr_decode(vm->out.buf, &h);
        req = h.req;
        chan = h.chan;
        req_type = h.type;
    }
    if (pv_frame_end(&vm->out) != 0) {
        snprintf(err, errlen, "VM '%s': request larger than the %u byte protocol limit", vm->name, PV_MAX_PAYLOAD);
        return -1;
    }
    /* an oops from before this call is the health check's business, not a
     * reason to cut this call short */
    vm_console_watch(vm);
    vm->oops_seen_ms = 0;
    if (send_all(vm, vm->out.buf, vm->out.len, err, errlen) != 0) {
        vm_die(vm, err, errlen);
        return -1;
    }
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    for (;;) {
        pv_hdr hdr;
        vm->wait_op = req_type;
        int r = read_frame(vm, &hdr, deadline, err, errlen);
        vm->wait_op = 0;
        if (r <= 0)
            return wait_failed(vm, r, req_type, chan, timeout_ms, err, errlen);
        const uint8_t *payload = vm->in + PV_HDR_SIZE;
        if (router_route(&vm->chans, &hdr, payload, req, chan) != ROUTE_REPLY) {
            drop_frame(vm, &hdr); /* pushed data, or a late reply to a request that timed out */
            continue;
        }
        char why[256];
        int rc = router_reply(&hdr, payload, req_type, reply, why, sizeof(why));
        drop_frame(vm, &hdr);
        if (rc == -1)
            snprintf(err, errlen, "VM '%s': malformed reply from the agent: %s", vm->name, why);
        else if (rc == -2)
            snprintf(err, errlen, "VM '%s': the agent answered %s with %s", vm->name, pv_msg_name(req_type),
                     pv_msg_name(hdr.type));
        if (rc != 0)
            return -1;
        return hdr.type == PV_MSG_ERROR ? error_reply(vm, chan, reply, guest_errno, err, errlen) : 0;
    }
}
