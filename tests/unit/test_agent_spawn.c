/*
 * test_agent_spawn.c - unit tests for the agent's one way to start a program
 * (agent/spawn.c, clone(CLONE_VM | CLONE_VFORK)) and its small helpers
 * (agent/util.c), linked alone and run on the host under ASan and UBSan.
 *
 * Covers: a started program's output, exit status and process group; the
 * error convention (-1, the errno and "cannot run P: why" / "cannot enter
 * directory D to run P: why") for a missing program, a program found in no
 * PATH entry, a file that is not executable and a missing directory; that
 * the child holds only descriptors 0, 1 and 2 (close-on-exec ones of the
 * caller are gone), starts with an empty signal mask and SIGPIPE at its
 * default although the caller blocks and ignores signals; and a start from a
 * second thread.
 * Every wait has a deadline. Prints "FAIL [case] ..." per failed check.
 */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define WAIT_MS 10000

static char *const no_env[] = {"PATH=/usr/bin:/bin", NULL};

/* Reaps pid within WAIT_MS; the wait status, or -1. */
static int wait_exit(pid_t pid)
{
    int64_t deadline = now_ms() + WAIT_MS;
    for (;;) {
        int ws;
        pid_t got = waitpid(pid, &ws, WNOHANG);
        if (got == pid)
            return ws;
        if (got < 0 || now_ms() > deadline) {
            kill(pid, SIGKILL);
            return -1;
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Everything a child wrote to its stdout (until EOF or WAIT_MS). */
static void read_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    int64_t deadline = now_ms() + WAIT_MS;
    while (len + 1 < cap && now_ms() < deadline) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = 0;
}

/* Runs a /bin/sh script with stdout on a pipe; returns the pid (or -1 with
 * *e) and the script's output in out. */
static pid_t run_sh(const char *script, char *out, size_t cap, spawn_error *e)
{
    char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    spawn_req r = {.argv = argv, .envp = no_env, .stdio = {-1, p[1], 2}};
    pid_t pid = spawn_process(&r, e);
    close(p[1]);
    if (pid > 0)
        read_all(p[0], out, cap);
    close(p[0]);
    return pid;
}

static void test_success(void)
{
    set_case("a program's output and exit status");
    spawn_error e = {0};
    char out[256];
    pid_t pid = run_sh("echo started; exit 3", out, sizeof(out), &e);
    if (!CHECKF(pid > 0, "spawn failed: %s", e.text))
        return;
    CHECKF(strcmp(out, "started\n") == 0, "output '%s'", out);
    int ws = wait_exit(pid);
    CHECKF(ws >= 0 && WIFEXITED(ws) && WEXITSTATUS(ws) == 3, "wait status %d, expected exit 3", ws);

    set_case("the child leads its own process group");
    char *argv[] = {"sleep", "5", NULL};
    spawn_req r = {.argv = argv, .envp = no_env, .stdio = {-1, -1, -1}};
    pid = spawn_process(&r, &e);
    if (!CHECKF(pid > 0, "spawn failed: %s", e.text))
        return;
    CHECKF(getpgid(pid) == pid, "pgid %d, pid %d", (int)getpgid(pid), (int)pid);
    kill(-pid, SIGKILL);
    ws = wait_exit(pid);
    CHECKF(ws >= 0 && WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL, "wait status %d", ws);

    set_case("cwd is entered before the exec");
    char *pwd[] = {"/bin/sh", "-c", "pwd -P", NULL};
    int p[2];
    if (!CHECK(pipe2(p, O_CLOEXEC) == 0))
        return;
    r = (spawn_req){.argv = pwd, .envp = no_env, .cwd = "/", .stdio = {-1, p[1], 2}};
    pid = spawn_process(&r, &e);
    close(p[1]);
    read_all(p[0], out, sizeof(out));
    close(p[0]);
    CHECKF(pid > 0 && strcmp(out, "/\n") == 0, "pwd printed '%s' (%s)", out, pid > 0 ? "" : e.text);
    if (pid > 0)
        wait_exit(pid);
}

/* A start that must fail: errno and the full error text. */
static void expect_failure(const char *what, char *const *argv, const char *cwd, int want_err, const char *want_text)
{
    set_case("%s", what);
    spawn_error e = {0};
    spawn_req r = {.argv = argv, .envp = no_env, .cwd = cwd, .stdio = {-1, -1, -1}};
    pid_t pid = spawn_process(&r, &e);
    CHECKF(pid == -1, "spawn returned %d, expected -1", (int)pid);
    CHECKF(e.err == want_err, "errno %d (%s), expected %d", e.err, strerror(e.err), want_err);
    CHECKF(strcmp(e.text, want_text) == 0, "text '%s', expected '%s'", e.text, want_text);
    /* the failed child was reaped: nothing is left to wait for */
    CHECKF(waitpid(-1, NULL, WNOHANG | __WALL) == -1 && errno == ECHILD, "a child was left behind");
}

static void test_errors(void)
{
    char text[512];
    char *missing[] = {"/nonexistent-provium/prog", NULL};
    snprintf(text, sizeof(text), "cannot run /nonexistent-provium/prog: %s", strerror(ENOENT));
    expect_failure("a missing program", missing, NULL, ENOENT, text);

    char *in_path[] = {"provium-no-such-program-in-path", NULL};
    snprintf(text, sizeof(text), "cannot run provium-no-such-program-in-path: %s", strerror(ENOENT));
    expect_failure("a program in no PATH entry", in_path, NULL, ENOENT, text);

    char path[] = "/tmp/provium-spawn-XXXXXX";
    int fd = mkstemp(path);
    if (CHECK(fd >= 0)) {
        close(fd);
        chmod(path, 0644);
        char *noexec[] = {path, NULL};
        snprintf(text, sizeof(text), "cannot run %s: %s", path, strerror(EACCES));
        if (geteuid() != 0) /* root may execute anything with an x bit, and this has none: EACCES either way */
            expect_failure("a file that is not executable", noexec, NULL, EACCES, text);
        else
            expect_failure("a file that is not executable (root)", noexec, NULL, EACCES, text);
        unlink(path);
    }

    char *truth[] = {"true", NULL};
    snprintf(text, sizeof(text), "cannot enter directory /nonexistent-provium-dir to run true: %s", strerror(ENOENT));
    expect_failure("a missing directory", truth, "/nonexistent-provium-dir", ENOENT, text);
}

static void test_child_state(void)
{
    set_case("the caller's close-on-exec descriptors do not reach the child");
    int extra = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int p[2];
    if (!CHECK(extra >= 0 && pipe2(p, O_CLOEXEC) == 0))
        return;
    /* stdout is the pipe's write end (first above 2 in the caller): in the
     * child it is 1 and nothing else; the read end and extra are gone */
    char script[256], out[256] = "";
    snprintf(script, sizeof(script), "for f in %d %d %d; do [ -e /proc/self/fd/$f ] && echo open $f; done; echo done",
             extra, p[0], p[1]);
    char *argv[] = {"/bin/sh", "-c", script, NULL};
    spawn_error e = {0};
    spawn_req r = {.argv = argv, .envp = no_env, .stdio = {-1, p[1], 2}};
    pid_t pid = spawn_process(&r, &e);
    close(p[1]);
    read_all(p[0], out, sizeof(out));
    close(p[0]);
    close(extra);
    if (CHECKF(pid > 0, "spawn failed: %s", e.text)) {
        CHECKF(strcmp(out, "done\n") == 0, "descriptors left open in the child: '%s'", out);
        wait_exit(pid);
    }

    set_case("empty signal mask and SIGPIPE at its default");
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &old);
    struct sigaction ign = {.sa_handler = SIG_IGN}, saved;
    sigaction(SIGPIPE, &ign, &saved);
    pid = run_sh("grep -E '^Sig(Blk|Ign)' /proc/self/status", out, sizeof(out), &e);
    sigaction(SIGPIPE, &saved, NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (CHECKF(pid > 0, "spawn failed: %s", e.text)) {
        CHECKF(strstr(out, "SigBlk:\t0000000000000000") != NULL, "mask: '%s'", out);
        const char *ig = strstr(out, "SigIgn:\t");
        unsigned long long mask = ig ? strtoull(ig + 8, NULL, 16) : ~0ULL;
        CHECKF(!(mask & (1ULL << (SIGPIPE - 1))), "SIGPIPE ignored in the child: '%s'", out);
        wait_exit(pid);
    }
}

static void *thread_spawn(void *arg)
{
    int *status = arg;
    spawn_error e = {0};
    char out[64];
    pid_t pid = run_sh("echo from-thread", out, sizeof(out), &e);
    *status = pid > 0 && strcmp(out, "from-thread\n") == 0 ? wait_exit(pid) : -2;
    return NULL;
}

static void test_from_thread(void)
{
    set_case("a start from a second thread");
    pthread_t th;
    int status = -3;
    if (!CHECK(pthread_create(&th, NULL, thread_spawn, &status) == 0))
        return;
    pthread_join(th, NULL);
    CHECKF(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
}

static void test_util(void)
{
    set_case("ms_until");
    int64_t now = now_ms();
    CHECK(ms_until(now - 5, 1000) == 0);
    CHECK(ms_until(now + 1000000000, 1000) == 1000);
    int left = ms_until(now + 500, 1000);
    CHECKF(left > 0 && left <= 500, "ms_until gave %d", left);

    set_case("close_fd");
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    close_fd(&fd);
    CHECK(fd == -1);
    close_fd(&fd); /* a second close is a no-op */
    CHECK(fd == -1);
}

int main(void)
{
    test_success();
    test_errors();
    test_child_state();
    test_from_thread();
    test_util();
    printf("test_agent_spawn: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
