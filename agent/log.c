/* Agent logging: prefer /dev/kmsg so messages appear on the guest console
 * interleaved with the kernel's, which is where users look when boot fails. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "agent.h"

void agent_log(const char *fmt, ...)
{
    char msg[512];
    int n = snprintf(msg, sizeof(msg), "provium-agent[%d]: ", (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
    va_end(ap);
    int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        dprintf(fd, "%s\n", msg);
        close(fd);
    } else {
        fprintf(stderr, "%s\n", msg);
    }
}
