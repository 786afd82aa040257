/*
 * test_agent_limits.c - the real guest agent (build/provium-agent, static
 * musl) in local mode at its limits, where a fault used to be silent:
 *
 *   - every slot at once: 256 commands with three pipes each, 64 pipe
 *     streams and 255 thread workers; the last stream's data and the last
 *     worker's reply must still arrive (the poll array once held 800
 *     entries, and whatever came after them was never served);
 *   - out of memory (the agent under RLIMIT_AS): a frame too large for any
 *     receive buffer, a request whose decoding finds no memory and a reply
 *     too large for the memory left are each answered ERROR(ENOMEM), and the
 *     agent keeps answering afterwards;
 *   - one way to start a command: the main loop and a thread worker give
 *     the same error text for a directory that cannot be entered, and a
 *     thread worker's command sees EOF after its stdin (its starting
 *     process once kept a copy of the pipe open, so `cat` never ended).
 *
 * Each case runs its own agent on one end of a socketpair. Every wait has a
 * deadline. The agent binary is $PROVIUM_AGENT or build/provium-agent.
 * Prints "FAIL [case] ..." per failed check.
 */
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define DEADLINE_MS 20000
#define JOBS 256
#define STREAMS 64
#define WORKERS PV_MAX_WORKERS

/* ---- one agent and its connection ---- */

typedef struct {
    pid_t pid;
    int fd;
    uint8_t *in; /* received bytes not yet taken */
    size_t len, cap;
} agent;

static int64_t clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Starts the agent on a socketpair, its address space capped at as_limit
 * bytes unless 0. */
