/* Codec for the Provium wire protocol; see proto.h and docs/protocol.md. */
#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- schema ---- */
#define REQ PV_F_REQUIRED
#define REP PV_F_REPEATED
#define SPEC(t, arr) {t, #t + 7, arr, sizeof(arr) / sizeof(arr[0])}
#define SPEC0(t) {t, #t + 7, NULL, 0}

static const pv_field_spec f_ready[] = {
    {PV_T_PROTO_VERSION, PV_K_U64, REQ, "proto_version"},
    {PV_T_AGENT_VERSION, PV_K_BYTES, REQ, "agent_version"},
    {PV_T_PID, PV_K_U64, 0, "pid"},
};
static const pv_field_spec f_ping[] = {{PV_T_ECHO, PV_K_BYTES, 0, "echo"}};
static const pv_field_spec f_error[] = {
    {PV_T_ERRNO, PV_K_I64, REQ, "errno"},
    {PV_T_MESSAGE, PV_K_BYTES, REQ, "message"},
};
static const pv_field_spec f_ok[] = {{PV_T_MESSAGE, PV_K_BYTES, 0, "message"}};
static const pv_field_spec f_exec[] = {
    {PV_T_ARGV, PV_K_BYTES, REP, "argv"},
    {PV_T_SHELL, PV_K_BYTES, 0, "shell"},
    {PV_T_ENV, PV_K_BYTES, REP, "env"},
    {PV_T_ENV_CLEAR, PV_K_U64, 0, "env_clear"},
    {PV_T_CWD, PV_K_BYTES, 0, "cwd"},
    {PV_T_STDIN, PV_K_BYTES, 0, "stdin"},
    {PV_T_TIMEOUT_MS, PV_K_U64, 0, "timeout_ms"},
    {PV_T_ASYNC, PV_K_U64, 0, "async"},
};
static const pv_field_spec f_exec_result[] = {
    {PV_T_STATUS, PV_K_U64, REQ, "status"},
    {PV_T_EXIT_CODE, PV_K_I64, REQ, "exit_code"},
    {PV_T_SIGNAL, PV_K_U64, 0, "signal"},
    {PV_T_STDOUT, PV_K_BYTES, 0, "stdout"},
    {PV_T_STDERR, PV_K_BYTES, 0, "stderr"},
    {PV_T_TRUNCATED, PV_K_U64, 0, "truncated"},
};
static const pv_field_spec f_read_file[] = {{PV_T_PATH, PV_K_BYTES, REQ, "path"}};
static const pv_field_spec f_file_data[] = {{PV_T_DATA, PV_K_BYTES, REQ, "data"}};
static const pv_field_spec f_write_file[] = {
    {PV_T_PATH, PV_K_BYTES, REQ, "path"},
    {PV_T_DATA, PV_K_BYTES, REQ, "data"},
    {PV_T_MODE, PV_K_U64, 0, "mode"},
};
static const pv_field_spec f_shutdown[] = {{PV_T_POWEROFF, PV_K_U64, 0, "poweroff"}};

