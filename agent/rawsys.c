/* Raw system calls. Buffers from the request are copied into agent memory;
 * their addresses are spliced into argument slots, or written into other
 * buffers (for structs that hold pointers); after the call every buffer is
 * returned so read-style calls can be inspected. The call runs in the
 * agent's own process, so setuid/chroot/unshare affect later operations. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"

#define MAX_ARGS 6

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

void raw_syscall(agent_conn *c, const pv_msg *m)
{
    uint32_t chan = m->hdr.chan, req = m->hdr.req;
    long args[MAX_ARGS] = {0};
    size_t nargs = 0, pos = 0;
    const pv_field *f;
    while ((f = pv_msg_next(m, PV_T_ARG, &pos))) {
        if (nargs == MAX_ARGS) {
            conn_send_error(c, chan, req, EINVAL, "syscall: at most %d arguments", MAX_ARGS);
            return;
        }
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v |= (uint64_t)f->data[i] << (8 * i);
        args[nargs++] = (long)v;
    }
    size_t nbufs = pv_msg_count(m, PV_T_BUF);
    if (nbufs > PV_MAX_SYSCALL_BUFS || pv_msg_count(m, PV_T_BUF_SLOT) != nbufs) {
        conn_send_error(c, chan, req, EINVAL, "syscall: %zu buffers (max %d), each needs one slot", nbufs,
                        PV_MAX_SYSCALL_BUFS);
        return;
    }
    uint8_t *bufs[PV_MAX_SYSCALL_BUFS] = {0};
    size_t lens[PV_MAX_SYSCALL_BUFS] = {0};
    int err = 0;
    pos = 0;
    for (size_t i = 0; i < nbufs; i++) {
        f = pv_msg_next(m, PV_T_BUF, &pos);
        lens[i] = f->len;
        /* 8 spare bytes: a zero-length buffer still has a valid address */
        bufs[i] = calloc(1, f->len + 8);
        if (!bufs[i]) {
            err = ENOMEM;
            break;
        }
        memcpy(bufs[i], f->data, f->len);
    }
    pos = 0;
    for (size_t i = 0; !err && i < nbufs; i++) {
        f = pv_msg_next(m, PV_T_BUF_SLOT, &pos);
        int64_t slot = 0;
        memcpy(&slot, f->data, 8);
        if (slot >= MAX_ARGS) {
            err = EINVAL;
            break;
        }
        if (slot >= 0) {
            args[slot] = (long)(uintptr_t)bufs[i];
            if ((size_t)slot >= nargs)
                nargs = (size_t)slot + 1;
        }
    }
    pos = 0;
    while (!err && (f = pv_msg_next(m, PV_T_PTR, &pos))) {
        if (f->len != 12) {
            err = EINVAL;
            break;
        }
        uint32_t b = le32(f->data), off = le32(f->data + 4), target = le32(f->data + 8);
        if (b >= nbufs || target >= nbufs || (uint64_t)off + 8 > lens[b]) {
            err = EINVAL;
            break;
        }
        uint64_t addr = (uint64_t)(uintptr_t)bufs[target];
        memcpy(bufs[b] + off, &addr, 8);
    }
    if (err) {
        conn_send_error(c, chan, req, err, "syscall: invalid buffer layout (slot or pointer out of range)");
    } else {
        long nr = (long)pv_msg_i64(m, PV_T_NR, -1);
        errno = 0;
        long ret = syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]);
        int e = ret == -1 ? errno : 0;
        pv_frame_begin(&c->out, PV_MSG_SYSCALL_RESULT, chan, req);
        pv_put_i64(&c->out, PV_T_RET, ret);
        pv_put_i64(&c->out, PV_T_ERRNO, e);
        for (size_t i = 0; i < nbufs; i++)
            pv_put_bytes(&c->out, PV_T_BUF, bufs[i], lens[i]);
        conn_send(c);
    }
    for (size_t i = 0; i < nbufs; i++)
        free(bufs[i]);
}
