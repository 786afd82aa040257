/* Workers: more agents inside the same guest, each with its own command
 * channel, PID/TID and credentials. This file is the agent's side (spawning,
 * relaying, killing) and the fork worker's start; thread_worker.c is the
 * thread worker's own loop.
 *
 * The agent creates a socketpair per worker. A fork worker is a child
 * process that serves its end with the agent's ordinary loop (agent_serve,
 * local mode); a thread worker is a pthread of the agent that serves its end
 * with a smaller loop (thread_worker_main) which never touches the process-wide job
 * and stream tables. The parent relays frames: a frame from the host whose
 * channel carries worker id w in its top byte (PV_CHAN_WORKER) is written to
 * worker w's socket unchanged, and every frame the worker writes (except its
 * channel-0 READY) goes to the host unchanged. Relaying never blocks: bytes
 * for a busy worker are queued and written when its socket drains, so a
 * worker stuck in a syscall stalls nobody else.
 *
 * Killing a worker shuts down the write side of its socket: the worker sees
 * EOF, ends its commands and exits. A worker blocked in a syscall is woken by
 * WAKE_SIGNAL (a no-op handler without SA_RESTART, so the call fails with
 * EINTR); a fork worker that still has not exited after KILL_GRACE_MS gets
 * SIGKILL. When the worker's end of the socket closes, requests it left
 * unanswered get ERROR(ESRCH) naming it, and WORKER_EXIT is pushed on its
 * channel. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

#define WAKE_SIGNAL SIGURG
#define KILL_GRACE_MS 3000
#define WAKE_EVERY_MS 200
#define THREAD_STACK (1024 * 1024)

typedef struct {
    uint32_t chan, req;
} pending;

typedef struct {
    uint32_t id;
    bool thread;
    pid_t pid;       /* fork: its pid; thread: its tid */
    int fd;          /* our end, non-blocking */
    int peer_fd;     /* thread mode: the thread's end (same fd table); -1 for fork */
    agent_conn in;   /* frames coming from the worker */
    uint8_t *q;      /* bytes for the worker not yet written */
    size_t qlen, qoff, qcap;
    pending *pend;   /* requests relayed and not answered yet */
    size_t npend, pcap;
    bool closing;
    bool escalated;
    int64_t deadline, next_wake;
} worker;

static worker *workers[PV_MAX_WORKERS + 1];
bool agent_in_worker;

static void on_wake(int sig) { (void)sig; }

