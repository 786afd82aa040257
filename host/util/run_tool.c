/* run_tool: see run_tool.h. The tool's stdout and stderr share one pipe,
 * read while waiting (a chatty tool must not block on a full pipe), and
 * only the last bytes are kept: the end of the output says why it failed. */
#include "run_tool.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

#define KEEP_BYTES 2048

char *run_tool_find(const char *name)
{
    char *p = find_in_path(name);
    static const char *const extra[] = {"/usr/sbin", "/sbin"};
    for (size_t i = 0; !p && i < sizeof(extra) / sizeof(extra[0]); i++) {
        char *c = xasprintf("%s/%s", extra[i], name);
        if (access(c, X_OK) == 0)
            p = c;
        else
            free(c);
    }
    return p;
}

/* Appends data to out, keeping only its last KEEP_BYTES. */
static void keep_tail(strbuf *out, const char *data, size_t n)
{
    sb_add(out, data, n);
    if (out->len > KEEP_BYTES) {
        memmove(out->s, out->s + out->len - KEEP_BYTES, KEEP_BYTES);
        out->len = KEEP_BYTES;
        out->s[out->len] = 0;
    }
}

int run_tool(char *const argv[], int64_t timeout_ms, char *msg, size_t msglen)
{
    const char *name = argv[0];
    char *path = run_tool_find(name);
    if (!path) {
        snprintf(msg, msglen, "%s is not installed (not in $PATH, /usr/sbin or /sbin; scripts/install-deps.sh "
                              "installs it)", name);
        return -1;
    }
    size_t argc = 0;
    while (argv[argc])
        argc++;
    char **args = xcalloc(argc + 1, sizeof(char *));
    args[0] = path;
    for (size_t i = 1; i < argc; i++)
        args[i] = argv[i];
    int pipefd[2];
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (pipe2(pipefd, O_CLOEXEC) != 0 || null < 0) {
        snprintf(msg, msglen, "cannot run %s: %s", name, strerror(errno));
        free(args);
        free(path);
        if (null >= 0)
            close(null);
        return -1;
    }
    pid_t pid = spawn_tied(args, null, pipefd[1], pipefd[1]);
    int spawn_errno = errno;
    close(pipefd[1]);
    close(null);
    free(args);
    free(path);
    if (pid < 0) {
        close(pipefd[0]);
        snprintf(msg, msglen, "cannot run %s: fork: %s", name, strerror(spawn_errno));
        return -1;
    }
    strbuf out;
    sb_init(&out);
    int64_t deadline = now_ms() + timeout_ms;
    bool open_pipe = true, timed_out = false;
    int st = 0;
    for (;;) {
        if (!open_pipe && waitpid(pid, &st, WNOHANG) == pid)
            break;
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            timed_out = true;
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        if (!open_pipe) {
            sleep_ms(left < 10 ? (int)left : 10);
            continue;
        }
        struct pollfd p = {pipefd[0], POLLIN, 0};
        int r = poll(&p, 1, left > 100 ? 100 : (int)left);
        if (r > 0) {
            char buf[4096];
            ssize_t n = read(pipefd[0], buf, sizeof(buf));
            if (n > 0)
                keep_tail(&out, buf, (size_t)n);
            else if (n == 0 || (errno != EINTR && errno != EAGAIN))
                open_pipe = false;
        }
    }
    close(pipefd[0]);
    /* one line of output: the tool's own message, without the newline */
    while (out.len && (out.s[out.len - 1] == '\n' || out.s[out.len - 1] == ' '))
        out.s[--out.len] = 0;
    int rc = 0;
    if (timed_out) {
        snprintf(msg, msglen, "%s did not finish within %lld s (killed)", name, (long long)(timeout_ms / 1000));
        rc = -1;
    } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char how[48];
        if (WIFEXITED(st))
            snprintf(how, sizeof(how), "exit status %d", WEXITSTATUS(st));
        else
            snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(st));
        snprintf(msg, msglen, "%s failed (%s): %s", name, how, out.len ? out.s : "no output");
        rc = -1;
    }
    sb_free(&out);
    return rc;
}
