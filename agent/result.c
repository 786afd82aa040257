/* What a command leaves behind: its output kept in memory up to a cap, and
 * the EXEC_RESULT frame, built the same way for the main loop's jobs
 * (exec.c) and for thread workers (thread_worker.c). */
#include <string.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "agent.h"

void obuf_append_capped(obuf *b, const char *data, size_t n)
{
    size_t keep = b->len + n > EXEC_MAX_OUTPUT ? EXEC_MAX_OUTPUT - b->len : n;
    if (keep < n)
        b->dropped = true;
    if (keep && b->len + keep > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + keep)
            cap *= 2;
        char *nb = realloc(b->data, cap);
        if (!nb) { /* out of memory: the bytes are lost, and the result says so */
            b->dropped = true;
            return;
        }
        b->data = nb;
        b->cap = cap;
    }
    if (keep) {
        memcpy(b->data + b->len, data, keep);
        b->len += keep;
    }
}

void obuf_sink(void *buf, const char *data, size_t n) { obuf_append_capped(buf, data, n); }

void exec_put_output(agent_conn *c, const obuf *out, const obuf *err)
{
    pv_put_bytes(&c->out, PV_T_STDOUT, out->data, out->len);
    pv_put_bytes(&c->out, PV_T_STDERR, err->data, err->len);
    if (out->dropped || err->dropped)
        pv_put_u64(&c->out, PV_T_TRUNCATED, (out->dropped ? 1u : 0u) | (err->dropped ? 2u : 0u));
}

void exec_send_result(agent_conn *c, uint32_t chan, uint32_t req, int wstatus, bool timed_out, const obuf *out,
                      const obuf *err)
{
    if (!c->connected)
        return;
    uint64_t status;
    int64_t code;
    int sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
    if (timed_out) {
        status = PV_EXEC_TIMED_OUT;
        code = -2;
    } else if (sig) {
        status = PV_EXEC_SIGNALLED;
        code = -1;
    } else {
        status = PV_EXEC_EXITED;
        code = WEXITSTATUS(wstatus);
    }
    pv_frame_begin(&c->out, PV_MSG_EXEC_RESULT, chan, req);
    pv_put_u64(&c->out, PV_T_STATUS, status);
    pv_put_i64(&c->out, PV_T_EXIT_CODE, code);
    if (sig)
        pv_put_u64(&c->out, PV_T_SIGNAL, (uint64_t)sig);
    exec_put_output(c, out, err);
    conn_send(c);
}
