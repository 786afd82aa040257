/* Provium wire protocol: framing and the message schema shared by the host and
 * the guest agent. docs/protocol.md is the prose specification of this file. */
#ifndef PROVIUM_PROTO_H
#define PROVIUM_PROTO_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PV_PROTO_VERSION 1
#define PV_HDR_SIZE 16
/* Largest payload either side accepts; a header announcing more is a protocol
 * error and the connection is dropped (never allocated). */
#define PV_MAX_PAYLOAD (32u * 1024u * 1024u)
#define PV_FIELD_HDR_SIZE 6

/* Frame header, little-endian on the wire:
 *   u32 payload_len | u32 channel | u32 request_id | u16 type | u16 flags */
typedef struct {
    uint32_t len;
    uint32_t chan;
    uint32_t req;
    uint16_t type;
    uint16_t flags;
} pv_hdr;

enum pv_msg_type {
    PV_MSG_READY = 1,       /* agent -> host, first frame after a connect */
    PV_MSG_PING = 2,
    PV_MSG_PONG = 3,
    PV_MSG_ERROR = 4,       /* reply: errno + message */
    PV_MSG_OK = 5,          /* reply without data */
    PV_MSG_EXEC = 10,
    PV_MSG_EXEC_RESULT = 11,
    PV_MSG_READ_FILE = 12,
    PV_MSG_FILE_DATA = 13,
    PV_MSG_WRITE_FILE = 14,
    PV_MSG_SHUTDOWN = 20,
    PV_MSG_HELLO = 21,      /* host -> agent after a reconnect; answered by READY */
    PV_MSG_STAT = 30,
    PV_MSG_STAT_RESULT = 31,
    PV_MSG_LISTDIR = 32,
    PV_MSG_LISTDIR_RESULT = 33,
    PV_MSG_MKDIR = 34,
    PV_MSG_UNLINK = 35,
    PV_MSG_RENAME = 36,
    PV_MSG_OPEN = 40,
    PV_MSG_HANDLE = 41,
    PV_MSG_FD_READ = 42,
    PV_MSG_FD_WRITE = 43,
    PV_MSG_COUNT = 44,
    PV_MSG_FD_SEEK = 45,
    PV_MSG_FD_CLOSE = 46,
    PV_MSG_SYSCALL = 50,
    PV_MSG_SYSCALL_RESULT = 51,
    PV_MSG_CLOCK_GET = 55,
    PV_MSG_TIME = 56,
    PV_MSG_CLOCK_SET = 57,
    PV_MSG_CLOCK_ADVANCE = 58,
    PV_MSG_PROC_STARTED = 60, /* reply to an EXEC with async=1 */
    PV_MSG_STREAM_DATA = 61,  /* pushed: bytes of a process pipe or a tail */
    PV_MSG_PROC_SIGNAL = 62,
    PV_MSG_PROC_STDIN = 63,
    PV_MSG_TAIL_OPEN = 70,
    PV_MSG_STREAM_EOF = 71,   /* pushed: the stream's source ended */
    PV_MSG_STREAM_CLOSE = 72,
    PV_MSG_BATCH = 80,
    PV_MSG_BATCH_RESULT = 81,
    PV_MSG_WORKER_SPAWN = 90,   /* host -> agent: fork or clone a worker */
    PV_MSG_WORKER_STARTED = 91, /* reply: worker id and guest pid/tid */
    PV_MSG_WORKER_KILL = 92,    /* host -> agent: close a worker's channel */
    PV_MSG_WORKER_EXIT = 93,    /* pushed on the worker's channel when it is gone */
    PV_MSG_KMSG_READ = 100,     /* host -> agent: kernel log records since the last read */
    PV_MSG_KMSG = 101,          /* reply: the records and the taint flags */
};

/* Field tags. One namespace for all messages; each message's schema below
 * says which tags it may carry. */