static void install_wake_handler(void)
{
    static bool done;
    if (done)
        return;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_wake; /* no SA_RESTART: a blocked call returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(WAKE_SIGNAL, &sa, NULL);
    done = true;
}

void worker_unblock_wake(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, WAKE_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
}

/* ---- the parent's side ---- */

static void host_write(agent_conn *c, const uint8_t *p, size_t left)
{
    if (!c->connected)
        return;
    while (left) {
        ssize_t n = write(c->fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        left -= (size_t)n;
    }
}

static void flush_queue(worker *w)
{
    while (w->qoff < w->qlen) {
        ssize_t n = write(w->fd, w->q + w->qoff, w->qlen - w->qoff);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) { /* the worker is going away; its EOF follows */
            w->qlen = w->qoff = 0;
            return;
        }
        w->qoff += (size_t)n;
    }
    w->qlen = w->qoff = 0;
}

/* Makes room for n more queued bytes; false when out of memory. */
static bool queue_reserve(worker *w, size_t n)
{
    if (w->qoff && w->qoff == w->qlen)
        w->qlen = w->qoff = 0;
    if (w->qlen + n <= w->qcap)
        return true;
    size_t cap = w->qcap ? w->qcap : 65536;
    while (cap < w->qlen + n)
        cap *= 2;
    uint8_t *nq = realloc(w->q, cap);
    if (!nq)
        return false;
    w->q = nq;
    w->qcap = cap;
    return true;
}

/* Queues one whole frame for the worker, or nothing. */
static bool enqueue_frame(worker *w, const pv_hdr *hdr, const uint8_t *payload)
{
    if (!queue_reserve(w, PV_HDR_SIZE + (size_t)hdr->len))
        return false;
    pv_hdr_encode(hdr, w->q + w->qlen);
    memcpy(w->q + w->qlen + PV_HDR_SIZE, payload, hdr->len);
    w->qlen += PV_HDR_SIZE + (size_t)hdr->len;
    return true;
}

static bool pend_add(worker *w, uint32_t chan, uint32_t req)
{
    if (w->npend == w->pcap) {
        size_t cap = w->pcap ? w->pcap * 2 : 16;
        pending *np = realloc(w->pend, cap * sizeof(*np));
        if (!np)
            return false;
        w->pend = np;
        w->pcap = cap;
    }
    w->pend[w->npend++] = (pending){chan, req};
    return true;
}

static void pend_remove(worker *w, uint32_t chan, uint32_t req)
{
    for (size_t i = 0; i < w->npend; i++)
        if (w->pend[i].chan == chan && w->pend[i].req == req) {
            w->pend[i] = w->pend[--w->npend];
            return;
        }
}

static const char *kind_of(const worker *w) { return w->thread ? "thread" : "fork"; }

/* The worker's end closed (or it was abandoned): answer what it left
 * unanswered, tell the host, forget it. */
static void worker_gone(agent_conn *c, worker *w, const char *why)
{
    for (size_t i = 0; i < w->npend; i++)
        if (c->connected)
            conn_send_error(c, w->pend[i].chan, w->pend[i].req, ESRCH, "worker %u (%s, %s %d) %s before answering",
                            w->id, kind_of(w), w->thread ? "tid" : "pid", (int)w->pid, why);
    if (c->connected) {
        char msg[AGENT_ERROR_MAX];
        snprintf(msg, sizeof(msg), "worker %u (%s, %s %d) %s", w->id, kind_of(w), w->thread ? "tid" : "pid",
                 (int)w->pid, why);
        pv_buf_reset(&c->out);
        pv_frame_begin(&c->out, PV_MSG_WORKER_EXIT, w->id << PV_WORKER_SHIFT, 0);
        pv_put_u64(&c->out, PV_T_WORKER, w->id);
        pv_put_str(&c->out, PV_T_MESSAGE, msg);
        conn_send(c);
    }
    close(w->fd);
    if (!w->thread)
        waitpid(w->pid, NULL, WNOHANG); /* the SIGCHLD loop may have reaped it already */
    workers[w->id] = NULL;
    free(w->in.in);
    pv_buf_free(&w->in.out);
    free(w->q);
    free(w->pend);
    free(w);
}

static void wake(worker *w)
{
    if (w->thread)
        syscall(SYS_tgkill, getpid(), w->pid, WAKE_SIGNAL);
    else
        kill(w->pid, WAKE_SIGNAL);
}

static void begin_close(worker *w)
{
    if (w->closing)
        return;
    w->closing = true;
    w->qlen = w->qoff = 0;
    shutdown(w->fd, SHUT_WR);
    wake(w);
    int64_t now = now_ms();
    w->deadline = now + KILL_GRACE_MS;
    w->next_wake = now + WAKE_EVERY_MS;
}

bool worker_relay(agent_conn *c, const pv_hdr *hdr, const uint8_t *payload)
{
    uint32_t id = PV_CHAN_WORKER(hdr->chan);
    if (agent_in_worker || id == 0)
        return false;
    worker *w = workers[id];
    if (!w || w->closing) {
        if (hdr->req)
            conn_send_error(c, hdr->chan, hdr->req, ESRCH, "worker %u is not running (it was killed or has exited)",
                            id);
        return true;
    }
    /* the request is remembered first, so a worker that dies answers it */
    bool remembered = !hdr->req || pend_add(w, hdr->chan, hdr->req);
    if (!remembered || !enqueue_frame(w, hdr, payload)) {
        if (remembered && hdr->req)
            pend_remove(w, hdr->chan, hdr->req);
        if (hdr->req)
            conn_send_error(c, hdr->chan, hdr->req, ENOMEM, "worker %u: out of memory relaying %s", id,
                            pv_msg_name(hdr->type));
        return true;
    }
    flush_queue(w);
    return true;
}

static void fork_child(agent_conn *host, int fd, int parent_end)
{
    agent_in_worker = true;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(host->fd);
    close(parent_end);
    for (int i = 1; i <= PV_MAX_WORKERS; i++) {
        worker *w = workers[i];
        if (!w)
            continue;
        close(w->fd);
        if (w->peer_fd >= 0)
            close(w->peer_fd);
        workers[i] = NULL; /* the parent's memory; our copy is simply dropped */
    }
    /* The parent's commands and streams are not ours: drop our copies of
     * their descriptors without touching the processes. */
    exec_forget_all();
    tail_close_all();
    worker_unblock_wake();
    agent_conn wc;
    conn_init(&wc, fd, false);
    wc.land_policy = LAND_ALL;
    agent_serve(&wc);
    /* EOF: the host killed us. Our commands die with us. */
    exec_abandon_all();
    tail_close_all();
    _exit(0);
}

/* Forks a worker on sv; 0, or the errno after closing both ends. */
static int start_fork_worker(agent_conn *c, worker *w, int sv[2])
{
    pid_t pid = fork();
    if (pid == 0)
        fork_child(c, sv[1], sv[0]);
    int e = errno;
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return e;
    }
    w->pid = pid;
    return 0;
}