static const pv_field_spec f_hello[] = {{PV_T_PROTO_VERSION, PV_K_U64, 0, "proto_version"}};
static const pv_field_spec f_path[] = {{PV_T_PATH, PV_K_BYTES, REQ, "path"}};
static const pv_field_spec f_stat_result[] = {
    {PV_T_SIZE, PV_K_U64, REQ, "size"},
    {PV_T_MTIME_NS, PV_K_I64, REQ, "mtime_ns"},
    {PV_T_MODE, PV_K_U64, REQ, "mode"},
};
static const pv_field_spec f_listdir_result[] = {
    {PV_T_NAME, PV_K_BYTES, REP, "name"},
    {PV_T_MODE, PV_K_U64, REP, "mode"},
};
static const pv_field_spec f_mkdir[] = {
    {PV_T_PATH, PV_K_BYTES, REQ, "path"},
    {PV_T_MODE, PV_K_U64, 0, "mode"},
    {PV_T_PARENTS, PV_K_U64, 0, "parents"},
};
static const pv_field_spec f_rename[] = {
    {PV_T_PATH, PV_K_BYTES, REQ, "path"},
    {PV_T_PATH2, PV_K_BYTES, REQ, "path2"},
};
static const pv_field_spec f_open[] = {
    {PV_T_PATH, PV_K_BYTES, REQ, "path"},
    {PV_T_FLAGS, PV_K_U64, REQ, "flags"},
    {PV_T_MODE, PV_K_U64, 0, "mode"},
};
static const pv_field_spec f_fd[] = {{PV_T_FD, PV_K_I64, REQ, "fd"}};
static const pv_field_spec f_fd_read[] = {
    {PV_T_FD, PV_K_I64, REQ, "fd"},
    {PV_T_COUNT, PV_K_U64, REQ, "count"},
};
static const pv_field_spec f_fd_write[] = {
    {PV_T_FD, PV_K_I64, REQ, "fd"},
    {PV_T_DATA, PV_K_BYTES, REQ, "data"},
};
static const pv_field_spec f_count[] = {{PV_T_COUNT, PV_K_I64, REQ, "count"}};
static const pv_field_spec f_fd_seek[] = {
    {PV_T_FD, PV_K_I64, REQ, "fd"},
    {PV_T_OFFSET, PV_K_I64, REQ, "offset"},
    {PV_T_WHENCE, PV_K_U64, REQ, "whence"},
};
static const pv_field_spec f_syscall[] = {
    {PV_T_NR, PV_K_I64, REQ, "nr"},
    {PV_T_ARG, PV_K_I64, REP, "arg"},
    {PV_T_BUF, PV_K_BYTES, REP, "buf"},
    {PV_T_BUF_SLOT, PV_K_I64, REP, "buf_slot"},
    {PV_T_PTR, PV_K_BYTES, REP, "ptr"},
};
static const pv_field_spec f_syscall_result[] = {
    {PV_T_RET, PV_K_I64, REQ, "ret"},
    {PV_T_ERRNO, PV_K_I64, REQ, "errno"},
    {PV_T_BUF, PV_K_BYTES, REP, "buf"},
};
static const pv_field_spec f_time[] = {{PV_T_TIME_NS, PV_K_I64, REQ, "time_ns"}};
static const pv_field_spec f_advance[] = {{PV_T_DELTA_NS, PV_K_I64, REQ, "delta_ns"}};
static const pv_field_spec f_proc_started[] = {{PV_T_PID, PV_K_U64, REQ, "pid"}};
static const pv_field_spec f_stream_data[] = {
    {PV_T_STREAM, PV_K_U64, REQ, "stream"},
    {PV_T_DATA, PV_K_BYTES, REQ, "data"},
};
static const pv_field_spec f_proc_signal[] = {
    {PV_T_CHAN, PV_K_U64, REQ, "chan"},
    {PV_T_SIGNAL, PV_K_U64, REQ, "signal"},
};
static const pv_field_spec f_proc_stdin[] = {
    {PV_T_CHAN, PV_K_U64, REQ, "chan"},
    {PV_T_DATA, PV_K_BYTES, 0, "data"},
    {PV_T_EOF, PV_K_U64, 0, "eof"},
};
static const pv_field_spec f_tail_open[] = {
    {PV_T_PATH, PV_K_BYTES, 0, "path"},
    {PV_T_FD, PV_K_I64, 0, "fd"},
    {PV_T_START, PV_K_U64, 0, "start"},
    {PV_T_OFFSET, PV_K_I64, 0, "offset"},
};
static const pv_field_spec f_stream_eof[] = {{PV_T_STREAM, PV_K_U64, 0, "stream"}};
static const pv_field_spec f_batch[] = {{PV_T_OP, PV_K_BYTES, REP, "op"}};
static const pv_field_spec f_batch_result[] = {{PV_T_REPLY, PV_K_BYTES, REP, "reply"}};

