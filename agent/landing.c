/* Landing: a large WRITE_FILE or FD_WRITE is written into its file while it
 * is still arriving, through a small stage, instead of after the whole frame
 * has been received.
 *
 * On the ordinary path the agent receives a whole frame (up to 1 MiB for
 * push_file and a long write_file, up to 32 MiB for one WRITE_FILE) into the
 * receive buffer and only then write(2)s it. While it writes, nothing drains
 * the virtio-serial port, whose few hundred KiB of guest buffers fill up and
 * stall the host; and the data has gone through a buffer far larger than any
 * cache. Here, once the fields before DATA are in (the host puts DATA last),
 * the target is opened and every LAND_STAGE_BYTES received are pwrite(2)n
 * at their place from the same small stage, so the port is drained while the
 * file is written. (Reading straight into an mmap of the file, with no second
 * copy, was measured slower under TCG: tmpfs clears every page it maps, and
 * the faults cost more than the copy they save.)
 *
 * Only a regular file lands; a FIFO, a device, /dev/null, a bad request or a
 * failed open take the ordinary path, which then gives the usual reply. The
 * replies are those of the ordinary handlers: ENOSPC and the like are error
 * replies naming the path, a write cut short after some bytes is a short
 * count. The reply is sent from here when the last byte has arrived: every
 * frame before it has been handled already, since a landing only starts for
 * the frame at the head of the buffer. The wire protocol is unchanged. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

/* Opens the request's target (for FD_WRITE, a duplicate of the handle, so
 * that a thread worker closing it meanwhile cannot redirect the data); -1
 * when it is not a regular file. */
static int open_target(agent_conn *c, const pv_msg *m, conn_landing *l)
{
    struct stat st;
    if (m->hdr.type == PV_MSG_WRITE_FILE) {
        l->path = pv_msg_strdup(m, PV_T_PATH);
        /* a FIFO or a device is never opened here: opening may block or act */
        if (!l->path || (stat(l->path, &st) == 0 && !S_ISREG(st.st_mode)))
            return -1;
        mode_t mode = (mode_t)pv_msg_u64(m, PV_T_MODE, 0644) & 07777;
        l->off = 0;
        return open(l->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK, mode);
    }
    int64_t ufd = pv_msg_i64(m, PV_T_FD, -1);
    if (ufd < 0 || ufd > 1 << 20 || ufd == c->fd)
        return -1;
    int fl = fcntl((int)ufd, F_GETFL);
    if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY || fstat((int)ufd, &st) != 0 || !S_ISREG(st.st_mode))
        return -1;
    off_t off = (fl & O_APPEND) ? st.st_size : lseek((int)ufd, 0, SEEK_CUR);
    if (off < 0)
        return -1;
    l->user_fd = (int)ufd;
    l->off = off;
    return fcntl((int)ufd, F_DUPFD_CLOEXEC, 0);
}

static void release(conn_landing *l)
{
    if (l->fd >= 0)
        close(l->fd);
    free(l->path);
    *l = (conn_landing){.fd = -1, .user_fd = -1};
}

/* The fields before DATA, if the head frame is a landing candidate whose
 * DATA is its last field and they have all arrived: their length, else 0. */
static size_t data_prefix(const agent_conn *c, const pv_hdr *h)
{
    const uint8_t *p = c->in + PV_HDR_SIZE;
    size_t have = c->in_len - PV_HDR_SIZE, off = 0;
    while (off + PV_FIELD_HDR_SIZE <= have && off <= LAND_PREFIX_MAX) {
        uint16_t tag = (uint16_t)(p[off] | p[off + 1] << 8);
        uint32_t len = (uint32_t)p[off + 2] | (uint32_t)p[off + 3] << 8 | (uint32_t)p[off + 4] << 16 |
                       (uint32_t)p[off + 5] << 24;
        if (tag == PV_T_DATA)
            return off + PV_FIELD_HDR_SIZE + (size_t)len == h->len ? off : 0;
        if (off + PV_FIELD_HDR_SIZE + (size_t)len > have)
            return 0;
        off += PV_FIELD_HDR_SIZE + len;
    }
    return 0;
}

