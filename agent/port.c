/* Finds the agent's virtio-serial port by name. There is no udev in a minimal
 * initramfs, so /dev/virtio-ports/ may not exist: read the names from sysfs. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

static int try_open(void)
{
    DIR *d = opendir("/sys/class/virtio-ports");
    if (!d)
        return -1;
    int fd = -1;
    struct dirent *e;
    while (fd < 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], name[128] = "";
        snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        if (fgets(name, sizeof(name), f))
            name[strcspn(name, "\n")] = 0;
        fclose(f);
        if (strcmp(name, AGENT_PORT_NAME) != 0)
            continue;
        snprintf(path, sizeof(path), "/dev/%s", e->d_name);
        fd = open(path, O_RDWR | O_CLOEXEC);
    }
    closedir(d);
    return fd;
}

int port_open(int timeout_ms)
{
    for (int waited = 0;; waited += 5) {
        int fd = try_open();
        if (fd >= 0)
            return fd;
        if (waited == 1000)
            agent_log("still no virtio-serial port named %s after 1 s; is the virtio_console driver built in "
                      "or listed in the profile's modules?",
                      AGENT_PORT_NAME);
        if (waited >= timeout_ms)
            return -1;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}
