/* Command execution. Every job runs in its own process group so a timeout can
 * kill the whole tree; its pipes are serviced by the main loop, so a long
 * command never blocks other requests. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define MAX_JOBS 256


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

static job jobs[MAX_JOBS];

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

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
    for (int i = 0; i < MAX_JOBS; i++)
        n += jobs[i].used;
    return n;
}

/* Builds argv from the request: either PV_T_SHELL (run by /bin/sh -c) or a
 * list of PV_T_ARGV fields. */
static char **build_argv(const pv_msg *m, const char **why)
{
    size_t n = pv_msg_count(m, PV_T_ARGV);
    bool shell = pv_msg_has(m, PV_T_SHELL);
    if (shell == (n > 0)) {
        *why = "exactly one of shell or argv must be given";
        return NULL;
    }
    char **argv = calloc((shell ? 3 : n) + 1, sizeof(char *));
    if (!argv) {
        *why = "out of memory";
        return NULL;
    }
    if (shell) {
        argv[0] = strdup("/bin/sh");
        argv[1] = strdup("-c");
        argv[2] = pv_msg_strdup(m, PV_T_SHELL);
        if (!argv[2])
            *why = "command contains a NUL byte";
        return argv;
    }
    size_t pos = 0, i = 0;
    const pv_field *f;
    while ((f = pv_msg_next(m, PV_T_ARGV, &pos))) {
        if (memchr(f->data, 0, f->len)) {
            *why = "argument contains a NUL byte";
            break;
        }
        argv[i] = strndup((const char *)f->data, f->len);
        i++;
    }
    return argv;
}

static void free_strv(char **v)
{
    if (!v)
        return;
    for (size_t i = 0; v[i]; i++)
        free(v[i]);
    free(v);
}

static char **build_env(const pv_msg *m)
{
    extern char **environ;
    size_t base = 0;
    bool clear = pv_msg_u64(m, PV_T_ENV_CLEAR, 0) != 0;
    if (!clear)
        while (environ[base])
            base++;
    size_t extra = pv_msg_count(m, PV_T_ENV);
    char **env = calloc(base + extra + 2, sizeof(char *));
    if (!env)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < base; i++)
        env[n++] = strdup(environ[i]);
    size_t pos = 0;
    const pv_field *f;
    while ((f = pv_msg_next(m, PV_T_ENV, &pos))) {
        char *kv = strndup((const char *)f->data, f->len);
        char *eq = kv ? strchr(kv, '=') : NULL;
        if (!eq) {
            free(kv);
            continue;
        }
        /* a later assignment replaces an inherited one */
        size_t klen = (size_t)(eq - kv) + 1;
        size_t k;
        for (k = 0; k < n; k++)
            if (env[k] && strncmp(env[k], kv, klen) == 0)
                break;
        if (k < n) {
            free(env[k]);
            env[k] = kv;
        } else {
            env[n++] = kv;
        }
    }
    if (!clear) {
        bool has_path = false;
        for (size_t k = 0; k < n; k++)
            has_path |= strncmp(env[k], "PATH=", 5) == 0;
        if (!has_path)
            env[n++] = strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    }
    return env;
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

