/* Early-boot duties: pseudo-filesystems, kernel parameters, and loading the
 * virtio modules a stock distribution kernel needs before the port exists. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"

static void mount_one(const char *src, const char *dir, const char *type, unsigned long flags)
{
    mkdir(dir, 0755);
    if (mount(src, dir, type, flags, NULL) != 0 && errno != EBUSY)
        agent_log("mount %s on %s: %s", type, dir, strerror(errno));
}

void sysinit_mount_basics(void)
{
    mount_one("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
    mount_one("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC);
    mount_one("devtmpfs", "/dev", "devtmpfs", MS_NOSUID);
}

/* /tmp and /run are mounted before the agent answers anything: a file a test
 * writes there must not be hidden by an init script mounting over it later.
 * Init scripts that check before mounting (as the default image's do) keep
 * these mounts. */
void sysinit_mount_scratch(void)
{
    struct stat st;
    if (stat("/proc/self/mountinfo", &st) != 0)
        return;
    FILE *f = fopen("/proc/self/mounts", "re");
    char line[512];
    bool tmp = false, run = false;
    while (f && fgets(line, sizeof(line), f)) {
        tmp |= strstr(line, " /tmp ") != NULL;
        run |= strstr(line, " /run ") != NULL;
    }
    if (f)
        fclose(f);
    if (!tmp) {
        mkdir("/tmp", 01777);
        if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0)
            agent_log("mount tmpfs on /tmp: %s", strerror(errno));
    }
    if (!run) {
        mkdir("/run", 0755);
        if (mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755") != 0)
            agent_log("mount tmpfs on /run: %s", strerror(errno));
    }
}

const char *sysinit_cmdline_param(const char *key)
{
    static char buf[4096];
    static char value[1024];
    int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return NULL;
    buf[n] = 0;
    size_t klen = strlen(key);
    for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n")) {
        if (strncmp(tok, key, klen) == 0 && tok[klen] == '=') {
            strncpy(value, tok + klen + 1, sizeof(value) - 1);
            value[sizeof(value) - 1] = 0;
            return value;
        }
    }
    return NULL;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* The host names the files NN-module.ko in dependency order. */
void sysinit_load_modules(const char *dir)
{
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, by_name);
    if (n < 0)
        return;
    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        size_t len = strlen(name);
        if (len > 3 && strcmp(name + len - 3, ".ko") == 0) {
            char path[512];
            snprintf(path, sizeof(path), "%s/%s", dir, name);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0 || (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST))
                agent_log("loading module %s: %s", path, strerror(errno));
            if (fd >= 0)
                close(fd);
        }
        free(ents[i]);
    }
    free(ents);
}
