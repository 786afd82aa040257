/* The agent's end of the transport: accumulates bytes into frames and writes
 * replies. Replies are written with blocking writes: a virtio-serial write
 * blocks only while no host is connected, and then nobody is waiting anyway. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

void conn_init(agent_conn *c, int fd, bool is_port)
{
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->is_port = is_port;
    c->connected = true;
    c->land.fd = c->land.user_fd = -1;
    pv_buf_init(&c->out);
}

/* Reads without blocking until c->in holds upto bytes or nothing more is
 * there (EAGAIN: the main poll waits for the rest; EOF: it sees it again). */
static void read_until(agent_conn *c, size_t upto)
{
    int flags = fcntl(c->fd, F_GETFL);
    if (flags < 0 || fcntl(c->fd, F_SETFL, flags | O_NONBLOCK) != 0)
        return;
    while (c->in_len < upto) {
        ssize_t n = read(c->fd, c->in + c->in_len, upto - c->in_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        c->in_len += (size_t)n;
    }
    fcntl(c->fd, F_SETFL, flags);
}

/* A virtio-serial read returns one 4 KiB buffer at most: while a large frame
 * is arriving, read on without going back to the main poll for every 4 KiB.
 * The reads are non-blocking so that a host that stalls mid-frame leaves the
 * agent free to serve everything else. A large write first gets only its
 * leading fields read, to see whether it can land in its file as it arrives
 * (landing.c): true when it now does. */
static bool fill_frame(agent_conn *c)
{
    pv_hdr hdr;
    if (c->in_len < PV_HDR_SIZE || pv_hdr_decode(c->in, &hdr) != 0 || c->in_len >= PV_HDR_SIZE + (size_t)hdr.len)
        return false;
    size_t need = PV_HDR_SIZE + (size_t)hdr.len;
    if (need > c->in_cap) {
        uint8_t *n = realloc(c->in, need);
        if (!n)
            return false;
        c->in = n;
        c->in_cap = need;
    }
    if (c->land_policy != LAND_NEVER && hdr.len >= LAND_MIN_BYTES &&
        (hdr.type == PV_MSG_WRITE_FILE || hdr.type == PV_MSG_FD_WRITE)) {
        read_until(c, PV_HDR_SIZE + LAND_PREFIX_MAX + PV_FIELD_HDR_SIZE);
        if (land_begin(c))
            return true;
    }
    read_until(c, need);
    return false;
}

/* Reads and throws away the rest of a frame that did not fit in memory;
 * CONN_DROPPED once its last byte is gone. */
static int skip_input(agent_conn *c)
{
    char tmp[65536];
    ssize_t n = read(c->fd, tmp, c->skip < sizeof(tmp) ? c->skip : sizeof(tmp));
    if (n < 0)
        return (errno == EINTR || errno == EAGAIN) ? 1 : 0;
    if (n == 0)
        return 0;
    c->skip -= (size_t)n;
    return c->skip ? 1 : CONN_DROPPED;
}

/* No memory to receive the frame at the head of the buffer: discard it whole
 * (its buffered part now, the rest as it arrives), so that the frames after
 * it stay in step. -1 if not even its header is here. */
static int drop_frame(agent_conn *c)
{
    if (c->in_len < PV_HDR_SIZE || pv_hdr_decode(c->in, &c->dropped) != 0)
        return -1;
    size_t have = c->in_len - PV_HDR_SIZE;
    c->skip = have < c->dropped.len ? c->dropped.len - have : 0;
    c->in_len = 0;
    agent_log("out of memory receiving a %u-byte %s frame; discarded", c->dropped.len, pv_msg_name(c->dropped.type));
    return c->skip ? 1 : CONN_DROPPED;
}

/* Grows the receive buffer while less than 64 KiB is free; false when the
 * frame at its head cannot be received for lack of memory. */
static bool make_room(agent_conn *c)
{
    if (c->in_cap - c->in_len >= 65536)
        return true;
    size_t cap = c->in_cap ? c->in_cap * 2 : 131072;
    if (cap > PV_MAX_PAYLOAD + 2 * 65536 + PV_HDR_SIZE)
        cap = PV_MAX_PAYLOAD + 2 * 65536 + PV_HDR_SIZE;
    if (cap <= c->in_cap)
        return true;
    uint8_t *n = realloc(c->in, cap);
    if (n) {
        c->in = n;
        c->in_cap = cap;
        return true;
    }
    /* no growth: enough if the frame being received fits what there is */
    pv_hdr h;
    if (c->in_cap == c->in_len)
        return false;
    return c->in_len < PV_HDR_SIZE || pv_hdr_decode(c->in, &h) != 0 || PV_HDR_SIZE + (size_t)h.len <= c->in_cap;
}

int conn_fill(agent_conn *c)
{
    if (c->skip)
        return skip_input(c);
    if (c->land.active)
        return land_fill(c);
    if (!make_room(c))
        return drop_frame(c);
    ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n < 0)
        return (errno == EINTR || errno == EAGAIN) ? 1 : 0;
    if (n == 0)
        return 0;
    c->in_len += (size_t)n;
    if (fill_frame(c))
        return land_fill(c);
    return 1;
}

