/* The agent's main loop: one poll() over the transport, the running commands'
 * pipes and a signalfd, so no request ever blocks another. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "agent.h"

static bool shutdown_requested;

static void handle_frame(agent_conn *c, const pv_hdr *hdr, const uint8_t *payload);

/* Operations that answer with exactly one frame at once may be batched. */
static bool batchable(uint16_t type)
{
    switch (type) {
    case PV_MSG_PING: case PV_MSG_READ_FILE: case PV_MSG_WRITE_FILE: case PV_MSG_STAT: case PV_MSG_LISTDIR:
    case PV_MSG_MKDIR: case PV_MSG_UNLINK: case PV_MSG_RENAME: case PV_MSG_OPEN: case PV_MSG_FD_READ:
    case PV_MSG_FD_WRITE: case PV_MSG_FD_SEEK: case PV_MSG_FD_CLOSE: case PV_MSG_SYSCALL: case PV_MSG_CLOCK_GET:
    case PV_MSG_CLOCK_SET: case PV_MSG_CLOCK_ADVANCE:
        return true;
    default:
        return false;
    }
}

static void handle_batch(agent_conn *c, const pv_msg *m)
{
    pv_buf replies;
    pv_buf_init(&replies);
    pv_frame_begin(&replies, PV_MSG_BATCH_RESULT, m->hdr.chan, m->hdr.req);
    size_t pos = 0;
    const pv_field *op;
    while ((op = pv_msg_next(m, PV_T_OP, &pos))) {
        pv_hdr h;
        c->capture = &replies;
        if (op->len < PV_HDR_SIZE || pv_hdr_decode(op->data, &h) != 0 || h.len != op->len - PV_HDR_SIZE)
            conn_send_error(c, 0, 0, EPROTO, "batch: malformed operation frame");
        else if (!batchable(h.type))
            conn_send_error(c, h.chan, h.req, EINVAL, "batch: %s cannot be batched", pv_msg_name(h.type));
        else
            handle_frame(c, &h, op->data + PV_HDR_SIZE);
        c->capture = NULL;
    }
    pv_buf saved = c->out;
    c->out = replies;
    int err = c->out.failed ? c->out.err : 0;
    if (conn_try_send(c) != 0) {
        pv_buf_free(&c->out);
        c->out = saved;
        if (err == ENOMEM)
            conn_send_error(c, m->hdr.chan, m->hdr.req, ENOMEM, "batch: out of memory for the replies");
        else
            conn_send_error(c, m->hdr.chan, m->hdr.req, E2BIG, "batch: the replies exceed the frame limit");
    } else {
        pv_buf_free(&c->out);
        c->out = saved;
    }
}

int agent_decode(agent_conn *c, const pv_hdr *hdr, const uint8_t *payload, pv_msg *m)
{
    char err[AGENT_ERROR_MAX];
    errno = 0;
    if (pv_msg_decode(hdr, payload, m, err, sizeof(err)) == 0)
        return 0;
    /* the decoder fails on memory only through calloc, which sets ENOMEM */
    conn_send_error(c, hdr->chan, hdr->req, errno == ENOMEM ? ENOMEM : EPROTO, "bad request: %s", err);
    return -1;
}