static const pv_field_spec f_worker_spawn[] = {{PV_T_THREAD, PV_K_U64, 0, "thread"}};
static const pv_field_spec f_worker_started[] = {
    {PV_T_WORKER, PV_K_U64, REQ, "worker"},
    {PV_T_PID, PV_K_U64, REQ, "pid"},
};
static const pv_field_spec f_worker_kill[] = {{PV_T_WORKER, PV_K_U64, REQ, "worker"}};
static const pv_field_spec f_worker_exit[] = {
    {PV_T_WORKER, PV_K_U64, REQ, "worker"},
    {PV_T_MESSAGE, PV_K_BYTES, 0, "message"},
};

static const pv_field_spec f_kmsg[] = {
    {PV_T_DATA, PV_K_BYTES, REQ, "data"},
    {PV_T_FLAGS, PV_K_U64, REQ, "flags"},
    {PV_T_COUNT, PV_K_U64, 0, "count"},
};

static const pv_msg_spec specs[] = {
    SPEC(PV_MSG_READY, f_ready),
    SPEC(PV_MSG_PING, f_ping),
    SPEC(PV_MSG_PONG, f_ping),
    SPEC(PV_MSG_ERROR, f_error),
    SPEC(PV_MSG_OK, f_ok),
    SPEC(PV_MSG_EXEC, f_exec),
    SPEC(PV_MSG_EXEC_RESULT, f_exec_result),
    SPEC(PV_MSG_READ_FILE, f_read_file),
    SPEC(PV_MSG_FILE_DATA, f_file_data),
    SPEC(PV_MSG_WRITE_FILE, f_write_file),
    SPEC(PV_MSG_SHUTDOWN, f_shutdown),
    SPEC(PV_MSG_HELLO, f_hello),
    SPEC(PV_MSG_STAT, f_path),
    SPEC(PV_MSG_STAT_RESULT, f_stat_result),
    SPEC(PV_MSG_LISTDIR, f_path),
    SPEC(PV_MSG_LISTDIR_RESULT, f_listdir_result),
    SPEC(PV_MSG_MKDIR, f_mkdir),
    SPEC(PV_MSG_UNLINK, f_path),
    SPEC(PV_MSG_RENAME, f_rename),
    SPEC(PV_MSG_OPEN, f_open),
    SPEC(PV_MSG_HANDLE, f_fd),
    SPEC(PV_MSG_FD_READ, f_fd_read),
    SPEC(PV_MSG_FD_WRITE, f_fd_write),
    SPEC(PV_MSG_COUNT, f_count),
    SPEC(PV_MSG_FD_SEEK, f_fd_seek),
    SPEC(PV_MSG_FD_CLOSE, f_fd),
    SPEC(PV_MSG_SYSCALL, f_syscall),
    SPEC(PV_MSG_SYSCALL_RESULT, f_syscall_result),
    SPEC0(PV_MSG_CLOCK_GET),
    SPEC(PV_MSG_TIME, f_time),
    SPEC(PV_MSG_CLOCK_SET, f_time),
    SPEC(PV_MSG_CLOCK_ADVANCE, f_advance),
    SPEC(PV_MSG_PROC_STARTED, f_proc_started),
    SPEC(PV_MSG_STREAM_DATA, f_stream_data),
    SPEC(PV_MSG_PROC_SIGNAL, f_proc_signal),
    SPEC(PV_MSG_PROC_STDIN, f_proc_stdin),
    SPEC(PV_MSG_TAIL_OPEN, f_tail_open),
    SPEC(PV_MSG_STREAM_EOF, f_stream_eof),
    SPEC0(PV_MSG_STREAM_CLOSE),
    SPEC(PV_MSG_BATCH, f_batch),
    SPEC(PV_MSG_BATCH_RESULT, f_batch_result),
    SPEC(PV_MSG_WORKER_SPAWN, f_worker_spawn),
    SPEC(PV_MSG_WORKER_STARTED, f_worker_started),
    SPEC(PV_MSG_WORKER_KILL, f_worker_kill),
    SPEC(PV_MSG_WORKER_EXIT, f_worker_exit),
    SPEC0(PV_MSG_KMSG_READ),
    SPEC(PV_MSG_KMSG, f_kmsg),
};