bool land_begin(agent_conn *c)
{
    pv_hdr h;
    if (c->land_policy == LAND_NEVER || c->in_len < PV_HDR_SIZE || pv_hdr_decode(c->in, &h) != 0 ||
        (h.type != PV_MSG_WRITE_FILE && h.type != PV_MSG_FD_WRITE) || h.len < LAND_MIN_BYTES ||
        c->in_len >= PV_HDR_SIZE + (size_t)h.len ||
        (c->land_policy == LAND_LOCAL_CHANNELS && PV_CHAN_WORKER(h.chan) != 0))
        return false;
    size_t prefix = data_prefix(c, &h);
    if (!prefix)
        return false;
    /* the fields before DATA, decoded with an empty DATA: the schema's checks
     * apply as on the ordinary path, which answers a bad request */
    uint8_t fields[LAND_PREFIX_MAX + PV_FIELD_HDR_SIZE];
    memcpy(fields, c->in + PV_HDR_SIZE, prefix);
    memcpy(fields + prefix, c->in + PV_HDR_SIZE + prefix, 2);
    memset(fields + prefix + 2, 0, 4);
    pv_hdr fh = h;
    fh.len = (uint32_t)(prefix + PV_FIELD_HDR_SIZE);
    pv_msg m;
    char why[128];
    if (pv_msg_decode(&fh, fields, &m, why, sizeof(why)) != 0)
        return false;
    conn_landing *l = &c->land;
    *l = (conn_landing){.fd = -1, .user_fd = -1, .hdr = h};
    l->len = h.len - prefix - PV_FIELD_HDR_SIZE;
    l->fd = open_target(c, &m, l);
    pv_msg_free(&m);
    struct stat st;
    if (l->fd < 0 || fstat(l->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        release(l);
        return false;
    }
    /* the data received so far is the start of the stage */
    l->stage_at = PV_HDR_SIZE + prefix + PV_FIELD_HDR_SIZE;
    l->got = c->in_len - l->stage_at;
    l->active = true;
    c->in_len = l->stage_at; /* the head frame stays incomplete until finish() */
    return true;
}

/* Writes the staged bytes at their place in the file; after an error (kept
 * in l->err) they are only dropped. */
static void flush_stage(agent_conn *c)
{
    conn_landing *l = &c->land;
    size_t staged = l->got - l->written - l->dropped;
    const uint8_t *p = c->in + l->stage_at;
    while (staged && !l->err) {
        ssize_t n = pwrite(l->fd, p, staged, l->off + (off_t)l->written);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            l->err = n < 0 ? errno : EIO;
            break;
        }
        p += n;
        staged -= (size_t)n;
        l->written += (size_t)n;
    }
    l->dropped += staged;
}

/* The last byte has arrived: the request's reply, as the ordinary handler
 * would give it (a write cut short by an error is a short count, as from
 * write(2), when some of it was written). */
static void finish(agent_conn *c)
{
    conn_landing *l = &c->land;
    flush_stage(c);
    int err = l->err;
    pv_hdr h = l->hdr;
    bool counted = h.type == PV_MSG_FD_WRITE && (!err || l->written);
    if (l->user_fd >= 0 && counted && lseek(l->user_fd, l->off + (off_t)l->written, SEEK_SET) < 0 && !err)
        err = errno;
    if (close(l->fd) != 0 && !err)
        err = errno;
    l->fd = -1;
    if (h.type == PV_MSG_WRITE_FILE && err)
        conn_send_error(c, h.chan, h.req, err, "write_file %s: %s", l->path, strerror(err));
    else if (h.type == PV_MSG_WRITE_FILE)
        reply_ok(c, &(pv_msg){.hdr = h});
    else if (counted)
        reply_count(c, &(pv_msg){.hdr = h}, (int64_t)l->written);
    else
        conn_send_error(c, h.chan, h.req, err, "write: %s", strerror(err));
    release(l);
    c->in_len = 0;
}

int land_fill(agent_conn *c)
{
    conn_landing *l = &c->land;
    int flags = fcntl(c->fd, F_GETFL);
    if (flags < 0 || fcntl(c->fd, F_SETFL, flags | O_NONBLOCK) != 0)
        return 1;
    int rc = 1;
    while (l->got < l->len) {
        size_t staged = l->got - l->written - l->dropped;
        if (staged >= LAND_STAGE_BYTES) {
            flush_stage(c);
            staged = 0;
        }
        size_t want = l->len - l->got;
        if (want > LAND_STAGE_BYTES - staged)
            want = LAND_STAGE_BYTES - staged;
        ssize_t n = read(c->fd, c->in + l->stage_at + staged, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            /* the host is behind: write out what is here meanwhile */
            if (staged >= LAND_STAGE_BYTES / 2)
                flush_stage(c);
            break;
        }
        if (n <= 0) { /* the host is gone: the request is void */
            rc = 0;
            break;
        }
        l->got += (size_t)n;
    }
    fcntl(c->fd, F_SETFL, flags);
    if (rc == 0)
        land_abandon(c);
    else if (l->got == l->len)
        finish(c);
    return rc;
}

void land_abandon(agent_conn *c)
{
    if (!c->land.active)
        return;
    agent_log("%s of %zu bytes abandoned after %zu: the host went away", pv_msg_name(c->land.hdr.type),
              c->land.len, c->land.got);
    /* a write_file that never completed leaves the file empty, as its
     * O_TRUNC did, not a prefix of the data */
    if (c->land.hdr.type == PV_MSG_WRITE_FILE && ftruncate(c->land.fd, 0) != 0)
        agent_log("cannot empty %s again: %s", c->land.path, strerror(errno));
    release(&c->land);
    c->in_len = 0;
}
