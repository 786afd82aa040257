/* The forwarding thread: one per process, serving every bridge. It accepts
 * QEMU's connections on the port sockets, reassembles the stream netdev's
 * length-prefixed frames, learns source MACs, floods what it cannot place,
 * applies each (from, to) direction's impairments and hands frames to the
 * destination now or through the timer queue. It runs while the Lua thread
 * is blocked in a VM call, which is the point of having a thread. */
#include "netsw_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../util/util.h"

int64_t netsw_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

port *netsw_port_get(netsw *sw, netsw_port_id id)
{
    return id > 0 && id < sw->n_ports ? sw->ports[id] : NULL;
}

/* Senders held back by port d may go on; they are read again by the main
 * loop (never from inside a delivery, which may be parsing one of them). */
static void release_waiters(netsw *sw, port *d)
{
    for (int i = 1; i < sw->n_ports; i++) {
        port *s = sw->ports[i];
        if (s && s->paused && s->waiting_for == d->id) {
            s->paused = false;
            s->resume_due = true;
        }
    }
}

static void outq_clear(port *p)
{
    while (p->qhead) {
        out_frame *f = p->qhead;
        p->qhead = f->next;
        free(f);
    }
    p->qtail = NULL;
    p->qbytes = p->qoff = 0;
}

void netsw_port_disconnect(netsw *sw, port *p)
{
    if (p->cfd >= 0) {
        epoll_ctl(sw->epfd, EPOLL_CTL_DEL, p->cfd, NULL);
        close(p->cfd);
    }
    p->cfd = -1;
    p->rlen = 0;
    p->ev_mask = 0;
    p->paused = p->resume_due = p->stuck = false;
    outq_clear(p);
    release_waiters(sw, p);
}

/* Reads unless paused; asks for EPOLLOUT only while frames wait, so an idle
 * port costs nothing. */
void netsw_port_set_interest(netsw *sw, port *p)
{
    uint32_t mask = (p->paused ? 0 : EPOLLIN) | (p->qhead ? EPOLLOUT : 0);
    if (p->cfd < 0 || mask == p->ev_mask)
        return;
    struct epoll_event ev = {.events = mask, .data.u64 = EV_CONN(p->id)};
    epoll_ctl(sw->epfd, EPOLL_CTL_MOD, p->cfd, &ev);
    p->ev_mask = mask;
}

/* Sends what is queued, many frames per system call; false when the peer is gone. */
static bool outq_drain(port *p)
{
    while (p->qhead) {
        struct iovec iov[64];
        int n_iov = 0;
        size_t off = p->qoff;
        for (out_frame *f = p->qhead; f && n_iov < 64; f = f->next, off = 0)
            iov[n_iov++] = (struct iovec){f->data + off, f->len - off};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n_iov};
        ssize_t n = sendmsg(p->cfd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        size_t sent = (size_t)n;
        while (sent && p->qhead) {
            out_frame *f = p->qhead;
            size_t left = f->len - p->qoff;
            if (sent < left) {
                p->qoff += sent;
                return true; /* the socket is full */
            }
            sent -= left;
            p->qhead = f->next;
            if (!p->qhead)
                p->qtail = NULL;
            p->qbytes -= f->len;
            p->qoff = 0;
            free(f);
        }
        if (n_iov < 64 && !p->qhead)
            break;
    }
    return true;
}

/* After a successful drain: a queue back under LOW releases its senders. */
static void outq_drained(netsw *sw, port *p)
{
    if (p->qbytes < NETSW_OUTQ_LOW) {
        p->stuck = false;
        release_waiters(sw, p);
    }
}

static void flush_port(netsw *sw, port *p)
{
    p->flush_due = false;
    if (p->cfd < 0)
        return;
    if (!outq_drain(p)) {
        netsw_port_disconnect(sw, p);
        return;
    }
    outq_drained(sw, p);
    netsw_port_set_interest(sw, p);
}

static void pause_sender(netsw *sw, netsw_port_id src, port *d)
{
    port *s = netsw_port_get(sw, src);
    if (!s || s->paused || d->stuck || s == d)
        return;
    s->paused = true;
    s->resume_due = false;
    s->paused_ns = netsw_now_ns();
    s->waiting_for = d->id;
    netsw_port_set_interest(sw, s);
}