const pv_msg_spec *pv_msg_lookup(uint16_t type)
{
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
        if (specs[i].type == type)
            return &specs[i];
    return NULL;
}

bool pv_reply_matches(uint16_t req, uint16_t reply)
{
    if (reply == PV_MSG_ERROR)
        return true;
    switch (req) {
    case PV_MSG_PING: return reply == PV_MSG_PONG;
    case PV_MSG_HELLO: return reply == PV_MSG_READY;
    case PV_MSG_EXEC: return reply == PV_MSG_EXEC_RESULT || reply == PV_MSG_PROC_STARTED;
    case PV_MSG_READ_FILE: case PV_MSG_FD_READ: return reply == PV_MSG_FILE_DATA;
    case PV_MSG_STAT: return reply == PV_MSG_STAT_RESULT;
    case PV_MSG_LISTDIR: return reply == PV_MSG_LISTDIR_RESULT;
    case PV_MSG_OPEN: return reply == PV_MSG_HANDLE;
    case PV_MSG_FD_WRITE: case PV_MSG_FD_SEEK: case PV_MSG_PROC_STDIN: return reply == PV_MSG_COUNT;
    case PV_MSG_SYSCALL: return reply == PV_MSG_SYSCALL_RESULT;
    case PV_MSG_CLOCK_GET: case PV_MSG_CLOCK_SET: case PV_MSG_CLOCK_ADVANCE: return reply == PV_MSG_TIME;
    case PV_MSG_BATCH: return reply == PV_MSG_BATCH_RESULT;
    case PV_MSG_KMSG_READ: return reply == PV_MSG_KMSG;
    case PV_MSG_WRITE_FILE: case PV_MSG_MKDIR: case PV_MSG_UNLINK: case PV_MSG_RENAME: case PV_MSG_FD_CLOSE:
    case PV_MSG_SHUTDOWN: case PV_MSG_PROC_SIGNAL: case PV_MSG_TAIL_OPEN: case PV_MSG_STREAM_CLOSE:
        return reply == PV_MSG_OK;
    default:
        return true; /* message types added later vouch for themselves */
    }
}

const char *pv_msg_name(uint16_t type)
{
    const pv_msg_spec *s = pv_msg_lookup(type);
    return s ? s->name : "UNKNOWN";
}

/* ---- little-endian helpers ---- */
static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---- encoding ---- */
void pv_buf_init(pv_buf *b) { memset(b, 0, sizeof(*b)); }

void pv_buf_free(pv_buf *b)
{
    free(b->buf);
    pv_buf_init(b);
}

void pv_buf_reset(pv_buf *b)
{
    b->len = 0;
    b->frame_start = 0;
    b->failed = false;
    b->err = 0;
}

static void buf_fail(pv_buf *b, int err)
{
    b->failed = true;
    b->err = err;
}

static uint8_t *reserve(pv_buf *b, size_t n)
{
    if (b->failed)
        return NULL;
    if (b->len - b->frame_start + n > PV_HDR_SIZE + (size_t)PV_MAX_PAYLOAD) {
        buf_fail(b, E2BIG);
        return NULL;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *nb = realloc(b->buf, cap);
        if (!nb) {
            buf_fail(b, ENOMEM);
            return NULL;
        }
        b->buf = nb;
        b->cap = cap;
    }
    uint8_t *p = b->buf + b->len;
    b->len += n;
    return p;
}