void exec_start(agent_conn *c, const pv_msg *m)
{
    uint32_t chan = m->hdr.chan, req = m->hdr.req;
    job *j = NULL;
    for (int i = 0; i < MAX_JOBS && !j; i++)
        if (!jobs[i].used)
            j = &jobs[i];
    if (!j) {
        conn_send_error(c, chan, req, EAGAIN, "exec: %d commands already running", MAX_JOBS);
        return;
    }
    const char *why = NULL;
    char **argv = build_argv(m, &why);
    char **envp = argv && !why ? build_env(m) : NULL;
    char *cwd = pv_msg_has(m, PV_T_CWD) ? pv_msg_strdup(m, PV_T_CWD) : NULL;
    if (!why && pv_msg_has(m, PV_T_CWD) && !cwd)
        why = "cwd contains a NUL byte";
    if (!why && !envp)
        why = "out of memory";
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1};
    if (!why && (pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC) || pipe2(perr, O_CLOEXEC)))
        why = strerror(errno);
    /* Report a missing program or cwd as an error reply, not as exit 127:
     * the child sends errno back over a close-on-exec pipe. */
    int perrno[2] = {-1, -1};
    if (!why && pipe2(perrno, O_CLOEXEC))
        why = strerror(errno);
    pid_t pid = -1;
    if (!why) {
        pid = fork();
        if (pid < 0)
            why = strerror(errno);
    }
    if (pid == 0) {
        setpgid(0, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        /* negative: the directory could not be entered; positive: exec failed */
        int tagged;
        if (cwd && chdir(cwd) != 0)
            tagged = -errno;
        else {
            execvpe(argv[0], argv, envp);
            tagged = errno;
        }
        (void)!write(perrno[1], &tagged, sizeof(tagged));
        _exit(127);
    }
    /* the child's ends */
    close_fd(&pin[0]);
    close_fd(&pout[1]);
    close_fd(&perr[1]);
    close_fd(&perrno[1]);
    if (why) {
        conn_send_error(c, chan, req, EINVAL, "exec: %s", why);
        close_fd(&pin[1]);
        close_fd(&pout[0]);
        close_fd(&perr[0]);
        close_fd(&perrno[0]);
        free_strv(argv);
        free_strv(envp);
        free(cwd);
        return;
    }
    int child_errno = 0;
    ssize_t got;
    do
        got = read(perrno[0], &child_errno, sizeof(child_errno));
    while (got < 0 && errno == EINTR);
    close(perrno[0]);
    if (got == (ssize_t)sizeof(child_errno)) {
        waitpid(pid, NULL, 0);
        if (child_errno < 0)
            conn_send_error(c, chan, req, -child_errno, "exec: cannot enter directory %s: %s", cwd,
                            strerror(-child_errno));
        else
            conn_send_error(c, chan, req, child_errno, "exec: cannot run %s: %s", argv[0], strerror(child_errno));
        close(pin[1]);
        close(pout[0]);
        close(perr[0]);
        free_strv(argv);
        free_strv(envp);
        free(cwd);
        return;
    }
    free_strv(argv);
    free_strv(envp);
    free(cwd);

    memset(j, 0, sizeof(*j));
    j->used = true;
    j->pid = pid;
    j->chan = chan;
    j->req = req;
    uint64_t tmo = pv_msg_u64(m, PV_T_TIMEOUT_MS, 0);
    j->deadline_ms = tmo ? now_ms() + (int64_t)tmo : 0;
    j->fd_in = pin[1];
    j->fd_out = pout[0];
    j->fd_err = perr[0];
    set_nonblock(j->fd_in);
    set_nonblock(j->fd_out);
    set_nonblock(j->fd_err);
    j->async = pv_msg_u64(m, PV_T_ASYNC, 0) != 0;
    const pv_field *in = pv_msg_get(m, PV_T_STDIN);
    if (in && in->len) {
        j->stdin_data = malloc(in->len);
        if (j->stdin_data) {
            memcpy(j->stdin_data, in->data, in->len);
            j->stdin_len = in->len;
        }
    }
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
    for (int i = 0; i < MAX_JOBS; i++)
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

size_t exec_pollfds(struct pollfd *pfd, size_t max)
{
    size_t n = 0;
    for (int i = 0; i < MAX_JOBS; i++) {
        job *j = &jobs[i];
        if (!j->used)
            continue;
        bool want_in = j->stdin_off < j->stdin_len || j->close_stdin || !j->async;
        int fds[3] = {want_in ? j->fd_in : -1, j->fd_out, j->fd_err};
        short ev[3] = {POLLOUT, POLLIN, POLLIN};
        for (int k = 0; k < 3; k++)
            if (fds[k] >= 0 && n < max)
                pfd[n++] = (struct pollfd){fds[k], ev[k], 0};
    }
    return n;
}

void exec_put_output(agent_conn *c, const obuf *out, const obuf *err)
{
    pv_put_bytes(&c->out, PV_T_STDOUT, out->data, out->len);
    pv_put_bytes(&c->out, PV_T_STDERR, err->data, err->len);
    if (out->dropped || err->dropped)
        pv_put_u64(&c->out, PV_T_TRUNCATED, (out->dropped ? 1u : 0u) | (err->dropped ? 2u : 0u));
}

void obuf_append_capped(obuf *b, const char *data, size_t n)
{
    size_t keep = b->len + n > EXEC_MAX_OUTPUT ? EXEC_MAX_OUTPUT - b->len : n;
    if (keep < n)
        b->dropped = true;
    if (keep && b->len + keep > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + keep)
            cap *= 2;
        char *nb = realloc(b->data, cap);
        if (!nb) {
            b->dropped = true;
            return;
        }
        b->data = nb;
        b->cap = cap;
    }
    if (keep) {
        memcpy(b->data + b->len, data, keep);
        b->len += keep;
    }
}