static void handle_frame(agent_conn *c, const pv_hdr *hdr, const uint8_t *payload)
{
    pv_msg m;
    if (agent_decode(c, hdr, payload, &m) != 0)
        return;
    switch (hdr->type) {
    case PV_MSG_PING: {
        const pv_field *echo = pv_msg_get(&m, PV_T_ECHO);
        pv_frame_begin(&c->out, PV_MSG_PONG, hdr->chan, hdr->req);
        if (echo)
            pv_put_bytes(&c->out, PV_T_ECHO, echo->data, echo->len);
        conn_send(c);
        break;
    }
    case PV_MSG_EXEC:
        exec_start(c, &m);
        break;
    case PV_MSG_READ_FILE:
        files_read(c, &m);
        break;
    case PV_MSG_WRITE_FILE:
        files_write(c, &m);
        break;
    case PV_MSG_HELLO:
        /* a new host session (a reconnect, a restore): the old session's
         * commands, streams and workers have nobody to report to */
        if (c->is_port) {
            exec_abandon_all();
            tail_close_all();
            worker_kill_all();
        }
        conn_send_ready(c);
        break;
    case PV_MSG_STAT: fs_stat(c, &m); break;
    case PV_MSG_LISTDIR: fs_listdir(c, &m); break;
    case PV_MSG_MKDIR: fs_mkdir(c, &m); break;
    case PV_MSG_UNLINK: fs_unlink(c, &m); break;
    case PV_MSG_RENAME: fs_rename(c, &m); break;
    case PV_MSG_OPEN: fd_open(c, &m); break;
    case PV_MSG_FD_READ: fd_read(c, &m); break;
    case PV_MSG_FD_WRITE: fd_write(c, &m); break;
    case PV_MSG_FD_SEEK: fd_seek(c, &m); break;
    case PV_MSG_FD_CLOSE: fd_close(c, &m); break;
    case PV_MSG_KMSG_READ: kmsg_read(c, &m); break;
    case PV_MSG_SYSCALL: raw_syscall(c, &m); break;
    case PV_MSG_CLOCK_GET:
    case PV_MSG_CLOCK_SET:
    case PV_MSG_CLOCK_ADVANCE: clock_op(c, &m); break;
    case PV_MSG_BATCH:
        if (c->capture)
            conn_send_error(c, hdr->chan, hdr->req, EINVAL, "batch: batches cannot nest");
        else
            handle_batch(c, &m);
        break;
    case PV_MSG_PROC_SIGNAL: exec_signal(c, &m); break;
    case PV_MSG_PROC_STDIN: exec_stdin(c, &m); break;
    case PV_MSG_TAIL_OPEN: tail_open(c, &m); break;
    case PV_MSG_STREAM_CLOSE: tail_close(c, &m); break;
    case PV_MSG_WORKER_SPAWN: worker_spawn(c, &m); break;
    case PV_MSG_WORKER_KILL: worker_kill(c, &m); break;
    case PV_MSG_SHUTDOWN:
        if (agent_in_worker) {
            conn_send_error(c, hdr->chan, hdr->req, EOPNOTSUPP, "shutdown: send it to the VM, not to a worker");
            break;
        }
        pv_frame_begin(&c->out, PV_MSG_OK, hdr->chan, hdr->req);
        conn_send(c);
        shutdown_requested = pv_msg_u64(&m, PV_T_POWEROFF, 1) != 0;
        break;
    default:
        conn_send_error(c, hdr->chan, hdr->req, EOPNOTSUPP, "message %s is not a request", pv_msg_name(hdr->type));
    }
    pv_msg_free(&m);
}

void agent_handle_frame(agent_conn *c, const pv_hdr *hdr, const uint8_t *payload)
{
    handle_frame(c, hdr, payload);
}

static void power_off(void)
{
    sync();
    exec_abandon_all();
    /* RB_AUTOBOOT rather than RB_POWER_OFF: machines without ACPI (a
     * microvm with acpi = false) cannot power off, and the host always runs QEMU with -no-reboot, which
     * turns the reboot into a clean QEMU exit. */
    reboot(RB_AUTOBOOT);
    agent_log("reboot: %s", strerror(errno));
}

/* One round's poll array: the signalfd, the transport, then each group's
 * descriptors, every group within its own derived maximum. */
typedef struct {
    struct pollfd pfd[AGENT_POLLFDS_MAX];
    size_t n, first_job, first_tail, first_worker;
} poll_set;

static void poll_set_build(poll_set *ps, agent_conn *c, int sfd)
{
    static bool overflow_reported;
    size_t n = 0, missed = 0;
    ps->pfd[n++] = (struct pollfd){sfd, POLLIN, 0};
    ps->pfd[n++] = (struct pollfd){c->connected ? c->fd : -1, POLLIN, 0};
    ps->first_job = n;
    n += exec_pollfds(ps->pfd + n, EXEC_POLLFDS_MAX, &missed);
    ps->first_tail = n;
    n += tail_pollfds(ps->pfd + n, TAIL_POLLFDS_MAX, &missed);
    ps->first_worker = n;
    n += worker_pollfds(ps->pfd + n, WORKER_POLLFDS_MAX, &missed);
    ps->n = n;
    /* Cannot happen while the maxima above hold; if a change breaks them,
     * say so loudly (once) rather than leave descriptors unserved. */
    if (missed && !overflow_reported && c->connected) {
        overflow_reported = true;
        agent_log("poll: %zu descriptors exceed their group's maximum and are not served", missed);
        conn_send_error(c, 0, 0, EOVERFLOW,
                        "agent: %zu descriptors of commands, streams or workers exceed the poll limits "
                        "(%d jobs x 3, %d streams + 1, %d workers) and are not served",
                        missed, EXEC_MAX_JOBS, TAIL_MAX_STREAMS, PV_MAX_WORKERS);
    }
}

static int next_timeout_ms(const agent_conn *c)
{
    int timeout = exec_next_timeout_ms();
    int wt = worker_next_timeout_ms();
    if (wt >= 0 && (timeout < 0 || wt < timeout))
        timeout = wt;
    /* While the host is away, look again now and then in case the SIGIO
     * for its return was missed. */
    if (!c->connected && (timeout < 0 || timeout > 100))
        timeout = 100;
    return timeout;
}

