/* The agent's small shared helpers (see util.h). */
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

/* One read of a pipe: the kernel's default pipe size is 64 KiB. */
#define DRAIN_CHUNK 65536

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ms_until(int64_t deadline, int cap)
{
    int64_t left = deadline - now_ms();
    return left < 0 ? 0 : left > cap ? cap : (int)left;
}

void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

bool drain_fd(int fd, drain_sink *sink, void *ctx)
{
    char tmp[DRAIN_CHUNK];
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN;
        if (n == 0)
            return false;
        sink(ctx, tmp, (size_t)n);
    }
}
