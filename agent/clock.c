/* Guest wall clock (CLOCK_REALTIME). */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "agent.h"

static int64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void reply_time(agent_conn *c, const pv_msg *m)
{
    pv_frame_begin(&c->out, PV_MSG_TIME, m->hdr.chan, m->hdr.req);
    pv_put_i64(&c->out, PV_T_TIME_NS, realtime_ns());
    conn_send(c);
}

static int set_ns(int64_t ns)
{
    if (ns < 0) {
        errno = EINVAL;
        return -1;
    }
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    return clock_settime(CLOCK_REALTIME, &ts);
}

void clock_op(agent_conn *c, const pv_msg *m)
{
    int rc = 0;
    if (m->hdr.type == PV_MSG_CLOCK_SET)
        rc = set_ns(pv_msg_i64(m, PV_T_TIME_NS, 0));
    else if (m->hdr.type == PV_MSG_CLOCK_ADVANCE)
        rc = set_ns(realtime_ns() + pv_msg_i64(m, PV_T_DELTA_NS, 0));
    if (rc != 0)
        conn_send_error(c, m->hdr.chan, m->hdr.req, errno, "clock: %s", strerror(errno));
    else
        reply_time(c, m);
}