enum pv_tag {
    PV_T_PROTO_VERSION = 1,
    PV_T_AGENT_VERSION = 2,
    PV_T_PID = 3,
    PV_T_ERRNO = 4,
    PV_T_MESSAGE = 5,
    PV_T_ARGV = 6,
    PV_T_SHELL = 7,
    PV_T_ENV = 8,
    PV_T_ENV_CLEAR = 9,
    PV_T_CWD = 10,
    PV_T_STDIN = 11,
    PV_T_TIMEOUT_MS = 12,
    PV_T_EXIT_CODE = 13,
    PV_T_SIGNAL = 14,
    PV_T_STATUS = 15,
    PV_T_STDOUT = 16,
    PV_T_STDERR = 17,
    PV_T_PATH = 18,
    PV_T_DATA = 19,
    PV_T_MODE = 20,
    PV_T_POWEROFF = 21,
    PV_T_ECHO = 22,
    PV_T_SIZE = 23,
    PV_T_MTIME_NS = 24,
    PV_T_NAME = 25,
    PV_T_PARENTS = 26,
    PV_T_PATH2 = 27,
    PV_T_FLAGS = 28,
    PV_T_FD = 29,
    PV_T_COUNT = 30,
    PV_T_OFFSET = 31,
    PV_T_WHENCE = 32,
    PV_T_NR = 33,
    PV_T_ARG = 34,
    PV_T_BUF = 35,
    PV_T_BUF_SLOT = 36,   /* per BUF, in order: argument slot 0-5, or -1 */
    PV_T_PTR = 37,        /* 12 bytes: u32 buf, u32 offset, u32 target buf */
    PV_T_RET = 38,
    PV_T_TIME_NS = 39,
    PV_T_DELTA_NS = 40,
    PV_T_ASYNC = 41,
    PV_T_STREAM = 42,     /* 1 stdout, 2 stderr, 3 tail */
    PV_T_CHAN = 43,
    PV_T_EOF = 44,
    PV_T_START = 45,      /* tail start: 0 beginning, 1 end, 2 absolute OFFSET, 3 OFFSET before end */
    PV_T_OP = 46,         /* batch: one complete request frame */
    PV_T_REPLY = 47,      /* batch: one complete reply frame */
    PV_T_THREAD = 48,     /* worker spawn: 1 = clone a thread, 0 = fork */
    PV_T_WORKER = 49,     /* worker id, 1..PV_MAX_WORKERS */
    PV_T_TRUNCATED = 50,  /* exec result: bit 1 stdout, bit 2 stderr went over the agent's cap */
};

/* The agent keeps at most this much of each output stream of a
 * synchronous command; EXEC_RESULT's TRUNCATED says when it dropped more. */
#define PV_EXEC_MAX_OUTPUT (12u * 1024u * 1024u)

/* Workers: frames whose channel has a non-zero top byte belong to worker
 * (chan >> PV_WORKER_SHIFT); the agent relays them unchanged. Worker w's
 * request channel is w << PV_WORKER_SHIFT, its async channels lie above it. */
#define PV_WORKER_SHIFT 24
#define PV_MAX_WORKERS 255
#define PV_CHAN_WORKER(chan) ((uint32_t)(chan) >> PV_WORKER_SHIFT)

/* Largest number of operations in one BATCH. */
#define PV_MAX_BATCH 100000
/* Largest buffer count in one SYSCALL. */
#define PV_MAX_SYSCALL_BUFS 16

/* Exec status values carried in PV_T_STATUS. */
enum pv_exec_status { PV_EXEC_EXITED = 0, PV_EXEC_SIGNALLED = 1, PV_EXEC_TIMED_OUT = 2 };

typedef enum { PV_K_U64, PV_K_I64, PV_K_BYTES } pv_kind;
#define PV_F_REQUIRED 1u
#define PV_F_REPEATED 2u

