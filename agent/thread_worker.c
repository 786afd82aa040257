/* Thread workers: a pthread of the agent serving its end of a socketpair
 * (see worker.c for the relay on the other end). The loop is smaller than
 * the agent's: it never touches the process-wide job and stream tables, so
 * async commands and streams are refused, and a command runs synchronously
 * in the thread, with the thread's credentials.
 *
 * The agent's main loop reaps every SIGCHLD child with waitpid(-1), so a
 * thread's command cannot be the agent's direct child. The thread clone()s an
 * intermediate process without an exit signal (a "clone child", which
 * waitpid(-1) never sees; it never execs, so it stays one). The intermediate
 * starts the command with spawn_process, writes a start record (the pid, or
 * the spawn error) and then the command's wait status to a pipe; this thread
 * polls that pipe with the command's output and reaps the intermediate with
 * __WCLONE. Raw clone() rather than fork(): no libc locks are taken in the
 * child of a multithreaded process, and spawn_process allocates nothing. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

/* The intermediate's first message; below PIPE_BUF, so it arrives whole. */
typedef struct {
    pid_t pid; /* > 0: started; -1: e says why not */
    spawn_error e;
} start_record;

_Static_assert(sizeof(start_record) <= 4096, "a start record must fit one atomic pipe write");

static void write_all(int fd, const void *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p = (const char *)p + w;
        n -= (size_t)w;
    }
}

/* The intermediate process; never returns. */
static void intermediate(spawn_pipes *p, const exec_cmd *cmd, int status_fd)
{
    for (int i = 0; i < 3; i++) /* the thread's ends: stdin must reach EOF when the thread closes its copy */
        close_fd(&p->ours[i]);
    start_record rec;
    memset(&rec, 0, sizeof(rec));
    spawn_req r = {cmd->argv, cmd->envp, cmd->cwd, {p->child[0], p->child[1], p->child[2]}};
    rec.pid = spawn_process(&r, &rec.e);
    spawn_pipes_close_child(p);
    write_all(status_fd, &rec, sizeof(rec));
    int st = 0;
    if (rec.pid > 0)
        while (syscall(SYS_wait4, rec.pid, &st, 0, 0) < 0 && errno == EINTR) {
        }
    write_all(status_fd, &st, sizeof(st));
    _exit(0);
}

static void reap_intermediate(pid_t mid)
{
    while (mid > 0 && waitpid(mid, NULL, __WCLONE) < 0 && errno == EINTR) {
    }
}

/* Reads n bytes (an EINTR-safe blocking read of a record); false at EOF. */
static bool read_record(int fd, void *p, size_t n)
{
    ssize_t got;
    do
        got = read(fd, p, n);
    while (got < 0 && errno == EINTR);
    return got == (ssize_t)n;
}

/* A running command: the thread's ends of its pipes and the status pipe. */
typedef struct {
    pid_t pid, mid;
    int status_fd;
    spawn_pipes p;
} thread_cmd;

/* Starts the command through an intermediate; false after an error reply. */
static bool thread_start_cmd(agent_conn *c, const pv_msg *m, thread_cmd *t)
{
    uint32_t chan = m->hdr.chan, req = m->hdr.req;
    exec_cmd cmd;
    const char *why;
    int err = exec_cmd_parse(&cmd, m, &why), ps[2] = {-1, -1};
    if (err) {
        conn_send_error(c, chan, req, err, "exec: %s", why);
        return false;
    }
    if ((err = spawn_pipes_open(&t->p)) != 0 || (pipe2(ps, O_CLOEXEC) != 0 && (err = errno))) {
        conn_send_error(c, chan, req, err, "exec: cannot run %s: pipe: %s", cmd.argv[0], strerror(err));
        spawn_pipes_close(&t->p);
        exec_cmd_free(&cmd);
        return false;
    }
    t->mid = (pid_t)syscall(SYS_clone, 0UL, 0UL, 0UL, 0UL, 0UL);
    if (t->mid == 0) {
        close(ps[0]);
        intermediate(&t->p, &cmd, ps[1]);
    }
    err = errno;
    close_fd(&ps[1]);
    spawn_pipes_close_child(&t->p);
    t->status_fd = ps[0];
    start_record rec;
    if (t->mid < 0) {
        rec.pid = -1;
        rec.e.err = err;
        snprintf(rec.e.text, sizeof(rec.e.text), "cannot run %s: clone: %s", cmd.argv[0], strerror(err));
    } else if (!read_record(t->status_fd, &rec, sizeof(rec))) {
        rec.pid = -1;
        rec.e.err = ECHILD;
        snprintf(rec.e.text, sizeof(rec.e.text), "cannot run %s: the starting process died", cmd.argv[0]);
    }
    exec_cmd_free(&cmd);
    if (rec.pid > 0) {
        t->pid = rec.pid;
        return true;
    }
    conn_send_error(c, chan, req, rec.e.err, "exec: %s", rec.e.text);
    spawn_pipes_close(&t->p);
    close_fd(&t->status_fd);
    reap_intermediate(t->mid);
    return false;
}

/* Writes what the stdin pipe takes now; closes it once all is written, or
 * when the command no longer reads (an error, POLLERR/POLLHUP). */
