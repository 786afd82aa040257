/*
 * libFuzzer target: the host's decoding of what the agent sends.
 *
 * Drives the real frame reader and channel router of host/vmm/router.c, as
 * host/vmm/agent_conn.c does: router_frame splits the byte stream (and
 * refuses an oversized header), vm_wait_ready's path skips frames until
 * READY and reads it with router_ready, vm_call's path hands every frame to
 * router_route (pushes and late replies land in channels or are dropped)
 * and takes the matching reply with router_reply. The consumers in host/lua
 * that read reply fields (exec result, read_file data) are modelled on top,
 * and every decoded reply and channel result is walked with every accessor
 * (pv_msg_get/has/count/next/u64/i64/strdup) on every tag of its schema.
 *
 * Input layout: byte 0 selects the request the host is waiting for (and
 * whether a READY handshake comes first), bytes 1..4 its request id; the rest
 * is the agent's byte stream. The channel table starts with channels 1 and 2
 * (a process and a tail), worker 1's own channel (1 << 24) and channel 3
 * awaiting request id + 1, so pushed frames with small ids reach them.
 *
 * PROVIUM_FUZZ_STRICT=1 makes the consumers dereference fields exactly as
 * the host code does without checking the reply type (lua_vm.c
 * l_vm_read_file uses pv_msg_get(PV_T_DATA)->data on any non-ERROR reply):
 * safe because router_reply refuses a reply type that does not answer the
 * request (tests/fuzz/repro/host_reply_read_file_answered_with_ok).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/proto.h"
#include "../../host/vmm/router.h"

#define CHECK(c)                                                                                                 \
    do {                                                                                                         \
        if (!(c))                                                                                                \
            __builtin_trap();                                                                                    \
    } while (0)

static volatile uint64_t sink;
static int strict = -1;

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Every accessor on every tag the schema knows, plus a few it does not. */
static void walk(const pv_msg *m, const uint8_t *payload, uint32_t len)
{
    const pv_msg_spec *s = pv_msg_lookup(m->hdr.type);
    CHECK(s != NULL);
    size_t total = 0;
    for (size_t k = 0; k <= s->nfields; k++) {
        uint16_t tag = k < s->nfields ? s->fields[k].tag : 0xFFFF;
        size_t count = pv_msg_count(m, tag);
        const pv_field *first = pv_msg_get(m, tag);
        CHECK(pv_msg_has(m, tag) == (count > 0) && (first != NULL) == (count > 0));
        if (k < s->nfields) {
            const pv_field_spec *fs = &s->fields[k];
            if (fs->flags & PV_F_REQUIRED)
                CHECK(count >= 1);
            if (!(fs->flags & PV_F_REPEATED))
                CHECK(count <= 1);
        } else {
            CHECK(count == 0);
        }
        size_t pos = 0, seen = 0;
        const pv_field *f;
        while ((f = pv_msg_next(m, tag, &pos))) {
            CHECK(f->tag == tag && (seen || f == first));
            CHECK(f->data >= payload && (size_t)(f->data - payload) + f->len <= len);
            if (k < s->nfields && s->fields[k].kind != PV_K_BYTES)
                CHECK(f->len == 8);
            uint64_t sum = 0;
            for (uint32_t i = 0; i < f->len; i++)
                sum += f->data[i];
            sink += sum;
            seen++;
        }
        CHECK(seen == count);
        total += count;
        if (first && first->len == 8)
            CHECK(pv_msg_u64(m, tag, 1) == le64(first->data) && pv_msg_i64(m, tag, 1) == (int64_t)le64(first->data));
        else
            CHECK(pv_msg_u64(m, tag, 1) == 1 && pv_msg_i64(m, tag, -1) == -1);
        char *str = pv_msg_strdup(m, tag);
        CHECK((str != NULL) == (first && !memchr(first->data, 0, first->len)));
        if (str)
            CHECK(strlen(str) == first->len);
        free(str);
    }
    CHECK(total == m->nfields);
}

/* The host's consumers of a reply to `request`. */
static void consume(uint16_t request, const pv_msg *m)
{
    if (m->hdr.type == PV_MSG_ERROR) {
        char *msg = pv_msg_strdup(m, PV_T_MESSAGE);
        sink += (uint64_t)pv_msg_i64(m, PV_T_ERRNO, 0) + (msg ? strlen(msg) : 0);
        free(msg);
        return;
    }
    switch (request) {
    case PV_MSG_EXEC: { /* lua_vm.c: the result table */
        uint64_t status = pv_msg_u64(m, PV_T_STATUS, 0);
        sink += status + (uint64_t)pv_msg_i64(m, PV_T_EXIT_CODE, 0);
        const pv_field *out = pv_msg_get(m, PV_T_STDOUT), *err = pv_msg_get(m, PV_T_STDERR);
        sink += (out ? out->len : 0) + (err ? err->len : 0);
        if (pv_msg_has(m, PV_T_SIGNAL))
            sink += pv_msg_u64(m, PV_T_SIGNAL, 0);
        break;
    }
    case PV_MSG_READ_FILE: { /* lua_vm.c l_vm_read_file */
        const pv_field *f = pv_msg_get(m, PV_T_DATA);
        if (strict)
            sink += f->len + (f->len ? f->data[0] : 0); /* as the host does: no type check */
        else if (f)
            sink += f->len;
        break;
    }
    case PV_MSG_PING: {
        const pv_field *e = pv_msg_get(m, PV_T_ECHO);
        sink += e ? e->len : 0;
        break;
    }
    default:
        break;
    }
}