static agent_conn *push_conn; /* set while servicing pipes of async jobs */
static uint32_t push_chan;
static uint64_t push_stream;

/* Reads what is available; returns false at EOF or error. Output of async
 * jobs is pushed to the host at once instead of being kept. */
static bool drain(int fd, obuf *b)
{
    char tmp[65536];
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN;
        if (n == 0)
            return false;
        if (push_conn) {
            if (push_conn->connected) {
                pv_frame_begin(&push_conn->out, PV_MSG_STREAM_DATA, push_chan, 0);
                pv_put_u64(&push_conn->out, PV_T_STREAM, push_stream);
                pv_put_bytes(&push_conn->out, PV_T_DATA, tmp, (size_t)n);
                conn_send(push_conn);
            }
            continue;
        }
        obuf_append_capped(b, tmp, (size_t)n);
    }
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

static bool drain_job(agent_conn *c, job *j, int fd, obuf *b, uint64_t stream)
{
    if (j->async) {
        push_conn = c;
        push_chan = j->chan;
        push_stream = stream;
    }
    bool more = drain(fd, b);
    push_conn = NULL;
    return more;
}

static void finish(agent_conn *c, job *j)
{
    /* The process has exited: take what its pipes hold now. Grandchildren
     * that keep the pipes open must not delay the result. */
    if (j->fd_out >= 0)
        drain_job(c, j, j->fd_out, &j->out, 1);
    if (j->fd_err >= 0)
        drain_job(c, j, j->fd_err, &j->err, 2);
    uint64_t status;
    int64_t code;
    int sig = 0;
    if (j->timed_out) {
        status = PV_EXEC_TIMED_OUT;
        code = -2;
        sig = WIFSIGNALED(j->wstatus) ? WTERMSIG(j->wstatus) : 0;
    } else if (WIFSIGNALED(j->wstatus)) {
        status = PV_EXEC_SIGNALLED;
        code = -1;
        sig = WTERMSIG(j->wstatus);
    } else {
        status = PV_EXEC_EXITED;
        code = WEXITSTATUS(j->wstatus);
    }
    if (c->connected) {
        pv_frame_begin(&c->out, PV_MSG_EXEC_RESULT, j->chan, j->async ? 0 : j->req);
        pv_put_u64(&c->out, PV_T_STATUS, status);
        pv_put_i64(&c->out, PV_T_EXIT_CODE, code);
        if (sig)
            pv_put_u64(&c->out, PV_T_SIGNAL, (uint64_t)sig);
        exec_put_output(c, &j->out, &j->err);
        conn_send(c);
    }
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
        for (int i = 0; i < MAX_JOBS; i++) {
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
        for (int i = 0; i < MAX_JOBS; i++) {
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
    for (int i = 0; i < MAX_JOBS; i++) {
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
    for (int i = 0; i < MAX_JOBS; i++) {
        job *j = &jobs[i];
        if (j->used && j->deadline_ms && !j->timed_out && now >= j->deadline_ms) {
            j->timed_out = true;
            kill(-j->pid, SIGKILL);
        }
    }
}

void exec_abandon_all(void)
{
    for (int i = 0; i < MAX_JOBS; i++) {
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
    for (int i = 0; i < MAX_JOBS; i++)
        if (jobs[i].used)
            job_free(&jobs[i]);
}

char **exec_build_argv(const pv_msg *m, const char **why) { return build_argv(m, why); }
char **exec_build_env(const pv_msg *m) { return build_env(m); }
void exec_free_strv(char **v) { free_strv(v); }
