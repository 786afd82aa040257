/* Frame reader and channel router of the agent connection (see router.h):
 * no I/O, no clock, no globals, so the fuzzer drives exactly this code. */
#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A read's worth of room beyond what is buffered while the header is incomplete. */
#define READ_SLICE 65536

frame_status router_frame(const uint8_t *in, size_t len, pv_hdr *hdr, size_t *need)
{
    *need = len + READ_SLICE;
    if (len < PV_HDR_SIZE)
        return FRAME_PARTIAL;
    if (pv_hdr_decode(in, hdr) != 0)
        return FRAME_OVERSIZE;
    *need = PV_HDR_SIZE + (size_t)hdr->len;
    return len >= *need ? FRAME_READY : FRAME_PARTIAL;
}

void vm_reply_free(vm_reply *r)
{
    pv_msg_free(&r->msg);
    free(r->payload);
    r->payload = NULL;
}

static void copy_decode(const pv_hdr *hdr, const uint8_t *payload, vm_reply *out, char *why, size_t whylen, int *rc)
{
    out->payload = xmalloc(hdr->len ? hdr->len : 1);
    memcpy(out->payload, payload, hdr->len);
    *rc = pv_msg_decode(hdr, out->payload, &out->msg, why, whylen);
}

/* A frame pushed on channel ch (req 0), or the reply awaited there. */
static route_event deliver(vm_chan *ch, const pv_hdr *hdr, const uint8_t *payload)
{
    pv_msg m;
    char why[256];
    if (pv_msg_decode(hdr, payload, &m, why, sizeof(why)) != 0)
        return ROUTE_DROPPED;
    uint64_t stream = pv_msg_u64(&m, PV_T_STREAM, 3);
    int idx = stream >= 1 && stream <= VM_STREAMS ? (int)stream - 1 : VM_STREAMS - 1;
    if (hdr->type == PV_MSG_STREAM_DATA) {
        const pv_field *d = pv_msg_get(&m, PV_T_DATA);
        sb_add(&ch->log[idx], d->data, d->len);
    } else if (hdr->type == PV_MSG_STREAM_EOF) {
        ch->eof[idx] = true;
    } else if ((hdr->type == PV_MSG_EXEC_RESULT || hdr->type == PV_MSG_WORKER_EXIT || hdr->req != 0) && !ch->done) {
        int rc;
        ch->done = true;
        ch->eof[0] = ch->eof[1] = true;
        copy_decode(hdr, payload, &ch->result, why, sizeof(why), &rc);
    }
    pv_msg_free(&m);
    return ROUTE_PUSHED;
}

route_event router_route(chan_table *t, const pv_hdr *hdr, const uint8_t *payload, uint32_t want_req,
                         uint32_t want_chan)
{
    if (want_req && hdr->req == want_req && hdr->chan == want_chan)
        return ROUTE_REPLY;
    if (hdr->chan == 0)
        return ROUTE_DROPPED; /* a late reply to a request that timed out */
    vm_chan *ch = chans_find(t, hdr->chan);
    if (!ch)
        return ROUTE_DROPPED; /* closed on our side; late data is dropped */
    if (hdr->req != 0 && hdr->req != ch->await_req)
        return ROUTE_DROPPED; /* a late reply to a request that timed out */
    return deliver(ch, hdr, payload);
}

int router_reply(const pv_hdr *hdr, const uint8_t *payload, uint16_t req_type, vm_reply *out, char *why,
                 size_t whylen)
{
    int rc;
    memset(out, 0, sizeof(*out));
    copy_decode(hdr, payload, out, why, whylen, &rc);
    if (rc != 0) {
        vm_reply_free(out);
        return -1;
    }
    if (!pv_reply_matches(req_type, hdr->type)) {
        vm_reply_free(out);
        return -2;
    }
    return 0;
}

int router_ready(const pv_hdr *hdr, const uint8_t *payload, uint64_t *proto, char **agent_version, char *why,
                 size_t whylen)
{
    pv_msg m;
    if (pv_msg_decode(hdr, payload, &m, why, whylen) != 0)
        return -1;
    *proto = pv_msg_u64(&m, PV_T_PROTO_VERSION, 0);
    *agent_version = pv_msg_strdup(&m, PV_T_AGENT_VERSION);
    pv_msg_free(&m);
    return 0;
}

/* ---- the channel table ---- */

static vm_chan *chan_new(chan_table *t, uint32_t id)
{
    vm_chan *ch = xcalloc(1, sizeof(*ch));
    ch->id = id;
    for (int i = 0; i < VM_STREAMS; i++)
        sb_init(&ch->log[i]);
    ch->next = t->head;
    t->head = ch;
    return ch;
}

vm_chan *chans_open(chan_table *t, uint32_t base)
{
    /* ids stay below the worker bits; a worker's channels carry its id above */
    if (++t->next_id >= (1u << PV_WORKER_SHIFT))
        t->next_id = 1;
    return chan_new(t, t->next_id | base);
}

vm_chan *chans_open_exact(chan_table *t, uint32_t id)
{
    chans_free(t, id);
    for (vm_chan *c = t->head; c; c = c->next)
        if (PV_CHAN_WORKER(c->id) == PV_CHAN_WORKER(id) && !c->done)
            c->lost = true;
    return chan_new(t, id);
}

vm_chan *chans_find(const chan_table *t, uint32_t id)
{
    for (vm_chan *ch = t->head; ch; ch = ch->next)
        if (ch->id == id)
            return ch;
    return NULL;
}

void chans_free(chan_table *t, uint32_t id)
{
    for (vm_chan **p = &t->head; *p; p = &(*p)->next) {
        if ((*p)->id != id)
            continue;
        vm_chan *ch = *p;
        *p = ch->next;
        for (int i = 0; i < VM_STREAMS; i++)
            sb_free(&ch->log[i]);
        vm_reply_free(&ch->result);
        free(ch);
        return;
    }
}

void chans_free_all(chan_table *t)
{
    while (t->head)
        chans_free(t, t->head->id);
}

size_t chans_count(const chan_table *t)
{
    size_t n = 0;
    for (const vm_chan *ch = t->head; ch; ch = ch->next)
        n++;
    return n;
}

void chans_end_all(chan_table *t)
{
    for (vm_chan *ch = t->head; ch; ch = ch->next) {
        for (int i = 0; i < VM_STREAMS; i++)
            ch->eof[i] = true;
        if (!ch->done)
            ch->lost = true;
    }
}

void chans_consume(vm_chan *ch, int stream, size_t n)
{
    strbuf *b = &ch->log[stream];
    if (n > b->len)
        n = b->len;
    if (n == 0)
        return;
    memmove(b->s, b->s + n, b->len - n);
    b->len -= n;
}
