/*
 * test_agent_local.c - drives the real guest agent (build/provium-agent, the
 * static musl build) in local mode: `provium-agent --fd N` on one end of a
 * socketpair, this test on the other, speaking the framed protocol.
 *
 * Covers: the READY handshake; PING/PONG with echo; EXEC in shell and argv
 * form with env/env_clear, cwd, stdin, exit codes, signals, timeouts (the
 * whole process group dies, background children included); error replies
 * for a missing program and a missing cwd; two EXECs in flight at once
 * (the fast one answers first); READ_FILE/WRITE_FILE round trips of binary
 * data and their errors; malformed input (unknown type, non-request type,
 * schema violations, a header announcing more than PV_MAX_PAYLOAD, frames
 * split into single bytes or packed together) after which the agent must
 * still answer; and finally that closing the socket makes the agent exit 0.
 *
 * Every wait has a deadline, so the test cannot hang on a broken agent.
 * The agent binary is $PROVIUM_AGENT or build/provium-agent (run from the
 * repository root). It also carries regression tests for the bugs it found.
 * Never sends SHUTDOWN: in local mode it would call reboot(2), and this test
 * may run as root.
 */
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"


#define REPLY_MS 10000 /* generous deadline for any single reply */
#define AGENT_FD 3     /* the descriptor number the agent is told to serve */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- the agent process and the connection ---- */

static int sock = -1;
static pid_t agent_pid = -1;
static char tmpdir[PATH_MAX];

static bool start_agent(void)
{
    const char *agent = getenv("PROVIUM_AGENT");
    if (!agent || !*agent)
        agent = "build/provium-agent";
    if (access(agent, X_OK) != 0) {
        printf("FAIL: agent binary %s: %s (run from the repository root after `make %s`)\n", agent, strerror(errno),
               agent);
        return false;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        perror("socketpair");
        return false;
    }
    fflush(stdout);
    agent_pid = fork();
    if (agent_pid < 0) {
        perror("fork");
        return false;
    }
    if (agent_pid == 0) {
        setpgid(0, 0); /* so a failed run can kill the agent and anything it left behind */
        /* dup2 clears close-on-exec on AGENT_FD; our end (sv[0]) is closed by exec */
        if (sv[1] == AGENT_FD)
            fcntl(AGENT_FD, F_SETFD, 0);
        else if (dup2(sv[1], AGENT_FD) < 0)
            _exit(126);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, 0);
        setenv("PROVIUM_TEST_MARKER", "inherited", 1);
        execl(agent, "provium-agent", "--fd", "3", (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    sock = sv[0];
    fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK);
    return true;
}

/* Sends all bytes, waiting for buffer space up to the deadline. */
static bool send_bytes(const void *data, size_t len)
{
    const uint8_t *p = data;
    int64_t deadline = now_ms() + REPLY_MS;
    while (len) {
        ssize_t n = send(sock, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return CHECKF(false, "send: %s", strerror(errno));
        int left = (int)(deadline - now_ms());
        if (left <= 0)
            return CHECKF(false, "send: the agent stopped reading");
        struct pollfd pfd = {sock, POLLOUT, 0};
        poll(&pfd, 1, left);
    }
    return true;
}

static bool send_frame(pv_buf *b)
{
    if (!CHECKF(pv_frame_end(b) == 0, "building the request failed"))
        return false;
    bool ok = send_bytes(b->buf, b->len);
    pv_buf_reset(b);
    return ok;
}

typedef struct {
    pv_hdr hdr;
    uint8_t *payload; /* exactly hdr.len bytes */
    pv_msg msg;
    bool valid;       /* decoded against the schema */
    char why[256];
} frame;

static void frame_free(frame *f)
{
    if (f->valid)
        pv_msg_free(&f->msg);
    free(f->payload);
    memset(f, 0, sizeof(*f));
}

static uint8_t *rbuf;
static size_t rlen, rcap;
static bool agent_gone; /* EOF seen */

/* Next frame in arrival order. 1: got one; 0: deadline passed; -1: EOF or a
 * frame the host side must refuse (oversized header). */
static int read_frame(frame *f, int64_t deadline)
{
    memset(f, 0, sizeof(*f));
    for (;;) {
        if (rlen >= PV_HDR_SIZE) {
            pv_hdr h;
            if (pv_hdr_decode(rbuf, &h) != 0) {
                CHECKF(false, "the agent sent a header announcing %u bytes", h.len);
                return -1;
            }
            if (rlen >= PV_HDR_SIZE + (size_t)h.len) {
                f->hdr = h;
                f->payload = malloc(h.len ? h.len : 1);
                memcpy(f->payload, rbuf + PV_HDR_SIZE, h.len);
                memmove(rbuf, rbuf + PV_HDR_SIZE + h.len, rlen - PV_HDR_SIZE - h.len);
                rlen -= PV_HDR_SIZE + h.len;
                f->valid = pv_msg_decode(&f->hdr, f->payload, &f->msg, f->why, sizeof(f->why)) == 0;
                return 1;
            }
        }
        if (agent_gone)
            return -1;
        int left = (int)(deadline - now_ms());
        if (left <= 0)
            return 0;
        struct pollfd pfd = {sock, POLLIN, 0};
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno != EINTR)
            return -1;
        if (r <= 0)
            continue;
        if (rcap - rlen < 65536) {
            rcap = rcap ? rcap * 2 : 262144;
            rbuf = realloc(rbuf, rcap);
        }
        ssize_t n = recv(sock, rbuf + rlen, rcap - rlen, 0);
        if (n > 0)
            rlen += (size_t)n;
        else if (n == 0 || (errno != EAGAIN && errno != EINTR))
            agent_gone = true;
    }
}

/* Frames that arrived while waiting for another request's reply. */
#define MAX_STASH 64
static frame stash[MAX_STASH];
static size_t nstash;

/* Waits for the reply to request id req (on channel chan). */
static bool wait_reply(uint32_t chan, uint32_t req, int timeout_ms, frame *out)
{
    for (size_t i = 0; i < nstash; i++) {
        if (stash[i].hdr.req == req && stash[i].hdr.chan == chan) {
            *out = stash[i];
            memmove(&stash[i], &stash[i + 1], (nstash - i - 1) * sizeof(frame));
            nstash--;
            return true;
        }
    }
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        frame f;
        int r = read_frame(&f, deadline);
        if (r == 0)
            return CHECKF(false, "no reply to request %u within %d ms", req, timeout_ms);
        if (r < 0)
            return CHECKF(false, "connection closed while waiting for the reply to request %u", req);
        if (f.hdr.req == req && f.hdr.chan == chan) {
            *out = f;
            return true;
        }
        if (nstash < MAX_STASH)
            stash[nstash++] = f;
        else
            frame_free(&f);
    }
}

static uint32_t next_req = 100;

