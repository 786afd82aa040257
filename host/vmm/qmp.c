#include "qmp.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Reads one JSON line before the deadline. */
static json_t *read_message(qmp_conn *q, int64_t deadline_ms, char *err, size_t errlen)
{
    for (;;) {
        char *nl = q->in.s ? memchr(q->in.s, '\n', q->in.len) : NULL;
        if (nl) {
            size_t line = (size_t)(nl - q->in.s) + 1;
            json_error_t je;
            json_t *msg = json_loadb(q->in.s, line, 0, &je);
            memmove(q->in.s, q->in.s + line, q->in.len - line);
            q->in.len -= line;
            if (!msg) {
                snprintf(err, errlen, "QMP: malformed reply: %s", je.text);
                return NULL;
            }
            return msg;
        }
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
        json_decref(msg); /* an asynchronous event */
    }
}

void qmp_close(qmp_conn *q)
{
    if (q->fd >= 0)
        close(q->fd);
    q->fd = -1;
    sb_free(&q->in);
}
