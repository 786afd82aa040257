/*
 * test_proto.c - unit tests for the wire codec in common/proto.c.
 *
 * Every message type known to the schema is found by asking pv_msg_lookup()
 * about all 65536 type numbers, so a type added to the schema is covered
 * without touching this file. For each one: a full round trip (all fields,
 * repeated ones several times), a minimal round trip (required fields only),
 * and the decoder's rejections (missing required field, duplicated
 * non-repeated field, wrong integer width, unknown tag). Then the framing
 * errors: unknown types, truncated field headers, overrunning fields, the
 * payload limit on decode and on encode.
 *
 * Payloads handed to the decoder are copied into exactly-sized heap blocks so
 * AddressSanitizer catches any read past the announced length.
 * Prints "FAIL [case] ..." for every failed check and "N passed, N failed".
 */
#include "proto.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* ---- helpers ---- */

static void le_put(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t le_get(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* A raw payload built by hand, for inputs the encoder would never produce. */
typedef struct {
    uint8_t buf[4096];
    size_t len;
} raw;

static void raw_field(raw *r, uint16_t tag, uint32_t len, const void *data, size_t n)
{
    le_put(r->buf + r->len, tag, 2);
    le_put(r->buf + r->len + 2, len, 4);
    r->len += PV_FIELD_HDR_SIZE;
    if (n)
        memcpy(r->buf + r->len, data, n);
    r->len += n;
}

static void raw_u64(raw *r, uint16_t tag, uint64_t v)
{
    uint8_t b[8];
    le_put(b, v, 8);
    raw_field(r, tag, 8, b, 8);
}

/* Decodes payload (copied to an exactly-sized block) as message type. The
 * copy is returned in *copy and must outlive out; free it with free(). */
static int decode_raw(uint16_t type, const uint8_t *payload, size_t len, pv_msg *out, uint8_t **copy, char *err,
                      size_t errlen)
{
    *copy = malloc(len ? len : 1);
    if (len)
        memcpy(*copy, payload, len);
    pv_hdr h = {(uint32_t)len, 7, 42, type, 0};
    err[0] = 0;
    return pv_msg_decode(&h, *copy, out, err, errlen);
}

/* Expects decoding to fail with an error message containing want. */
static void expect_reject(int line, uint16_t type, const raw *r, const char *want)
{
    pv_msg m;
    uint8_t *copy;
    char err[256];
    int rc = decode_raw(type, r->buf, r->len, &m, &copy, err, sizeof(err));
    check_(rc == -1, __FILE__, line, "decode accepted a payload it must reject (expected error containing \"%s\")", want);
    if (rc == -1) {
        check_(strstr(err, want) != NULL, __FILE__, line, "error \"%s\" does not mention \"%s\"", err, want);
        check_(m.fields == NULL && m.nfields == 0, __FILE__, line, "failed decode left fields allocated");
    } else {
        pv_msg_free(&m);
    }
    free(copy);
}

/* Value used for integer field `tag`, occurrence k. */
static uint64_t u64_value(uint16_t tag, int k) { return 0x0102030405060708ull * (uint64_t)(tag + 1) + (uint64_t)k; }
static int64_t i64_value(uint16_t tag, int k) { return -(int64_t)(1000003 * (tag + 1)) - k; }

/* Bytes used for byte field `tag`, occurrence k: includes NULs and high bytes,
 * and occurrence 1 of a repeated field is empty. */
static size_t bytes_value(uint16_t tag, int k, uint8_t *out)
{
    if (k == 1)
        return 0;
    size_t n = 3 + ((size_t)tag * 7 + (size_t)k * 5) % 700;
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(i * 31 + tag + k);
    out[n / 2] = 0;
    out[n - 1] = 0xFF;
    return n;
}

/* Text (no NUL) variant, to exercise pv_msg_strdup. */
static size_t text_value(uint16_t tag, int k, char *out)
{
    return (size_t)snprintf(out, 64, "text-%u-%d \xc3\xa9", tag, k);
}

#define REPEATS 3

/* Builds a frame of `type` holding fields per the spec. all=false: only the
 * required fields. text=true: byte fields carry NUL-free text. Repeated
 * fields are interleaved with the others (second pass) to check that the
 * order of occurrences is preserved and that nothing assumes adjacency. */
static void build(pv_buf *b, const pv_msg_spec *s, bool all, bool text, uint32_t chan, uint32_t req)
{
    pv_frame_begin(b, s->type, chan, req);
    uint8_t tmp[1024];
    for (int pass = 0; pass < REPEATS; pass++) {
        for (size_t i = 0; i < s->nfields; i++) {
            const pv_field_spec *f = &s->fields[i];
            bool rep = f->flags & PV_F_REPEATED;
            if (!all && !(f->flags & PV_F_REQUIRED))
                continue;
            if (pass > 0 && !(all && rep))
                continue;
            switch (f->kind) {
            case PV_K_U64: pv_put_u64(b, f->tag, u64_value(f->tag, pass)); break;
            case PV_K_I64: pv_put_i64(b, f->tag, i64_value(f->tag, pass)); break;
            default:
                if (text) {
                    size_t n = text_value(f->tag, pass, (char *)tmp);
                    tmp[n] = 0;
                    pv_put_str(b, f->tag, (const char *)tmp);
                } else {
                    size_t n = bytes_value(f->tag, pass, tmp);
                    pv_put_bytes(b, f->tag, tmp, n);
                }
            }
        }
    }
}

/* Checks a decoded message against what build() put in. */
static void verify(const pv_msg *m, const pv_msg_spec *s, bool all, bool text)
{
    size_t expect_n = 0;
    for (size_t i = 0; i < s->nfields; i++) {
        const pv_field_spec *f = &s->fields[i];
        bool present = all || (f->flags & PV_F_REQUIRED);
        int occurrences = !present ? 0 : (all && (f->flags & PV_F_REPEATED)) ? REPEATS : 1;
        expect_n += (size_t)occurrences;
        CHECKF(pv_msg_count(m, f->tag) == (size_t)occurrences, "field %s: count %zu, expected %d", f->name,
               pv_msg_count(m, f->tag), occurrences);
        CHECKF(pv_msg_has(m, f->tag) == (occurrences > 0), "field %s: pv_msg_has wrong", f->name);
        if (!occurrences) {
            CHECKF(pv_msg_get(m, f->tag) == NULL, "field %s: absent but pv_msg_get found it", f->name);
            CHECKF(pv_msg_u64(m, f->tag, 777) == 777, "field %s: absent but pv_msg_u64 ignored the default",
                   f->name);
            CHECKF(pv_msg_i64(m, f->tag, -777) == -777, "field %s: absent but pv_msg_i64 ignored the default",
                   f->name);
            CHECKF(pv_msg_strdup(m, f->tag) == NULL, "field %s: absent but pv_msg_strdup returned a string",
                   f->name);
            continue;
        }
        size_t pos = 0;
        for (int k = 0; k < occurrences; k++) {
            const pv_field *got = pv_msg_next(m, f->tag, &pos);
            if (!CHECKF(got != NULL, "field %s: occurrence %d missing", f->name, k))
                break;
            CHECKF(got->tag == f->tag, "field %s: pv_msg_next returned tag %u", f->name, got->tag);
            if (k == 0)
                CHECKF(pv_msg_get(m, f->tag) == got, "field %s: pv_msg_get is not the first occurrence", f->name);
            if (f->kind == PV_K_U64) {
                CHECKF(got->len == 8 && le_get(got->data, 8) == u64_value(f->tag, k),
                       "field %s[%d]: u64 value/len wrong (len %u)", f->name, k, got->len);
                if (k == 0)
                    CHECKF(pv_msg_u64(m, f->tag, 0) == u64_value(f->tag, 0), "field %s: pv_msg_u64 wrong", f->name);
            } else if (f->kind == PV_K_I64) {
                CHECKF(got->len == 8 && (int64_t)le_get(got->data, 8) == i64_value(f->tag, k),
                       "field %s[%d]: i64 value/len wrong (len %u)", f->name, k, got->len);
                if (k == 0)
                    CHECKF(pv_msg_i64(m, f->tag, 0) == i64_value(f->tag, 0), "field %s: pv_msg_i64 wrong", f->name);
            } else {
                uint8_t want[1024];
                size_t n = text ? text_value(f->tag, k, (char *)want) : bytes_value(f->tag, k, want);
                CHECKF(got->len == n && (n == 0 || memcmp(got->data, want, n) == 0),
                       "field %s[%d]: bytes differ (len %u, expected %zu)", f->name, k, got->len, n);
                if (k == 0) {
                    char *sd = pv_msg_strdup(m, f->tag);
                    if (text || n == 0)
                        CHECKF(sd && strlen(sd) == n && memcmp(sd, want, n) == 0,
                               "field %s: pv_msg_strdup did not return the text", f->name);
                    else
                        CHECKF(sd == NULL, "field %s: pv_msg_strdup accepted bytes with a NUL", f->name);
                    free(sd);
                }
            }
        }
        CHECKF(pv_msg_next(m, f->tag, &pos) == NULL, "field %s: more occurrences than encoded", f->name);
    }
    CHECKF(m->nfields == expect_n, "decoded %zu fields, expected %zu", m->nfields, expect_n);
}

/* Encodes with build(), checks the header bytes, decodes and verifies. */
static void roundtrip(const pv_msg_spec *s, bool all, bool text)
{
    set_case("roundtrip %s (type %u, %s, %s)", s->name, s->type, all ? "all fields" : "required only",
             text ? "text" : "binary");
    pv_buf b;
    pv_buf_init(&b);
    uint32_t chan = 0xA1B2C3D4u, req = 0x01020304u + s->type;
    build(&b, s, all, text, chan, req);
    if (!CHECKF(pv_frame_end(&b) == 0, "pv_frame_end failed")) {
        pv_buf_free(&b);
        return;
    }
    CHECK(b.len >= PV_HDR_SIZE);
    /* wire layout of the header: little-endian len | chan | req | type | flags */
    CHECKF(le_get(b.buf, 4) == b.len - PV_HDR_SIZE, "header length %" PRIu64 " vs payload %zu", le_get(b.buf, 4),
           b.len - PV_HDR_SIZE);
    CHECK(le_get(b.buf + 4, 4) == chan);
    CHECK(le_get(b.buf + 8, 4) == req);
    CHECK(le_get(b.buf + 12, 2) == s->type);
    CHECK_EQ_INT(le_get(b.buf + 14, 2), 0);
    pv_hdr h;
    CHECK_EQ_INT(pv_hdr_decode(b.buf, &h), 0);
    CHECK(h.len == b.len - PV_HDR_SIZE && h.chan == chan && h.req == req && h.type == s->type && h.flags == 0);
    uint8_t *payload = malloc(h.len ? h.len : 1);
    memcpy(payload, b.buf + PV_HDR_SIZE, h.len);
    pv_msg m;
    char err[256] = "";
    int rc = pv_msg_decode(&h, payload, &m, err, sizeof(err));
    if (CHECKF(rc == 0, "decode failed: %s", err)) {
        CHECK(m.hdr.type == s->type && m.hdr.chan == chan && m.hdr.req == req && m.hdr.len == h.len);
        verify(&m, s, all, text);
        /* every field points inside the payload */
        for (size_t i = 0; i < m.nfields; i++)
            CHECKF(m.fields[i].data >= payload && m.fields[i].data + m.fields[i].len <= payload + h.len,
                   "field %zu points outside the payload", i);
        pv_msg_free(&m);
        CHECK(m.fields == NULL && m.nfields == 0);
    }
    free(payload);
    pv_buf_free(&b);
}

/* Required fields only, optionally skipping one and/or doubling one. */
static void build_raw(raw *r, const pv_msg_spec *s, int skip, int dup)
{
    r->len = 0;
    for (size_t i = 0; i < s->nfields; i++) {
        const pv_field_spec *f = &s->fields[i];
        if ((int)i == skip || (!(f->flags & PV_F_REQUIRED) && (int)i != dup))
            continue;
        for (int k = 0; k < ((int)i == dup ? 2 : 1); k++) {
            if (f->kind == PV_K_BYTES)
                raw_field(r, f->tag, 3, "abc", 3);
            else
                raw_u64(r, f->tag, 5);
        }
    }
}

static void schema_negative(const pv_msg_spec *s)
{
    raw r;
    /* missing required field */
    for (size_t i = 0; i < s->nfields; i++) {
        if (!(s->fields[i].flags & PV_F_REQUIRED))
            continue;
        set_case("%s: missing required %s", s->name, s->fields[i].name);
        build_raw(&r, s, (int)i, -1);
        char want[128];
        snprintf(want, sizeof(want), "missing required field %s", s->fields[i].name);
        expect_reject(__LINE__, s->type, &r, want);
    }
    /* duplicated non-repeated field; a repeated one twice is fine */
    for (size_t i = 0; i < s->nfields; i++) {
        const pv_field_spec *f = &s->fields[i];
        build_raw(&r, s, -1, (int)i);
        if (f->flags & PV_F_REPEATED) {
            set_case("%s: repeated field %s twice is accepted", s->name, f->name);
            pv_msg m;
            uint8_t *copy;
            char err[256];
            int rc = decode_raw(s->type, r.buf, r.len, &m, &copy, err, sizeof(err));
            if (CHECKF(rc == 0, "decode failed: %s", err)) {
                CHECK_EQ_INT(pv_msg_count(&m, f->tag), 2);
                pv_msg_free(&m);
            }
            free(copy);
        } else {
            set_case("%s: duplicated field %s", s->name, f->name);
            char want[128];
            snprintf(want, sizeof(want), "field %s repeated", f->name);
            expect_reject(__LINE__, s->type, &r, want);
        }
    }
    /* integer fields of every width but 8 */
    static const uint32_t widths[] = {0, 1, 4, 7, 9, 16};
    for (size_t i = 0; i < s->nfields; i++) {
        const pv_field_spec *f = &s->fields[i];
        if (f->kind == PV_K_BYTES)
            continue;
        for (size_t w = 0; w < sizeof(widths) / sizeof(widths[0]); w++) {
            set_case("%s: field %s with width %u", s->name, f->name, widths[w]);
            build_raw(&r, s, (int)i, -1);
            uint8_t zeros[16] = {1, 2, 3};
            raw_field(&r, f->tag, widths[w], zeros, widths[w]);
            expect_reject(__LINE__, s->type, &r, "must be 8 bytes");
        }
    }
    /* an unknown tag, placed first, in the middle and last */
    uint16_t unknown[3];
    int nu = 0;
    for (uint32_t t = 0; t <= 0xFFFF && nu < 3; t = t ? t * 3 + 1 : 1) {
        bool known = false;
        for (size_t i = 0; i < s->nfields; i++)
            known |= s->fields[i].tag == t;
        if (!known)
            unknown[nu++] = (uint16_t)t;
    }
    CHECK_EQ_INT(nu, 3);
    for (int u = 0; u < nu; u++) {
        for (int where = 0; where < 2; where++) {
            set_case("%s: unknown tag %u (%s)", s->name, unknown[u], where ? "last" : "first");
            r.len = 0;
            if (where == 0)
                raw_field(&r, unknown[u], 2, "zz", 2);
            raw rest;
            build_raw(&rest, s, -1, -1);
            memcpy(r.buf + r.len, rest.buf, rest.len);
            r.len += rest.len;
            if (where == 1)
                raw_field(&r, unknown[u], 0, NULL, 0);
            char want[64];
            snprintf(want, sizeof(want), "unexpected field tag %u", unknown[u]);
            expect_reject(__LINE__, s->type, &r, want);
        }
    }
    set_case("%s: tag 0xFFFF", s->name);
    build_raw(&r, s, -1, -1);
    raw_field(&r, 0xFFFF, 1, "x", 1);
    expect_reject(__LINE__, s->type, &r, "unexpected field tag 65535");

    /* framing damage after a valid prefix of required fields */
    for (size_t cut = 1; cut < PV_FIELD_HDR_SIZE; cut++) {
        set_case("%s: truncated field header (%zu of %d bytes)", s->name, cut, PV_FIELD_HDR_SIZE);
        build_raw(&r, s, -1, -1);
        uint8_t partial[PV_FIELD_HDR_SIZE] = {(uint8_t)(s->nfields ? s->fields[0].tag : 1), 0, 1, 0, 0, 0};
        memcpy(r.buf + r.len, partial, cut);
        r.len += cut;
        expect_reject(__LINE__, s->type, &r, "truncated field header");
    }
    static const uint32_t overruns[] = {1, 2, 100, 0x7FFFFFFFu, 0xFFFFFFFAu, 0xFFFFFFFFu};
    for (size_t o = 0; o < sizeof(overruns) / sizeof(overruns[0]); o++) {
        set_case("%s: field overruns payload by %u", s->name, overruns[o]);
        build_raw(&r, s, -1, -1);
        /* a bytes-kind or int field announcing 4 bytes more than present */
        uint16_t tag = s->nfields ? s->fields[0].tag : 1;
        uint32_t present = 4;
        uint32_t announced = present + overruns[o];
        if (announced < present) /* wrapped: announce the maximum instead */
            announced = 0xFFFFFFFFu;
        raw_field(&r, tag, announced, "abcd", present);
        expect_reject(__LINE__, s->type, &r, "overruns the payload");
    }
}

/* ---- tests ---- */

TEST(schema_roundtrips)
{
    int found = 0;
    bool seen_known[64] = {0};
    for (uint32_t t = 0; t <= 0xFFFF; t++) {
        const pv_msg_spec *s = pv_msg_lookup((uint16_t)t);
        if (!s) {
            set_case("pv_msg_name(%u) for an unknown type", t);
            if (t == 0 || t == 0xFFFF || t % 4096 == 0) /* spot checks, to keep output small on failure */
                CHECKF(strcmp(pv_msg_name((uint16_t)t), "UNKNOWN") == 0, "got %s", pv_msg_name((uint16_t)t));
            continue;
        }
        found++;
        if (t < 64)
            seen_known[t] = true;
        set_case("schema of type %u", t);
        CHECKF(s->type == t, "lookup(%u) returned the spec of type %u", t, s->type);
        CHECKF(s->name && *s->name && strcmp(pv_msg_name((uint16_t)t), s->name) == 0, "name mismatch");
        CHECKF(s->nfields == 0 || s->fields != NULL, "nfields without fields");
        for (size_t i = 0; i < s->nfields; i++) {
            const pv_field_spec *f = &s->fields[i];
            CHECKF(f->tag != 0, "field %zu has tag 0", i);
            CHECKF(f->kind == PV_K_U64 || f->kind == PV_K_I64 || f->kind == PV_K_BYTES, "field %s: bad kind %u",
                   f->name, f->kind);
            CHECKF(!((f->flags & PV_F_REQUIRED) && (f->flags & PV_F_REPEATED)), "field %s: required and repeated",
                   f->name);
            CHECKF(f->name && *f->name, "field %zu has no name", i);
            for (size_t j = 0; j < i; j++)
                CHECKF(s->fields[j].tag != f->tag, "tag %u listed twice", f->tag);
        }
        roundtrip(s, true, false);
        roundtrip(s, true, true);
        roundtrip(s, false, false);
        schema_negative(s);
    }
    set_case("schema coverage");
    CHECKF(found >= 11, "only %d message types in the schema", found);
    static const uint16_t must[] = {PV_MSG_READY,       PV_MSG_PING,      PV_MSG_PONG,      PV_MSG_ERROR,
                                    PV_MSG_OK,          PV_MSG_EXEC,      PV_MSG_EXEC_RESULT, PV_MSG_READ_FILE,
                                    PV_MSG_FILE_DATA,   PV_MSG_WRITE_FILE, PV_MSG_SHUTDOWN};
    for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
        CHECKF(seen_known[must[i]], "type %u from the enum has no schema", must[i]);
    CHECK_EQ_STR(pv_msg_name(PV_MSG_EXEC_RESULT), "EXEC_RESULT");
    CHECK_EQ_STR(pv_msg_name(PV_MSG_READY), "READY");
    printf("schema: %d message types covered\n", found);
}

TEST(unknown_types)
{
    set_case("unknown message types");
    uint8_t payload[1] = {0};
    int rejected = 0, unknown = 0, reported = 0;
    for (uint32_t t = 0; t <= 0xFFFF; t++) {
        if (pv_msg_lookup((uint16_t)t))
            continue;
        unknown++;
        pv_hdr h = {0, 0, 1, (uint16_t)t, 0};
        pv_msg m;
        char err[128] = "";
        if (pv_msg_decode(&h, payload, &m, err, sizeof(err)) == -1 && strstr(err, "unknown message type"))
            rejected++;
        else if (reported++ < 5) /* report only the first few */
            CHECKF(false, "type %u: accepted or wrong message \"%s\"", t, err);
    }
    CHECKF(rejected == unknown, "%d of %d unknown types rejected", rejected, unknown);
    /* an unknown type is rejected even with a plausible payload */
    raw r = {.len = 0};
    raw_u64(&r, PV_T_PROTO_VERSION, 1);
    expect_reject(__LINE__, 999, &r, "unknown message type 999");
    expect_reject(__LINE__, 0, &r, "unknown message type 0");
}

TEST(header)
{
    set_case("header encode/decode");
    pv_hdr h = {0x11223344u, 0x55667788u, 0x99AABBCCu, 0xDDEEu, 0xF00Fu}, d;
    uint8_t out[PV_HDR_SIZE];
    pv_hdr_encode(&h, out);
    static const uint8_t want[PV_HDR_SIZE] = {0x44, 0x33, 0x22, 0x11, 0x88, 0x77, 0x66, 0x55,
                                              0xCC, 0xBB, 0xAA, 0x99, 0xEE, 0xDD, 0x0F, 0xF0};
    CHECK_EQ_INT(memcmp(out, want, PV_HDR_SIZE), 0);
    CHECK_EQ_INT(pv_hdr_decode(out, &d), -1); /* 0x11223344 > limit */
    h.len = PV_MAX_PAYLOAD;
    pv_hdr_encode(&h, out);
    CHECK_EQ_INT(pv_hdr_decode(out, &d), 0);
    CHECK(d.len == h.len && d.chan == h.chan && d.req == h.req && d.type == h.type && d.flags == h.flags);

    set_case("header announcing more than PV_MAX_PAYLOAD");
    static const uint32_t big[] = {PV_MAX_PAYLOAD + 1, 2 * PV_MAX_PAYLOAD, 0x7FFFFFFFu, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
        h.len = big[i];
        pv_hdr_encode(&h, out);
        CHECKF(pv_hdr_decode(out, &d) == -1, "pv_hdr_decode accepted len %u", big[i]);
        CHECKF(d.len == big[i], "decoded len %u instead of %u (callers report it)", d.len, big[i]);
        /* pv_msg_decode refuses it too, without touching the (tiny) payload */
        pv_hdr ph = {big[i], 0, 1, PV_MSG_PING, 0};
        uint8_t *tiny = malloc(1);
        pv_msg m;
        char err[128] = "";
        CHECKF(pv_msg_decode(&ph, tiny, &m, err, sizeof(err)) == -1 && strstr(err, "exceeds"),
               "pv_msg_decode of len %u: \"%s\"", big[i], err);
        free(tiny);
    }
}

TEST(empty_and_edge_payloads)
{
    set_case("PING with an empty payload");
    pv_hdr h = {0, 0, 1, PV_MSG_PING, 0};
    pv_msg m;
    char err[128] = "";
    CHECKF(pv_msg_decode(&h, NULL, &m, err, sizeof(err)) == 0, "%s", err);
    CHECK(m.nfields == 0 && !pv_msg_has(&m, PV_T_ECHO) && pv_msg_count(&m, PV_T_ECHO) == 0);
    pv_msg_free(&m);

    set_case("empty payload missing required fields");
    raw r = {.len = 0};
    expect_reject(__LINE__, PV_MSG_READ_FILE, &r, "missing required field path");
    expect_reject(__LINE__, PV_MSG_ERROR, &r, "missing required field");

    set_case("zero-length bytes field as strdup");
    r.len = 0;
    raw_field(&r, PV_T_PATH, 0, NULL, 0);
    uint8_t *copy;
    if (CHECK_EQ_INT(decode_raw(PV_MSG_READ_FILE, r.buf, r.len, &m, &copy, err, sizeof(err)), 0)) {
        char *s = pv_msg_strdup(&m, PV_T_PATH);
        CHECK(s && *s == 0);
        free(s);
        /* integer accessors on a bytes field of the wrong size return the default */
        CHECK_EQ_INT(pv_msg_u64(&m, PV_T_PATH, 99), 99);
        pv_msg_free(&m);
    }
    free(copy);

    set_case("integer accessor on an 8-byte bytes field");
    r.len = 0;
    raw_field(&r, PV_T_PATH, 8, "\x01\x00\x00\x00\x00\x00\x00\x80", 8);
    if (CHECK_EQ_INT(decode_raw(PV_MSG_READ_FILE, r.buf, r.len, &m, &copy, err, sizeof(err)), 0)) {
        CHECK(pv_msg_u64(&m, PV_T_PATH, 0) == 0x8000000000000001ull);
        CHECK(pv_msg_i64(&m, PV_T_PATH, 0) == (int64_t)0x8000000000000001ull);
        pv_msg_free(&m);
    }
    free(copy);

    set_case("extreme integer values");
    pv_buf b;
    pv_buf_init(&b);
    pv_frame_begin(&b, PV_MSG_EXEC_RESULT, 0, 1);
    pv_put_u64(&b, PV_T_STATUS, UINT64_MAX);
    pv_put_i64(&b, PV_T_EXIT_CODE, INT64_MIN);
    pv_put_u64(&b, PV_T_SIGNAL, 0);
    CHECK_EQ_INT(pv_frame_end(&b), 0);
    CHECK_EQ_INT(pv_hdr_decode(b.buf, &h), 0);
    if (CHECK_EQ_INT(decode_raw(h.type, b.buf + PV_HDR_SIZE, h.len, &m, &copy, err, sizeof(err)), 0)) {
        CHECK(pv_msg_u64(&m, PV_T_STATUS, 0) == UINT64_MAX);
        CHECK(pv_msg_i64(&m, PV_T_EXIT_CODE, 0) == INT64_MIN);
        CHECK(pv_msg_has(&m, PV_T_SIGNAL) && pv_msg_u64(&m, PV_T_SIGNAL, 5) == 0);
        pv_msg_free(&m);
    }
    free(copy);
    pv_buf_free(&b);

    set_case("bytes with NUL refused by pv_msg_strdup, kept by pv_msg_get");
    r.len = 0;
    raw_field(&r, PV_T_PATH, 5, "ab\0cd", 5);
    if (CHECK_EQ_INT(decode_raw(PV_MSG_READ_FILE, r.buf, r.len, &m, &copy, err, sizeof(err)), 0)) {
        CHECK(pv_msg_strdup(&m, PV_T_PATH) == NULL);
        const pv_field *f = pv_msg_get(&m, PV_T_PATH);
        CHECK(f && f->len == 5 && memcmp(f->data, "ab\0cd", 5) == 0);
        pv_msg_free(&m);
    }
    free(copy);

    set_case("error message is always NUL-terminated in a small buffer");
    r.len = 0;
    char small[8];
    memset(small, 'x', sizeof(small));
    pv_hdr sh = {(uint32_t)r.len, 0, 0, PV_MSG_READ_FILE, 0};
    uint8_t one[1];
    CHECK_EQ_INT(pv_msg_decode(&sh, one, &m, small, sizeof(small)), -1);
    CHECK(memchr(small, 0, sizeof(small)) != NULL);
}

TEST(multiple_frames_one_buffer)
{
    set_case("several frames in one pv_buf");
    pv_buf b;
    pv_buf_init(&b);
    pv_frame_begin(&b, PV_MSG_PING, 1, 10);
    pv_put_str(&b, PV_T_ECHO, "first");
    CHECK_EQ_INT(pv_frame_end(&b), 0);
    pv_frame_begin(&b, PV_MSG_OK, 2, 11);
    CHECK_EQ_INT(pv_frame_end(&b), 0);
    pv_frame_begin(&b, PV_MSG_READ_FILE, 3, 12);
    pv_put_str(&b, PV_T_PATH, "/etc/hostname");
    CHECK_EQ_INT(pv_frame_end(&b), 0);
    size_t off = 0;
    int n = 0;
    static const uint16_t types[] = {PV_MSG_PING, PV_MSG_OK, PV_MSG_READ_FILE};
    while (off + PV_HDR_SIZE <= b.len && n < 3) {
        pv_hdr h;
        CHECK_EQ_INT(pv_hdr_decode(b.buf + off, &h), 0);
        CHECKF(h.type == types[n] && h.chan == (uint32_t)n + 1 && h.req == (uint32_t)n + 10, "frame %d header", n);
        CHECKF(off + PV_HDR_SIZE + h.len <= b.len, "frame %d overruns the buffer", n);
        pv_msg m;
        uint8_t *copy;
        char err[128];
        if (CHECKF(decode_raw(h.type, b.buf + off + PV_HDR_SIZE, h.len, &m, &copy, err, sizeof(err)) == 0, "%s",
                   err))
            pv_msg_free(&m);
        free(copy);
        off += PV_HDR_SIZE + h.len;
        n++;
    }
    CHECK(n == 3 && off == b.len);
    /* reset reuses the buffer */
    pv_buf_reset(&b);
    CHECK(b.len == 0 && !b.failed);
    pv_frame_begin(&b, PV_MSG_PING, 0, 0);
    CHECK(pv_frame_end(&b) == 0 && b.len == PV_HDR_SIZE && le_get(b.buf, 4) == 0);
    pv_buf_free(&b);
    CHECK(b.buf == NULL && b.len == 0 && b.cap == 0);
}

TEST(encode_limit)
{
    pv_buf b;
    static const uint8_t small[16];

    set_case("single field larger than PV_MAX_PAYLOAD");
    pv_buf_init(&b);
    pv_frame_begin(&b, PV_MSG_FILE_DATA, 0, 1);
    size_t cap_before = b.cap;
    /* the data pointer is never read: the size check comes first */
    pv_put_bytes(&b, PV_T_DATA, small, (size_t)PV_MAX_PAYLOAD + 1);
    CHECK(b.failed);
    CHECKF(b.cap == cap_before, "buffer grew to %zu bytes for a refused field", b.cap);
    CHECK_EQ_INT(pv_frame_end(&b), -1);
    pv_put_bytes(&b, PV_T_DATA, small, SIZE_MAX);
    CHECK(b.cap == cap_before && pv_frame_end(&b) == -1);
    /* further puts on a failed frame stay failed and do not grow the buffer */
    pv_put_u64(&b, PV_T_MODE, 1);
    CHECK(pv_frame_end(&b) == -1 && b.cap == cap_before);
    pv_buf_reset(&b);
    pv_frame_begin(&b, PV_MSG_PING, 0, 2);
    CHECKF(pv_frame_end(&b) == 0, "buffer unusable after reset");
    pv_buf_free(&b);

    set_case("payload exactly PV_MAX_PAYLOAD, then one byte more");
    uint8_t *big = calloc(1, PV_MAX_PAYLOAD);
    if (!CHECK(big != NULL))
        return;
    big[0] = 0xAB;
    big[PV_MAX_PAYLOAD - PV_FIELD_HDR_SIZE - 1] = 0xCD;
    pv_buf_init(&b);
    pv_frame_begin(&b, PV_MSG_FILE_DATA, 0, 3);
    pv_put_bytes(&b, PV_T_DATA, big, PV_MAX_PAYLOAD - PV_FIELD_HDR_SIZE);
    CHECK(!b.failed);
    if (CHECK_EQ_INT(pv_frame_end(&b), 0)) {
        pv_hdr h;
        CHECK(pv_hdr_decode(b.buf, &h) == 0 && h.len == PV_MAX_PAYLOAD);
        pv_msg m;
        char err[128] = "";
        /* b.buf holds exactly header + payload bytes of content */
        if (CHECKF(pv_msg_decode(&h, b.buf + PV_HDR_SIZE, &m, err, sizeof(err)) == 0, "%s", err)) {
            const pv_field *f = pv_msg_get(&m, PV_T_DATA);
            CHECK(f && f->len == PV_MAX_PAYLOAD - PV_FIELD_HDR_SIZE && f->data[0] == 0xAB &&
                  f->data[f->len - 1] == 0xCD);
            pv_msg_free(&m);
        }
    }
    /* the next frame in the same buffer has its own budget */
    pv_frame_begin(&b, PV_MSG_PING, 0, 4);
    pv_put_str(&b, PV_T_ECHO, "after");
    CHECKF(pv_frame_end(&b) == 0, "second frame after a maximal one failed");
    pv_buf_free(&b);

    pv_buf_init(&b);
    pv_frame_begin(&b, PV_MSG_FILE_DATA, 0, 5);
    pv_put_bytes(&b, PV_T_DATA, big, PV_MAX_PAYLOAD - PV_FIELD_HDR_SIZE + 1);
    CHECK(b.failed && pv_frame_end(&b) == -1);
    pv_buf_free(&b);

    set_case("several fields adding up to more than the limit");
    pv_buf_init(&b);
    pv_frame_begin(&b, PV_MSG_EXEC_RESULT, 0, 6);
    pv_put_u64(&b, PV_T_STATUS, 0);
    pv_put_i64(&b, PV_T_EXIT_CODE, 0);
    pv_put_bytes(&b, PV_T_STDOUT, big, PV_MAX_PAYLOAD / 2);
    CHECK(!b.failed);
    size_t cap_mid = b.cap;
    pv_put_bytes(&b, PV_T_STDERR, big, PV_MAX_PAYLOAD / 2);
    CHECK(b.failed);
    CHECKF(b.cap == cap_mid, "buffer grew from %zu to %zu for a refused field", cap_mid, b.cap);
    CHECK_EQ_INT(pv_frame_end(&b), -1);
    pv_buf_free(&b);
    free(big);
}

/* pv_put_open/room/commit/close: a field written in place decodes like one
 * put with pv_put_bytes, and the payload limit still holds. */
TEST(in_place_field)
{
    pv_buf b;
    set_case("field written in place in several pieces");
    pv_buf_init(&b);
    pv_frame_begin(&b, PV_MSG_WRITE_FILE, 3, 9);
    pv_put_str(&b, PV_T_PATH, "/x");
    size_t at = pv_put_open(&b, PV_T_DATA);
    for (int i = 0; i < 3; i++) {
        uint8_t *p = pv_put_room(&b, 100000);
        if (!CHECK(p != NULL))
            return;
        memset(p, 'a' + i, 70000); /* less than the room asked for */
        pv_put_commit(&b, 70000);
    }
    pv_put_close(&b, at);
    pv_put_u64(&b, PV_T_MODE, 7); /* a field after it */
    if (CHECK_EQ_INT(pv_frame_end(&b), 0)) {
        pv_hdr h;
        pv_msg m;
        char err[128] = "";
        CHECK(pv_hdr_decode(b.buf, &h) == 0 && h.len == b.len - PV_HDR_SIZE);
        if (CHECKF(pv_msg_decode(&h, b.buf + PV_HDR_SIZE, &m, err, sizeof(err)) == 0, "%s", err)) {
            const pv_field *f = pv_msg_get(&m, PV_T_DATA);
            CHECK(f && f->len == 210000 && f->data[0] == 'a' && f->data[69999] == 'a' && f->data[70000] == 'b' &&
                  f->data[209999] == 'c');
            CHECK_EQ_INT(pv_msg_u64(&m, PV_T_MODE, 0), 7);
            pv_msg_free(&m);
        }
    }
    pv_buf_free(&b);

    set_case("empty field written in place");
    pv_buf_init(&b);
    pv_frame_begin(&b, PV_MSG_FILE_DATA, 0, 1);
    at = pv_put_open(&b, PV_T_DATA);
    CHECK(pv_put_room(&b, 4096) != NULL);
    pv_put_close(&b, at);
    CHECK(pv_frame_end(&b) == 0 && b.len == PV_HDR_SIZE + PV_FIELD_HDR_SIZE);
    pv_buf_free(&b);

    set_case("room past the payload limit fails the frame");
    pv_buf_init(&b);
    pv_frame_begin(&b, PV_MSG_FILE_DATA, 0, 2);
    at = pv_put_open(&b, PV_T_DATA);
    CHECK(pv_put_room(&b, PV_MAX_PAYLOAD - PV_FIELD_HDR_SIZE) != NULL);
    CHECK(pv_put_room(&b, PV_MAX_PAYLOAD - PV_FIELD_HDR_SIZE + 1) == NULL && b.failed);
    pv_put_close(&b, at);
    CHECK_EQ_INT(pv_frame_end(&b), -1);
    pv_buf_free(&b);
}

CHECK_MAIN()
