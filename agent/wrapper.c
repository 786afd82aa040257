/* provium-wrapper: the kernel's rdinit. Mounts the pseudo-filesystems, starts
 * the agent, then becomes the real init so that init is PID 1 as it expects.
 * When the initramfs has no init at all, the agent itself takes PID 1. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

#define AGENT_PATH "/provium-agent"

int wrapper_main(int argc, char **argv)
{
    (void)argc;
    sysinit_mount_basics();
    sysinit_mount_scratch();
    const char *init = sysinit_cmdline_param("provium.init");
    if (!init || !*init)
        init = "/sbin/init";
    if (access(init, X_OK) != 0) {
        agent_log("init %s not found; the agent runs as PID 1", init);
        execl(AGENT_PATH, "provium-agent", (char *)NULL);
        agent_log("exec %s: %s", AGENT_PATH, strerror(errno));
        return 1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        execl(AGENT_PATH, "provium-agent", (char *)NULL);
        agent_log("exec %s: %s", AGENT_PATH, strerror(errno));
        _exit(1);
    }
    if (pid < 0)
        agent_log("fork: %s", strerror(errno));
    argv[0] = (char *)init;
    execv(init, argv);
    agent_log("exec %s: %s", init, strerror(errno));
    return 1;
}
