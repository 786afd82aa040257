/* The one way the agent starts a program (commands of the main loop and of
 * thread workers alike).
 *
 * spawn_process() clones a child that shares the caller's memory and
 * suspends the caller until the child has called execve or exited
 * (CLONE_VM | CLONE_VFORK, the way musl's and glibc's posix_spawn work).
 * Nothing is copied, so a start costs the same in a large agent as in a small
 * one. It takes no lock and allocates nothing (the child runs on a stack in
 * the caller's frame), so it is also safe in the fork-like child of a
 * multithreaded process, where a thread worker calls it (thread_worker.c).
 * The child leads its own process group (a timeout
 * kills the whole tree), has stdio[0..2] as its descriptors 0, 1 and 2, an
 * empty signal mask and SIGPIPE at its default.
 *
 * A failure in the child (the directory cannot be entered, the program cannot
 * be executed) is written into the caller's memory before the child exits;
 * the caller reaps it and returns -1 with the errno and one text form, so a
 * missing program is an error and never an exit status 127. */
#ifndef PROVIUM_AGENT_SPAWN_H
#define PROVIUM_AGENT_SPAWN_H
#include <sys/types.h>

#include "util.h"

typedef struct {
    char *const *argv; /* argv[0] without a '/' is looked up in the agent's PATH */
    char *const *envp;
    const char *cwd;   /* entered before the exec; NULL: the agent's own */
    int stdio[3];      /* become the child's 0, 1 and 2 */
} spawn_req;

typedef struct {
    int err; /* errno of the failure */
    /* "cannot run P: why" or "cannot enter directory D to run P: why" */
    char text[AGENT_ERROR_MAX];
} spawn_error;

/* The child's pid, or -1 with *e filled. */
pid_t spawn_process(const spawn_req *r, spawn_error *e);

/* Three close-on-exec pipes for a child's stdin, stdout and stderr: child[i]
 * are its ends (spawn_req.stdio), ours[i] the agent's. */
typedef struct {
    int child[3], ours[3];
} spawn_pipes;
/* 0, or the errno of pipe2 with every descriptor closed (-1). */
int spawn_pipes_open(spawn_pipes *p);
/* After the start: the child has its ends, the agent closes its copies. */
void spawn_pipes_close_child(spawn_pipes *p);
void spawn_pipes_close(spawn_pipes *p);
#endif
