/* provium-wrapper: the kernel's rdinit, or the shim's /init in a disk boot
 * (rootfs.c switches to the disk first). Mounts the pseudo-filesystems,
 * starts the agent, then becomes the real init so that init is PID 1 as it
 * expects. When there is no init at all, the agent itself takes PID 1. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

#define AGENT_PATH "/provium-agent"

extern char **environ;

/* Execs the agent: from its path, or in a disk boot from the descriptor
 * kept across the root switch. Returns only on failure. */
static void exec_agent(int fd)
{
    char *argv[] = {"provium-agent", NULL};
    if (fd >= 0)
        fexecve(fd, argv, environ);
    else
        execv(AGENT_PATH, argv);
    agent_log("exec %s: %s", AGENT_PATH, strerror(errno));
}

int wrapper_main(int argc, char **argv)
{
    (void)argc;
    sysinit_mount_basics();
    bool disk = rootfs_is_disk_boot(argv[0]);
    int agent_fd = -1;
    /* returning from PID 1 panics the kernel, which ends QEMU (panic=-1,
     * -no-reboot): the host reports the console's reason at once */
    if (disk && rootfs_enter(AGENT_PATH, &agent_fd) != 0)
        return 1;
    sysinit_mount_scratch();
    const char *init = disk ? rootfs_init_path() : sysinit_cmdline_param("provium.init");
    if (!init || !*init)
        init = "/sbin/init";
    if (access(init, X_OK) != 0) {
        agent_log("init %s not found; the agent runs as PID 1", init);
        exec_agent(agent_fd);
        return 1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        exec_agent(agent_fd);
        _exit(1);
    }
    if (pid < 0)
        agent_log("fork: %s", strerror(errno));
    if (agent_fd >= 0)
        close(agent_fd);
    argv[0] = (char *)init;
    execv(init, argv);
    agent_log("exec %s: %s", init, strerror(errno));
    return 1;
}
