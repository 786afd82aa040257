/* Starting a program: clone(CLONE_VM | CLONE_VFORK); see spawn.h. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawn.h"

/* The child's stack, in the caller's frame: room for execvpe's path buffer
 * (PATH_MAX + NAME_MAX) with a wide margin. */
#define CHILD_STACK (64 * 1024)

typedef struct {
    const spawn_req *r;
    int err;      /* set by the child when it fails */
    bool in_cwd;  /* ... while entering the directory */
} child_ctx;

/* Moves the stdio descriptors above 2 first, so dup2 into 0, 1, 2 neither
 * overwrites a descriptor still needed nor leaves close-on-exec set on one
 * that is already in place. */
static int child_stdio(const spawn_req *r)
{
    int fd[3];
    for (int i = 0; i < 3; i++) {
        fd[i] = r->stdio[i];
        if (fd[i] >= 0 && fd[i] < 3 && (fd[i] = fcntl(fd[i], F_DUPFD_CLOEXEC, 3)) < 0)
            return -1;
    }
    for (int i = 0; i < 3; i++)
        if (fd[i] >= 0 && dup2(fd[i], i) < 0)
            return -1;
    return 0;
}

/* Runs in the child, on its own stack, in the caller's memory: only plain
 * system call wrappers, and no sanitizer bookkeeping (it would poison the
 * shadow of memory the caller owns). */
__attribute__((no_sanitize_address)) static int child_main(void *arg)
{
    child_ctx *k = arg;
    const spawn_req *r = k->r;
    setpgid(0, 0);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &dfl, NULL); /* the agent ignores it; commands expect the default */
    if (child_stdio(r) != 0) {
        k->err = errno;
        _exit(127);
    }
    if (r->cwd && chdir(r->cwd) != 0) {
        k->err = errno;
        k->in_cwd = true;
        _exit(127);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execvpe(r->argv[0], r->argv, r->envp);
    k->err = errno ? errno : ENOEXEC;
    _exit(127);
}

static void describe(spawn_error *e, const spawn_req *r, int err, bool in_cwd)
{
    e->err = err;
    if (in_cwd)
        snprintf(e->text, sizeof(e->text), "cannot enter directory %s to run %s: %s", r->cwd, r->argv[0],
                 strerror(err));
    else
        snprintf(e->text, sizeof(e->text), "cannot run %s: %s", r->argv[0], strerror(err));
}

pid_t spawn_process(const spawn_req *r, spawn_error *e)
{
    _Alignas(16) char stack[CHILD_STACK];
    child_ctx k = {.r = r};
    /* Every signal stays blocked until the child has set up its own
     * dispositions: no handler of the agent runs on the child's stack. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pid_t pid = clone(child_main, stack + CHILD_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &k);
    int clone_err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        describe(e, r, clone_err, false);
        return -1;
    }
    /* CLONE_VFORK: the child has exec'd or exited by now, so k is final. */
    if (k.err) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        describe(e, r, k.err, k.in_cwd);
        return -1;
    }
    return pid;
}

int spawn_pipes_open(spawn_pipes *p)
{
    for (int i = 0; i < 3; i++)
        p->child[i] = p->ours[i] = -1;
    for (int i = 0; i < 3; i++) {
        int fd[2];
        if (pipe2(fd, O_CLOEXEC) != 0) {
            int err = errno;
            spawn_pipes_close(p);
            return err;
        }
        /* stdin: the child reads; stdout and stderr: the child writes */
        p->child[i] = fd[i == 0 ? 0 : 1];
        p->ours[i] = fd[i == 0 ? 1 : 0];
    }
    return 0;
}

void spawn_pipes_close_child(spawn_pipes *p)
{
    for (int i = 0; i < 3; i++)
        close_fd(&p->child[i]);
}

void spawn_pipes_close(spawn_pipes *p)
{
    spawn_pipes_close_child(p);
    for (int i = 0; i < 3; i++)
        close_fd(&p->ours[i]);
}