/* Checks that f is a schema-valid frame of type `type`. */
static bool expect_type(int line, const frame *f, uint16_t type)
{
    if (!check_(f->valid, __FILE__, line, "reply %s failed to decode: %s", pv_msg_name(f->hdr.type), f->why))
        return false;
    if (f->hdr.type == PV_MSG_ERROR && type != PV_MSG_ERROR) {
        char *msg = pv_msg_strdup(&f->msg, PV_T_MESSAGE);
        check_(false, __FILE__, line, "expected %s, got ERROR errno %lld: %s", pv_msg_name(type),
               (long long)pv_msg_i64(&f->msg, PV_T_ERRNO, 0), msg ? msg : "?");
        free(msg);
        return false;
    }
    return check_(f->hdr.type == type, __FILE__, line, "expected %s, got %s (%u)", pv_msg_name(type), pv_msg_name(f->hdr.type),
                  f->hdr.type);
}

/* Checks an ERROR reply: errno (0: any) and a substring of the message. */
static void expect_error(int line, const frame *f, int err, const char *substr)
{
    if (!expect_type(line, f, PV_MSG_ERROR))
        return;
    int64_t e = pv_msg_i64(&f->msg, PV_T_ERRNO, 0);
    char *msg = pv_msg_strdup(&f->msg, PV_T_MESSAGE);
    check_(err == 0 || e == err, __FILE__, line, "errno %lld (%s), expected %d (%s); message: %s", (long long)e,
           strerror((int)e), err, strerror(err), msg ? msg : "?");
    check_(msg && (!substr || strstr(msg, substr)), __FILE__, line, "message \"%s\" lacks \"%s\"", msg ? msg : "(none)",
           substr ? substr : "");
    free(msg);
}

/* ---- EXEC helpers ---- */

typedef struct {
    const char *shell;
    const char *const *argv; /* NULL-terminated */
    const char *const *env;  /* NULL-terminated */
    bool has_env_clear;      /* send PV_T_ENV_CLEAR at all */
    uint64_t env_clear;
    const char *cwd;
    const void *in;
    size_t in_len;
    uint64_t timeout_ms;
} exec_opts;

#define EXEC_OPTS(...) ((exec_opts){__VA_ARGS__})
#define ENV_CLEAR(v) .has_env_clear = true, .env_clear = (v)

static void put_exec(pv_buf *b, uint32_t req, const exec_opts *o)
{
    pv_frame_begin(b, PV_MSG_EXEC, 0, req);
    if (o->shell)
        pv_put_str(b, PV_T_SHELL, o->shell);
    for (size_t i = 0; o->argv && o->argv[i]; i++)
        pv_put_str(b, PV_T_ARGV, o->argv[i]);
    for (size_t i = 0; o->env && o->env[i]; i++)
        pv_put_str(b, PV_T_ENV, o->env[i]);
    if (o->has_env_clear)
        pv_put_u64(b, PV_T_ENV_CLEAR, o->env_clear);
    if (o->cwd)
        pv_put_str(b, PV_T_CWD, o->cwd);
    if (o->in)
        pv_put_bytes(b, PV_T_STDIN, o->in, o->in_len);
    if (o->timeout_ms)
        pv_put_u64(b, PV_T_TIMEOUT_MS, o->timeout_ms);
}

typedef struct {
    bool ok;          /* an EXEC_RESULT arrived */
    uint64_t status;
    int64_t code;
    bool has_signal;
    uint64_t signal;
    char *out, *err;  /* NUL-terminated copies */
    size_t out_len, err_len;
    int64_t elapsed_ms;
} exec_result;

static char *field_copy(const pv_msg *m, uint16_t tag, size_t *len)
{
    const pv_field *f = pv_msg_get(m, tag);
    size_t n = f ? f->len : 0;
    char *s = malloc(n + 1);
    if (n)
        memcpy(s, f->data, n);
    s[n] = 0;
    if (len)
        *len = n;
    return s;
}

static void result_free(exec_result *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof(*r));
}

static void result_from(int line, frame *f, exec_result *r)
{
    memset(r, 0, sizeof(*r));
    if (!expect_type(line, f, PV_MSG_EXEC_RESULT)) {
        r->out = calloc(1, 1);
        r->err = calloc(1, 1);
        return;
    }
    r->ok = true;
    r->status = pv_msg_u64(&f->msg, PV_T_STATUS, 99);
    r->code = pv_msg_i64(&f->msg, PV_T_EXIT_CODE, 99);
    r->has_signal = pv_msg_has(&f->msg, PV_T_SIGNAL);
    r->signal = pv_msg_u64(&f->msg, PV_T_SIGNAL, 0);
    r->out = field_copy(&f->msg, PV_T_STDOUT, &r->out_len);
    r->err = field_copy(&f->msg, PV_T_STDERR, &r->err_len);
}

/* Runs one EXEC and waits for its EXEC_RESULT. */
static exec_result run_(int line, exec_opts o)
{
    pv_buf b;
    pv_buf_init(&b);
    uint32_t req = next_req++;
    put_exec(&b, req, &o);
    int64_t t0 = now_ms();
    exec_result r = {0};
    frame f;
    if (send_frame(&b) && wait_reply(0, req, REPLY_MS + (int)o.timeout_ms, &f)) {
        result_from(line, &f, &r);
        frame_free(&f);
    } else {
        r.out = calloc(1, 1);
        r.err = calloc(1, 1);
    }
    r.elapsed_ms = now_ms() - t0;
    pv_buf_free(&b);
    return r;
}
#define RUN(...) run_(__LINE__, EXEC_OPTS(__VA_ARGS__))

/* Runs one EXEC that must be refused with an ERROR reply. */
static void run_expect_error_(int line, exec_opts o, int err, const char *substr)
{
    pv_buf b;
    pv_buf_init(&b);
    uint32_t req = next_req++;
    put_exec(&b, req, &o);
    frame f;
    if (send_frame(&b) && wait_reply(0, req, REPLY_MS, &f)) {
        expect_error(line, &f, err, substr);
        frame_free(&f);
    }
    pv_buf_free(&b);
}
#define RUN_EXPECT_ERROR(err, substr, ...) run_expect_error_(__LINE__, EXEC_OPTS(__VA_ARGS__), err, substr)

static void expect_exit(int line, const exec_result *r, int64_t code, const char *out, const char *err)
{
    if (!r->ok)
        return;
    check_(r->status == PV_EXEC_EXITED, __FILE__, line, "status %llu, expected exited", (unsigned long long)r->status);
    check_(r->code == code, __FILE__, line, "exit code %lld, expected %lld (stderr: %s)", (long long)r->code, (long long)code,
           r->err);
    check_(!r->has_signal, __FILE__, line, "signal field on a normal exit");
    if (out)
        check_(strcmp(r->out, out) == 0, __FILE__, line, "stdout \"%s\", expected \"%s\"", r->out, out);
    if (err)
        check_(strcmp(r->err, err) == 0, __FILE__, line, "stderr \"%s\", expected \"%s\"", r->err, err);
}
#define EXPECT_EXIT(r, code, out, err) expect_exit(__LINE__, &(r), code, out, err)

/* Simple request/reply helper for everything but EXEC. */
static bool call(pv_buf *b, uint32_t req, frame *f)
{
    return send_frame(b) && wait_reply(0, req, REPLY_MS, f);
}

