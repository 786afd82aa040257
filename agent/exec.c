/* The main loop's commands ("jobs"). A job is started by spawn_process from
 * the request as command.c reads it, in its own process group so a timeout
 * can kill the whole tree; its pipes are serviced by the main loop, so a long
 * command never blocks other requests. A synchronous job's output is kept
 * (result.c) until it exits; an async job's is pushed to the host as it
 * appears, and its stdin stays open for PROC_STDIN. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

typedef struct {
    bool used;
    pid_t pid;
    uint32_t chan, req;
    int64_t deadline_ms; /* 0: none */
    int fd_in, fd_out, fd_err;
    uint8_t *stdin_data;
    size_t stdin_len, stdin_off;
    obuf out, err;
    bool exited, timed_out;
    int wstatus;
    bool async;        /* run_async: output is pushed as it appears */
    bool close_stdin;  /* async: close stdin once the buffer is written */
} job;

static job jobs[EXEC_MAX_JOBS];

static void job_free(job *j)
{
    close_fd(&j->fd_in);
    close_fd(&j->fd_out);
    close_fd(&j->fd_err);
    free(j->stdin_data);
    free(j->out.data);
    free(j->err.data);
    memset(j, 0, sizeof(*j));
}

size_t exec_active_count(void)
{
    size_t n = 0;
    for (int i = 0; i < EXEC_MAX_JOBS; i++)
        n += jobs[i].used;
    return n;
}

/* A copy of the request's stdin, taken before the start so that running out
 * of memory is an error reply rather than a command without its input. */
static int copy_stdin(const pv_msg *m, uint8_t **data, size_t *len)
{
    const pv_field *in = pv_msg_get(m, PV_T_STDIN);
    *data = NULL;
    *len = 0;
    if (!in || !in->len)
        return 0;
    *len = in->len;
    if (!(*data = malloc(in->len)))
        return ENOMEM;
    memcpy(*data, in->data, in->len);
    return 0;
}

/* Starts the command; its pid, or -1 after an error reply. */
static pid_t start(agent_conn *c, const pv_msg *m, spawn_pipes *p)
{
    uint32_t chan = m->hdr.chan, req = m->hdr.req;
    exec_cmd cmd;
    const char *why;
    int err = exec_cmd_parse(&cmd, m, &why);
    if (err) {
        conn_send_error(c, chan, req, err, "exec: %s", why);
        return -1;
    }
    if ((err = spawn_pipes_open(p)) != 0) {
        conn_send_error(c, chan, req, err, "exec: cannot run %s: pipe: %s", cmd.argv[0], strerror(err));
        exec_cmd_free(&cmd);
        return -1;
    }
    spawn_error se;
    spawn_req r = {cmd.argv, cmd.envp, cmd.cwd, {p->child[0], p->child[1], p->child[2]}};
    pid_t pid = spawn_process(&r, &se);
    spawn_pipes_close_child(p);
    exec_cmd_free(&cmd);
    if (pid < 0) {
        conn_send_error(c, chan, req, se.err, "exec: %s", se.text);
        spawn_pipes_close(p);
    }
    return pid;
}

void exec_start(agent_conn *c, const pv_msg *m)
{
    uint32_t chan = m->hdr.chan, req = m->hdr.req;
    job *j = NULL;
    for (int i = 0; i < EXEC_MAX_JOBS && !j; i++)
        if (!jobs[i].used)
            j = &jobs[i];
    if (!j) {
        conn_send_error(c, chan, req, EAGAIN, "exec: %d commands already running", EXEC_MAX_JOBS);
        return;
    }
    uint8_t *stdin_data;
    size_t stdin_len;
    if (copy_stdin(m, &stdin_data, &stdin_len) != 0) {
        conn_send_error(c, chan, req, ENOMEM, "exec: out of memory for %zu bytes of stdin", stdin_len);
        return;
    }
    spawn_pipes p;
    pid_t pid = start(c, m, &p);
    if (pid < 0) {
        free(stdin_data);
        return;
    }
    memset(j, 0, sizeof(*j));
    j->used = true;
    j->pid = pid;
    j->chan = chan;
    j->req = req;
    uint64_t tmo = pv_msg_u64(m, PV_T_TIMEOUT_MS, 0);
    j->deadline_ms = tmo ? now_ms() + (int64_t)tmo : 0;
    j->fd_in = p.ours[0];
    j->fd_out = p.ours[1];
    j->fd_err = p.ours[2];
    set_nonblock(j->fd_in);
    set_nonblock(j->fd_out);
    set_nonblock(j->fd_err);
    j->async = pv_msg_u64(m, PV_T_ASYNC, 0) != 0;
    j->stdin_data = stdin_data;
    j->stdin_len = stdin_len;
    /* A synchronous command gets EOF after its input; an async one keeps
     * stdin open for later PROC_STDIN writes. */
    if (!j->stdin_len && !j->async)
        close_fd(&j->fd_in);
    if (j->async) {
        pv_frame_begin(&c->out, PV_MSG_PROC_STARTED, chan, req);
        pv_put_u64(&c->out, PV_T_PID, (uint64_t)pid);
        conn_send(c);
    }
}