static const uint16_t requests[] = {PV_MSG_PING, PV_MSG_EXEC, PV_MSG_READ_FILE, PV_MSG_WRITE_FILE, PV_MSG_SHUTDOWN};

/* A channel's state after any frames: logs, EOF flags and the result are
 * consistent, and the result decodes like any reply. */
static void check_chan(vm_chan *ch, size_t seed)
{
    if (ch->done) {
        CHECK(ch->eof[0] && ch->eof[1]);
        if (ch->result.payload && ch->result.msg.fields)
            walk(&ch->result.msg, ch->result.payload, ch->result.msg.hdr.len);
    }
    for (int i = 0; i < VM_STREAMS; i++) {
        size_t len = ch->log[i].len, n = seed % (len + 1);
        chans_consume(ch, i, n);
        CHECK(ch->log[i].len == len - n);
        chans_consume(ch, i, len + 1); /* more than there is: all of it */
        CHECK(ch->log[i].len == 0);
    }
}

/* The handshake frame: -1 ends the input (boot fails), 0 handshake done. */
static int handshake(const pv_hdr *h, const uint8_t *body)
{
    uint64_t proto;
    char *ver, why[256];
    if (router_ready(h, body, &proto, &ver, why, sizeof(why)) != 0) {
        CHECK(why[0]);
        return -1; /* malformed handshake: boot fails */
    }
    sink += proto + (ver ? strlen(ver) : 0);
    free(ver);
    return proto == PV_PROTO_VERSION ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (strict < 0) {
        const char *e = getenv("PROVIUM_FUZZ_STRICT");
        strict = e && *e && *e != '0';
    }
    if (size < 5)
        return 0;
    uint16_t request = requests[(data[0] & 0x7F) % (sizeof(requests) / sizeof(requests[0]))];
    bool waiting_ready = data[0] & 0x80;
    uint32_t req = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 | (uint32_t)data[4] << 24;
    const uint8_t *in = data + 5;
    size_t len = size - 5, off = 0;

    chan_table t = {0};
    chans_open(&t, 0)->proc = true;
    chans_open(&t, 0);
    chans_open_exact(&t, 1u << PV_WORKER_SHIFT);
    chans_open(&t, 0)->await_req = req + 1;
    for (;;) {
        pv_hdr h;
        size_t need;
        frame_status fs = router_frame(in + off, len - off, &h, &need);
        if (fs == FRAME_OVERSIZE)
            CHECK(h.len > PV_MAX_PAYLOAD); /* read_frame: connection declared dead */
        if (fs != FRAME_READY)
            break; /* incomplete: read_frame would wait for more */
        CHECK(need == PV_HDR_SIZE + (size_t)h.len && need <= len - off);
        const uint8_t *body = in + off + PV_HDR_SIZE;
        off += need;
        if (waiting_ready) { /* vm_wait_ready */
            if (h.type != PV_MSG_READY)
                continue;
            if (handshake(&h, body) != 0)
                break;
            waiting_ready = false;
            continue;
        }
        route_event ev = router_route(&t, &h, body, req, 0);
        if (ev != ROUTE_REPLY)
            continue; /* pushed to a channel, or dropped */
        CHECK(h.req == req && h.chan == 0);
        vm_reply r;
        char why[256];
        int rc = router_reply(&h, body, request, &r, why, sizeof(why));
        if (rc != 0) {
            CHECK(r.payload == NULL && r.msg.fields == NULL);
            break; /* "malformed reply" or "answered X with Y" */
        }
        CHECK(pv_reply_matches(request, h.type));
        walk(&r.msg, r.payload, h.len);
        consume(request, &r.msg);
        vm_reply_free(&r);
        break; /* vm_call returns with the first matching reply */
    }
    size_t n = 0;
    for (vm_chan *ch = t.head; ch; ch = ch->next)
        check_chan(ch, size + n++);
    CHECK(chans_count(&t) == n && n == 4);
    chans_end_all(&t);
    for (vm_chan *ch = t.head; ch; ch = ch->next)
        CHECK(ch->eof[2] && (ch->done || ch->lost));
    chans_free_all(&t);
    CHECK(t.head == NULL);
    return 0;
}