int conn_pop(agent_conn *c, pv_hdr *hdr, const uint8_t **payload)
{
    if (c->in_len < PV_HDR_SIZE)
        return 0;
    if (pv_hdr_decode(c->in, hdr) != 0) {
        /* Cannot resynchronise after a bogus length: drop everything. */
        agent_log("dropping input: frame announces %u bytes (limit %u)", hdr->len, PV_MAX_PAYLOAD);
        c->in_len = 0;
        return -1;
    }
    if (c->in_len < PV_HDR_SIZE + (size_t)hdr->len)
        return 0;
    *payload = c->in + PV_HDR_SIZE;
    return 1;
}

void conn_consume(agent_conn *c, const pv_hdr *hdr)
{
    size_t used = PV_HDR_SIZE + hdr->len;
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
}

int conn_try_send(agent_conn *c)
{
    if (pv_frame_end(&c->out) != 0) {
        pv_buf_reset(&c->out);
        return -1;
    }
    if (c->capture) {
        pv_put_bytes(c->capture, PV_T_REPLY, c->out.buf, c->out.len);
        pv_buf_reset(&c->out);
        return 0;
    }
    const uint8_t *p = c->out.buf;
    size_t left = c->out.len;
    while (left) {
        ssize_t n = write(c->fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            pv_buf_reset(&c->out);
            return -1;
        }
        p += n;
        left -= (size_t)n;
    }
    pv_buf_reset(&c->out);
    return 0;
}

int conn_send(agent_conn *c)
{
    pv_buf *b = &c->out;
    pv_hdr h = {0};
    /* a reply that could not be built (no memory, or too large) is answered
     * with an ERROR naming why, so the request does not wait forever */
    bool unbuilt = b->failed && b->len - b->frame_start >= PV_HDR_SIZE &&
                   pv_hdr_decode(b->buf + b->frame_start, &h) == 0 && h.req && h.type != PV_MSG_ERROR;
    int err = b->err;
    if (conn_try_send(c) == 0)
        return 0;
    if (unbuilt)
        conn_send_error(c, h.chan, h.req, err, "agent: cannot build the %s reply: %s", pv_msg_name(h.type),
                        strerror(err));
    return -1;
}

void conn_send_error(agent_conn *c, uint32_t chan, uint32_t req, int err, const char *fmt, ...)
{
    char msg[AGENT_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pv_buf_reset(&c->out);
    pv_frame_begin(&c->out, PV_MSG_ERROR, chan, req);
    pv_put_i64(&c->out, PV_T_ERRNO, err);
    pv_put_str(&c->out, PV_T_MESSAGE, msg);
    conn_send(c);
}

void conn_send_ready(agent_conn *c)
{
    pv_buf_reset(&c->out);
    pv_frame_begin(&c->out, PV_MSG_READY, 0, 0);
    pv_put_u64(&c->out, PV_T_PROTO_VERSION, PV_PROTO_VERSION);
    pv_put_str(&c->out, PV_T_AGENT_VERSION, AGENT_VERSION);
    pv_put_u64(&c->out, PV_T_PID, (uint64_t)getpid());
    conn_send(c);
}
