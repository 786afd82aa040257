/* File handles. A handle is the agent's real file descriptor number, so a
 * test can pass file:fd() straight to vm:syscall or vm:ioctl. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

#define MAX_READ (PV_MAX_PAYLOAD - 4096)

/* Handles must not reach the agent's own descriptors (the transport...). */
static bool fd_is_user(agent_conn *c, int64_t fd) { return fd >= 0 && fd <= 1 << 20 && fd != c->fd; }

void fd_open(agent_conn *c, const pv_msg *m)
{
    char *path = request_path(c, m, PV_T_PATH, "open_file");
    if (!path)
        return;
    int flags = (int)pv_msg_u64(m, PV_T_FLAGS, 0);
    mode_t mode = (mode_t)pv_msg_u64(m, PV_T_MODE, 0644) & 07777;
    int fd = open(path, flags | O_CLOEXEC, mode);
    if (fd < 0)
        conn_send_error(c, m->hdr.chan, m->hdr.req, errno, "open_file %s: %s", path, strerror(errno));
    else {
        pv_frame_begin(&c->out, PV_MSG_HANDLE, m->hdr.chan, m->hdr.req);
        pv_put_i64(&c->out, PV_T_FD, fd);
        conn_send(c);
    }
    free(path);
}

void fd_read(agent_conn *c, const pv_msg *m)
{
    int64_t fd = pv_msg_i64(m, PV_T_FD, -1);
    uint64_t want = pv_msg_u64(m, PV_T_COUNT, 0);
    if (!fd_is_user(c, fd)) {
        conn_send_error(c, m->hdr.chan, m->hdr.req, EBADF, "read: bad handle %lld", (long long)fd);
        return;
    }
    if (want > MAX_READ)
        want = MAX_READ;
    char *buf = malloc(want ? want : 1);
    if (!buf) {
        conn_send_error(c, m->hdr.chan, m->hdr.req, ENOMEM, "read: out of memory");
        return;
    }
    ssize_t n;
    do
        n = read((int)fd, buf, want);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        conn_send_error(c, m->hdr.chan, m->hdr.req, errno, "read: %s", strerror(errno));
    else {
        pv_frame_begin(&c->out, PV_MSG_FILE_DATA, m->hdr.chan, m->hdr.req);
        pv_put_bytes(&c->out, PV_T_DATA, buf, (size_t)n);
        conn_send(c);
    }
    free(buf);
}

void fd_write(agent_conn *c, const pv_msg *m)
{
    int64_t fd = pv_msg_i64(m, PV_T_FD, -1);
    const pv_field *d = pv_msg_get(m, PV_T_DATA);
    if (!fd_is_user(c, fd)) {
        conn_send_error(c, m->hdr.chan, m->hdr.req, EBADF, "write: bad handle %lld", (long long)fd);
        return;
    }
    ssize_t n;
    do
        n = write((int)fd, d->data, d->len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        conn_send_error(c, m->hdr.chan, m->hdr.req, errno, "write: %s", strerror(errno));
    else
        reply_count(c, m, n);
}

void fd_seek(agent_conn *c, const pv_msg *m)
{
    int64_t fd = pv_msg_i64(m, PV_T_FD, -1);
    uint64_t whence = pv_msg_u64(m, PV_T_WHENCE, 0);
    if (!fd_is_user(c, fd) || whence > 2) {
        conn_send_error(c, m->hdr.chan, m->hdr.req, EINVAL, "seek: bad handle or whence");
        return;
    }
    off_t r = lseek((int)fd, (off_t)pv_msg_i64(m, PV_T_OFFSET, 0), (int)whence);
    if (r < 0)
        conn_send_error(c, m->hdr.chan, m->hdr.req, errno, "seek: %s", strerror(errno));
    else
        reply_count(c, m, r);
}

void fd_close(agent_conn *c, const pv_msg *m)
{
    int64_t fd = pv_msg_i64(m, PV_T_FD, -1);
    if (!fd_is_user(c, fd) || close((int)fd) != 0)
        conn_send_error(c, m->hdr.chan, m->hdr.req, EBADF, "close: bad handle %lld", (long long)fd);
    else
        reply_ok(c, m);
}
