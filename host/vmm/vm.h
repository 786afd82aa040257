/* One guest: a QEMU process, its QMP socket, its console log and the agent
 * connection. Every wait has a deadline; every failure leaves an error
 * message that names the VM. */
#ifndef PROVIUM_VM_H
#define PROVIUM_VM_H
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../../common/proto.h"
#include "../config/config.h"
#include "qmp.h"
#include "shim.h"
#include "../util/util.h"

/* Returned replies keep their payload alive until vm_reply_free. */
typedef struct {
    pv_msg msg;
    uint8_t *payload;
} vm_reply;

typedef enum { VM_CREATED, VM_BOOTED, VM_PAUSED, VM_SHUTDOWN, VM_DEAD } vm_state;

typedef struct {
    int64_t memory; /* bytes, 0 = profile default */
    int cpus;       /* 0 = profile default */
    char *kernel_cmdline; /* replaces the profile's base command line */
    pv_inject_file *files;
    size_t nfiles;
    double initial_time; /* seconds since the epoch; 0 = the host's time */
    bool has_rng_seed;
    uint64_t rng_seed; /* feeds a virtio-rng device with a reproducible stream */
    bool no_boot_cache; /* boot option boot_cache = false (see boot_cache.h) */
} vm_boot_opts;

/* A logical channel: an async process or a stream. Frames the agent pushes
 * on it (output, EOF, the final result) are collected here until read. */
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

typedef struct pv_vm {
    char *name;
    pv_profile profile; /* deep copy: the VM outlives nothing it points to */
    vm_state state;
    pid_t qemu_pid;
    int pidfd;
    int agent_fd;
    qmp_conn qmp;
    char *dir; /* private scratch directory of this VM */
    char *console_path;
    uint32_t next_req;
    uint8_t *in;
    size_t in_len, in_cap;
    pv_buf out;
    char *agent_version;
    double boot_seconds;
    char *dead_reason;
    bool classic; /* created by the classic dialect: classic result shapes */
    vm_chan *chans;
    uint32_t next_chan;
    unsigned generation; /* bumped by every boot, reset and restore */
    uint32_t chan_base; /* channel of vm_begin and high bits of vm_chan_open ids: 0, or a worker's */
    /* While chan_base is a worker's: names that worker in errors ("worker 2
     * (fork, pid 91, uid 1000) of VM 'x'"); refresh asks it for its uid
     * first. Set by the Lua layer (host/lua/lua_worker.c). */
    void (*who_fn)(struct pv_vm *vm, bool refresh, char *buf, size_t len);
    /* what the running QEMU was started with; snapshots record it */
    int64_t mem_bytes;
    int cpus;
    bool kvm; /* runs under -accel kvm (see accel.h), else TCG */
    char *cmdline;
    char *initrd_path;
    char *qemu_version;
    char *ram_path;  /* file behind guest RAM */
    int ram_fd;      /* host's handle on it when shared (copied at snapshot) */
    bool ram_shared; /* share=on: the migration stream leaves RAM out */
    /* set by the boot cache before a restore: the saved RAM is copied into a
     * fresh shared RAM file instead of mapped privately, so the VM is like a
     * cold-booted one (its snapshots leave RAM out of the stream); and the
     * console log the boot cache wrote before the launch is kept */
    bool ram_copy;
    bool console_append;
    bool boot_cached; /* the last boot was a restore from the boot cache */
    char *boot_warning; /* what the boot cache had to warn about in the last boot, or NULL */
    bool time_pinned; /* the test set the clock: restores keep the snapshot's */
    bool has_rng_seed; /* booted with a seeded virtio-rng (part of the machine) */
    uint64_t rng_seed;
    /* console watch while waiting for replies: an oops on the console ends
     * the wait at once instead of at the timeout (read_frame) */
    int64_t console_scanned; /* bytes of the console log already looked at */
    int64_t oops_seen_ms;    /* now_ms() when an oops line appeared, 0: none */
    bool agent_up;           /* READY received on this connection */
    uint16_t wait_op;        /* the request vm_call waits for, 0: none */
    int64_t port_closed_ms;  /* now_ms() when QEMU said the guest closed the agent's port, 0: open */
    char oops_line[200];
    struct vm_nics *nics; /* virtio-net NICs (vm_nic.h) */
} pv_vm;


/* Called when a wait for the guest agent has lasted 2 s (with what it waits
 * for) and again with NULL when that wait ends: the runner says what a
 * file that timed out was waiting for. */
extern void (*vm_wait_hook)(const char *what);

pv_vm *vm_new(const char *name, const pv_profile *profile, const char *scratch_root);
const char *vm_state_name(vm_state s);
int vm_boot(pv_vm *vm, const vm_boot_opts *opts, char *err, size_t errlen);
/* Starts a request frame on channel 0 in vm->out; returns its request id. */
uint32_t vm_begin(pv_vm *vm, uint16_t type);
/* Sends vm->out and waits for the reply with the same id. timeout_ms < 0
 * waits as long as the guest lives. A PV_MSG_ERROR reply is returned as
 * -1 with its message in err and its errno in *guest_errno (if non-NULL). */
