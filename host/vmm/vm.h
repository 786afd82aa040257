/* One guest: a QEMU process, its QMP socket, its console log and the agent
 * connection. Every wait has a deadline; every failure leaves an error
 * message that names the VM.
 *
 * The Lua bindings (host/lua) read a pv_vm but change it only through the
 * calls below; requests are built in vm->out with the pv_put_* codec
 * between vm_begin* and vm_call/vm_send. */
#ifndef PROVIUM_VM_H
#define PROVIUM_VM_H
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../../common/proto.h"
#include "../config/config.h"
#include "qmp.h"
#include "router.h"
#include "shim.h"
#include "../util/util.h"

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
    pv_disk_spec *disks; /* boot option disks, after the profile's */
    size_t ndisks;
} vm_boot_opts;

struct pv_vm;
/* Names the worker whose channels begin at worker_chan (its id <<
 * PV_WORKER_SHIFT) in errors: "worker 2 (fork, pid 91, uid 1000) of VM 'x'";
 * refresh asks it for its uid first. */
typedef void (*vm_who_fn)(struct pv_vm *vm, uint32_t worker_chan, bool refresh, char *buf, size_t len);

/* A deadline no wait of a VM outlives (absolute now_ms(), 0: none), shared
 * by the VMs of one Lua state: the running test's (P.set_deadline), or the
 * REPL's Ctrl-C. Its owner may move it at any time, from a signal handler
 * too; a wait re-reads it each slice. */
typedef struct vm_deadline {
    volatile int64_t ms;
} vm_deadline;

typedef struct pv_vm {
    char *name;
    const vm_deadline *deadline; /* NULL: none; see vm_set_deadline_source */
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
    chan_table chans; /* see router.h; changed only through vm_chan_* */
    unsigned generation; /* bumped by every boot, reset and restore */
    vm_who_fn who_fn; /* set with vm_set_who_fn */
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
    struct vm_disks *disks; /* host/vmm/disk.h; NULL: none */
} pv_vm;


/* Called when a wait for the guest agent has lasted 2 s (with what it waits
 * for) and again with NULL when that wait ends: the runner says what a
 * file that timed out was waiting for. */
extern void (*vm_wait_hook)(const char *what);

pv_vm *vm_new(const char *name, const pv_profile *profile, const char *scratch_root);
const char *vm_state_name(vm_state s);
int vm_boot(pv_vm *vm, const vm_boot_opts *opts, char *err, size_t errlen);
/* Starts a request frame on channel 0 (the VM's own agent) in vm->out;
 * returns its request id. */
uint32_t vm_begin(pv_vm *vm, uint16_t type);
/* Like vm_begin, on channel chan: a worker's (its requests), or a stream's
 * (the reply comes back on that channel). */
uint32_t vm_begin_on(pv_vm *vm, uint16_t type, uint32_t chan);
/* Sends vm->out and waits for the reply with the same id. timeout_ms < 0
 * waits as long as the guest lives. A PV_MSG_ERROR reply is returned as
 * -1 with its message in err and its errno in *guest_errno (if non-NULL). */
int vm_call(pv_vm *vm, vm_reply *reply, int64_t timeout_ms, int *guest_errno, char *err, size_t errlen);
/* Errors of requests on a worker's channels name the worker through fn. */
void vm_set_who_fn(pv_vm *vm, vm_who_fn fn);
/* Sends vm->out without waiting; the reply is routed to the vm_chan of its
 * channel when that channel's await_req names it. */
int vm_send(pv_vm *vm, char *err, size_t errlen);

/* Channels (router.h). The VM layer owns them; callers read them and
 * change them only through these. A new channel's id carries base (0, or a
 * worker's channel) in its high bits; proc marks an async process. */
const vm_chan *vm_chan_open(pv_vm *vm, uint32_t base, bool proc);
/* The relayed channel of a worker whose id the agent just handed out: its
 * request channel, where WORKER_EXIT comes. What a previous worker with the
 * same id left unfinished is marked lost. */
const vm_chan *vm_chan_open_worker(pv_vm *vm, uint32_t base);
/* A new channel on base with a request of type begun on it whose reply
 * lands in the channel (send it with vm_send). */
const vm_chan *vm_chan_open_await(pv_vm *vm, uint32_t base, uint16_t type);
const vm_chan *vm_chan_find(const pv_vm *vm, uint32_t id);
/* Every channel, newest first (follow ->next). */
const vm_chan *vm_chan_first(const pv_vm *vm);
size_t vm_chan_count(const pv_vm *vm);
/* The first n bytes of log stream of channel id were read: drop them. */
void vm_chan_consume(pv_vm *vm, uint32_t id, int stream, size_t n);
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
/* The kernel command line a boot of vm with o uses. */
char *vm_build_cmdline(const pv_vm *vm, const vm_boot_opts *o);
/* Sets the guest wall clock (seconds since the epoch). */
int vm_set_clock(pv_vm *vm, double seconds, char *err, size_t errlen);
/* The test set the guest clock itself: restores keep the snapshot's time. */
void vm_note_clock_set(pv_vm *vm);
/* Drops the agent connection and makes a new one, as a restore does: the
 * agent abandons the old connection's work and greets again. */
int vm_reconnect(pv_vm *vm, char *err, size_t errlen);
/* Content identity of a host file (sha256, cached by path/size/mtime). */
const char *vm_file_identity(const char *path);

/* Compressed guest RAM (ramzst.c): the path of a sparse, uncompressed copy
 * on /dev/shm of a RAM file stored by a snapshot, unpacked on first use
 * (callers free the path). */
char *ram_unpacked(const char *zst_path, char *err, size_t errlen);

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

/* The QEMU command line of a boot of vm with opts, initrd and cmdline (from
 * shim_prepare_initrd and vm_build_cmdline), from the RAM file ram_file
 * (NULL: a fresh one) and as a migration target if incoming. Records what
 * the VM is started with, creates its scratch dir and RAM file; vm_launch
 * runs it, the benchmark runs it raw. NULL-terminated, free with
 * vm_argv_free; NULL with err set on failure. */
char **vm_qemu_argv(pv_vm *vm, const vm_boot_opts *opts, const char *initrd, const char *cmdline,
                    const char *ram_file, bool incoming, char *err, size_t errlen);
void vm_argv_free(char **argv);

/* Every wait of vm ends by d's deadline as well (d outlives the VM; NULL: none). */
void vm_set_deadline_source(pv_vm *vm, const vm_deadline *d);

/* The QEMU machine type a profile boots on. */
const char *vm_machine(const pv_profile *p);
#endif