static out_frame *frame_copy(const uint8_t *data, size_t len)
{
    out_frame *f = xmalloc(sizeof(*f) + 4 + len);
    f->next = NULL;
    f->len = 4 + len;
    f->data[0] = (uint8_t)(len >> 24);
    f->data[1] = (uint8_t)(len >> 16);
    f->data[2] = (uint8_t)(len >> 8);
    f->data[3] = (uint8_t)len;
    memcpy(f->data + 4, data, len);
    return f;
}

static void count_drop(netsw *sw, netsw_port_id src)
{
    port *s = netsw_port_get(sw, src);
    if (s)
        s->c.dropped++;
}

/* Hands one frame (owned, with its length header) to port dst. The final
 * checks are made here because link and isolation may change while a frame
 * sits in the timer queue. */
static void deliver(netsw *sw, netsw_port_id src, netsw_port_id dst, out_frame *f)
{
    port *d = netsw_port_get(sw, dst);
    if (!d || d->cfd < 0) { /* nobody connected: the frame is lost on the wire */
        free(f);
        return;
    }
    if (!d->up || d->m->isolated || d->qbytes + f->len > NETSW_OUTQ_LIMIT) {
        count_drop(sw, src);
        free(f);
        return;
    }
    size_t flen = f->len - 4;
    d->c.rx_packets++;
    d->c.rx_bytes += flen;
    netsw_capture_frame(sw, d->br, d->id, f->data + 4, flen);
    if (d->qtail)
        d->qtail->next = f;
    else
        d->qhead = f;
    d->qtail = f;
    d->qbytes += f->len;
    d->flush_due = true; /* sent at the end of the batch, with its neighbours */
    if (d->qbytes > NETSW_OUTQ_LOW)
        flush_port(sw, d);
    if (d->cfd >= 0 && d->qbytes > NETSW_OUTQ_HIGH)
        pause_sender(sw, src, d);
}

pair *netsw_pair_get(bridge *br, member *from, member *to)
{
    for (pair *p = br->pairs; p; p = p->next)
        if (p->from == from && p->to == to)
            return p;
    pair *p = xcalloc(1, sizeof(*p));
    p->from = from;
    p->to = to;
    /* The stream depends only on the seed and the two names: replaying the
     * same traffic on this direction replays the same decisions, whatever
     * the other directions carry. */
    netsw_rng_seed(&p->rng, br->seed ^ netsw_name_hash(from->name) ^ (netsw_name_hash(to->name) * 0x9e3779b97f4a7c15ull));
    p->next = br->pairs;
    br->pairs = p;
    return p;
}

/* Token bucket as a virtual clock (GCRA): the bucket holds `burst` worth of
 * time; a frame leaves when the clock allows it. Returns the departure time,
 * or -1 when the backlog would exceed the queue limit (the frame is dropped,
 * as a full tbf queue would). */
static int64_t shape(pair *pr, uint64_t rate_bps, size_t len, int64_t now)
{
    double ns_per_byte = 8e9 / (double)rate_bps;
    int64_t tx_ns = (int64_t)(ns_per_byte * (double)len);
    int64_t burst_ns = (int64_t)(ns_per_byte * 3028); /* two full frames */
    double limit = fmax(1e9, ns_per_byte * 65536.0);
    int64_t clock = pr->bucket_ns > now - burst_ns ? pr->bucket_ns : now - burst_ns;
    int64_t depart = clock + tx_ns > now ? clock + tx_ns : now;
    if ((double)(depart - now) > limit)
        return -1;
    pr->bucket_ns = clock + tx_ns;
    return depart;
}

