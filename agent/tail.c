/* Streams: tails of files and reads of descriptors, pushed to the host as
 * STREAM_DATA frames on the stream's channel as soon as data appears.
 * Regular files are watched with inotify; pipes, sockets and devices are
 * polled for readability. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define TAIL_STREAM 3

typedef struct {
    bool used;
    uint32_t chan;
    int fd;
    bool regular;
    int wd;       /* inotify watch, regular files */
    off_t offset; /* next byte to send, regular files */
    bool eof_sent;
} tail;

static tail tails[TAIL_MAX_STREAMS];
static int inotify_fd = -1;

static void push(agent_conn *c, tail *t, const char *data, size_t len)
{
    if (!c->connected)
        return;
    pv_frame_begin(&c->out, PV_MSG_STREAM_DATA, t->chan, 0);
    pv_put_u64(&c->out, PV_T_STREAM, TAIL_STREAM);
    pv_put_bytes(&c->out, PV_T_DATA, data, len);
    conn_send(c);
}

static void push_eof(agent_conn *c, tail *t)
{
    if (t->eof_sent || !c->connected)
        return;
    t->eof_sent = true;
    pv_frame_begin(&c->out, PV_MSG_STREAM_EOF, t->chan, 0);
    pv_put_u64(&c->out, PV_T_STREAM, TAIL_STREAM);
    conn_send(c);
}

/* Sends everything between the tail's offset and the end of the file. */
static void pump_regular(agent_conn *c, tail *t)
{
    struct stat st;
    if (fstat(t->fd, &st) == 0 && st.st_size < t->offset)
        t->offset = 0; /* truncated: follow the file from its new start */
    char buf[65536];
    for (;;) {
        ssize_t n = pread(t->fd, buf, sizeof(buf), t->offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        t->offset += n;
        push(c, t, buf, (size_t)n);
    }
}

static void pump_stream(agent_conn *c, tail *t)
{
    char buf[65536];
    ssize_t n = read(t->fd, buf, sizeof(buf));
    if (n > 0)
        push(c, t, buf, (size_t)n);
    else if (n == 0 || (errno != EAGAIN && errno != EINTR))
        push_eof(c, t);
}

static void tail_free(tail *t)
{
    if (t->regular && t->wd >= 0 && inotify_fd >= 0) {
        bool shared = false;
        for (int i = 0; i < TAIL_MAX_STREAMS; i++)
            shared |= &tails[i] != t && tails[i].used && tails[i].regular && tails[i].wd == t->wd;
        if (!shared)
            inotify_rm_watch(inotify_fd, t->wd);
    }
    if (t->fd >= 0)
        close(t->fd);
    memset(t, 0, sizeof(*t));
}

void tail_open(agent_conn *c, const pv_msg *m)
{
    uint32_t chan = m->hdr.chan, req = m->hdr.req;
    tail *t = NULL;
    for (int i = 0; i < TAIL_MAX_STREAMS && !t; i++)
        if (!tails[i].used)
            t = &tails[i];
    if (!t || chan == 0) {
        conn_send_error(c, chan, req, t ? EINVAL : EMFILE,
                        t ? "tail: streams need their own channel" : "tail: %d streams already open", TAIL_MAX_STREAMS);
        return;
    }
    int fd;
    char *path = NULL;
    if (pv_msg_has(m, PV_T_PATH)) {
        path = request_path(c, m, PV_T_PATH, "tail_file");
        if (!path)
            return;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    } else {
        /* a stream of an existing handle reads through its own descriptor */
        int64_t src = pv_msg_i64(m, PV_T_FD, -1);
        fd = src >= 0 && src != c->fd ? fcntl((int)src, F_DUPFD_CLOEXEC, 3) : -1;
        if (src < 0 || src == c->fd)
            errno = EBADF;
    }
    if (fd < 0) {
        conn_send_error(c, chan, req, errno, "tail %s: %s", path ? path : "fd", strerror(errno));
        free(path);
        return;
    }
    struct stat st;
    fstat(fd, &st);
    if (S_ISDIR(st.st_mode)) {
        /* a directory never yields bytes: the stream would wait forever */
        conn_send_error(c, chan, req, EISDIR, "tail %s: %s (tail a file inside it)", path ? path : "fd",
                        strerror(EISDIR));
        close(fd);
        free(path);
        return;
    }
    memset(t, 0, sizeof(*t));
    t->used = true;
    t->chan = chan;
    t->fd = fd;
    t->wd = -1;
    t->regular = S_ISREG(st.st_mode);
    if (t->regular) {
        uint64_t start = pv_msg_u64(m, PV_T_START, 1);
        int64_t off = pv_msg_i64(m, PV_T_OFFSET, 0);
        if (start == 0)
            t->offset = 0;
        else if (start == 1)
            t->offset = st.st_size;
        else if (start == 2)
            t->offset = off;
        else
            t->offset = st.st_size > off ? st.st_size - off : 0;
        if (!path) /* fd stream of a file: from the handle's position */
            t->offset = lseek(fd, 0, SEEK_CUR) >= 0 ? lseek(fd, 0, SEEK_CUR) : 0;
        if (inotify_fd < 0)
            inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        if (inotify_fd >= 0)
            t->wd = inotify_add_watch(inotify_fd, path ? path : proc, IN_MODIFY | IN_CLOSE_WRITE);
    } else {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    pv_frame_begin(&c->out, PV_MSG_OK, chan, req);
    conn_send(c);
    if (t->regular)
        pump_regular(c, t);
    free(path);
}

void tail_close(agent_conn *c, const pv_msg *m)
{
    for (int i = 0; i < TAIL_MAX_STREAMS; i++)
        if (tails[i].used && tails[i].chan == m->hdr.chan)
            tail_free(&tails[i]);
    reply_ok(c, m);
}

void tail_close_all(void)
{
    for (int i = 0; i < TAIL_MAX_STREAMS; i++)
        if (tails[i].used)
            tail_free(&tails[i]);
}

/* One entry per unfinished pipe or device stream, and the inotify
 * descriptor all regular-file streams share. */
size_t tail_pollfds(struct pollfd *pfd, size_t max, size_t *missed)
{
    size_t n = 0;
    bool any_regular = false;
    for (int i = 0; i < TAIL_MAX_STREAMS; i++) {
        if (!tails[i].used)
            continue;
        if (tails[i].regular)
            any_regular = true;
        else if (!tails[i].eof_sent && n < max)
            pfd[n++] = (struct pollfd){tails[i].fd, POLLIN, 0};
        else if (!tails[i].eof_sent)
            ++*missed;
    }
    if (any_regular && inotify_fd >= 0) {
        if (n < max)
            pfd[n++] = (struct pollfd){inotify_fd, POLLIN, 0};
        else
            ++*missed;
    }
    return n;
}

void tail_on_pollfds(agent_conn *c, const struct pollfd *pfd, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (!pfd[k].revents)
            continue;
        if (pfd[k].fd == inotify_fd) {
            char ev[4096];
            while (read(inotify_fd, ev, sizeof(ev)) > 0) {
            }
            for (int i = 0; i < TAIL_MAX_STREAMS; i++)
                if (tails[i].used && tails[i].regular)
                    pump_regular(c, &tails[i]);
            continue;
        }
        for (int i = 0; i < TAIL_MAX_STREAMS; i++)
            if (tails[i].used && !tails[i].regular && tails[i].fd == pfd[k].fd)
                pump_stream(c, &tails[i]);
    }
}