static bool ping_ok(const char *label)
{
    set_case("PING after %s", label);
    pv_buf b;
    pv_buf_init(&b);
    uint32_t req = next_req++;
    pv_frame_begin(&b, PV_MSG_PING, 0, req);
    pv_put_str(&b, PV_T_ECHO, label);
    frame f;
    bool ok = false;
    if (call(&b, req, &f)) {
        if (expect_type(__LINE__, &f, PV_MSG_PONG)) {
            const pv_field *e = pv_msg_get(&f.msg, PV_T_ECHO);
            ok = CHECK(e && e->len == strlen(label) && memcmp(e->data, label, e->len) == 0);
        }
        frame_free(&f);
    }
    pv_buf_free(&b);
    return ok;
}

/* ---- tests ---- */

static bool test_ready(void)
{
    set_case("READY handshake");
    frame f;
    int r = read_frame(&f, now_ms() + REPLY_MS);
    if (!CHECKF(r == 1, "no READY frame from the agent (%s)", r == 0 ? "timeout" : "connection closed"))
        return false;
    bool ok = expect_type(__LINE__, &f, PV_MSG_READY);
    if (ok) {
        CHECK(f.hdr.chan == 0 && f.hdr.req == 0);
        CHECKF(pv_msg_u64(&f.msg, PV_T_PROTO_VERSION, 0) == PV_PROTO_VERSION, "proto_version %llu, expected %d",
               (unsigned long long)pv_msg_u64(&f.msg, PV_T_PROTO_VERSION, 0), PV_PROTO_VERSION);
        char *v = pv_msg_strdup(&f.msg, PV_T_AGENT_VERSION);
        CHECKF(v && *v, "agent_version missing or empty");
        free(v);
        if (pv_msg_has(&f.msg, PV_T_PID))
            CHECKF(pv_msg_u64(&f.msg, PV_T_PID, 0) == (uint64_t)agent_pid, "pid %llu, agent is %d",
                   (unsigned long long)pv_msg_u64(&f.msg, PV_T_PID, 0), (int)agent_pid);
    }
    frame_free(&f);
    return ok;
}

TEST(ping)
{
    pv_buf b;
    pv_buf_init(&b);
    frame f;

    set_case("PING with a binary echo");
    uint8_t echo[3000];
    for (size_t i = 0; i < sizeof(echo); i++)
        echo[i] = (uint8_t)(i * 13);
    echo[5] = 0;
    uint32_t req = next_req++;
    pv_frame_begin(&b, PV_MSG_PING, 77, req);
    pv_put_bytes(&b, PV_T_ECHO, echo, sizeof(echo));
    if (send_frame(&b) && wait_reply(77, req, REPLY_MS, &f)) {
        if (expect_type(__LINE__, &f, PV_MSG_PONG)) {
            const pv_field *e = pv_msg_get(&f.msg, PV_T_ECHO);
            CHECKF(e && e->len == sizeof(echo) && memcmp(e->data, echo, sizeof(echo)) == 0, "echo differs");
            CHECK(f.hdr.chan == 77 && f.hdr.req == req);
        }
        frame_free(&f);
    }

    set_case("PING without echo");
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_PING, 0, req);
    if (call(&b, req, &f)) {
        if (expect_type(__LINE__, &f, PV_MSG_PONG))
            CHECK(!pv_msg_has(&f.msg, PV_T_ECHO));
        frame_free(&f);
    }
    pv_buf_free(&b);
}

TEST(exec_basic)
{
    set_case("EXEC shell: stdout, stderr, exit code");
    exec_result r = RUN(.shell = "echo out; echo err >&2; printf 'no newline'; exit 3");
    EXPECT_EXIT(r, 3, "out\nno newline", "err\n");
    result_free(&r);

    set_case("EXEC shell: exit 0 and exit 255");
    r = RUN(.shell = "true");
    EXPECT_EXIT(r, 0, "", "");
    result_free(&r);
    r = RUN(.shell = "exit 255");
    EXPECT_EXIT(r, 255, "", "");
    result_free(&r);

    set_case("EXEC shell: pipes and quoting are the shell's");
    r = RUN(.shell = "printf '%s\\n' \"a  b\" c | tr a-z A-Z");
    EXPECT_EXIT(r, 0, "A  B\nC\n", "");
    result_free(&r);

    set_case("EXEC argv: no shell splitting or expansion");
    static const char *const argv1[] = {"printf", "[%s]", "a b", "$HOME", "*", "", NULL};
    r = RUN(.argv = argv1);
    EXPECT_EXIT(r, 0, "[a b][$HOME][*][]", "");
    result_free(&r);

    set_case("EXEC argv: absolute program path and exit code");
    static const char *const argv2[] = {"/bin/sh", "-c", "echo \"$0:$1\"; exit 7", "zero", "one", NULL};
    r = RUN(.argv = argv2);
    EXPECT_EXIT(r, 7, "zero:one\n", "");
    result_free(&r);

    set_case("EXEC: killed by a signal");
    r = RUN(.shell = "kill -TERM $$; sleep 5");
    if (r.ok) {
        CHECKF(r.status == PV_EXEC_SIGNALLED, "status %llu, expected signalled", (unsigned long long)r.status);
        CHECKF(r.code == -1, "exit code %lld, expected -1", (long long)r.code);
        CHECKF(r.has_signal && r.signal == SIGTERM, "signal %llu, expected %d", (unsigned long long)r.signal,
               SIGTERM);
        CHECKF(r.elapsed_ms < 4000, "took %lld ms", (long long)r.elapsed_ms);
    }
    result_free(&r);

    set_case("EXEC: large output");
    r = RUN(.shell = "head -c 3000000 /dev/zero | tr '\\0' x; echo done >&2");
    EXPECT_EXIT(r, 0, NULL, "done\n");
    CHECKF(r.out_len == 3000000, "stdout has %zu bytes", r.out_len);
    bool all_x = true;
    for (size_t i = 0; i < r.out_len; i++)
        all_x &= r.out[i] == 'x';
    CHECK(all_x);
    result_free(&r);
}

