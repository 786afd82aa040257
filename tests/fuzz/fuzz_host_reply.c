/*
 * libFuzzer target: the host's decoding of what the agent sends.
 *
 * Models host/vmm/vm.c: read_frame's buffering and limit check, wait_ready
 * (skip frames until READY, decode it, read proto_version/agent_version),
 * vm_call (drop frames for other requests, route pushed frames of other
 * channels, copy the matching payload, pv_msg_decode, ERROR -> errno +
 * message), and the consumers in host/lua that read the reply fields
 * (exec result: status/exit_code/signal/stdout/stderr; read_file: data).
 * On top of that, every decoded reply is walked with every accessor
 * (pv_msg_get/has/count/next/u64/i64/strdup) on every tag of its schema.
 *
 * Input layout: byte 0 selects the request the host is waiting for (and
 * whether a READY handshake comes first), bytes 1..4 its request id; the rest
 * is the agent's byte stream.
 *
 * PROVIUM_FUZZ_STRICT=1 makes the model dereference fields exactly as the
 * host code does without checking the reply type (lua_vm.c l_vm_read_file
 * uses pv_msg_get(PV_T_DATA)->data on any non-ERROR reply); see the report.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/proto.h"

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

/* Decodes one frame the way vm.c does: copy the payload out of the receive
 * buffer into its own allocation, then pv_msg_decode. */
static bool decode_copy(const pv_hdr *h, const uint8_t *in, uint8_t **payload, pv_msg *m)
{
    *payload = malloc(h->len ? h->len : 1);
    CHECK(*payload != NULL);
    memcpy(*payload, in, h->len);
    char why[256];
    if (pv_msg_decode(h, *payload, m, why, sizeof(why)) != 0) {
        CHECK(m->fields == NULL && why[0]);
        free(*payload);
        *payload = NULL;
        return false;
    }
    return true;
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (strict < 0) {
        const char *e = getenv("PROVIUM_FUZZ_STRICT");
        strict = e && *e && *e != '0';
    }
    if (size < 5)
        return 0;
    uint16_t request = requests[(data[0] & 0x7F) % (sizeof(requests) / sizeof(requests[0]))];
    bool handshake = data[0] & 0x80;
    uint32_t req = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 | (uint32_t)data[4] << 24;
    const uint8_t *in = data + 5;
    size_t len = size - 5, off = 0;

    while (len - off >= PV_HDR_SIZE) {
        pv_hdr h;
        if (pv_hdr_decode(in + off, &h) != 0) {
            CHECK(h.len > PV_MAX_PAYLOAD); /* read_frame: connection declared dead */
            return 0;
        }
        if (len - off < PV_HDR_SIZE + (size_t)h.len)
            return 0; /* incomplete: read_frame would wait for more */
        const uint8_t *body = in + off + PV_HDR_SIZE;
        off += PV_HDR_SIZE + h.len;
        pv_msg m;
        uint8_t *payload;
        if (handshake) { /* vm.c wait_ready */
            if (h.type != PV_MSG_READY)
                continue;
            if (!decode_copy(&h, body, &payload, &m))
                return 0; /* malformed handshake: boot fails */
            walk(&m, payload, h.len);
            uint64_t proto = pv_msg_u64(&m, PV_T_PROTO_VERSION, 0);
            char *ver = pv_msg_strdup(&m, PV_T_AGENT_VERSION);
            sink += proto + (ver ? strlen(ver) : 0);
            free(ver);
            pv_msg_free(&m);
            free(payload);
            if (proto != PV_PROTO_VERSION)
                return 0;
            handshake = false;
            continue;
        }
        if (h.req != req || h.chan != 0) {
            /* vm.c route_push: frames pushed on a channel are decoded too */
            if (h.chan != 0 && h.req == 0 && decode_copy(&h, body, &payload, &m)) {
                walk(&m, payload, h.len);
                pv_msg_free(&m);
                free(payload);
            }
            continue; /* dropped: late reply or push */
        }
        if (!decode_copy(&h, body, &payload, &m))
            return 0; /* "malformed reply" */
        walk(&m, payload, h.len);
        consume(request, &m);
        pv_msg_free(&m);
        free(payload);
        return 0; /* vm_call returns with the first matching reply */
    }
    return 0;
}
