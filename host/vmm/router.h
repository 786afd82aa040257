/* The host end of the agent connection, as pure functions of the bytes
 * received: where a frame ends, which logical channel a frame belongs to,
 * and what a reply or a handshake says. Nothing here reads, writes, waits or
 * looks at the clock; host/vmm/agent_conn.c does the I/O around it, and
 * tests/fuzz/fuzz_host_reply.c feeds it arbitrary bytes.
 *
 * A channel (an async process, a stream, a worker, an awaited request)
 * collects what the agent pushes on it until the Lua layer reads it. */
#ifndef PROVIUM_ROUTER_H
#define PROVIUM_ROUTER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/proto.h"
#include "../util/util.h"

/* Returned replies keep their payload alive until vm_reply_free. */
typedef struct {
    pv_msg msg;
    uint8_t *payload;
} vm_reply;

void vm_reply_free(vm_reply *r);

#define VM_STREAMS 3 /* 0 stdout, 1 stderr, 2 tail */
typedef struct vm_chan {
    uint32_t id;
    strbuf log[VM_STREAMS];
    bool eof[VM_STREAMS];
    bool done; /* the process's EXEC_RESULT arrived (or the awaited reply) */
    bool lost; /* the guest rebooted or died before the end */
    bool proc; /* an async process (run_async): worker:join waits for it */
    uint32_t await_req; /* a request sent with vm_send whose reply lands here */
    vm_reply result;
    struct vm_chan *next;
} vm_chan;

/* Every open channel of one agent connection, newest first. */
typedef struct {
    vm_chan *head;
    uint32_t next_id; /* low bits of the last id handed out */
} chan_table;

/* Where the frame at the start of in (len bytes) stands. FRAME_PARTIAL: more
 * bytes are needed, *need says how many in all (the whole frame once the
 * header is in, else a read's worth more). FRAME_OVERSIZE: the header
 * declares more than the protocol allows (the connection is unusable). */
typedef enum { FRAME_PARTIAL, FRAME_READY, FRAME_OVERSIZE } frame_status;
frame_status router_frame(const uint8_t *in, size_t len, pv_hdr *hdr, size_t *need);

/* What a whole frame is to a host waiting for request want_req on channel
 * want_chan (want_req 0: waiting for no reply). ROUTE_REPLY: that reply (the
 * caller takes it with router_reply); ROUTE_PUSHED: delivered to its
 * channel; ROUTE_DROPPED: for nobody (a closed channel, a late reply to a
 * request that timed out, a malformed push). */
typedef enum { ROUTE_REPLY, ROUTE_PUSHED, ROUTE_DROPPED } route_event;
route_event router_route(chan_table *t, const pv_hdr *hdr, const uint8_t *payload, uint32_t want_req,
                         uint32_t want_chan);

/* Copies and decodes the reply frame into *out, for a request of type
 * req_type. 0: done (an ERROR reply included); -1: malformed (why says
 * how); -2: a frame type that does not answer req_type. On failure *out
 * holds nothing. */
int router_reply(const pv_hdr *hdr, const uint8_t *payload, uint16_t req_type, vm_reply *out, char *why,
                 size_t whylen);

/* Decodes the agent's READY greeting: its protocol version and its version
 * string (new string or NULL). -1 when it is malformed (why set). */
int router_ready(const pv_hdr *hdr, const uint8_t *payload, uint64_t *proto, char **agent_version, char *why,
                 size_t whylen);

/* A new channel whose id carries base (0, or a worker's channel) in its high
 * bits; low bits count up and wrap below the worker bits. */
vm_chan *chans_open(chan_table *t, uint32_t base);
/* A channel with exactly this id (a worker's own channel): a previous one
 * with that id is freed, and unfinished channels of the same worker are
 * marked lost (they belonged to the worker that had the id before). */
vm_chan *chans_open_exact(chan_table *t, uint32_t id);
vm_chan *chans_find(const chan_table *t, uint32_t id);
void chans_free(chan_table *t, uint32_t id);
void chans_free_all(chan_table *t);
size_t chans_count(const chan_table *t);
/* The connection ended: every stream is at EOF, every unfinished channel lost. */
void chans_end_all(chan_table *t);
/* Drops the first n bytes of log stream of channel ch (they were read). */
void chans_consume(vm_chan *ch, int stream, size_t n);
#endif
