/* Shared declarations of the guest agent. */
#ifndef PROVIUM_AGENT_H
#define PROVIUM_AGENT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <poll.h>

#include "../common/proto.h"
#include "spawn.h"
#include "util.h"

#define AGENT_VERSION "0.1.0"
#define AGENT_PORT_NAME "org.provium.agent.0"

/* log.c: messages go to /dev/kmsg when it exists (they land on the guest
 * console), else to stderr. */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* sysinit.c */
void sysinit_mount_basics(void);
void sysinit_mount_scratch(void);
/* Value of a "key=value" parameter from /proc/cmdline, or NULL (static buffer). */
const char *sysinit_cmdline_param(const char *key);
void sysinit_load_modules(const char *dir);

/* rootfs.c: a disk boot (the wrapper started as the shim's /init). */
bool rootfs_is_disk_boot(const char *argv0);
/* Waits for root=, mounts it (with a tmpfs overlay when read-only and the
 * kernel has overlayfs) and switches to it; *agent_fd keeps the agent's
 * binary, which the switch leaves behind. -1 after printing why. */
int rootfs_enter(const char *agent_path, int *agent_fd);
/* init= of the command line (the disk's init), "/sbin/init" by default. */
const char *rootfs_init_path(void);

/* port.c: opens the virtio-serial port named AGENT_PORT_NAME; waits up to
 * timeout_ms for the device to appear. Returns fd or -1. */
int port_open(int timeout_ms);

/* landing.c: a large write written into its file as it arrives (see there). */
#define LAND_MIN_BYTES (256u * 1024u)
#define LAND_PREFIX_MAX 8192 /* room for the fields before DATA */
#define LAND_STAGE_BYTES (64u * 1024u)
typedef enum {
    LAND_NEVER,          /* the default: e.g. the relay's reader of worker replies */
    LAND_LOCAL_CHANNELS, /* the agent: not for frames it relays to workers */
    LAND_ALL             /* a worker's end: every frame is its own */
} land_policy;
typedef struct {
    bool active;
    pv_hdr hdr;       /* the request's */
    int fd;           /* the target (for FD_WRITE a duplicate of the handle) */
    int user_fd;      /* FD_WRITE: the handle whose offset moves; else -1 */
    char *path;       /* WRITE_FILE: the target's path */
    off_t off;        /* where in the file the data goes */
    size_t stage_at;  /* the stage: c->in from here, LAND_STAGE_BYTES */
    size_t len, got;  /* bytes of DATA, and received so far */
    size_t written, dropped; /* of those: in the file, thrown away after err */
    int err;          /* the write error that ended the writing */
} conn_landing;

/* conn.c: the transport; frames in, frames out. */
typedef struct {
    int fd;
    bool is_port;      /* virtio-serial: read()==0 means "host away", not EOF */
    bool connected;
    uint8_t *in;       /* receive buffer */
    size_t in_len, in_cap;
    pv_buf out;        /* scratch for building replies */
    pv_buf *capture;   /* batch: replies are collected here instead of sent */
    size_t skip;       /* bytes of a frame still to discard (no memory for it) */
    pv_hdr dropped;    /* that frame's header */
    land_policy land_policy;
    conn_landing land;
} agent_conn;

/* landing.c: true when the incomplete frame at the head of c->in now lands
 * in its file as it arrives; land_fill then reads the rest (conn_fill's
 * result); land_abandon drops a landing whose host went away. */
bool land_begin(agent_conn *c);
int land_fill(agent_conn *c);
void land_abandon(agent_conn *c);

void conn_init(agent_conn *c, int fd, bool is_port);
/* Reads what is available. Returns 1 if bytes arrived, 0 on host
 * disconnect, -1 when nothing could be read (no memory for the receive
 * buffer), CONN_DROPPED when a frame was discarded whole because no buffer
 * for it could be had: c->dropped is its header, for an ENOMEM reply. */
#define CONN_DROPPED 2
int conn_fill(agent_conn *c);
/* Pops one complete frame; returns 1 and fills hdr/payload (valid until the
 * next conn_fill), 0 if none is complete. */
int conn_pop(agent_conn *c, pv_hdr *hdr, const uint8_t **payload);
void conn_consume(agent_conn *c, const pv_hdr *hdr);
/* Sends the frame built in c->out; blocking. A reply that could not be
 * built (out of memory, too large) is answered ERROR(ENOMEM or E2BIG)
 * instead; returns -1 then, and when the write fails. */
int conn_send(agent_conn *c);
/* The same, but a frame that could not be built is only -1: for callers
 * that answer that case themselves. */
