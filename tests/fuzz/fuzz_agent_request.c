/*
 * libFuzzer target: the guest agent's request path.
 *
 * The input is a byte stream as the host would send it. It goes through the
 * agent's real transport code (agent/conn.c: conn_fill, conn_pop,
 * conn_consume, conn_send, conn_send_error) over a socketpair, delivered in
 * chunks whose size comes from the first input byte, and each complete frame
 * is handled the way agent.c's handle_frame does: pv_msg_decode, an EPROTO
 * error reply on failure, and otherwise the accessors the operations use
 * (pv_msg_get/has/count/next/u64/i64/strdup) on every tag. Bytes fields that
 * hold a whole frame (batched operations) are decoded recursively.
 *
 * Invariants checked (a violation traps):
 *   - a decoded message obeys its schema (known tags, widths, required and
 *     non-repeated fields) and its fields tile the payload exactly;
 *   - re-encoding the decoded fields reproduces the payload byte for byte;
 *   - the accessors agree with each other and never read outside the payload;
 *   - every frame the agent writes back decodes cleanly on the host side.
 * Payloads are copied into exactly-sized heap blocks so that ASan sees any
 * over-read.
 *
 *   make fuzz            (see tests/fuzz/fuzz.mk)
 *   build/fuzz/fuzz_agent_request -max_len=70000 tests/fuzz/corpus/fuzz_agent_request
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../agent/agent.h"

/* conn.c logs an oversized header; in the real agent that goes to /dev/kmsg. */
void agent_log(const char *fmt, ...)
{
    (void)fmt;
}

#define CHECK(c)                                                                                                 \
    do {                                                                                                         \
        if (!(c))                                                                                                \
            __builtin_trap();                                                                                    \
    } while (0)

static int host_fd = -1;
static agent_conn conn;
static volatile uint64_t sink;

static void setup(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    int sz = 4 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    conn_init(&conn, sv[0], false);
    host_fd = sv[1];
}

/* ---- host side: every reply must be a well-formed frame ---- */

static uint8_t *rep;
static size_t rep_len, rep_cap;

static void check_reply(const pv_hdr *h, const uint8_t *payload)
{
    uint8_t *copy = malloc(h->len ? h->len : 1);
    memcpy(copy, payload, h->len);
    pv_msg m;
    char why[256];
    /* the agent only produces schema-valid frames */
    CHECK(pv_msg_decode(h, copy, &m, why, sizeof(why)) == 0);
    if (h->type == PV_MSG_ERROR) {
        char *msg = pv_msg_strdup(&m, PV_T_MESSAGE);
        CHECK(msg != NULL); /* error messages are text */
        free(msg);
    }
    pv_msg_free(&m);
    free(copy);
}

static void drain_replies(void)
{
    for (;;) {
        if (rep_cap - rep_len < 65536) {
            rep_cap = rep_cap ? rep_cap * 2 : 262144;
            rep = realloc(rep, rep_cap);
            CHECK(rep != NULL);
        }
        ssize_t n = read(host_fd, rep + rep_len, rep_cap - rep_len);
        if (n <= 0)
            break;
        rep_len += (size_t)n;
    }
    size_t off = 0;
    while (rep_len - off >= PV_HDR_SIZE) {
        pv_hdr h;
        CHECK(pv_hdr_decode(rep + off, &h) == 0);
        if (rep_len - off < PV_HDR_SIZE + (size_t)h.len)
            break;
        check_reply(&h, rep + off + PV_HDR_SIZE);
        off += PV_HDR_SIZE + h.len;
    }
    memmove(rep, rep + off, rep_len - off);
    rep_len -= off;
}

/* ---- agent side ---- */

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void handle(const pv_hdr *hdr, const uint8_t *payload, int depth);

/* What the operations do with a decoded message, on every tag in the schema
 * and a few outside it. */