TEST(exec_env_cwd_stdin)
{
    set_case("EXEC env: inherited environment plus additions");
    static const char *const env1[] = {"FOO=bar baz", "EMPTY=", NULL};
    exec_result r = RUN(.shell = "echo \"$FOO|${EMPTY-unset}|$PROVIUM_TEST_MARKER\"", .env = env1);
    EXPECT_EXIT(r, 0, "bar baz||inherited\n", "");
    result_free(&r);

    set_case("EXEC env: an assignment replaces an inherited variable");
    static const char *const env2[] = {"PROVIUM_TEST_MARKER=replaced", NULL};
    r = RUN(.shell = "echo $PROVIUM_TEST_MARKER; env | grep -c '^PROVIUM_TEST_MARKER='", .env = env2);
    EXPECT_EXIT(r, 0, "replaced\n1\n", "");
    result_free(&r);

    set_case("EXEC env_clear: only the given variables");
    static const char *const env3[] = {"ONLY=this", NULL};
    static const char *const argv_env[] = {"/usr/bin/env", NULL};
    r = RUN(.argv = argv_env, .env = env3, ENV_CLEAR(1));
    EXPECT_EXIT(r, 0, "ONLY=this\n", "");
    result_free(&r);

    set_case("EXEC env_clear: empty environment");
    r = RUN(.argv = argv_env, ENV_CLEAR(1));
    EXPECT_EXIT(r, 0, "", "");
    result_free(&r);

    set_case("EXEC env_clear=0 keeps the environment");
    r = RUN(.shell = "echo $PROVIUM_TEST_MARKER", ENV_CLEAR(0));
    EXPECT_EXIT(r, 0, "inherited\n", "");
    result_free(&r);

    set_case("EXEC cwd");
    char real[PATH_MAX];
    if (CHECK(realpath(tmpdir, real) != NULL)) {
        r = RUN(.shell = "pwd -P", .cwd = tmpdir);
        char want[PATH_MAX + 2];
        snprintf(want, sizeof(want), "%s\n", real);
        EXPECT_EXIT(r, 0, want, "");
        result_free(&r);
        static const char *const argv_pwd[] = {"pwd", NULL};
        r = RUN(.argv = argv_pwd, .cwd = "/");
        EXPECT_EXIT(r, 0, "/\n", "");
        result_free(&r);
    }

    set_case("EXEC stdin: binary data larger than a pipe buffer");
    size_t n = 300000;
    uint8_t *in = malloc(n);
    for (size_t i = 0; i < n; i++)
        in[i] = (uint8_t)((i * 7) ^ (i >> 9));
    static const char *const argv_cat[] = {"cat", NULL};
    r = RUN(.argv = argv_cat, .in = in, .in_len = n);
    EXPECT_EXIT(r, 0, NULL, "");
    CHECKF(r.out_len == n && memcmp(r.out, in, n) == 0, "cat returned %zu bytes of %zu, or different ones", r.out_len,
           n);
    result_free(&r);
    free(in);

    set_case("EXEC stdin: a command sees EOF after the data");
    r = RUN(.shell = "wc -c; read x || echo eof", .in = "12345", .in_len = 5);
    EXPECT_EXIT(r, 0, "5\neof\n", "");
    result_free(&r);

    set_case("EXEC without stdin: reads EOF at once");
    r = RUN(.shell = "cat; echo after");
    EXPECT_EXIT(r, 0, "after\n", "");
    CHECKF(r.elapsed_ms < 5000, "took %lld ms", (long long)r.elapsed_ms);
    result_free(&r);

    set_case("EXEC stdin ignored by the command");
    r = RUN(.shell = "exit 4", .in = "unused", .in_len = 6);
    EXPECT_EXIT(r, 4, "", "");
    result_free(&r);
}

/* Runs pgrep for the marker until `want_found` holds or the deadline passes. */
static bool marker_running(const char *pattern, bool want_found, int timeout_ms)
{
    const char *argv[] = {"pgrep", "-f", pattern, NULL};
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        exec_result r = run_(__LINE__, EXEC_OPTS(.argv = argv));
        bool found = r.ok && r.status == PV_EXEC_EXITED && r.code == 0;
        bool valid = r.ok && r.status == PV_EXEC_EXITED && (r.code == 0 || r.code == 1);
        result_free(&r);
        if (!valid) {
            CHECKF(false, "pgrep did not run properly");
            return !want_found;
        }
        if (found == want_found || now_ms() > deadline)
            return found;
        sleep_ms(50);
    }
}

TEST(exec_timeout)
{
    set_case("EXEC timeout: sleep 10 with timeout_ms 300");
    static const char *const argv_sleep[] = {"sleep", "10", NULL};
    exec_result r = RUN(.argv = argv_sleep, .timeout_ms = 300);
    if (r.ok) {
        CHECKF(r.status == PV_EXEC_TIMED_OUT, "status %llu, expected timed_out (%d)", (unsigned long long)r.status,
               PV_EXEC_TIMED_OUT);
        CHECKF(r.code == -2, "exit code %lld, expected -2", (long long)r.code);
        CHECKF(r.elapsed_ms < 5000, "took %lld ms, the command should be killed after 300 ms",
               (long long)r.elapsed_ms);
        CHECKF(r.elapsed_ms >= 250, "returned after %lld ms, before the 300 ms timeout", (long long)r.elapsed_ms);
    }
    result_free(&r);

    set_case("EXEC timeout not reached");
    r = RUN(.shell = "echo quick", .timeout_ms = 5000);
    EXPECT_EXIT(r, 0, "quick\n", "");
    result_free(&r);

    /* A background process of a timed-out command dies with it. The marker
     * is a sleep duration unique to this run; the pgrep pattern "[.]" does
     * not match pgrep's own command line. */
    set_case("EXEC timeout kills background children");
    char cmd[128], pattern[64];
    unsigned tag = (unsigned)getpid() % 100000;
    snprintf(cmd, sizeof(cmd), "sleep 100.%05u & echo $!; echo started >&2; sleep 10", tag);
    snprintf(pattern, sizeof(pattern), "sleep 100[.]%05u", tag);
    pv_buf b;
    pv_buf_init(&b);
    uint32_t req = next_req++;
    put_exec(&b, req, &EXEC_OPTS(.shell = cmd, .timeout_ms = 1500));
    int64_t t0 = now_ms();
    if (send_frame(&b)) {
        /* while it runs, other requests are served and the marker is visible */
        CHECKF(marker_running(pattern, true, 1200), "the background sleep never showed up in pgrep");
        frame f;
        if (wait_reply(0, req, REPLY_MS, &f)) {
            result_from(__LINE__, &f, &r);
            frame_free(&f);
            if (r.ok) {
                CHECKF(r.status == PV_EXEC_TIMED_OUT && r.code == -2, "status %llu code %lld",
                       (unsigned long long)r.status, (long long)r.code);
                CHECKF(strcmp(r.err, "started\n") == 0, "stderr \"%s\" (output before the kill is kept)", r.err);
                CHECKF(now_ms() - t0 < 8000, "took %lld ms", (long long)(now_ms() - t0));
                long bg = atol(r.out);
                CHECKF(bg > 0, "no pid on stdout: \"%s\"", r.out);
                set_case("EXEC timeout kills background children: after the result");
                CHECKF(!marker_running(pattern, false, 3000), "the background `sleep 100.%05u` (pid %ld) survived",
                       tag, bg);
                /* from here too: the pid is gone or a zombie awaiting its reaper */
                char path[64], st[256] = "";
                snprintf(path, sizeof(path), "/proc/%ld/stat", bg);
                FILE *fp = fopen(path, "r");
                if (fp) {
                    if (!fgets(st, sizeof(st), fp))
                        st[0] = 0;
                    fclose(fp);
                    char *rp = strrchr(st, ')');
                    CHECKF(!rp || rp[1] != ' ' || rp[2] == 'Z' || !strstr(st, "(sleep)"),
                           "pid %ld is still alive: %s", bg, st);
                }
            }
            result_free(&r);
        }
    }
    pv_buf_free(&b);
}