/* The host's bytes: frames relayed to workers or handled here. Returns
 * false when local mode ends (the host closed the socket). */
static bool serve_host_input(agent_conn *c)
{
    int got = conn_fill(c);
    if (got == 0) {
        if (!c->is_port) {
            exec_abandon_all(); /* local mode: the host closed the socket */
            return false;
        }
        c->connected = false;
        c->in_len = 0;
        exec_abandon_all();
        tail_close_all();
        worker_kill_all();
        return true;
    }
    if (got == CONN_DROPPED && c->dropped.req)
        conn_send_error(c, c->dropped.chan, c->dropped.req, ENOMEM,
                        "agent: out of memory receiving a %u-byte %s request; it was discarded", c->dropped.len,
                        pv_msg_name(c->dropped.type));
    pv_hdr hdr;
    const uint8_t *payload;
    int popped = 0;
    while (!shutdown_requested && (popped = conn_pop(c, &hdr, &payload)) == 1) {
        if (!worker_relay(c, &hdr, payload))
            handle_frame(c, &hdr, payload);
        conn_consume(c, &hdr);
    }
    if (popped < 0)
        conn_send_error(c, 0, 0, EMSGSIZE, "frame larger than %u bytes; input discarded", PV_MAX_PAYLOAD);
    return true;
}

/* A host that comes back to the port gets a fresh READY. */
static void check_host_return(agent_conn *c)
{
    struct pollfd p = {c->fd, POLLIN, 0};
    if (poll(&p, 1, 0) >= 0 && !(p.revents & POLLHUP)) {
        c->connected = true;
        c->in_len = 0;
        conn_send_ready(c);
    }
}

static int serve_setup(agent_conn *c)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGIO);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (c->is_port) {
        /* SIGIO tells us when a host (re)connects to the port. */
        fcntl(c->fd, F_SETOWN, getpid());
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_ASYNC);
    }
    conn_send_ready(c);
    return sfd;
}

/* Serves requests until the transport ends (local mode) or a shutdown. */
int agent_serve(agent_conn *c)
{
    int sfd = serve_setup(c);
    while (!shutdown_requested) {
        poll_set ps;
        poll_set_build(&ps, c, sfd);
        int r = poll(ps.pfd, ps.n, next_timeout_ms(c));
        if (r < 0 && errno != EINTR) {
            agent_log("poll: %s", strerror(errno));
            return 1;
        }
        exec_check_timeouts(c);
        worker_check_timeouts(c);
        if (ps.pfd[0].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
            }
            exec_on_sigchld(c);
        }
        exec_on_pollfds(c, ps.pfd + ps.first_job, ps.first_tail - ps.first_job);
        tail_on_pollfds(c, ps.pfd + ps.first_tail, ps.first_worker - ps.first_tail);
        worker_on_pollfds(c, ps.pfd + ps.first_worker, ps.n - ps.first_worker);
        if (!c->connected)
            check_host_return(c);
        else if ((ps.pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) && !serve_host_input(c))
            return 0;
    }
    if (!c->is_port) {
        /* local mode serves a process on the host: never reboot anything */
        exec_abandon_all();
        return 0;
    }
    power_off();
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: provium-agent [--fd N]\n"
                    "  Without --fd: run inside a Provium guest and serve the virtio-serial port %s.\n"
                    "  --fd N: serve the protocol on an already connected socket (local mode, for tests).\n",
            AGENT_PORT_NAME);
}

int agent_main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    /* the kernel starts init without PATH, and execvp searches the agent's
     * own PATH: give it the usual one */
    setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 0);
    agent_conn c;
    if (argc == 3 && strcmp(argv[1], "--fd") == 0) {
        int fd = atoi(argv[2]);
        /* commands must not inherit the protocol connection */
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        conn_init(&c, fd, false);
        c.land_policy = LAND_LOCAL_CHANNELS;
        return agent_serve(&c);
    }
    if (argc != 1) {
        usage();
        return 2;
    }
    if (getpid() == 1) {
        /* No init in the initramfs: we are init. */
        sysinit_mount_basics();
        sysinit_mount_scratch();
    }
    sysinit_load_modules("/provium/modules");
    int fd = port_open(120000);
    if (fd < 0) {
        agent_log("no virtio-serial port named %s after 120 s; giving up", AGENT_PORT_NAME);
        return 1;
    }
    conn_init(&c, fd, true);
    c.land_policy = LAND_LOCAL_CHANNELS;
    int rc = agent_serve(&c);
    if (getpid() == 1)
        for (;;)
            pause(); /* init must never exit */
    return rc;
}