int conn_try_send(agent_conn *c);
void conn_send_error(agent_conn *c, uint32_t chan, uint32_t req, int err, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void conn_send_ready(agent_conn *c);

/* The most of each kind the main loop polls at once, and so the size of its
 * poll array: a job has up to three pipes (stdin, stdout, stderr), the
 * streams share one inotify descriptor besides their own, a worker has one
 * socket; plus the signalfd and the transport. */
#define EXEC_MAX_JOBS 256
#define TAIL_MAX_STREAMS 64
#define EXEC_POLLFDS_MAX (EXEC_MAX_JOBS * 3)
#define TAIL_POLLFDS_MAX (TAIL_MAX_STREAMS + 1)
#define WORKER_POLLFDS_MAX PV_MAX_WORKERS
#define AGENT_POLLFDS_MAX (2 + EXEC_POLLFDS_MAX + TAIL_POLLFDS_MAX + WORKER_POLLFDS_MAX)

/* command.c: an EXEC request as argv, envp and cwd. */
typedef struct {
    char **argv, **envp;
    char *cwd; /* NULL: the agent's */
} exec_cmd;
/* 0, or EINVAL (a bad request) or ENOMEM with *why saying what. */
int exec_cmd_parse(exec_cmd *cmd, const pv_msg *m, const char **why);
void exec_cmd_free(exec_cmd *cmd);

/* result.c: command output kept in memory, capped at EXEC_MAX_OUTPUT per
 * stream: the rest is drained and dropped so a chatty command cannot exhaust
 * the guest. */
#define EXEC_MAX_OUTPUT PV_EXEC_MAX_OUTPUT
typedef struct {
    char *data;
    size_t len, cap;
    bool dropped; /* bytes past the cap (or past the memory) were thrown away */
} obuf;
void obuf_append_capped(obuf *b, const char *data, size_t n);
/* A drain_sink appending to the obuf it is given. */
void obuf_sink(void *buf, const char *data, size_t n);
/* An EXEC_RESULT's STDOUT, STDERR and, when output was dropped, TRUNCATED. */
void exec_put_output(agent_conn *c, const obuf *out, const obuf *err);
/* The whole EXEC_RESULT of a command that ended with wstatus (if connected). */
void exec_send_result(agent_conn *c, uint32_t chan, uint32_t req, int wstatus, bool timed_out, const obuf *out,
                      const obuf *err);

/* exec.c: asynchronous command execution driven by the main loop. */
void exec_start(agent_conn *c, const pv_msg *m);
/* The *_pollfds functions add at most max entries and count in *missed the
 * descriptors that did not fit (never expected: see AGENT_POLLFDS_MAX). */
size_t exec_pollfds(struct pollfd *pfd, size_t max, size_t *missed);
void exec_on_pollfds(agent_conn *c, const struct pollfd *pfd, size_t n);
void exec_on_sigchld(agent_conn *c);
/* Milliseconds until the nearest exec deadline, -1 if none. */
int exec_next_timeout_ms(void);
void exec_check_timeouts(agent_conn *c);
size_t exec_active_count(void);
void exec_signal(agent_conn *c, const pv_msg *m);
void exec_stdin(agent_conn *c, const pv_msg *m);
/* Host went away: its pending requests are void. Kills the jobs' groups. */
void exec_abandon_all(void);
/* A fork worker drops its copy of the parent's jobs (not its children). */
void exec_forget_all(void);

/* reply.c */
void reply_ok(agent_conn *c, const pv_msg *m);
void reply_count(agent_conn *c, const pv_msg *m, int64_t n);
char *request_path(agent_conn *c, const pv_msg *m, uint16_t tag, const char *op);

/* fsops.c, fdops.c, rawsys.c, clock.c */
void fs_stat(agent_conn *c, const pv_msg *m);
void fs_listdir(agent_conn *c, const pv_msg *m);
void fs_mkdir(agent_conn *c, const pv_msg *m);
void fs_unlink(agent_conn *c, const pv_msg *m);
void fs_rename(agent_conn *c, const pv_msg *m);
void fd_open(agent_conn *c, const pv_msg *m);
void fd_read(agent_conn *c, const pv_msg *m);
void fd_write(agent_conn *c, const pv_msg *m);
void fd_seek(agent_conn *c, const pv_msg *m);
void fd_close(agent_conn *c, const pv_msg *m);
void raw_syscall(agent_conn *c, const pv_msg *m);
void clock_op(agent_conn *c, const pv_msg *m);

/* files.c */
void files_read(agent_conn *c, const pv_msg *m);
void files_write(agent_conn *c, const pv_msg *m);

/* tail.c: file and descriptor streams pushed to the host. */
void tail_open(agent_conn *c, const pv_msg *m);
void tail_close(agent_conn *c, const pv_msg *m);
size_t tail_pollfds(struct pollfd *pfd, size_t max, size_t *missed);
void tail_on_pollfds(agent_conn *c, const struct pollfd *pfd, size_t n);
void tail_close_all(void);

/* worker.c: workers and the relay of their channels (see the file's head). */
extern bool agent_in_worker; /* this process is a fork worker */
void worker_spawn(agent_conn *c, const pv_msg *m);
void worker_kill(agent_conn *c, const pv_msg *m);
/* A frame from the host for a worker: relayed (or answered) and true. */
bool worker_relay(agent_conn *c, const pv_hdr *hdr, const uint8_t *payload);
size_t worker_pollfds(struct pollfd *pfd, size_t max, size_t *missed);
void worker_on_pollfds(agent_conn *c, const struct pollfd *pfd, size_t n);
int worker_next_timeout_ms(void);
void worker_check_timeouts(agent_conn *c);
void worker_kill_all(void);
/* Lets the worker's wake signal interrupt the calling thread's system calls. */
void worker_unblock_wake(void);

/* thread_worker.c: the loop of a thread worker, started by worker_spawn. */
typedef struct {
    int fd;         /* the thread's end of the socketpair */
    _Atomic int tid; /* set by the thread as its first act */
} thread_start;
void *thread_worker_main(void *arg);

/* agent.c */
/* Decodes a request; 0, or -1 after an ERROR reply (EPROTO for a bad
 * request, ENOMEM when the decoder ran out of memory). */
int agent_decode(agent_conn *c, const pv_hdr *hdr, const uint8_t *payload, pv_msg *m);
void agent_handle_frame(agent_conn *c, const pv_hdr *hdr, const uint8_t *payload);
int agent_serve(agent_conn *c);
int agent_main(int argc, char **argv);
int wrapper_main(int argc, char **argv);

/* kmsg.c: kernel log records written since the previous call, and the
 * kernel's taint flags (the host's kernel health checks). */
void kmsg_read(agent_conn *c, const pv_msg *m);
#endif