static job *job_by_chan(uint32_t chan)
{
    for (int i = 0; i < EXEC_MAX_JOBS; i++)
        if (jobs[i].used && jobs[i].async && jobs[i].chan == chan)
            return &jobs[i];
    return NULL;
}

void exec_signal(agent_conn *c, const pv_msg *m)
{
    job *j = job_by_chan((uint32_t)pv_msg_u64(m, PV_T_CHAN, 0));
    int sig = (int)pv_msg_u64(m, PV_T_SIGNAL, 0);
    if (!j || j->exited)
        conn_send_error(c, m->hdr.chan, m->hdr.req, ESRCH, "signal: the process has already exited");
    else if (kill(j->pid, sig) != 0)
        conn_send_error(c, m->hdr.chan, m->hdr.req, errno, "signal %d: %s", sig, strerror(errno));
    else
        reply_ok(c, m);
}

void exec_stdin(agent_conn *c, const pv_msg *m)
{
    job *j = job_by_chan((uint32_t)pv_msg_u64(m, PV_T_CHAN, 0));
    if (!j || j->exited) {
        conn_send_error(c, m->hdr.chan, m->hdr.req, ESRCH, "stdin: the process has already exited");
        return;
    }
    if (j->fd_in < 0) {
        conn_send_error(c, m->hdr.chan, m->hdr.req, EPIPE, "stdin: stdin is closed");
        return;
    }
    const pv_field *d = pv_msg_get(m, PV_T_DATA);
    if (d && d->len) {
        /* keep unwritten bytes; the main loop feeds them as the pipe drains */
        size_t left = j->stdin_len - j->stdin_off;
        uint8_t *nb = malloc(left + d->len);
        if (!nb) {
            conn_send_error(c, m->hdr.chan, m->hdr.req, ENOMEM, "stdin: out of memory");
            return;
        }
        if (left)
            memcpy(nb, j->stdin_data + j->stdin_off, left);
        memcpy(nb + left, d->data, d->len);
        free(j->stdin_data);
        j->stdin_data = nb;
        j->stdin_len = left + d->len;
        j->stdin_off = 0;
    }
    if (pv_msg_u64(m, PV_T_EOF, 0))
        j->close_stdin = true;
    reply_count(c, m, d ? (int64_t)d->len : 0);
}

size_t exec_pollfds(struct pollfd *pfd, size_t max, size_t *missed)
{
    size_t n = 0;
    for (int i = 0; i < EXEC_MAX_JOBS; i++) {
        job *j = &jobs[i];
        if (!j->used)
            continue;
        bool want_in = j->stdin_off < j->stdin_len || j->close_stdin || !j->async;
        int fds[3] = {want_in ? j->fd_in : -1, j->fd_out, j->fd_err};
        short ev[3] = {POLLOUT, POLLIN, POLLIN};
        for (int k = 0; k < 3; k++) {
            if (fds[k] < 0)
                continue;
            if (n < max)
                pfd[n++] = (struct pollfd){fds[k], ev[k], 0};
            else
                ++*missed;
        }
    }
    return n;
}

/* Where an async job's output goes: pushed to the host at once, on the
 * job's channel, as the given stream (1 stdout, 2 stderr). */
typedef struct {
    agent_conn *c;
    uint32_t chan;
    uint64_t stream;
} push_target;

static void push_sink(void *target, const char *data, size_t n)
{
    push_target *t = target;
    if (!t->c->connected)
        return;
    pv_frame_begin(&t->c->out, PV_MSG_STREAM_DATA, t->chan, 0);
    pv_put_u64(&t->c->out, PV_T_STREAM, t->stream);
    pv_put_bytes(&t->c->out, PV_T_DATA, data, n);
    conn_send(t->c);
}