static bool agent_start(agent *a, rlim_t as_limit)
{
    const char *bin = getenv("PROVIUM_AGENT");
    if (!bin || !*bin)
        bin = "build/provium-agent";
    memset(a, 0, sizeof(*a));
    int sv[2];
    if (access(bin, X_OK) != 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        printf("FAIL: agent %s: %s\n", bin, strerror(errno));
        n_fail++;
        return false;
    }
    fflush(stdout);
    a->pid = fork();
    if (a->pid == 0) {
        setpgid(0, 0);
        struct rlimit rl = {as_limit, as_limit};
        if (as_limit)
            setrlimit(RLIMIT_AS, &rl);
        if (dup2(sv[1], 3) < 0)
            _exit(126);
        execl(bin, "provium-agent", "--fd", "3", (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    a->fd = sv[0];
    fcntl(a->fd, F_SETFL, O_NONBLOCK);
    return a->pid > 0;
}

/* Closes the connection (the agent then ends its commands and exits) and
 * reaps it; kills its process group if it has not exited in time. */
static int agent_stop(agent *a)
{
    close(a->fd);
    free(a->in);
    int64_t end = clock_ms() + DEADLINE_MS;
    int ws = -1;
    while (waitpid(a->pid, &ws, WNOHANG) == 0) {
        if (clock_ms() > end) {
            kill(-a->pid, SIGKILL);
            waitpid(a->pid, &ws, 0);
            return -1;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(-a->pid, SIGKILL); /* anything it left behind */
    return ws;
}

/* Writes all of p within DEADLINE_MS (the socket is non-blocking). */
static bool agent_write(agent *a, const uint8_t *p, size_t len)
{
    int64_t end = clock_ms() + DEADLINE_MS;
    for (size_t off = 0; off < len;) {
        ssize_t n = write(a->fd, p + off, len - off);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        struct pollfd pf = {a->fd, POLLOUT, 0};
        int64_t left = end - clock_ms();
        if ((n < 0 && errno != EAGAIN && errno != EINTR) || left <= 0 || poll(&pf, 1, (int)left) <= 0)
            return false;
    }
    return true;
}

static bool agent_send(agent *a, pv_buf *b)
{
    bool ok = pv_frame_end(b) == 0 && agent_write(a, b->buf, b->len);
    pv_buf_free(b);
    return ok;
}

/* The next frame (header and payload copy in *payload, freed by the caller)
 * or false at the deadline or EOF. */
static bool agent_next(agent *a, pv_hdr *h, uint8_t **payload, int64_t end)
{
    for (;;) {
        if (a->len >= PV_HDR_SIZE && pv_hdr_decode(a->in, h) == 0 && a->len >= PV_HDR_SIZE + (size_t)h->len) {
            *payload = malloc(h->len + 1);
            memcpy(*payload, a->in + PV_HDR_SIZE, h->len);
            a->len -= PV_HDR_SIZE + (size_t)h->len;
            memmove(a->in, a->in + PV_HDR_SIZE + h->len, a->len);
            return true;
        }
        if (a->cap - a->len < 65536) {
            a->cap = a->cap ? a->cap * 2 : 1 << 20;
            a->in = realloc(a->in, a->cap);
        }
        struct pollfd p = {a->fd, POLLIN, 0};
        int64_t left = end - clock_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return false;
        ssize_t n = read(a->fd, a->in + a->len, a->cap - a->len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return false;
        a->len += (size_t)n;
    }
}

/* Waits for the frame of the given type on chan (req 0: any), skipping
 * others; decodes it into *m (free with pv_msg_free and free(*payload)). */
static bool agent_expect(agent *a, uint16_t type, uint32_t chan, uint32_t req, pv_msg *m, uint8_t **payload)
{
    int64_t end = clock_ms() + DEADLINE_MS;
    pv_hdr h;
    char err[256];
    while (agent_next(a, &h, payload, end)) {
        if (h.type == type && h.chan == chan && (!req || h.req == req) &&
            pv_msg_decode(&h, *payload, m, err, sizeof(err)) == 0)
            return true;
        free(*payload);
    }
    *payload = NULL;
    return false;
}

static bool expect_ready(agent *a)
{
    pv_msg m;
    uint8_t *p;
    if (!CHECKF(agent_expect(a, PV_MSG_READY, 0, 0, &m, &p), "no READY from the agent"))
        return false;
    pv_msg_free(&m);
    free(p);
    return true;
}

/* PING on chan with req; true when the PONG echoes the word. */
static bool ping(agent *a, uint32_t chan, uint32_t req, const char *word)
{
    pv_buf b;
    pv_buf_init(&b);
    pv_frame_begin(&b, PV_MSG_PING, chan, req);
    pv_put_str(&b, PV_T_ECHO, word);
    pv_msg m;
    uint8_t *p;
    if (!agent_send(a, &b) || !agent_expect(a, PV_MSG_PONG, chan, req, &m, &p))
        return false;
    const pv_field *echo = pv_msg_get(&m, PV_T_ECHO);
    bool ok = echo && echo->len == strlen(word) && memcmp(echo->data, word, echo->len) == 0;
    pv_msg_free(&m);
    free(p);
    return ok;
}

/* ---- every slot at once ---- */

static char tmpdir[PATH_MAX];

/* 256 commands that never read their stdin, each with more input than a
 * pipe holds: stdin, stdout and stderr all stay polled. */
static void start_jobs(agent *a)
{
    static char input[80 * 1024];
    memset(input, 'x', sizeof(input));
    for (uint32_t i = 0; i < JOBS; i++) {
        pv_buf b;
        pv_buf_init(&b);
        pv_frame_begin(&b, PV_MSG_EXEC, 1000 + i, 1);
        pv_put_str(&b, PV_T_ARGV, "sleep");
        pv_put_str(&b, PV_T_ARGV, "60");
        pv_put_bytes(&b, PV_T_STDIN, input, sizeof(input));
        pv_put_u64(&b, PV_T_TIMEOUT_MS, 60000);
        CHECK(agent_send(a, &b));
    }
}

/* 64 streams of FIFOs the test keeps a writer on; the write ends in w[]. */
static bool open_streams(agent *a, int *w)
{
    for (uint32_t i = 0; i < STREAMS; i++) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof(path), "%s/fifo%u", tmpdir, i);
        if (!CHECKF(mkfifo(path, 0600) == 0, "mkfifo %s: %s", path, strerror(errno)))
            return false;
        w[i] = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        pv_buf b;
        pv_buf_init(&b);
        pv_frame_begin(&b, PV_MSG_TAIL_OPEN, 2000 + i, 1);
        pv_put_str(&b, PV_T_PATH, path);
        pv_msg m;
        uint8_t *p;
        if (!CHECKF(agent_send(a, &b) && agent_expect(a, PV_MSG_OK, 2000 + i, 1, &m, &p), "stream %u not opened", i))
            return false;
        pv_msg_free(&m);
        free(p);
    }
    return true;
}

static bool spawn_workers(agent *a)
{
    for (uint32_t i = 0; i < WORKERS; i++) {
        pv_buf b;
        pv_buf_init(&b);
        pv_frame_begin(&b, PV_MSG_WORKER_SPAWN, 0, 3000 + i);
        pv_put_u64(&b, PV_T_THREAD, 1);
        pv_msg m;
        uint8_t *p;
        if (!CHECKF(agent_send(a, &b) && agent_expect(a, PV_MSG_WORKER_STARTED, 0, 3000 + i, &m, &p),
                    "worker %u not started", i + 1))
            return false;
        pv_msg_free(&m);
        free(p);
    }
    return true;
}

static void test_every_slot(void)
{
    set_case("every job, stream and worker slot in use at once");
    agent a;
    if (!agent_start(&a, 0) || !expect_ready(&a))
        return;
    int w[STREAMS];
    for (int i = 0; i < STREAMS; i++)
        w[i] = -1;
    start_jobs(&a);
    /* the agent has started them all once it answers what follows */
    if (open_streams(&a, w) && spawn_workers(&a)) {
        CHECKF(ping(&a, 0, 9, "main"), "the agent itself does not answer");
        CHECKF(ping(&a, (uint32_t)WORKERS << PV_WORKER_SHIFT, 9, "last-worker"),
               "the last worker's reply never came back (its socket is not polled)");
        CHECK(write(w[STREAMS - 1], "tail-data", 9) == 9);
        pv_msg m;
        uint8_t *p;
        if (CHECKF(agent_expect(&a, PV_MSG_STREAM_DATA, 2000 + STREAMS - 1, 0, &m, &p),
                   "the last stream's data never came (its pipe is not polled)")) {
            const pv_field *d = pv_msg_get(&m, PV_T_DATA);
            CHECK(d && d->len == 9 && memcmp(d->data, "tail-data", 9) == 0);
            pv_msg_free(&m);
            free(p);
        }
    }
    for (int i = 0; i < STREAMS; i++)
        if (w[i] >= 0)
            close(w[i]);
    int ws = agent_stop(&a);
    CHECKF(ws >= 0 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "agent wait status %d", ws);
}

/* ---- out of memory ---- */

/* A request of len payload bytes of zeros: a field header of tag 0, length
 * 0, over and over, which the decoder must make room for before it rejects
 * the tag. */
static bool send_zeros(agent *a, uint16_t type, uint32_t req, size_t len)
{
    uint8_t *frame = calloc(1, PV_HDR_SIZE + len);
    pv_hdr h = {.len = (uint32_t)len, .chan = 0, .req = req, .type = type};
    pv_hdr_encode(&h, frame);
    bool ok = agent_write(a, frame, PV_HDR_SIZE + len);
    free(frame);
    return ok;
}

static void expect_enomem(agent *a, uint32_t req, const char *what, const char *text)
{
    pv_msg m;
    uint8_t *p;
    if (!CHECKF(agent_expect(a, PV_MSG_ERROR, 0, req, &m, &p), "%s: no ERROR reply", what))
        return;
    const pv_field *msg = pv_msg_get(&m, PV_T_MESSAGE);
    int64_t err = pv_msg_i64(&m, PV_T_ERRNO, 0);
    CHECKF(err == ENOMEM, "%s: errno %lld (%.*s), expected ENOMEM", what, (long long)err, msg ? (int)msg->len : 0,
           msg ? (const char *)msg->data : "");
    CHECKF(msg && memmem(msg->data, msg->len, text, strlen(text)), "%s: message '%.*s', expected '%s' in it", what,
           msg ? (int)msg->len : 0, msg ? (const char *)msg->data : "", text);
    pv_msg_free(&m);
    free(p);
}

static void test_out_of_memory(void)
{
    agent a;
    /* room for the agent and an 8 MiB receive buffer, not for 30 MiB */
    if (!agent_start(&a, 28u << 20) || !expect_ready(&a))
        return;
    set_case("out of memory: a frame no receive buffer can hold");
    CHECK(send_zeros(&a, PV_MSG_PING, 21, 30u << 20));
    expect_enomem(&a, 21, "30 MiB frame", "out of memory receiving a 31457280-byte PING request");
    CHECKF(ping(&a, 0, 22, "after"), "the agent does not answer after the dropped frame");

    set_case("out of memory: decoding a request");
    /* 6 MiB of empty fields: the field table would take 16 MiB more */
    CHECK(send_zeros(&a, PV_MSG_PING, 23, 6u << 20));
    expect_enomem(&a, 23, "decoding", "bad request: out of memory");
    CHECKF(ping(&a, 0, 24, "still"), "the agent does not answer after the failed decode");

    set_case("out of memory: a reply that cannot be built");
    /* 12 MiB of output is kept (16 MiB of buffer); the reply needs as much again */
    pv_buf b;
    pv_buf_init(&b);
    pv_frame_begin(&b, PV_MSG_EXEC, 0, 25);
    pv_put_str(&b, PV_T_ARGV, "head");
    pv_put_str(&b, PV_T_ARGV, "-c");
    pv_put_str(&b, PV_T_ARGV, "12582912");
    pv_put_str(&b, PV_T_ARGV, "/dev/zero");
    CHECK(agent_send(&a, &b));
    expect_enomem(&a, 25, "EXEC_RESULT", "cannot build the EXEC_RESULT reply");
    CHECKF(ping(&a, 0, 26, "again"), "the agent does not answer after the unbuilt reply");
    int ws = agent_stop(&a);
    CHECKF(ws >= 0 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "agent wait status %d", ws);
}

/* ---- the same start on the main loop and on a thread worker ---- */

/* EXEC on chan; the reply frame (EXEC_RESULT or ERROR) decoded into *m. */
static bool exec_on(agent *a, uint32_t chan, uint32_t req, const char *prog, const char *cwd, const char *input,
                    uint16_t want, pv_msg *m, uint8_t **p)
{
    pv_buf b;
    pv_buf_init(&b);
    pv_frame_begin(&b, PV_MSG_EXEC, chan, req);
    pv_put_str(&b, PV_T_ARGV, prog);
    if (cwd)
        pv_put_str(&b, PV_T_CWD, cwd);
    if (input)
        pv_put_str(&b, PV_T_STDIN, input);
    pv_put_u64(&b, PV_T_TIMEOUT_MS, 10000);
    return agent_send(a, &b) && agent_expect(a, want, chan, req, m, p);
}

static bool field_is(const pv_msg *m, uint16_t tag, const char *want)
{
    const pv_field *f = pv_msg_get(m, tag);
    return f && f->len == strlen(want) && memcmp(f->data, want, f->len) == 0;
}

static void test_one_start(void)
{
    agent a;
    if (!agent_start(&a, 0) || !expect_ready(&a))
        return;
    pv_buf b;
    pv_buf_init(&b);
    pv_frame_begin(&b, PV_MSG_WORKER_SPAWN, 0, 30);
    pv_put_u64(&b, PV_T_THREAD, 1);
    pv_msg m;
    uint8_t *p;
    if (!CHECK(agent_send(&a, &b) && agent_expect(&a, PV_MSG_WORKER_STARTED, 0, 30, &m, &p)))
        goto out;
    uint32_t worker_chan = (uint32_t)pv_msg_u64(&m, PV_T_WORKER, 0) << PV_WORKER_SHIFT;
    pv_msg_free(&m);
    free(p);

    set_case("the same error text on the main loop and on a thread worker");
    char want[256];
    snprintf(want, sizeof(want), "exec: cannot enter directory /nonexistent-provium-dir to run true: %s",
             strerror(ENOENT));
    uint32_t chans[2] = {0, worker_chan};
    for (int i = 0; i < 2; i++) {
        if (!CHECKF(exec_on(&a, chans[i], 31, "true", "/nonexistent-provium-dir", NULL, PV_MSG_ERROR, &m, &p),
                    "%s: no ERROR", i ? "worker" : "main loop"))
            continue;
        const pv_field *msg = pv_msg_get(&m, PV_T_MESSAGE);
        CHECKF(pv_msg_i64(&m, PV_T_ERRNO, 0) == ENOENT && field_is(&m, PV_T_MESSAGE, want),
               "%s: errno %lld, message '%.*s', expected '%s'", i ? "worker" : "main loop",
               (long long)pv_msg_i64(&m, PV_T_ERRNO, 0), msg ? (int)msg->len : 0, msg ? (const char *)msg->data : "",
               want);
        pv_msg_free(&m);
        free(p);
    }

    set_case("a thread worker's command reads its stdin to EOF");
    if (CHECKF(exec_on(&a, worker_chan, 32, "cat", NULL, "to the end", PV_MSG_EXEC_RESULT, &m, &p), "no result")) {
        CHECKF(pv_msg_u64(&m, PV_T_STATUS, 99) == PV_EXEC_EXITED && pv_msg_i64(&m, PV_T_EXIT_CODE, -9) == 0,
               "status %llu exit %lld (status 2: timed out waiting for EOF)",
               (unsigned long long)pv_msg_u64(&m, PV_T_STATUS, 99), (long long)pv_msg_i64(&m, PV_T_EXIT_CODE, -9));
        CHECK(field_is(&m, PV_T_STDOUT, "to the end"));
        pv_msg_free(&m);
        free(p);
    }
out:;
    int ws = agent_stop(&a);
    CHECKF(ws >= 0 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "agent wait status %d", ws);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof(tmpdir), "%s/provium-limits-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_every_slot();
    test_out_of_memory();
    test_one_start();
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        printf("note: could not remove %s\n", tmpdir);
    printf("test_agent_limits: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