typedef struct {
    uint16_t tag;
    uint8_t kind;
    uint8_t flags;
    const char *name;
} pv_field_spec;

typedef struct {
    uint16_t type;
    const char *name;
    const pv_field_spec *fields;
    size_t nfields;
} pv_msg_spec;

const pv_msg_spec *pv_msg_lookup(uint16_t type);
/* Is reply an acceptable answer to a request of type req? (ERROR always is.) */
bool pv_reply_matches(uint16_t req, uint16_t reply);
const char *pv_msg_name(uint16_t type);

/* ---- encoding ---- */
typedef struct {
    uint8_t *buf;
    size_t len, cap;
    size_t frame_start;
    bool failed; /* allocation failed or payload too large; frame unusable */
    int err;     /* then why: ENOMEM, or E2BIG past PV_MAX_PAYLOAD */
} pv_buf;

void pv_buf_init(pv_buf *b);
void pv_buf_free(pv_buf *b);
void pv_buf_reset(pv_buf *b);
void pv_frame_begin(pv_buf *b, uint16_t type, uint32_t chan, uint32_t req);
void pv_put_u64(pv_buf *b, uint16_t tag, uint64_t v);
void pv_put_i64(pv_buf *b, uint16_t tag, int64_t v);
void pv_put_bytes(pv_buf *b, uint16_t tag, const void *data, size_t n);
/* A bytes field whose data is written in place (e.g. by read(2)), so that
 * large data is copied once: pv_put_open writes the field header and returns
 * its offset; pv_put_room makes room for n more bytes and returns where they
 * go (NULL past the payload limit or without memory: the buffer is then
 * failed); pv_put_commit counts bytes written there; pv_put_close sets the
 * field's length. */
size_t pv_put_open(pv_buf *b, uint16_t tag);
uint8_t *pv_put_room(pv_buf *b, size_t n);
void pv_put_commit(pv_buf *b, size_t n);
void pv_put_close(pv_buf *b, size_t at);
void pv_put_str(pv_buf *b, uint16_t tag, const char *s);
/* Patches the length into the header. Returns 0, or -1 if the frame failed. */
int pv_frame_end(pv_buf *b);

/* ---- decoding ---- */
void pv_hdr_encode(const pv_hdr *h, uint8_t out[PV_HDR_SIZE]);
/* Returns 0, or -1 when the announced payload exceeds PV_MAX_PAYLOAD. */
int pv_hdr_decode(const uint8_t in[PV_HDR_SIZE], pv_hdr *h);

typedef struct {
    uint16_t tag;
    uint32_t len;
    const uint8_t *data;
} pv_field;

typedef struct {
    pv_hdr hdr;
    pv_field *fields; /* points into the payload buffer, which must outlive it */
    size_t nfields;
} pv_msg;

/* Decodes and validates payload against the schema of hdr->type: unknown
 * message types, unknown tags, wrong integer widths, missing required and
 * duplicated non-repeated fields are errors (message in err). */
int pv_msg_decode(const pv_hdr *hdr, const uint8_t *payload, pv_msg *out, char *err, size_t errlen);
void pv_msg_free(pv_msg *m);

const pv_field *pv_msg_get(const pv_msg *m, uint16_t tag);
bool pv_msg_has(const pv_msg *m, uint16_t tag);
uint64_t pv_msg_u64(const pv_msg *m, uint16_t tag, uint64_t dflt);
int64_t pv_msg_i64(const pv_msg *m, uint16_t tag, int64_t dflt);
/* Copies a bytes field into a fresh NUL-terminated string; NULL if absent,
 * if it contains a NUL byte, or on allocation failure. */
char *pv_msg_strdup(const pv_msg *m, uint16_t tag);
/* Iteration over repeated fields: start with *pos = 0. */
const pv_field *pv_msg_next(const pv_msg *m, uint16_t tag, size_t *pos);
size_t pv_msg_count(const pv_msg *m, uint16_t tag);

#endif