/* Starts a thread worker on sv[1]; 0, or the errno after closing both ends. */
static int start_thread_worker(worker *w, int sv[2])
{
    thread_start *ts = calloc(1, sizeof(*ts));
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    pthread_t th;
    int e = ts ? 0 : ENOMEM;
    if (ts) {
        ts->fd = sv[1];
        e = pthread_create(&th, &attr, thread_worker_main, ts);
    }
    pthread_attr_destroy(&attr);
    if (e) {
        close(sv[0]);
        close(sv[1]);
        free(ts);
        return e;
    }
    /* The thread reports its tid as its first act; never long. */
    int64_t limit = now_ms() + 5000;
    while (!atomic_load(&ts->tid) && now_ms() < limit)
        sched_yield();
    w->pid = atomic_load(&ts->tid);
    if (w->pid) /* else the thread never started and still owns ts */
        free(ts);
    w->peer_fd = sv[1];
    return 0;
}

void worker_spawn(agent_conn *c, const pv_msg *m)
{
    uint32_t chan = m->hdr.chan, req = m->hdr.req;
    if (agent_in_worker) {
        conn_send_error(c, chan, req, EOPNOTSUPP, "spawn_worker: a worker cannot spawn workers; spawn from the VM");
        return;
    }
    uint32_t id = 0;
    for (uint32_t i = 1; i <= PV_MAX_WORKERS && !id; i++)
        if (!workers[i])
            id = i;
    if (!id) {
        conn_send_error(c, chan, req, EAGAIN, "spawn_worker: %d workers are already running", PV_MAX_WORKERS);
        return;
    }
    bool thread = pv_msg_u64(m, PV_T_THREAD, 0) != 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        conn_send_error(c, chan, req, errno, "spawn_worker: socketpair: %s", strerror(errno));
        return;
    }
    install_wake_handler();
    worker *w = calloc(1, sizeof(*w));
    if (!w) {
        close(sv[0]);
        close(sv[1]);
        conn_send_error(c, chan, req, ENOMEM, "spawn_worker: out of memory");
        return;
    }
    w->id = id;
    w->thread = thread;
    w->peer_fd = -1;
    int e = thread ? start_thread_worker(w, sv) : start_fork_worker(c, w, sv);
    if (e) {
        free(w);
        conn_send_error(c, chan, req, e, "spawn_worker: %s: %s", thread ? "pthread_create" : "fork", strerror(e));
        return;
    }
    w->fd = sv[0];
    set_nonblock(w->fd);
    conn_init(&w->in, w->fd, false);
    workers[id] = w;
    pv_frame_begin(&c->out, PV_MSG_WORKER_STARTED, chan, req);
    pv_put_u64(&c->out, PV_T_WORKER, id);
    pv_put_u64(&c->out, PV_T_PID, (uint64_t)w->pid);
    conn_send(c);
}

