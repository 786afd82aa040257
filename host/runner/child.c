/* One child process per test file, and the runner's side of talking to it.
 *
 * The child is forked (not exec'd: it runs the file with this binary's
 * code, run_file_child), leads its own process group so the whole file,
 * QEMU included, can be killed at once, and dies with the runner
 * (PR_SET_PDEATHSIG). Its stdout and stderr go to a log in the scratch
 * directory; its JSON report comes back on a pipe; claims, boots and
 * events go over a SOCK_SEQPACKET control socket, one message per packet,
 * and each claim or boot gets one reply. list_file runs a file in list mode
 * in a throw-away child the same way, for the selection pre-pass and
 * `provium list`. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "run.h"

void child_start(const pv_config *cfg, const char *scratch, file_run *f, int index)
{
    int p[2], c[2];
    if (pipe2(p, O_CLOEXEC) != 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, c) != 0) {
        fprintf(stderr, "provium: pipe: %s\n", strerror(errno));
        exit(2);
    }
    f->log_path = xasprintf("%s/file-%d.log", scratch, index);
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        /* Die with the runner, whatever kills it; QEMU dies with us. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(2);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        close(p[0]);
        close(c[0]);
        int log = open(f->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (log >= 0) {
            dup2(log, 1);
            dup2(log, 2);
            close(log);
        }
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) {
            dup2(null, 0);
            close(null);
        }
        _exit(run_file_child(cfg, scratch, f->path, p[1], c[1], CHILD_RUN, &f->sel, f->shown));
    }
    if (pid < 0) {
        fprintf(stderr, "provium: fork: %s\n", strerror(errno));
        exit(2);
    }
    setpgid(pid, pid);
    close(p[1]);
    close(c[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    fcntl(c[0], F_SETFL, O_NONBLOCK);
    f->pid = pid;
    f->report_fd = p[0];
    f->ctl_fd = c[0];
    f->phase = F_RUNNING;
    f->started = f->deadline_base = now_s();
    f->started_wall = wall_ns();
}

void child_drain_report(file_run *f)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(f->report_fd, buf, sizeof(buf));
        if (n > 0) {
            sb_add(&f->report, buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return;
    }
}

void child_reply(file_run *f, const char *msg) { (void)!send(f->ctl_fd, msg, strlen(msg), MSG_NOSIGNAL); }

void child_kill(file_run *f, int sig)
{
    if (f->phase == F_RUNNING && f->pid > 0)
        kill(-f->pid, sig);
}

/* Lists one file in a throw-away child (VMs are inert there). */
int list_file(const pv_config *cfg, const char *path, const char *shown, const test_select *sel, char **json)
{
    *json = NULL;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(p[0]);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        _exit(run_file_child(cfg, "/tmp", path, p[1], -1, CHILD_LIST, sel, shown));
    }
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return -1;
    }
    strbuf b;
    sb_init(&b);
    int64_t deadline = now_ms() + 20000;
    for (;;) {
        struct pollfd pfd = {p[0], POLLIN, 0};
        int left = (int)(deadline - now_ms());
        if (left <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        if (poll(&pfd, 1, left) < 0 && errno != EINTR)
            break;
        char buf[65536];
        ssize_t n = read(p[0], buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        sb_add(&b, buf, (size_t)n);
    }
    close(p[0]);
    waitpid(pid, NULL, 0);
    if (!b.len) {
        sb_free(&b);
        return -1;
    }
    *json = sb_take(&b);
    return 0;
}
