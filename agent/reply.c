/* Small reply helpers shared by the operation handlers. */
#include <errno.h>
#include <string.h>

#include "agent.h"

void reply_ok(agent_conn *c, const pv_msg *m)
{
    pv_frame_begin(&c->out, PV_MSG_OK, m->hdr.chan, m->hdr.req);
    conn_send(c);
}

void reply_count(agent_conn *c, const pv_msg *m, int64_t n)
{
    pv_frame_begin(&c->out, PV_MSG_COUNT, m->hdr.chan, m->hdr.req);
    pv_put_i64(&c->out, PV_T_COUNT, n);
    conn_send(c);
}

/* Fetches a path field as a C string, or replies (EINVAL for a missing path
 * or one with a NUL byte, ENOMEM) and returns NULL. */
char *request_path(agent_conn *c, const pv_msg *m, uint16_t tag, const char *op)
{
    const pv_field *f = pv_msg_get(m, tag);
    char *p = pv_msg_strdup(m, tag);
    if (!p && f && !memchr(f->data, 0, f->len))
        conn_send_error(c, m->hdr.chan, m->hdr.req, ENOMEM, "%s: out of memory", op);
    else if (!p)
        conn_send_error(c, m->hdr.chan, m->hdr.req, EINVAL, "%s: path missing or contains a NUL byte", op);
    return p;
}