TEST(exec_errors)
{
    set_case("EXEC of a program that does not exist (absolute path)");
    static const char *const argv_missing[] = {"/nonexistent/provium-no-such-program", "x", NULL};
    RUN_EXPECT_ERROR(ENOENT, "provium-no-such-program", .argv = argv_missing);

    set_case("EXEC of a program not found in PATH");
    static const char *const argv_missing2[] = {"provium-no-such-program-in-path", NULL};
    RUN_EXPECT_ERROR(ENOENT, "provium-no-such-program-in-path", .argv = argv_missing2);

    set_case("EXEC of a file that is not executable");
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/not-executable", tmpdir);
    FILE *fp = fopen(path, "w");
    if (fp) {
        fputs("#!/bin/sh\necho hi\n", fp);
        fclose(fp);
    }
    chmod(path, 0644);
    const char *argv_noexec[] = {path, NULL};
    /* no execute bit at all: EACCES even for root */
    RUN_EXPECT_ERROR(EACCES, NULL, .argv = argv_noexec);

    set_case("EXEC with a cwd that does not exist");
    static const char *const argv_true[] = {"true", NULL};
    RUN_EXPECT_ERROR(ENOENT, "/nonexistent-provium-dir", .argv = argv_true, .cwd = "/nonexistent-provium-dir");
    RUN_EXPECT_ERROR(ENOENT, "/nonexistent-provium-dir", .shell = "true", .cwd = "/nonexistent-provium-dir/x");

    set_case("EXEC with a cwd that is a file");
    RUN_EXPECT_ERROR(ENOTDIR, NULL, .shell = "true", .cwd = path);

    set_case("EXEC with both shell and argv");
    RUN_EXPECT_ERROR(EINVAL, "exactly one of shell or argv", .shell = "true", .argv = argv_true);
    set_case("EXEC with neither shell nor argv");
    RUN_EXPECT_ERROR(EINVAL, "exactly one of shell or argv", .cwd = "/");

    set_case("EXEC with a NUL byte in an argument");
    pv_buf b;
    pv_buf_init(&b);
    uint32_t req = next_req++;
    pv_frame_begin(&b, PV_MSG_EXEC, 0, req);
    pv_put_str(&b, PV_T_ARGV, "echo");
    pv_put_bytes(&b, PV_T_ARGV, "a\0b", 3);
    frame f;
    if (call(&b, req, &f)) {
        expect_error(__LINE__, &f, EINVAL, "NUL");
        frame_free(&f);
    }
    set_case("EXEC with a NUL byte in the shell command");
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_EXEC, 0, req);
    pv_put_bytes(&b, PV_T_SHELL, "true\0rm -rf /", 13);
    if (call(&b, req, &f)) {
        expect_error(__LINE__, &f, EINVAL, "NUL");
        frame_free(&f);
    }
    pv_buf_free(&b);

    /* the agent is still fine after all of these */
    set_case("EXEC after errors");
    exec_result r = RUN(.shell = "echo still-ok");
    EXPECT_EXIT(r, 0, "still-ok\n", "");
    result_free(&r);
}

TEST(concurrency)
{
    set_case("two EXECs in flight: the fast one replies first");
    pv_buf b;
    pv_buf_init(&b);
    uint32_t slow = next_req++, fast = next_req++, ping = next_req++;
    /* all three frames in one write: the agent must not serve them in turn */
    put_exec(&b, slow, &EXEC_OPTS(.shell = "sleep 2; echo slow"));
    CHECK_EQ_INT(pv_frame_end(&b), 0);
    put_exec(&b, fast, &EXEC_OPTS(.shell = "echo fast"));
    CHECK_EQ_INT(pv_frame_end(&b), 0);
    pv_frame_begin(&b, PV_MSG_PING, 0, ping);
    CHECK_EQ_INT(pv_frame_end(&b), 0);
    int64_t t0 = now_ms();
    if (!send_bytes(b.buf, b.len)) {
        pv_buf_free(&b);
        return;
    }
    pv_buf_free(&b);
    uint32_t order[3] = {0};
    frame got[3];
    int n = 0;
    int64_t deadline = now_ms() + REPLY_MS;
    int64_t fast_ms = -1;
    while (n < 3) {
        frame f;
        int r = read_frame(&f, deadline);
        if (!CHECKF(r == 1, "only %d of 3 replies arrived", n))
            break;
        if (f.hdr.req != slow && f.hdr.req != fast && f.hdr.req != ping) {
            frame_free(&f);
            continue;
        }
        if (f.hdr.req == fast)
            fast_ms = now_ms() - t0;
        order[n] = f.hdr.req;
        got[n++] = f;
    }
    if (n == 3) {
        CHECKF(order[2] == slow, "reply order %u %u %u (slow=%u fast=%u ping=%u): the slow command blocked others",
               order[0], order[1], order[2], slow, fast, ping);
        CHECKF(fast_ms >= 0 && fast_ms < 1500, "the fast command took %lld ms while the slow one ran",
               (long long)fast_ms);
    }
    for (int i = 0; i < n; i++) {
        exec_result r;
        if (got[i].hdr.req == fast) {
            result_from(__LINE__, &got[i], &r);
            EXPECT_EXIT(r, 0, "fast\n", "");
            result_free(&r);
        } else if (got[i].hdr.req == slow) {
            result_from(__LINE__, &got[i], &r);
            EXPECT_EXIT(r, 0, "slow\n", "");
            result_free(&r);
        } else {
            expect_type(__LINE__, &got[i], PV_MSG_PONG);
        }
        frame_free(&got[i]);
    }

    set_case("many EXECs in flight");
    pv_buf_init(&b);
    enum { MANY = 20 };
    uint32_t first = next_req;
    for (int i = 0; i < MANY; i++) {
        char cmd[64];
        snprintf(cmd, sizeof(cmd), "sleep 0.%d; echo %d", (MANY - i) % 10, i);
        put_exec(&b, next_req++, &EXEC_OPTS(.shell = cmd));
        CHECK_EQ_INT(pv_frame_end(&b), 0);
    }
    if (send_bytes(b.buf, b.len)) {
        for (int i = 0; i < MANY; i++) {
            frame f;
            if (!wait_reply(0, first + (uint32_t)i, REPLY_MS, &f))
                break;
            exec_result r;
            result_from(__LINE__, &f, &r);
            char want[16];
            snprintf(want, sizeof(want), "%d\n", i);
            EXPECT_EXIT(r, 0, want, "");
            result_free(&r);
            frame_free(&f);
        }
    }
    pv_buf_free(&b);
}

