/* Internals of the user-space switch (netsw.h), shared by its files:
 * netsw.c (the control calls, run on the Lua thread), netsw_fwd.c (the
 * forwarding thread), netsw_timerq.c (delayed frames), netsw_pcap.c
 * (captures) and netsw_uplink.c (the NAT helper). One mutex (netsw.lock)
 * guards everything below; the forwarding thread holds it while it handles a
 * batch of events and never while it waits. */
#ifndef PROVIUM_NETSW_INT_H
#define PROVIUM_NETSW_INT_H
#include "netsw.h"

#include <pthread.h>
#include <stdio.h>
#include <sys/types.h>

/* QEMU's stream netdev: 4-byte big-endian length, then the frame. QEMU never
 * sends more than its NET_BUFSIZE (68 KiB); anything longer is a broken peer. */
#define NETSW_MAX_FRAME (69 * 1024)
#define NETSW_RBUF (256 * 1024)
/* Frames waiting for a slow reader beyond this are dropped (a switch port
 * has a finite buffer too); QEMU drains its socket far faster than this fills. */
#define NETSW_OUTQ_LIMIT (4u * 1024 * 1024)
/* Backpressure, as a QEMU-to-QEMU stream link has it: a sender whose frames
 * fill a port's queue past HIGH stops being read until that queue drains
 * below LOW. A port that does not drain for NETSW_STUCK_MS (a paused VM)
 * stops holding senders back and drops at the limit instead, so one stalled
 * guest never stalls the bridge. */
#define NETSW_OUTQ_HIGH (1u * 1024 * 1024)
#define NETSW_OUTQ_LOW (256u * 1024)
#define NETSW_STUCK_MS 200
#define NETSW_MAC_TABLE 256
#define NETSW_MAX_DELAY_MS 60000.0
#define NETSW_MIN_RATE_BPS 8000u
#define NETSW_UPLINK_NAME "@uplink"

/* xoshiro256** state, seeded through splitmix64. */
typedef struct {
    uint64_t s[4];
} netsw_rng;
void netsw_rng_seed(netsw_rng *r, uint64_t seed);
uint64_t netsw_rng_next(netsw_rng *r);
/* Uniform in [0, 1) from the top 53 bits. */
double netsw_rng_unit(netsw_rng *r);
uint64_t netsw_name_hash(const char *s);

typedef struct out_frame {
    struct out_frame *next;
    size_t len;  /* header + frame */
    uint8_t data[];
} out_frame;

/* A VM as a bridge knows it: rules and isolation are keyed by VM name, and a
 * member outlives its ports so that rules survive a detach/attach. */
typedef struct member {
    struct member *next;
    char *name;
    bool isolated;
} member;

/* State of one direction from -> to: its own rule (if any), the partition,
 * and what the impairments remember between frames (PRNG stream, token
 * bucket clock). Created on first use; every pair draws from its own stream
 * so one pair's decisions do not depend on other pairs' traffic. */
typedef struct pair {
    struct pair *next;
    member *from, *to;
    bool has_rule, blocked;
    netsw_impair rule;
    netsw_rng rng;
    int64_t bucket_ns; /* token bucket virtual clock (GCRA) */
} pair;

typedef struct bridge bridge;

typedef struct port {
    netsw_port_id id;
    bridge *br;
    member *m;
    uint8_t mac[6];
    char *path;
    int lfd, cfd;
    bool up;
    uint32_t ev_mask;          /* what epoll watches on cfd now */
    bool paused, resume_due;   /* not read while a destination is congested */
    int64_t paused_ns;
    netsw_port_id waiting_for; /* the congested destination */
    bool stuck;                /* this port did not drain: no longer pauses senders */
    bool flush_due;            /* frames queued in this batch, not yet sent */
    uint8_t *rbuf;
    size_t rlen;
    out_frame *qhead, *qtail;
    size_t qbytes, qoff; /* bytes queued; bytes of qhead already sent */
    netsw_counters c;
} port;

typedef struct {
    uint8_t mac[6];
    netsw_port_id port;
} mac_entry;

struct bridge {
    bridge *next;
    char *name;
    uint64_t seed;
    netsw_impair def;
    member *members;
    pair *pairs;
    mac_entry macs[NETSW_MAC_TABLE];
    int n_macs, mac_next;
    netsw_port_id uplink_port;
    pid_t uplink_pid;
};

typedef struct capture {
    struct capture *next;
    int id;
    bridge *br;
    netsw_port_id port; /* 0: the whole bridge */
    FILE *f;
    char *path;
    uint64_t packets;
    bool dirty;
} capture;

typedef struct {
    int64_t due_ns;
    uint64_t seq;
    netsw_port_id src, dst;
    out_frame *f;
} delayed;

typedef struct {
    delayed *v;
    size_t n, cap;
    uint64_t seq;
} timerq;
void timerq_push(timerq *q, delayed d);
bool timerq_pop_due(timerq *q, int64_t now_ns, delayed *out);
int64_t timerq_next_due(const timerq *q); /* -1 when empty */
void timerq_free(timerq *q);

struct netsw {
    pthread_mutex_t lock;
    pthread_t thread;
    bool thread_started, stopping;
    char *dir;
    int epfd, wakefd, timerfd;
    bridge *bridges;
    port **ports; /* indexed by id; NULL once removed */
    int n_ports;
    capture *captures;
    int next_capture;
    timerq delayed;
};

/* epoll data: the port id, and whether the event is for its listening socket. */
#define EV_LISTEN(id) (((uint64_t)(id) << 2) | 1)
#define EV_CONN(id) (((uint64_t)(id) << 2) | 2)
#define EV_WAKE 0
#define EV_TIMER 3

/* Writes the message into err (PV_NETSW_ERR bytes) and returns -1. */
int netsw_fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define ERR(...) netsw_fail(err, __VA_ARGS__)

int64_t netsw_now_ns(void);
void *netsw_thread_main(void *arg);
port *netsw_port_get(netsw *sw, netsw_port_id id);
pair *netsw_pair_get(bridge *br, member *from, member *to);
void netsw_port_disconnect(netsw *sw, port *p);
void netsw_port_set_interest(netsw *sw, port *p);

int pcap_open(capture *c, char *err);
void pcap_write(capture *c, const uint8_t *frame, size_t len);
void pcap_close(capture *c);
/* Captures for this frame: the bridge-wide ones (port 0) when p is 0, else
 * the ones on port p. */
void netsw_capture_frame(netsw *sw, bridge *br, netsw_port_id p, const uint8_t *frame, size_t len);
void netsw_captures_flush(netsw *sw);

/* The NAT helper behind an uplink port (netsw_uplink.c). */
int uplink_addresses(const char *cidr, char net[32], char gw[16], char dns[16], char *err);
pid_t uplink_spawn(const char *cidr, const char *sock_path, char *err);
void uplink_kill(pid_t pid);
#endif
