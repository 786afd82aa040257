#include "qmp.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void note_event(qmp_conn *q, json_t *msg)
{
    const char *ev = json_string_value(json_object_get(msg, "event"));
    json_t *open = json_object_get(json_object_get(msg, "data"), "open");
    if (ev && strcmp(ev, "VSERPORT_CHANGE") == 0 && json_is_boolean(open))
        q->port_open = json_is_true(open);
    const char *dev = json_string_value(json_object_get(json_object_get(msg, "data"), "device"));
    if (ev && dev && strcmp(ev, "DEVICE_DELETED") == 0) {
        sb_adds(&q->deleted, dev);
        sb_adds(&q->deleted, "\n");
    }
}

bool qmp_take_deleted(qmp_conn *q, const char *id)
{
    size_t idlen = strlen(id);
    for (size_t i = 0; q->deleted.s && i < q->deleted.len;) {
        char *nl = memchr(q->deleted.s + i, '\n', q->deleted.len - i);
        size_t end = nl ? (size_t)(nl - q->deleted.s) : q->deleted.len;
        if (end - i == idlen && memcmp(q->deleted.s + i, id, idlen) == 0) {
            size_t next = nl ? end + 1 : end;
            memmove(q->deleted.s + i, q->deleted.s + next, q->deleted.len - next);
            q->deleted.len -= next - i;
            return true;
        }
        i = nl ? end + 1 : end;
    }
    return false;
}

/* The next complete line of q->in as JSON (NULL if none; *bad on a
 * malformed one). */
static json_t *take_line(qmp_conn *q, bool *bad, json_error_t *je)
{
    char *nl = q->in.s ? memchr(q->in.s, '\n', q->in.len) : NULL;
    *bad = false;
    if (!nl)
        return NULL;
    size_t line = (size_t)(nl - q->in.s) + 1;
    json_t *msg = json_loadb(q->in.s, line, 0, je);
    memmove(q->in.s, q->in.s + line, q->in.len - line);
    q->in.len -= line;
    *bad = !msg;
    return msg;
}

int qmp_drain_events(qmp_conn *q)
{
    if (q->fd < 0)
        return -1;
    int rc = 0;
    for (;;) {
        struct pollfd p = {q->fd, POLLIN, 0};
        if (poll(&p, 1, 0) <= 0)
            break;
        char buf[4096];
        ssize_t n = read(q->fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = -1;
            break;
        }
        sb_add(&q->in, buf, (size_t)n);
    }
    /* replies cannot be pending here (commands wait for theirs): every
     * complete line is an event */
    for (;;) {
        bool bad;
        json_error_t je;
        json_t *msg = take_line(q, &bad, &je);
        if (!msg && !bad)
            break;
        if (msg)
            note_event(q, msg);
        json_decref(msg);
    }
    return rc;
}

/* Reads one JSON line before the deadline. */
static json_t *read_message(qmp_conn *q, int64_t deadline_ms, char *err, size_t errlen)
{
    for (;;) {
        bool bad;
        json_error_t je;
        json_t *msg = take_line(q, &bad, &je);
        if (bad) {
            snprintf(err, errlen, "QMP: malformed reply: %s", je.text);
            return NULL;
        }
        if (msg)
            return msg;
        int64_t left = deadline_ms - now_ms();
        if (left <= 0) {
            snprintf(err, errlen, "QMP: no reply before the deadline");
            return NULL;
        }
        struct pollfd p = {q->fd, POLLIN, 0};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        char buf[4096];
        ssize_t n = read(q->fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errlen, "QMP: connection closed (QEMU exited?)");
            return NULL;
        }
        sb_add(&q->in, buf, (size_t)n);
    }
}

int qmp_open(qmp_conn *q, int fd, int64_t deadline_ms, char *err, size_t errlen)
{
    q->fd = fd;
    q->port_open = -1;
    sb_init(&q->in);
    json_t *greeting = read_message(q, deadline_ms, err, errlen);
    if (!greeting)
        return -1;
    bool ok = json_object_get(greeting, "QMP") != NULL;
    json_decref(greeting);
    if (!ok) {
        snprintf(err, errlen, "QMP: unexpected greeting");
        return -1;
    }
    json_t *r = qmp_command(q, "qmp_capabilities", NULL, deadline_ms, err, errlen);
    if (!r)
        return -1;
    json_decref(r);
    return 0;
}

json_t *qmp_command(qmp_conn *q, const char *cmd, json_t *args, int64_t deadline_ms, char *err, size_t errlen)
{
    json_t *req = json_pack("{s:s}", "execute", cmd);
    if (args)
        json_object_set_new(req, "arguments", args);
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    strbuf line;
    sb_init(&line);
    sb_adds(&line, text);
    sb_adds(&line, "\n");
    free(text);
    size_t off = 0;
    while (off < line.len) {
        /* MSG_NOSIGNAL: a QEMU that died must give an error, not SIGPIPE */
        ssize_t n = send(q->fd, line.s + off, line.len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errlen, "QMP: cannot send %s: %s", cmd, strerror(errno));
            sb_free(&line);
            return NULL;
        }
        off += (size_t)n;
    }
    sb_free(&line);
    for (;;) {
        json_t *msg = read_message(q, deadline_ms, err, errlen);
        if (!msg)
            return NULL;
        json_t *ret = json_object_get(msg, "return");
        json_t *e = json_object_get(msg, "error");
        if (ret) {
            json_incref(ret);
            json_decref(msg);
            return ret;
        }
        if (e) {
            const char *desc = json_string_value(json_object_get(e, "desc"));
            snprintf(err, errlen, "QMP %s failed: %s", cmd, desc ? desc : "unknown error");
            json_decref(msg);
            return NULL;
        }
        note_event(q, msg); /* an asynchronous event */
        json_decref(msg);
    }
}

void qmp_close(qmp_conn *q)
{
    if (q->fd >= 0)
        close(q->fd);
    q->fd = -1;
    sb_free(&q->in);
    sb_free(&q->deleted);
}