TEST(files)
{
    pv_buf b;
    pv_buf_init(&b);
    frame f;
    char path[PATH_MAX + 64];
    uint32_t req;

    set_case("WRITE_FILE then READ_FILE of binary data, mode 0600");
    snprintf(path, sizeof(path), "%s/data.bin", tmpdir);
    size_t n = 400000;
    uint8_t *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i % 251);
    data[0] = 0;
    data[n - 1] = 0;
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_WRITE_FILE, 0, req);
    pv_put_str(&b, PV_T_PATH, path);
    pv_put_bytes(&b, PV_T_DATA, data, n);
    pv_put_u64(&b, PV_T_MODE, 0600);
    if (call(&b, req, &f)) {
        expect_type(__LINE__, &f, PV_MSG_OK);
        frame_free(&f);
    }
    struct stat st;
    if (CHECKF(stat(path, &st) == 0, "stat %s: %s", path, strerror(errno))) {
        CHECKF((st.st_mode & 07777) == 0600, "mode %o, expected 600", st.st_mode & 07777);
        CHECKF(st.st_size == (off_t)n, "size %lld, expected %zu", (long long)st.st_size, n);
    }
    /* the bytes on disk are the bytes sent */
    FILE *fp = fopen(path, "rb");
    if (CHECK(fp != NULL)) {
        uint8_t *disk = malloc(n + 1);
        size_t got = fread(disk, 1, n + 1, fp);
        CHECKF(got == n && memcmp(disk, data, n) == 0, "file content differs (%zu bytes)", got);
        free(disk);
        fclose(fp);
    }
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_READ_FILE, 0, req);
    pv_put_str(&b, PV_T_PATH, path);
    if (call(&b, req, &f)) {
        if (expect_type(__LINE__, &f, PV_MSG_FILE_DATA)) {
            const pv_field *d = pv_msg_get(&f.msg, PV_T_DATA);
            CHECKF(d && d->len == n && memcmp(d->data, data, n) == 0, "READ_FILE returned %u bytes, or different ones",
                   d ? d->len : 0);
        }
        frame_free(&f);
    }

    set_case("WRITE_FILE with DATA last lands as it arrives: sent in pieces, over a longer file");
    /* the agent writes such a request's data into the file while it is
     * still arriving (agent/landing.c); pauses between the pieces make it
     * wait for more in the middle of the header, the fields and the data */
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 7 % 253);
    size_t part = n - 1000; /* above the agent's LAND_MIN_BYTES */
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_WRITE_FILE, 0, req);
    pv_put_str(&b, PV_T_PATH, path);
    pv_put_u64(&b, PV_T_MODE, 0640);
    pv_put_bytes(&b, PV_T_DATA, data, part);
    if (CHECK(pv_frame_end(&b) == 0)) {
        size_t cuts[] = {0, 7, PV_HDR_SIZE + 10, PV_HDR_SIZE + 200, 100000, b.len};
        bool sent = true;
        for (size_t k = 0; k + 1 < sizeof(cuts) / sizeof(cuts[0]) && sent; k++) {
            sent = send_bytes(b.buf + cuts[k], cuts[k + 1] - cuts[k]);
            sleep_ms(30);
        }
        pv_buf_reset(&b);
        if (sent && CHECK(wait_reply(0, req, REPLY_MS, &f))) {
            expect_type(__LINE__, &f, PV_MSG_OK);
            frame_free(&f);
        }
    }
    if (CHECKF(stat(path, &st) == 0, "stat %s: %s", path, strerror(errno)))
        CHECKF(st.st_size == (off_t)(part), "size %lld, expected %zu", (long long)st.st_size, part);
    fp = fopen(path, "rb");
    if (CHECK(fp != NULL)) {
        uint8_t *disk = malloc(n);
        size_t got = fread(disk, 1, n, fp);
        CHECKF(got == part && memcmp(disk, data, part) == 0, "file content differs (%zu bytes)", got);
        free(disk);
        fclose(fp);
    }
    CHECK(ping_ok("after a landed WRITE_FILE"));

    set_case("WRITE_FILE truncates, default mode 0644");
    snprintf(path, sizeof(path), "%s/text.txt", tmpdir);
    for (int round = 0; round < 2; round++) {
        req = next_req++;
        pv_frame_begin(&b, PV_MSG_WRITE_FILE, 0, req);
        pv_put_str(&b, PV_T_PATH, path);
        pv_put_str(&b, PV_T_DATA, round == 0 ? "a much longer first version\n" : "short\n");
        if (call(&b, req, &f)) {
            expect_type(__LINE__, &f, PV_MSG_OK);
            frame_free(&f);
        }
    }
    if (CHECK_EQ_INT(stat(path, &st), 0))
        CHECKF((st.st_mode & 07777) == 0644 && st.st_size == 6, "mode %o size %lld", st.st_mode & 07777,
               (long long)st.st_size);
    exec_result r = RUN(.shell = "cat text.txt", .cwd = tmpdir);
    EXPECT_EXIT(r, 0, "short\n", "");
    result_free(&r);

    set_case("WRITE_FILE of empty data, READ_FILE of an empty file");
    snprintf(path, sizeof(path), "%s/empty", tmpdir);
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_WRITE_FILE, 0, req);
    pv_put_str(&b, PV_T_PATH, path);
    pv_put_bytes(&b, PV_T_DATA, "", 0);
    if (call(&b, req, &f)) {
        expect_type(__LINE__, &f, PV_MSG_OK);
        frame_free(&f);
    }
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_READ_FILE, 0, req);
    pv_put_str(&b, PV_T_PATH, path);
    if (call(&b, req, &f)) {
        if (expect_type(__LINE__, &f, PV_MSG_FILE_DATA)) {
            const pv_field *d = pv_msg_get(&f.msg, PV_T_DATA);
            CHECK(d && d->len == 0);
        }
        frame_free(&f);
    }

    set_case("READ_FILE of a file written by a command");
    r = RUN(.shell = "printf 'from\\0exec' > cmd.out", .cwd = tmpdir);
    EXPECT_EXIT(r, 0, "", "");
    result_free(&r);
    snprintf(path, sizeof(path), "%s/cmd.out", tmpdir);
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_READ_FILE, 0, req);
    pv_put_str(&b, PV_T_PATH, path);
    if (call(&b, req, &f)) {
        if (expect_type(__LINE__, &f, PV_MSG_FILE_DATA)) {
            const pv_field *d = pv_msg_get(&f.msg, PV_T_DATA);
            CHECK(d && d->len == 9 && memcmp(d->data, "from\0exec", 9) == 0);
        }
        frame_free(&f);
    }

    set_case("READ_FILE of a missing file");
    snprintf(path, sizeof(path), "%s/does-not-exist", tmpdir);
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_READ_FILE, 0, req);
    pv_put_str(&b, PV_T_PATH, path);
    if (call(&b, req, &f)) {
        expect_error(__LINE__, &f, ENOENT, "does-not-exist");
        frame_free(&f);
    }

    set_case("READ_FILE of a directory");
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_READ_FILE, 0, req);
    pv_put_str(&b, PV_T_PATH, tmpdir);
    if (call(&b, req, &f)) {
        expect_error(__LINE__, &f, EISDIR, NULL);
        frame_free(&f);
    }

    set_case("READ_FILE with a NUL in the path");
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_READ_FILE, 0, req);
    pv_put_bytes(&b, PV_T_PATH, "/etc/passwd\0x", 13);
    if (call(&b, req, &f)) {
        expect_error(__LINE__, &f, EINVAL, NULL);
        frame_free(&f);
    }

    set_case("WRITE_FILE into a missing directory");
    snprintf(path, sizeof(path), "%s/no/such/dir/f", tmpdir);
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_WRITE_FILE, 0, req);
    pv_put_str(&b, PV_T_PATH, path);
    pv_put_str(&b, PV_T_DATA, "x");
    if (call(&b, req, &f)) {
        expect_error(__LINE__, &f, ENOENT, NULL);
        frame_free(&f);
    }
    CHECK(access(path, F_OK) != 0);

    set_case("WRITE_FILE without data is a protocol error");
    snprintf(path, sizeof(path), "%s/nodata", tmpdir);
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_WRITE_FILE, 0, req);
    pv_put_str(&b, PV_T_PATH, path);
    if (call(&b, req, &f)) {
        expect_error(__LINE__, &f, EPROTO, "missing required field data");
        frame_free(&f);
    }
    CHECK(access(path, F_OK) != 0);

    free(data);
    pv_buf_free(&b);
}