/* One copy of a frame from s to d: partition, drop, shaping, delay. */
static void forward_one(netsw *sw, port *s, port *d, const uint8_t *data, size_t len, int64_t now)
{
    bridge *br = s->br;
    if (!d->up || d->m->isolated) {
        s->c.dropped++;
        return;
    }
    pair *pr = netsw_pair_get(br, s->m, d->m);
    if (pr->blocked) {
        s->c.dropped++;
        return;
    }
    const netsw_impair *im = pr->has_rule ? &pr->rule : &br->def;
    if (im->drop_pct > 0 && netsw_rng_unit(&pr->rng) * 100.0 < im->drop_pct) {
        s->c.dropped++;
        return;
    }
    double delay_ms = im->latency_ms;
    if (im->jitter_ms > 0)
        delay_ms += (2.0 * netsw_rng_unit(&pr->rng) - 1.0) * im->jitter_ms;
    if (delay_ms < 0)
        delay_ms = 0;
    int64_t depart = now;
    if (im->rate_bps) {
        depart = shape(pr, im->rate_bps, len, now);
        if (depart < 0) {
            s->c.dropped++;
            return;
        }
    }
    int64_t due = depart + (int64_t)(delay_ms * 1e6);
    out_frame *f = frame_copy(data, len);
    if (due <= now)
        deliver(sw, s->id, d->id, f);
    else
        timerq_push(&sw->delayed, (delayed){.due_ns = due, .src = s->id, .dst = d->id, .f = f});
}

static netsw_port_id mac_lookup(bridge *br, const uint8_t *mac)
{
    for (int i = 0; i < br->n_macs; i++)
        if (memcmp(br->macs[i].mac, mac, 6) == 0)
            return br->macs[i].port;
    return 0;
}

static void mac_learn(bridge *br, const uint8_t *mac, netsw_port_id id)
{
    for (int i = 0; i < br->n_macs; i++)
        if (memcmp(br->macs[i].mac, mac, 6) == 0) {
            br->macs[i].port = id; /* a MAC that moved ports follows its sender */
            return;
        }
    int slot = br->n_macs < NETSW_MAC_TABLE ? br->n_macs++ : br->mac_next++ % NETSW_MAC_TABLE;
    memcpy(br->macs[slot].mac, mac, 6);
    br->macs[slot].port = id;
}

/* A frame the guest behind s sent. */
static void ingress(netsw *sw, port *s, const uint8_t *data, size_t len, int64_t now)
{
    bridge *br = s->br;
    s->c.tx_packets++;
    s->c.tx_bytes += len;
    netsw_capture_frame(sw, br, s->id, data, len);
    if (len < 14 || !s->up || s->m->isolated) {
        s->c.dropped++;
        return;
    }
    const uint8_t *dst = data, *src = data + 6;
    if (!(src[0] & 1))
        mac_learn(br, src, s->id);
    netsw_capture_frame(sw, br, 0, data, len);
    netsw_port_id known = (dst[0] & 1) ? 0 : mac_lookup(br, dst);
    if (known) {
        port *d = netsw_port_get(sw, known);
        if (d && d != s)
            forward_one(sw, s, d, data, len, now);
        return;
    }
    for (int i = 1; i < sw->n_ports; i++) { /* flood: broadcast, multicast, unknown */
        port *d = sw->ports[i];
        if (d && d != s && d->br == br)
            forward_one(sw, s, d, data, len, now);
    }
}

static void on_accept(netsw *sw, port *p)
{
    int fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    /* A new QEMU for this NIC (a restore, a reconnect): it replaces the old one. */
    netsw_port_disconnect(sw, p);
    int sz = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV_CONN(p->id)};
    if (epoll_ctl(sw->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        return;
    }
    p->cfd = fd;
    p->ev_mask = EPOLLIN;
}

/* Switches the complete frames in p's buffer, until p is paused. */
static void parse_frames(netsw *sw, port *p, int64_t now)
{
    size_t off = 0;
    while (p->rlen - off >= 4 && !p->paused) {
        const uint8_t *h = p->rbuf + off;
        size_t flen = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
        if (flen > NETSW_MAX_FRAME) { /* not QEMU's stream format: drop the peer */
            netsw_port_disconnect(sw, p);
            return;
        }
        if (p->rlen - off - 4 < flen)
            break;
        ingress(sw, p, h + 4, flen, now);
        off += 4 + flen;
    }
    memmove(p->rbuf, p->rbuf + off, p->rlen - off);
    p->rlen -= off;
}