static void feed_stdin(int *fd, const pv_field *in, size_t *off, short revents)
{
    while (*off < in->len) {
        ssize_t n = write(*fd, in->data + *off, in->len - *off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        *off += (size_t)n;
    }
    if (*off >= in->len || !(revents & POLLOUT))
        close_fd(fd);
}

/* Serves the command's pipes until the intermediate reports its wait status
 * (or the status pipe ends); kills the group at the deadline. */
static int wait_cmd(thread_cmd *t, const pv_field *in, obuf *out, obuf *err, int64_t deadline, bool *timed_out)
{
    int *fd = t->p.ours, ws = 0;
    size_t in_off = 0;
    for (;;) {
        struct pollfd p[4] = {{t->status_fd, POLLIN, 0}, {fd[1], POLLIN, 0}, {fd[2], POLLIN, 0}, {fd[0], POLLOUT, 0}};
        int r = poll(p, 4, deadline && !*timed_out ? ms_until(deadline, 1000000) : -1);
        if (r < 0 && errno != EINTR)
            return ws;
        if (p[1].revents && !drain_fd(fd[1], obuf_sink, out))
            close_fd(&fd[1]);
        if (p[2].revents && !drain_fd(fd[2], obuf_sink, err))
            close_fd(&fd[2]);
        if (p[3].revents)
            feed_stdin(&fd[0], in, &in_off, p[3].revents);
        if (deadline && !*timed_out && now_ms() >= deadline) {
            *timed_out = true;
            kill(-t->pid, SIGKILL);
        }
        if (p[0].revents) {
            ssize_t got = read(t->status_fd, &ws, sizeof(ws));
            if (got == (ssize_t)sizeof(ws) || got == 0 || (got < 0 && errno != EINTR))
                return ws;
        }
    }
}

/* A synchronous command with the thread's credentials. */
static void thread_exec(agent_conn *c, const pv_msg *m)
{
    if (pv_msg_u64(m, PV_T_ASYNC, 0)) {
        conn_send_error(c, m->hdr.chan, m->hdr.req, EOPNOTSUPP,
                        "run_async: not available on a thread worker (use a fork worker, or run)");
        return;
    }
    thread_cmd t;
    if (!thread_start_cmd(c, m, &t))
        return;
    static const pv_field no_input;
    const pv_field *in = pv_msg_get(m, PV_T_STDIN);
    if (!in)
        in = &no_input;
    if (!in->len)
        close_fd(&t.p.ours[0]);
    for (int i = 0; i < 3; i++)
        if (t.p.ours[i] >= 0)
            set_nonblock(t.p.ours[i]);
    uint64_t tmo = pv_msg_u64(m, PV_T_TIMEOUT_MS, 0);
    int64_t deadline = tmo ? now_ms() + (int64_t)tmo : 0;
    obuf out = {0}, err = {0};
    bool timed_out = false;
    int ws = wait_cmd(&t, in, &out, &err, deadline, &timed_out);
    if (t.p.ours[1] >= 0)
        drain_fd(t.p.ours[1], obuf_sink, &out);
    if (t.p.ours[2] >= 0)
        drain_fd(t.p.ours[2], obuf_sink, &err);
    if (timed_out)
        kill(-t.pid, SIGKILL);
    reap_intermediate(t.mid);
    close_fd(&t.status_fd);
    spawn_pipes_close(&t.p);
    exec_send_result(c, m->hdr.chan, m->hdr.req, ws, timed_out, &out, &err);
    free(out.data);
    free(err.data);
}

/* What a thread worker serves itself; everything touching the agent's
 * process-wide tables (async commands, streams) is refused. */
static void thread_frame(agent_conn *c, const pv_hdr *hdr, const uint8_t *payload)
{
    switch (hdr->type) {
    case PV_MSG_PING: case PV_MSG_HELLO: case PV_MSG_READ_FILE: case PV_MSG_WRITE_FILE: case PV_MSG_STAT:
    case PV_MSG_LISTDIR: case PV_MSG_MKDIR: case PV_MSG_UNLINK: case PV_MSG_RENAME: case PV_MSG_OPEN:
    case PV_MSG_FD_READ: case PV_MSG_FD_WRITE: case PV_MSG_FD_SEEK: case PV_MSG_FD_CLOSE: case PV_MSG_SYSCALL:
    case PV_MSG_CLOCK_GET: case PV_MSG_CLOCK_SET: case PV_MSG_CLOCK_ADVANCE: case PV_MSG_BATCH:
        agent_handle_frame(c, hdr, payload);
        return;
    case PV_MSG_EXEC: {
        pv_msg m;
        if (agent_decode(c, hdr, payload, &m) != 0)
            return;
        thread_exec(c, &m);
        pv_msg_free(&m);
        return;
    }
    default:
        conn_send_error(c, hdr->chan, hdr->req, EOPNOTSUPP,
                        "%s is not available on a thread worker (streams and async processes live in the agent's "
                        "main loop; use a fork worker)",
                        pv_msg_name(hdr->type));
    }
}

void *thread_worker_main(void *arg)
{
    thread_start *ts = arg;
    int fd = ts->fd;
    worker_unblock_wake();
    atomic_store(&ts->tid, (int)syscall(SYS_gettid)); /* ts belongs to the parent from here */
    agent_conn wc;
    conn_init(&wc, fd, false);
    wc.land_policy = LAND_ALL;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        int got = conn_fill(&wc);
        if (got == 0)
            break;
        if (got == CONN_DROPPED && wc.dropped.req)
            conn_send_error(&wc, wc.dropped.chan, wc.dropped.req, ENOMEM,
                            "thread worker: out of memory receiving a %u-byte %s request; it was discarded",
                            wc.dropped.len, pv_msg_name(wc.dropped.type));
        pv_hdr hdr;
        const uint8_t *payload;
        int popped;
        while ((popped = conn_pop(&wc, &hdr, &payload)) == 1) {
            thread_frame(&wc, &hdr, payload);
            conn_consume(&wc, &hdr);
        }
        if (popped < 0)
            break;
    }
    close(fd);
    free(wc.in);
    pv_buf_free(&wc.out);
    return NULL;
}