static void use_accessors(const pv_msg *m, const pv_msg_spec *s, const uint8_t *payload, uint32_t len, int depth)
{
    uint16_t tags[80];
    size_t nt = 0;
    for (size_t i = 0; i < s->nfields && nt < 64; i++)
        tags[nt++] = s->fields[i].tag;
    static const uint16_t extra[] = {0, 1, 5, 19, 63, 255, 0xFFFF};
    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
        tags[nt++] = extra[i];

    for (size_t t = 0; t < nt; t++) {
        uint16_t tag = tags[t];
        const pv_field *first = pv_msg_get(m, tag);
        size_t count = pv_msg_count(m, tag);
        CHECK(pv_msg_has(m, tag) == (first != NULL));
        CHECK((count > 0) == (first != NULL));
        size_t pos = 0, seen = 0;
        const pv_field *f;
        while ((f = pv_msg_next(m, tag, &pos))) {
            CHECK(f->tag == tag);
            CHECK(seen > 0 || f == first);
            CHECK(f->data >= payload && f->len <= len && (size_t)(f->data - payload) + f->len <= len);
            /* touch every byte: ASan reports reads beyond the payload */
            uint64_t sum = 0;
            for (uint32_t i = 0; i < f->len; i++)
                sum += f->data[i];
            sink += sum;
            /* a nested frame, as in a batch: handled like a top-level one */
            if (depth < 2 && f->len >= PV_HDR_SIZE) {
                pv_hdr h;
                if (pv_hdr_decode(f->data, &h) == 0 && h.len == f->len - PV_HDR_SIZE)
                    handle(&h, f->data + PV_HDR_SIZE, depth + 1);
            }
            seen++;
        }
        CHECK(seen == count);
        uint64_t u = pv_msg_u64(m, tag, 0xDEADBEEF);
        int64_t i = pv_msg_i64(m, tag, -5);
        if (first && first->len == 8) {
            CHECK(u == le64(first->data));
            CHECK(i == (int64_t)le64(first->data));
        } else {
            CHECK(u == 0xDEADBEEF && i == -5);
        }
        char *str = pv_msg_strdup(m, tag);
        if (!first || memchr(first->data, 0, first->len)) {
            CHECK(str == NULL);
        } else {
            CHECK(str != NULL && strlen(str) == first->len && memcmp(str, first->data, first->len) == 0);
        }
        free(str);
    }
}

/* The same checks the agent makes before acting; mirrors exec.c/files.c. */
static void like_the_operations(const pv_hdr *hdr, const pv_msg *m)
{
    switch (hdr->type) {
    case PV_MSG_PING: {
        const pv_field *echo = pv_msg_get(m, PV_T_ECHO);
        pv_frame_begin(&conn.out, PV_MSG_PONG, hdr->chan, hdr->req);
        if (echo)
            pv_put_bytes(&conn.out, PV_T_ECHO, echo->data, echo->len);
        conn_send(&conn);
        break;
    }
    case PV_MSG_EXEC: {
        size_t n = pv_msg_count(m, PV_T_ARGV);
        bool shell = pv_msg_has(m, PV_T_SHELL);
        if (shell == (n > 0)) {
            conn_send_error(&conn, hdr->chan, hdr->req, 22, "exec: exactly one of shell or argv must be given");
            break;
        }
        char **argv = calloc((shell ? 3 : n) + 1, sizeof(char *));
        CHECK(argv != NULL);
        if (shell) {
            argv[0] = pv_msg_strdup(m, PV_T_SHELL);
        } else {
            size_t pos = 0, i = 0;
            const pv_field *f;
            while ((f = pv_msg_next(m, PV_T_ARGV, &pos))) {
                CHECK(i < n);
                if (memchr(f->data, 0, f->len))
                    break;
                argv[i++] = strndup((const char *)f->data, f->len);
            }
        }
        for (size_t i = 0; argv[i]; i++)
            free(argv[i]);
        free(argv);
        size_t pos = 0;
        const pv_field *f;
        while ((f = pv_msg_next(m, PV_T_ENV, &pos))) {
            char *kv = strndup((const char *)f->data, f->len);
            sink += kv && strchr(kv, '=') ? 1 : 0;
            free(kv);
        }
        sink += pv_msg_u64(m, PV_T_ENV_CLEAR, 0) + pv_msg_u64(m, PV_T_TIMEOUT_MS, 0);
        char *cwd = pv_msg_strdup(m, PV_T_CWD);
        free(cwd);
        const pv_field *in = pv_msg_get(m, PV_T_STDIN);
        sink += in ? in->len : 0;
        conn_send_error(&conn, hdr->chan, hdr->req, 2, "exec: not run by the fuzzer");
        break;
    }
    case PV_MSG_READ_FILE:
    case PV_MSG_WRITE_FILE: {
        char *path = pv_msg_strdup(m, PV_T_PATH);
        if (!path) {
            conn_send_error(&conn, hdr->chan, hdr->req, 22, "file: path contains a NUL byte");
            break;
        }
        if (hdr->type == PV_MSG_WRITE_FILE) {
            const pv_field *data = pv_msg_get(m, PV_T_DATA);
            CHECK(data != NULL); /* required by the schema; files_write relies on it */
            sink += data->len + (pv_msg_u64(m, PV_T_MODE, 0644) & 07777);
        }
        conn_send_error(&conn, hdr->chan, hdr->req, 2, "%s: not touched by the fuzzer", path);
        free(path);
        break;
    }
    case PV_MSG_SHUTDOWN:
        sink += pv_msg_u64(m, PV_T_POWEROFF, 1);
        pv_frame_begin(&conn.out, PV_MSG_OK, hdr->chan, hdr->req);
        conn_send(&conn);
        break;
    default:
        conn_send_error(&conn, hdr->chan, hdr->req, 95, "message %s is not a request", pv_msg_name(hdr->type));
    }
}

