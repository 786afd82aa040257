/* Whole-file operations. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

/* Leave room for the frame and field headers inside the payload limit. */
#define MAX_FILE_BYTES (PV_MAX_PAYLOAD - 4096)

void files_read(agent_conn *c, const pv_msg *m)
{
    uint32_t chan = m->hdr.chan, req = m->hdr.req;
    char *path = request_path(c, m, PV_T_PATH, "read_file");
    if (!path)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        conn_send_error(c, chan, req, errno, "read_file %s: %s", path, strerror(errno));
        free(path);
        return;
    }
    /* The data is read straight into the reply frame (the connection's
     * buffer, which stays allocated between requests), so it is copied once
     * and touches no fresh pages. A regular file's size sizes the first read;
     * /proc and /sys files report none: read until EOF in growing chunks. One
     * byte past the limit is asked for, to tell a file at the limit from a
     * larger one. */
    struct stat st;
    size_t chunk = 65536;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
        chunk = (size_t)st.st_size < MAX_FILE_BYTES ? (size_t)st.st_size + 1 : MAX_FILE_BYTES + 1;
    pv_frame_begin(&c->out, PV_MSG_FILE_DATA, chan, req);
    size_t at = pv_put_open(&c->out, PV_T_DATA), len = 0;
    int err = 0;
    for (;;) {
        if (len > MAX_FILE_BYTES) {
            err = EFBIG;
            break;
        }
        size_t want = MAX_FILE_BYTES + 1 - len < chunk ? MAX_FILE_BYTES + 1 - len : chunk;
        uint8_t *p = pv_put_room(&c->out, want);
        if (!p) {
            err = ENOMEM;
            break;
        }
        ssize_t n = read(fd, p, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = errno;
            break;
        }
        if (n == 0)
            break;
        pv_put_commit(&c->out, (size_t)n);
        len += (size_t)n;
        if ((size_t)n == want && chunk < (4u << 20))
            chunk *= 2;
    }
    close(fd);
    if (err == EFBIG)
        conn_send_error(c, chan, req, err, "read_file %s: larger than the %u byte transfer limit; read it in parts "
                        "with vm:open_file (file:read, file:seek) or follow it with vm:tail_file", path,
                        (unsigned)MAX_FILE_BYTES);
    else if (err)
        conn_send_error(c, chan, req, err, "read_file %s: %s", path, strerror(err));
    else {
        pv_put_close(&c->out, at);
        conn_send(c);
    }
    free(path);
}

void files_write(agent_conn *c, const pv_msg *m)
{
    uint32_t chan = m->hdr.chan, req = m->hdr.req;
    char *path = request_path(c, m, PV_T_PATH, "write_file");
    if (!path)
        return;
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