static void feed_stdin(job *j)
{
    while (j->stdin_off < j->stdin_len) {
        ssize_t n = write(j->fd_in, j->stdin_data + j->stdin_off, j->stdin_len - j->stdin_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) { /* EPIPE: the command did not want its input */
            close_fd(&j->fd_in);
            return;
        }
        j->stdin_off += (size_t)n;
    }
    if (!j->async || j->close_stdin)
        close_fd(&j->fd_in);
}

/* Reads what the job's pipe holds: kept for a synchronous job, pushed for
 * an async one. False at EOF. */
static bool drain_job(agent_conn *c, job *j, int fd, obuf *b, uint64_t stream)
{
    if (!j->async)
        return drain_fd(fd, obuf_sink, b);
    push_target t = {c, j->chan, stream};
    return drain_fd(fd, push_sink, &t);
}

static void finish(agent_conn *c, job *j)
{
    /* The process has exited: take what its pipes hold now. Grandchildren
     * that keep the pipes open must not delay the result. */
    if (j->fd_out >= 0)
        drain_job(c, j, j->fd_out, &j->out, 1);
    if (j->fd_err >= 0)
        drain_job(c, j, j->fd_err, &j->err, 2);
    exec_send_result(c, j->chan, j->async ? 0 : j->req, j->wstatus, j->timed_out, &j->out, &j->err);
    /* Leftover background processes of a timed-out command die with it. */
    if (j->timed_out)
        kill(-j->pid, SIGKILL);
    job_free(j);
}

void exec_on_pollfds(agent_conn *c, const struct pollfd *pfd, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (!pfd[k].revents)
            continue;
        for (int i = 0; i < EXEC_MAX_JOBS; i++) {
            job *j = &jobs[i];
            if (!j->used)
                continue;
            if (pfd[k].fd == j->fd_in)
                feed_stdin(j);
            else if (pfd[k].fd == j->fd_out && !drain_job(c, j, j->fd_out, &j->out, 1))
                close_fd(&j->fd_out);
            else if (pfd[k].fd == j->fd_err && !drain_job(c, j, j->fd_err, &j->err, 2))
                close_fd(&j->fd_err);
        }
    }
}

void exec_on_sigchld(agent_conn *c)
{
    for (;;) {
        int ws;
        pid_t pid = waitpid(-1, &ws, WNOHANG);
        if (pid <= 0)
            return;
        for (int i = 0; i < EXEC_MAX_JOBS; i++) {
            if (jobs[i].used && jobs[i].pid == pid) {
                jobs[i].exited = true;
                jobs[i].wstatus = ws;
                finish(c, &jobs[i]);
                break;
            }
        }
    }
}

int exec_next_timeout_ms(void)
{
    int64_t best = -1, now = now_ms();
    for (int i = 0; i < EXEC_MAX_JOBS; i++) {
        if (!jobs[i].used || !jobs[i].deadline_ms || jobs[i].timed_out)
            continue;
        int64_t left = jobs[i].deadline_ms - now;
        if (left < 0)
            left = 0;
        if (best < 0 || left < best)
            best = left;
    }
    return best > 1000000 ? 1000000 : (int)best;
}

void exec_check_timeouts(agent_conn *c)
{
    (void)c;
    int64_t now = now_ms();
    for (int i = 0; i < EXEC_MAX_JOBS; i++) {
        job *j = &jobs[i];
        if (j->used && j->deadline_ms && !j->timed_out && now >= j->deadline_ms) {
            j->timed_out = true;
            kill(-j->pid, SIGKILL);
        }
    }
}

void exec_abandon_all(void)
{
    for (int i = 0; i < EXEC_MAX_JOBS; i++) {
        if (!jobs[i].used)
            continue;
        kill(-jobs[i].pid, SIGKILL);
        waitpid(jobs[i].pid, NULL, 0);
        job_free(&jobs[i]);
    }
}

/* Workers (worker.c). A fork worker drops its copy of the parent's job table
 * without touching the processes: they are not its children. */
void exec_forget_all(void)
{
    for (int i = 0; i < EXEC_MAX_JOBS; i++)
        if (jobs[i].used)
            job_free(&jobs[i]);
}