static void handle(const pv_hdr *hdr, const uint8_t *in_place, int depth)
{
    uint8_t *payload = malloc(hdr->len ? hdr->len : 1);
    CHECK(payload != NULL);
    memcpy(payload, in_place, hdr->len);
    char err[256];
    pv_msg m;
    if (pv_msg_decode(hdr, payload, &m, err, sizeof(err)) != 0) {
        CHECK(m.fields == NULL && m.nfields == 0);
        CHECK(memchr(err, 0, sizeof(err)) != NULL && err[0] != 0);
        conn_send_error(&conn, hdr->chan, hdr->req, 71, "bad request: %s", err);
        free(payload);
        return;
    }
    const pv_msg_spec *s = pv_msg_lookup(hdr->type);
    CHECK(s != NULL && s->type == hdr->type);

    /* schema invariants, and the fields tile the payload in order */
    size_t off = 0;
    for (size_t i = 0; i < m.nfields; i++) {
        const pv_field *f = &m.fields[i];
        CHECK(f->data == payload + off + PV_FIELD_HDR_SIZE);
        off += PV_FIELD_HDR_SIZE + f->len;
        const pv_field_spec *fs = NULL;
        for (size_t k = 0; k < s->nfields; k++)
            if (s->fields[k].tag == f->tag)
                fs = &s->fields[k];
        CHECK(fs != NULL);
        if (fs->kind != PV_K_BYTES)
            CHECK(f->len == 8);
        if (!(fs->flags & PV_F_REPEATED))
            CHECK(pv_msg_count(&m, f->tag) == 1);
    }
    CHECK(off == hdr->len);
    for (size_t k = 0; k < s->nfields; k++)
        if (s->fields[k].flags & PV_F_REQUIRED)
            CHECK(pv_msg_has(&m, s->fields[k].tag));

    /* re-encoding gives back the same bytes */
    pv_buf b;
    pv_buf_init(&b);
    pv_frame_begin(&b, hdr->type, hdr->chan, hdr->req);
    for (size_t i = 0; i < m.nfields; i++)
        pv_put_bytes(&b, m.fields[i].tag, m.fields[i].data, m.fields[i].len);
    CHECK(pv_frame_end(&b) == 0);
    CHECK(b.len == PV_HDR_SIZE + hdr->len);
    CHECK(hdr->len == 0 || memcmp(b.buf + PV_HDR_SIZE, payload, hdr->len) == 0);
    pv_hdr back;
    CHECK(pv_hdr_decode(b.buf, &back) == 0);
    CHECK(back.len == hdr->len && back.chan == hdr->chan && back.req == hdr->req && back.type == hdr->type);
    pv_buf_free(&b);

    use_accessors(&m, s, payload, hdr->len, depth);
    if (depth == 0)
        like_the_operations(hdr, &m);
    pv_msg_free(&m);
    CHECK(m.fields == NULL && m.nfields == 0);
    free(payload);
}

/* One pass of agent.c serve(): read what arrived, handle whole frames. */
static void serve_once(void)
{
    for (;;) {
        size_t before = conn.in_len;
        int got = conn_fill(&conn);
        CHECK(got != 0); /* the host end is open: never "disconnected" */
        if (got < 0 || conn.in_len == before)
            break;
        pv_hdr hdr;
        const uint8_t *payload;
        int popped;
        while ((popped = conn_pop(&conn, &hdr, &payload)) == 1) {
            CHECK(conn.in_len >= PV_HDR_SIZE + (size_t)hdr.len);
            CHECK(payload == conn.in + PV_HDR_SIZE);
            handle(&hdr, payload, 0);
            conn_consume(&conn, &hdr);
            drain_replies();
        }
        if (popped < 0) {
            CHECK(conn.in_len == 0); /* input discarded */
            conn_send_error(&conn, 0, 0, 90, "frame larger than %u bytes; input discarded", PV_MAX_PAYLOAD);
            drain_replies();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (host_fd < 0)
        setup();
    conn.in_len = 0;
    rep_len = 0;
    pv_buf_reset(&conn.out);
    if (size == 0)
        return 0;
    /* first byte: delivery chunk size (0 = all at once) */
    size_t chunk = data[0] ? (size_t)data[0] * 13 : SIZE_MAX;
    data++;
    size--;
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        size_t sent = 0;
        while (sent < n) {
            ssize_t w = write(host_fd, data + off + sent, n - sent);
            if (w <= 0) {
                serve_once(); /* socket full: let the agent read */
                continue;
            }
            sent += (size_t)w;
        }
        off += n;
        serve_once();
    }
    /* leftover bytes form an incomplete frame, which the agent keeps */
    if (conn.in_len >= PV_HDR_SIZE) {
        pv_hdr h;
        CHECK(pv_hdr_decode(conn.in, &h) == 0 && conn.in_len < PV_HDR_SIZE + (size_t)h.len);
    }
    drain_replies();
    CHECK(rep_len == 0); /* every reply was written whole */
    return 0;
}