void pv_frame_begin(pv_buf *b, uint16_t type, uint32_t chan, uint32_t req)
{
    b->frame_start = b->len;
    uint8_t *p = reserve(b, PV_HDR_SIZE);
    if (!p)
        return;
    pv_hdr h = {0, chan, req, type, 0};
    pv_hdr_encode(&h, p);
}

static void put_field(pv_buf *b, uint16_t tag, const void *data, size_t n)
{
    if (n > PV_MAX_PAYLOAD) {
        buf_fail(b, E2BIG);
        return;
    }
    uint8_t *p = reserve(b, PV_FIELD_HDR_SIZE + n);
    if (!p)
        return;
    put_le(p, tag, 2);
    put_le(p + 2, n, 4);
    if (n)
        memcpy(p + PV_FIELD_HDR_SIZE, data, n);
}

void pv_put_u64(pv_buf *b, uint16_t tag, uint64_t v)
{
    uint8_t tmp[8];
    put_le(tmp, v, 8);
    put_field(b, tag, tmp, 8);
}

void pv_put_i64(pv_buf *b, uint16_t tag, int64_t v) { pv_put_u64(b, tag, (uint64_t)v); }

void pv_put_bytes(pv_buf *b, uint16_t tag, const void *data, size_t n) { put_field(b, tag, data, n); }

void pv_put_str(pv_buf *b, uint16_t tag, const char *s) { put_field(b, tag, s, strlen(s)); }

size_t pv_put_open(pv_buf *b, uint16_t tag)
{
    size_t at = b->len;
    put_field(b, tag, NULL, 0);
    return at;
}

uint8_t *pv_put_room(pv_buf *b, size_t n)
{
    uint8_t *p = reserve(b, n);
    if (p)
        b->len -= n;
    return p;
}

void pv_put_commit(pv_buf *b, size_t n) { b->len += n; }

void pv_put_close(pv_buf *b, size_t at)
{
    if (!b->failed)
        put_le(b->buf + at + 2, b->len - at - PV_FIELD_HDR_SIZE, 4);
}

int pv_frame_end(pv_buf *b)
{
    if (b->failed)
        return -1;
    put_le(b->buf + b->frame_start, b->len - b->frame_start - PV_HDR_SIZE, 4);
    return 0;
}

/* ---- decoding ---- */
void pv_hdr_encode(const pv_hdr *h, uint8_t out[PV_HDR_SIZE])
{
    put_le(out, h->len, 4);
    put_le(out + 4, h->chan, 4);
    put_le(out + 8, h->req, 4);
    put_le(out + 12, h->type, 2);
    put_le(out + 14, h->flags, 2);
}

int pv_hdr_decode(const uint8_t in[PV_HDR_SIZE], pv_hdr *h)
{
    h->len = (uint32_t)get_le(in, 4);
    h->chan = (uint32_t)get_le(in + 4, 4);
    h->req = (uint32_t)get_le(in + 8, 4);
    h->type = (uint16_t)get_le(in + 12, 2);
    h->flags = (uint16_t)get_le(in + 14, 2);
    return h->len > PV_MAX_PAYLOAD ? -1 : 0;
}

static const pv_field_spec *field_spec(const pv_msg_spec *s, uint16_t tag)
{
    for (size_t i = 0; i < s->nfields; i++)
        if (s->fields[i].tag == tag)
            return &s->fields[i];
    return NULL;
}