static void send_raw_header(uint32_t len, uint32_t chan, uint32_t req, uint16_t type)
{
    pv_hdr h = {len, chan, req, type, 0};
    uint8_t out[PV_HDR_SIZE];
    pv_hdr_encode(&h, out);
    send_bytes(out, sizeof(out));
}

TEST(malformed)
{
    pv_buf b;
    pv_buf_init(&b);
    frame f;
    uint32_t req;

    uint16_t unknown = 999;
    while (pv_msg_lookup(unknown))
        unknown++;
    set_case("unknown message type %u", unknown);
    req = next_req++;
    pv_frame_begin(&b, unknown, 5, req);
    pv_put_str(&b, PV_T_PATH, "/etc/passwd");
    if (send_frame(&b) && wait_reply(5, req, REPLY_MS, &f)) {
        expect_error(__LINE__, &f, EPROTO, "unknown message type");
        frame_free(&f);
    }
    ping_ok("an unknown type");

    set_case("a reply type sent as a request");
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_PONG, 0, req);
    if (call(&b, req, &f)) {
        expect_error(__LINE__, &f, EOPNOTSUPP, "not a request");
        frame_free(&f);
    }

    set_case("EXEC with an unknown field tag");
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_EXEC, 0, req);
    pv_put_str(&b, PV_T_SHELL, "touch should-not-exist");
    pv_put_str(&b, 0xFFF0, "?");
    if (call(&b, req, &f)) {
        expect_error(__LINE__, &f, EPROTO, "unexpected field tag");
        frame_free(&f);
    }

    set_case("EXEC with timeout_ms of the wrong width");
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_EXEC, 0, req);
    pv_put_str(&b, PV_T_SHELL, "true");
    pv_put_bytes(&b, PV_T_TIMEOUT_MS, "\x10\x00\x00\x00", 4);
    if (call(&b, req, &f)) {
        expect_error(__LINE__, &f, EPROTO, "must be 8 bytes");
        frame_free(&f);
    }

    set_case("READ_FILE without a path");
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_READ_FILE, 0, req);
    if (call(&b, req, &f)) {
        expect_error(__LINE__, &f, EPROTO, "missing required field path");
        frame_free(&f);
    }

    set_case("PING with the echo field twice");
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_PING, 0, req);
    pv_put_str(&b, PV_T_ECHO, "a");
    pv_put_str(&b, PV_T_ECHO, "b");
    if (call(&b, req, &f)) {
        expect_error(__LINE__, &f, EPROTO, "repeated");
        frame_free(&f);
    }

    set_case("a field overrunning the payload");
    req = next_req++;
    {
        uint8_t raw[PV_HDR_SIZE + 8];
        pv_hdr h = {8, 0, req, PV_MSG_PING, 0};
        pv_hdr_encode(&h, raw);
        /* tag ECHO, len 100, but only 2 bytes follow inside the frame */
        uint8_t fld[8] = {PV_T_ECHO, 0, 100, 0, 0, 0, 'h', 'i'};
        memcpy(raw + PV_HDR_SIZE, fld, 8);
        if (send_bytes(raw, sizeof(raw)) && wait_reply(0, req, REPLY_MS, &f)) {
            expect_error(__LINE__, &f, EPROTO, "overruns");
            frame_free(&f);
        }
    }

    set_case("a truncated field header");
    req = next_req++;
    {
        uint8_t raw[PV_HDR_SIZE + 3];
        pv_hdr h = {3, 0, req, PV_MSG_PING, 0};
        pv_hdr_encode(&h, raw);
        raw[PV_HDR_SIZE] = PV_T_ECHO;
        raw[PV_HDR_SIZE + 1] = 0;
        raw[PV_HDR_SIZE + 2] = 1;
        if (send_bytes(raw, sizeof(raw)) && wait_reply(0, req, REPLY_MS, &f)) {
            expect_error(__LINE__, &f, EPROTO, "truncated field header");
            frame_free(&f);
        }
    }
    ping_ok("schema violations");
    /* none of the refused EXECs ran */
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/should-not-exist", tmpdir);
    set_case("refused EXEC did not run");
    CHECK(access(path, F_OK) != 0 && access("should-not-exist", F_OK) != 0);

    /* A header announcing more than PV_MAX_PAYLOAD: the agent cannot find the
     * next frame boundary, so it discards its input and answers with an
     * EMSGSIZE error on channel 0, request 0 (agent.c serve/conn_pop). It
     * must keep serving afterwards. */
    static const uint32_t big[] = {PV_MAX_PAYLOAD + 1, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
        set_case("header announcing %u bytes", big[i]);
        req = next_req++;
        send_raw_header(big[i], 0, req, PV_MSG_PING);
        if (wait_reply(0, 0, REPLY_MS, &f)) {
            expect_error(__LINE__, &f, EMSGSIZE, "discarded");
            frame_free(&f);
        }
        CHECKF(ping_ok("an oversized header"), "the agent stopped answering after a %u-byte header", big[i]);
    }

    set_case("a frame delivered one byte at a time");
    req = next_req++;
    pv_frame_begin(&b, PV_MSG_PING, 0, req);
    pv_put_str(&b, PV_T_ECHO, "slowly");
    CHECK_EQ_INT(pv_frame_end(&b), 0);
    for (size_t i = 0; i < b.len; i++) {
        if (!send_bytes(b.buf + i, 1))
            break;
        sleep_ms(2);
    }
    pv_buf_reset(&b);
    if (wait_reply(0, req, REPLY_MS, &f)) {
        if (expect_type(__LINE__, &f, PV_MSG_PONG)) {
            const pv_field *e = pv_msg_get(&f.msg, PV_T_ECHO);
            CHECK(e && e->len == 6 && memcmp(e->data, "slowly", 6) == 0);
        }
        frame_free(&f);
    }

    set_case("several frames in one write are answered in order");
    uint32_t first = next_req;
    for (int i = 0; i < 5; i++) {
        pv_frame_begin(&b, PV_MSG_PING, 0, next_req++);
        char e[8];
        snprintf(e, sizeof(e), "p%d", i);
        pv_put_str(&b, PV_T_ECHO, e);
        CHECK_EQ_INT(pv_frame_end(&b), 0);
    }
    if (send_bytes(b.buf, b.len)) {
        int64_t deadline = now_ms() + REPLY_MS;
        for (int i = 0; i < 5; i++) {
            int r = read_frame(&f, deadline);
            if (!CHECKF(r == 1, "reply %d missing", i))
                break;
            CHECKF(f.hdr.req == first + (uint32_t)i && f.valid && f.hdr.type == PV_MSG_PONG,
                   "reply %d: req %u type %s", i, f.hdr.req, pv_msg_name(f.hdr.type));
            frame_free(&f);
        }
    }
    pv_buf_reset(&b);

    set_case("a valid frame right after an erroneous one in the same write");
    uint32_t bad = next_req++, good = next_req++;
    pv_frame_begin(&b, unknown, 0, bad);
    CHECK_EQ_INT(pv_frame_end(&b), 0);
    pv_frame_begin(&b, PV_MSG_PING, 0, good);
    CHECK_EQ_INT(pv_frame_end(&b), 0);
    if (send_bytes(b.buf, b.len)) {
        if (wait_reply(0, bad, REPLY_MS, &f)) {
            expect_error(__LINE__, &f, EPROTO, NULL);
            frame_free(&f);
        }
        if (wait_reply(0, good, REPLY_MS, &f)) {
            expect_type(__LINE__, &f, PV_MSG_PONG);
            frame_free(&f);
        }
    }
    pv_buf_free(&b);
}

