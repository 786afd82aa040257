/* The kernel log as the host's health checks need it: every record since the
 * previous call, in full, whatever the console loglevel hides (a quiet
 * command line keeps WARN_ON splats off the serial console, not out of
 * /dev/kmsg), plus /proc/sys/kernel/tainted. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

/* One read() of /dev/kmsg returns one record of at most about 8 KiB. */
#define RECORD_MAX 8192
/* Enough for a KASAN report with its stack and shadow dump several times
 * over; a flood beyond it is cut and counted, never unbounded. */
#define DRAIN_MAX (1u << 20)

static int kmsg_fd = -1;

static uint64_t read_taint(void)
{
    char buf[32] = "";
    int fd = open("/proc/sys/kernel/tainted", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    return n > 0 ? strtoull(buf, NULL, 10) : 0;
}

void kmsg_read(agent_conn *c, const pv_msg *m)
{
    if (kmsg_fd < 0) {
        /* opened once: the reader position is what "since the last call" means */
        kmsg_fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (kmsg_fd < 0) {
            conn_send_error(c, m->hdr.chan, m->hdr.req, errno, "kmsg: /dev/kmsg: %s", strerror(errno));
            return;
        }
    }
    char *out = malloc(DRAIN_MAX);
    char rec[RECORD_MAX];
    if (!out) {
        conn_send_error(c, m->hdr.chan, m->hdr.req, ENOMEM, "kmsg: out of memory");
        return;
    }
    size_t len = 0;
    uint64_t dropped = 0;
    for (;;) {
        ssize_t n = read(kmsg_fd, rec, sizeof(rec));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EPIPE) {
            dropped++; /* overwritten before we read them; the next read resumes */
            continue;
        }
        if (n <= 0)
            break; /* EAGAIN: nothing more for now */
        if (len + (size_t)n + 1 > DRAIN_MAX) {
            dropped++;
            continue;
        }
        memcpy(out + len, rec, (size_t)n);
        len += (size_t)n;
        if (out[len - 1] != '\n')
            out[len++] = '\n';
    }
    pv_frame_begin(&c->out, PV_MSG_KMSG, m->hdr.chan, m->hdr.req);
    pv_put_bytes(&c->out, PV_T_DATA, out, len);
    pv_put_u64(&c->out, PV_T_FLAGS, read_taint());
    if (dropped)
        pv_put_u64(&c->out, PV_T_COUNT, dropped);
    conn_send(c);
    free(out);
}