int pv_msg_decode(const pv_hdr *hdr, const uint8_t *payload, pv_msg *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->hdr = *hdr;
    const pv_msg_spec *s = pv_msg_lookup(hdr->type);
    if (!s) {
        snprintf(err, errlen, "unknown message type %u", hdr->type);
        return -1;
    }
    if (hdr->len > PV_MAX_PAYLOAD) {
        snprintf(err, errlen, "payload of %u bytes exceeds the %u byte limit", hdr->len, PV_MAX_PAYLOAD);
        return -1;
    }
    /* Upper bound on the field count is known from the length, so one
     * allocation suffices and it is proportional to bytes actually received. */
    size_t maxf = hdr->len / PV_FIELD_HDR_SIZE;
    if (maxf) {
        out->fields = calloc(maxf, sizeof(pv_field));
        if (!out->fields) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    size_t off = 0;
    while (off < hdr->len) {
        if (hdr->len - off < PV_FIELD_HDR_SIZE) {
            snprintf(err, errlen, "%s: truncated field header at offset %zu", s->name, off);
            goto fail;
        }
        uint16_t tag = (uint16_t)get_le(payload + off, 2);
        uint32_t len = (uint32_t)get_le(payload + off + 2, 4);
        off += PV_FIELD_HDR_SIZE;
        if (len > hdr->len - off) {
            snprintf(err, errlen, "%s: field %u overruns the payload", s->name, tag);
            goto fail;
        }
        const pv_field_spec *fs = field_spec(s, tag);
        if (!fs) {
            snprintf(err, errlen, "%s: unexpected field tag %u", s->name, tag);
            goto fail;
        }
        if (fs->kind != PV_K_BYTES && len != 8) {
            snprintf(err, errlen, "%s: field %s must be 8 bytes, got %u", s->name, fs->name, len);
            goto fail;
        }
        if (!(fs->flags & PV_F_REPEATED) && pv_msg_has(out, tag)) {
            snprintf(err, errlen, "%s: field %s repeated", s->name, fs->name);
            goto fail;
        }
        out->fields[out->nfields++] = (pv_field){tag, len, payload + off};
        off += len;
    }
    for (size_t i = 0; i < s->nfields; i++) {
        if ((s->fields[i].flags & PV_F_REQUIRED) && !pv_msg_has(out, s->fields[i].tag)) {
            snprintf(err, errlen, "%s: missing required field %s", s->name, s->fields[i].name);
            goto fail;
        }
    }
    return 0;
fail:
    pv_msg_free(out);
    return -1;
}

void pv_msg_free(pv_msg *m)
{
    free(m->fields);
    m->fields = NULL;
    m->nfields = 0;
}

const pv_field *pv_msg_next(const pv_msg *m, uint16_t tag, size_t *pos)
{
    for (; *pos < m->nfields; (*pos)++)
        if (m->fields[*pos].tag == tag)
            return &m->fields[(*pos)++];
    return NULL;
}

const pv_field *pv_msg_get(const pv_msg *m, uint16_t tag)
{
    size_t pos = 0;
    return pv_msg_next(m, tag, &pos);
}

bool pv_msg_has(const pv_msg *m, uint16_t tag) { return pv_msg_get(m, tag) != NULL; }

size_t pv_msg_count(const pv_msg *m, uint16_t tag)
{
    size_t n = 0, pos = 0;
    while (pv_msg_next(m, tag, &pos))
        n++;
    return n;
}

uint64_t pv_msg_u64(const pv_msg *m, uint16_t tag, uint64_t dflt)
{
    const pv_field *f = pv_msg_get(m, tag);
    return (f && f->len == 8) ? get_le(f->data, 8) : dflt;
}

int64_t pv_msg_i64(const pv_msg *m, uint16_t tag, int64_t dflt)
{
    const pv_field *f = pv_msg_get(m, tag);
    return (f && f->len == 8) ? (int64_t)get_le(f->data, 8) : dflt;
}

char *pv_msg_strdup(const pv_msg *m, uint16_t tag)
{
    const pv_field *f = pv_msg_get(m, tag);
    if (!f || memchr(f->data, 0, f->len))
        return NULL;
    char *s = malloc(f->len + 1);
    if (!s)
        return NULL;
    memcpy(s, f->data, f->len);
    s[f->len] = 0;
    return s;
}