/* Regression tests for bugs found by these tests and since fixed. */
TEST(known_bugs)
{
    /* exec.c exec_start: after chdir(cwd) succeeded, a failed exec re-checks
     * access(cwd) relative to the *new* directory, so a relative cwd turns
     * "program not found" into "cannot enter directory". */
    set_case("regression: relative cwd with a missing program");
    exec_result r = RUN(.shell = "mkdir -p sub", .cwd = tmpdir);
    result_free(&r);
    /* the agent runs in our working directory: build a relative path from it to tmpdir/sub */
    char cwd[PATH_MAX], rel[2 * PATH_MAX] = "";
    if (CHECK(getcwd(cwd, sizeof(cwd)) != NULL)) {
        for (char *p = cwd; *p; p++)
            if (*p == '/' && strlen(rel) + 4 < sizeof(rel))
                strcat(rel, "../");
        snprintf(rel + strlen(rel), sizeof(rel) - strlen(rel), "%s/sub", tmpdir + 1);
        static const char *const argv_missing[] = {"provium-no-such-program", NULL};
        RUN_EXPECT_ERROR(ENOENT, "cannot run", .argv = argv_missing, .cwd = rel);
    }

    /* The agent's socket (--fd N) is not close-on-exec, so every command
     * inherits the protocol connection. */
    set_case("regression: commands inherit the agent's socket");
    r = RUN(.shell = "test -e /proc/self/fd/3 && readlink /proc/self/fd/3; exit 0");
    EXPECT_EXIT(r, 0, "", "");
    result_free(&r);
}

/* Pids whose command line is exactly argv0 arg1 (from /proc). */
static size_t find_procs(const char *argv0, const char *arg1, pid_t *out, size_t max)
{
    size_t n = 0;
    char want[128];
    int wl = snprintf(want, sizeof(want), "%s%c%s", argv0, 0, arg1) + 1;
    FILE *ls = popen("ls /proc", "r");
    char name[64];
    while (ls && n < max && fgets(name, sizeof(name), ls)) {
        long pid = atol(name);
        if (pid <= 0)
            continue;
        char path[96], buf[256];
        snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        size_t got = fread(buf, 1, sizeof(buf), fp);
        fclose(fp);
        if (got == (size_t)wl && memcmp(buf, want, (size_t)wl) == 0)
            out[n++] = (pid_t)pid;
    }
    if (ls)
        pclose(ls);
    return n;
}

/* After all the cases above: the agent still answers, and no reply came
 * that no case claimed. */
TEST(leftovers)
{
    ping_ok("everything");
    for (size_t i = 0; i < nstash; i++) {
        set_case("unclaimed frames");
        CHECKF(false, "unexpected frame %s chan %u req %u", pv_msg_name(stash[i].hdr.type), stash[i].hdr.chan,
               stash[i].hdr.req);
        frame_free(&stash[i]);
    }
    nstash = 0;
}

/* Closing our end must make the agent exit with status 0. It ends the agent,
 * so it is the last case; run alone, it closes an agent that served nothing. */
TEST(close)
{
    /* KNOWN BUG (agent.c serve): in local mode the agent returns on EOF
     * without exec_abandon_all(), unlike the port mode, so commands still
     * running outlive it. */
    char marker[32] = "";
    if (1) { /* regression: fixed bug */
        snprintf(marker, sizeof(marker), "200.%05u", (unsigned)getpid() % 100000);
        const char *argv_sleep[] = {"sleep", marker, NULL};
        pv_buf b;
        pv_buf_init(&b);
        put_exec(&b, next_req++, &EXEC_OPTS(.argv = argv_sleep));
        send_frame(&b);
        pv_buf_free(&b);
        pid_t pids[4];
        int64_t deadline = now_ms() + 3000;
        while (find_procs("sleep", marker, pids, 4) == 0 && now_ms() < deadline)
            sleep_ms(20);
    }

    set_case("closing the socket makes the agent exit 0");
    close(sock);
    sock = -1;
    int64_t deadline = now_ms() + REPLY_MS;
    int status = 0;
    pid_t w = 0;
    while ((w = waitpid(agent_pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
        sleep_ms(10);
    if (!CHECKF(w == agent_pid, "the agent did not exit within %d ms of the close", REPLY_MS)) {
        kill(-agent_pid, SIGKILL);
        kill(agent_pid, SIGKILL);
        waitpid(agent_pid, NULL, 0);
        agent_pid = -1;
        return;
    }
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "agent ended with %s %d",
           WIFEXITED(status) ? "exit status" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    agent_pid = -1;
    if (*marker) {
        set_case("regression: running commands die with the agent when the host closes");
        pid_t pids[4];
        size_t n = 0;
        int64_t deadline = now_ms() + 2000;
        while ((n = find_procs("sleep", marker, pids, 4)) > 0 && now_ms() < deadline)
            sleep_ms(50);
        CHECKF(n == 0, "`sleep %s` (pid %d) is still running after the agent exited", marker, n ? (int)pids[0] : 0);
        for (size_t i = 0; i < n; i++)
            kill(pids[i], SIGKILL); /* our own leftover, by pid */
    }
}

/* Runs once before the first case: a scratch directory and the agent, which
 * must pass the READY handshake or no case runs. */
static bool agent_setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    umask(022);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/provium-test-agent-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        tmpdir[0] = '\0';
        return false;
    }
    return start_agent() && test_ready();
}

static void agent_teardown(void)
{
    if (agent_pid > 0) {
        if (sock >= 0)
            close(sock);
        kill(-agent_pid, SIGKILL);
        kill(agent_pid, SIGKILL);
        waitpid(agent_pid, NULL, 0);
    }
    if (tmpdir[0]) {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            printf("warning: could not remove %s\n", tmpdir);
    }
    free(rbuf);
}

int main(int argc, char **argv)
{
    int rc = check_main(argc, argv, agent_setup, NULL);
    agent_teardown();
    return rc;
}