int vm_call(pv_vm *vm, vm_reply *reply, int64_t timeout_ms, int *guest_errno, char *err, size_t errlen);
void vm_reply_free(vm_reply *r);
/* Who the current request speaks for, for error messages: "VM 'x'" or the
 * worker's name (see who_fn). */
const char *vm_who(pv_vm *vm, bool refresh, char *buf, size_t len);
/* Like vm_begin, on channel chan (the reply comes back on that channel). */
uint32_t vm_begin_on(pv_vm *vm, uint16_t type, uint32_t chan);
/* Sends vm->out without waiting; the reply is routed to the vm_chan of its
 * channel when that channel's await_req names it. */
int vm_send(pv_vm *vm, char *err, size_t errlen);
vm_chan *vm_chan_open(pv_vm *vm);
vm_chan *vm_chan_find(pv_vm *vm, uint32_t id);
void vm_chan_free(pv_vm *vm, uint32_t id);
/* Reads and routes one frame. 1: progress, 0: deadline passed, -1: the VM
 * is gone (err set, state dead). deadline_ms < 0 waits without limit. */
int vm_pump(pv_vm *vm, int64_t deadline_ms, char *err, size_t errlen);
int vm_shutdown(pv_vm *vm, char *err, size_t errlen);
/* Snapshot into directory dir (created): device state, RAM, meta.json.
 * The VM keeps running. */
int vm_snapshot(pv_vm *vm, const char *dir, char *err, size_t errlen);
/* Same, for a VM the caller paused: it stays paused (lab snapshots pause
 * every member first so the set is coherent). */
int vm_snapshot_paused(pv_vm *vm, const char *dir, char *err, size_t errlen);
/* Boots vm from a snapshot directory; fails clearly when the snapshot was
 * taken with another kernel, initrd, QEMU or memory size. */
int vm_restore(pv_vm *vm, const char *dir, char *err, size_t errlen);
/* Internal to host/vmm: launch QEMU, optionally as a migration target. */
int vm_launch(pv_vm *vm, const vm_boot_opts *opts, const char *initrd, const char *cmdline, const char *ram_file,
              bool incoming, char *err, size_t errlen);
int vm_set_ignore_shared(pv_vm *vm, bool on, char *err, size_t errlen);
int vm_qmp(pv_vm *vm, const char *cmd, json_t *args, json_t **ret, char *err, size_t errlen);
/* The kernel command line a boot of vm with o uses. */
char *vm_build_cmdline(const pv_vm *vm, const vm_boot_opts *o);
/* Sets the guest wall clock (seconds since the epoch). */
int vm_set_clock(pv_vm *vm, double seconds, char *err, size_t errlen);
/* Adds the console tail to err and kills QEMU. */
void vm_launch_failed(pv_vm *vm, char *err, size_t errlen);
int vm_reconnect(pv_vm *vm, char *err, size_t errlen);
int vm_hello(pv_vm *vm, int64_t deadline, char *err, size_t errlen);
/* Content identity of a host file (sha256, cached by path/size/mtime). */
const char *vm_file_identity(const char *path);

/* Compressed guest RAM (ramzst.c): ram_compress stores the allocated parts of
 * the RAM file src (size bytes) as zstd frames in dst_path; ram_unpacked
 * returns the path of a sparse, uncompressed copy of such a file on /dev/shm,
 * unpacking it on first use (callers free the path). */
int ram_compress(int src, int64_t size, const char *dst_path, char *err, size_t errlen);
char *ram_unpacked(const char *zst_path, char *err, size_t errlen);
/* Copies the allocated parts of the file src_path into dst_fd (sparse). */
int ram_copy_into(const char *src_path, int dst_fd, char *err, size_t errlen);

/* Writes data to the serial console within timeout_ms (<= 0: no limit of
 * its own; the per-test deadline still applies). */
int vm_console_write(pv_vm *vm, const void *data, size_t len, int64_t timeout_ms, char *err, size_t errlen);
int vm_pause(pv_vm *vm, char *err, size_t errlen);
int vm_resume(pv_vm *vm, char *err, size_t errlen);
int vm_reset(pv_vm *vm, char *err, size_t errlen);
int vm_power_button(pv_vm *vm, char *err, size_t errlen);
/* Kills QEMU at once and removes the scratch directory; safe in any state. */
void vm_kill(pv_vm *vm);
/* The last lines of the serial console (new string). */
char *vm_console_tail(const pv_vm *vm, int lines);
void vm_free(pv_vm *vm);

/* The QEMU command line vm_boot would run (for benchmarks); NULL-terminated,
 * caller frees each string and the array. */
char **vm_qemu_argv(pv_vm *vm, const vm_boot_opts *opts, char *err, size_t errlen);

/* Absolute now_ms() deadline applied to every wait (0: none). */
void vm_set_global_deadline(int64_t deadline_ms);

/* The QEMU machine type a profile boots on. */
const char *vm_machine(const pv_profile *p);
#endif