void worker_kill(agent_conn *c, const pv_msg *m)
{
    uint64_t id = pv_msg_u64(m, PV_T_WORKER, 0);
    worker *w = id >= 1 && id <= PV_MAX_WORKERS ? workers[id] : NULL;
    if (agent_in_worker || !w) {
        conn_send_error(c, m->hdr.chan, m->hdr.req, ESRCH, "kill: worker %llu is not running", (unsigned long long)id);
        return;
    }
    begin_close(w);
    reply_ok(c, m);
}

void worker_kill_all(void)
{
    for (int i = 1; i <= PV_MAX_WORKERS; i++)
        if (workers[i])
            begin_close(workers[i]);
}

size_t worker_pollfds(struct pollfd *pfd, size_t max, size_t *missed)
{
    size_t n = 0;
    for (int i = 1; i <= PV_MAX_WORKERS; i++) {
        worker *w = workers[i];
        if (w && n < max)
            pfd[n++] = (struct pollfd){w->fd, (short)(POLLIN | (w->qoff < w->qlen ? POLLOUT : 0)), 0};
        else if (w)
            ++*missed;
    }
    return n;
}

static worker *by_fd(int fd)
{
    for (int i = 1; i <= PV_MAX_WORKERS; i++)
        if (workers[i] && workers[i]->fd == fd)
            return workers[i];
    return NULL;
}

void worker_on_pollfds(agent_conn *c, const struct pollfd *pfd, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (!pfd[k].revents)
            continue;
        worker *w = by_fd(pfd[k].fd);
        if (!w)
            continue;
        if (pfd[k].revents & POLLOUT)
            flush_queue(w);
        if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        int got = conn_fill(&w->in);
        if (got == CONN_DROPPED && w->in.dropped.req) {
            /* a reply lost for lack of memory: the host still gets an answer */
            pend_remove(w, w->in.dropped.chan, w->in.dropped.req);
            conn_send_error(c, w->in.dropped.chan, w->in.dropped.req, ENOMEM,
                            "worker %u: out of memory relaying its %u-byte %s", w->id, w->in.dropped.len,
                            pv_msg_name(w->in.dropped.type));
        }
        pv_hdr hdr;
        const uint8_t *payload;
        int popped;
        while ((popped = conn_pop(&w->in, &hdr, &payload)) == 1) {
            /* channel 0 carries only the worker's own READY: not for the host */
            if (hdr.chan != 0 && !w->closing)
                host_write(c, w->in.in, PV_HDR_SIZE + (size_t)hdr.len);
            if (hdr.req)
                pend_remove(w, hdr.chan, hdr.req);
            conn_consume(&w->in, &hdr);
        }
        if (popped < 0) {
            agent_log("worker %u sent an oversized frame; killing it", w->id);
            begin_close(w);
        }
        if (got == 0)
            worker_gone(c, w, w->closing ? "was killed" : "exited");
    }
}

int worker_next_timeout_ms(void)
{
    int64_t best = -1, now = now_ms();
    for (int i = 1; i <= PV_MAX_WORKERS; i++) {
        worker *w = workers[i];
        if (!w || !w->closing)
            continue;
        int64_t t = w->next_wake < w->deadline ? w->next_wake : w->deadline;
        int64_t left = t > now ? t - now : 0;
        if (best < 0 || left < best)
            best = left;
    }
    return (int)best;
}

void worker_check_timeouts(agent_conn *c)
{
    int64_t now = now_ms();
    for (int i = 1; i <= PV_MAX_WORKERS; i++) {
        worker *w = workers[i];
        if (!w || !w->closing)
            continue;
        if (now >= w->deadline) {
            if (w->thread) {
                /* a thread cannot be killed alone: leave it, loudly */
                agent_log("worker %u (tid %d) did not exit within %d ms; abandoned", w->id, (int)w->pid, KILL_GRACE_MS);
                worker_gone(c, w, "did not leave its system call; abandoned");
            } else if (!w->escalated) {
                kill(w->pid, SIGKILL);
                w->escalated = true;
                w->deadline = now + KILL_GRACE_MS;
            } else {
                worker_gone(c, w, "did not die from SIGKILL");
            }
        } else if (now >= w->next_wake) {
            wake(w);
            w->next_wake = now + WAKE_EVERY_MS;
        }
    }
}
