/* Whole-file operations. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

/* Leave room for the frame and field headers inside the payload limit. */
#define MAX_FILE_BYTES (PV_MAX_PAYLOAD - 4096)

void files_read(agent_conn *c, const pv_msg *m)
{
    uint32_t chan = m->hdr.chan, req = m->hdr.req;
    char *path = pv_msg_strdup(m, PV_T_PATH);
    if (!path) {
        conn_send_error(c, chan, req, EINVAL, "read_file: path contains a NUL byte");
        return;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        conn_send_error(c, chan, req, errno, "read_file %s: %s", path, strerror(errno));
        free(path);
        return;
    }
    /* Size is unknown for /proc and /sys files: read until EOF. */
    size_t cap = 65536, len = 0;
    char *data = malloc(cap);
    int err = data ? 0 : ENOMEM;
    while (!err) {
        if (len == cap) {
            if (cap >= MAX_FILE_BYTES) {
                err = EFBIG;
                break;
            }
            cap = cap * 2 > MAX_FILE_BYTES ? MAX_FILE_BYTES : cap * 2;
            char *n = realloc(data, cap);
            if (!n) {
                err = ENOMEM;
                break;
            }
            data = n;
        }
        ssize_t n = read(fd, data + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            err = errno;
        else if (n == 0)
            break;
        else
            len += (size_t)n;
    }
    close(fd);
    if (err == EFBIG)
        conn_send_error(c, chan, req, err, "read_file %s: larger than the %u byte transfer limit; read it in parts "
                        "with vm:open_file (file:read, file:seek) or follow it with vm:tail_file", path,
                        (unsigned)MAX_FILE_BYTES);
    else if (err)
        conn_send_error(c, chan, req, err, "read_file %s: %s", path, strerror(err));
    else {
        pv_frame_begin(&c->out, PV_MSG_FILE_DATA, chan, req);
        pv_put_bytes(&c->out, PV_T_DATA, data, len);
        conn_send(c);
    }
    free(data);
    free(path);
}

void files_write(agent_conn *c, const pv_msg *m)
{
    uint32_t chan = m->hdr.chan, req = m->hdr.req;
    char *path = pv_msg_strdup(m, PV_T_PATH);
    if (!path) {
        conn_send_error(c, chan, req, EINVAL, "write_file: path contains a NUL byte");
        return;
    }
    const pv_field *data = pv_msg_get(m, PV_T_DATA);
    mode_t mode = (mode_t)pv_msg_u64(m, PV_T_MODE, 0644) & 07777;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        conn_send_error(c, chan, req, errno, "write_file %s: %s", path, strerror(errno));
        free(path);
        return;
    }
    size_t off = 0;
    int err = 0;
    while (off < data->len) {
        ssize_t n = write(fd, data->data + off, data->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = errno;
            break;
        }
        off += (size_t)n;
    }
    if (close(fd) != 0 && !err)
        err = errno;
    if (err)
        conn_send_error(c, chan, req, err, "write_file %s: %s", path, strerror(err));
    else {
        pv_frame_begin(&c->out, PV_MSG_OK, chan, req);
        conn_send(c);
    }
    free(path);
}