static void on_readable(netsw *sw, port *p, int64_t now)
{
    if (p->paused || p->rlen == NETSW_RBUF)
        return;
    ssize_t n = recv(p->cfd, p->rbuf + p->rlen, NETSW_RBUF - p->rlen, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        netsw_port_disconnect(sw, p);
        return;
    }
    if (n < 0)
        return;
    p->rlen += (size_t)n;
    parse_frames(sw, p, now);
}

/* Senders released by a drained queue, and senders that waited too long
 * for a queue that does not drain (whose port is then marked stuck). */
static void resume_senders(netsw *sw, int64_t now)
{
    for (int i = 1; i < sw->n_ports; i++) {
        port *s = sw->ports[i];
        if (!s || s->cfd < 0)
            continue;
        if (s->paused && now - s->paused_ns > (int64_t)NETSW_STUCK_MS * 1000000) {
            port *d = netsw_port_get(sw, s->waiting_for);
            if (d)
                d->stuck = true;
            s->paused = false;
            s->resume_due = true;
        }
        if (s->resume_due) {
            s->resume_due = false;
            parse_frames(sw, s, now);
            if (s->cfd >= 0)
                netsw_port_set_interest(sw, s);
        }
    }
}

/* The earliest instant the thread must wake without I/O: a delayed frame
 * or a paused sender's patience running out. */
static int64_t next_wakeup(netsw *sw)
{
    int64_t next = timerq_next_due(&sw->delayed);
    for (int i = 1; i < sw->n_ports; i++) {
        port *s = sw->ports[i];
        int64_t t = s && s->paused ? s->paused_ns + (int64_t)NETSW_STUCK_MS * 1000000 + 1 : -1;
        if (t >= 0 && (next < 0 || t < next))
            next = t;
    }
    return next;
}

static void run_timers(netsw *sw)
{
    delayed d;
    int64_t now = netsw_now_ns();
    while (timerq_pop_due(&sw->delayed, now, &d))
        deliver(sw, d.src, d.dst, d.f);
    resume_senders(sw, now);
    int64_t next = next_wakeup(sw);
    struct itimerspec its = {0};
    if (next >= 0) {
        if (next <= now)
            next = now + 1;
        its.it_value.tv_sec = next / 1000000000;
        its.it_value.tv_nsec = next % 1000000000;
    }
    timerfd_settime(sw->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void handle(netsw *sw, uint64_t tag, uint32_t events, int64_t now)
{
    if (tag == EV_WAKE || tag == EV_TIMER) {
        uint64_t v;
        if (read(tag == EV_WAKE ? sw->wakefd : sw->timerfd, &v, sizeof(v)) < 0) {
            /* spurious wake: nothing to read */
        }
        return;
    }
    port *p = netsw_port_get(sw, (netsw_port_id)(tag >> 2));
    if (!p)
        return;
    if (tag & 1) {
        on_accept(sw, p);
        return;
    }
    if (p->cfd < 0)
        return;
    if (p->paused && (events & (EPOLLHUP | EPOLLERR))) { /* gone while held back */
        netsw_port_disconnect(sw, p);
        return;
    }
    if (events & EPOLLOUT) {
        flush_port(sw, p);
        if (p->cfd < 0)
            return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        on_readable(sw, p, now);
}

void *netsw_thread_main(void *arg)
{
    netsw *sw = arg;
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(sw->epfd, evs, 64, -1);
        pthread_mutex_lock(&sw->lock);
        if (sw->stopping) {
            pthread_mutex_unlock(&sw->lock);
            return NULL;
        }
        int64_t now = netsw_now_ns();
        for (int i = 0; i < n; i++)
            handle(sw, evs[i].data.u64, evs[i].events, now);
        run_timers(sw);
        for (int i = 1; i < sw->n_ports; i++)
            if (sw->ports[i] && sw->ports[i]->flush_due)
                flush_port(sw, sw->ports[i]);
        netsw_captures_flush(sw);
        pthread_mutex_unlock(&sw->lock);
    }
}
