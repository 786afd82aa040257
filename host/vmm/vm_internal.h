/* Shared between the files of host/vmm that together make one VM (vm.c, disk*.c,
 * agent_conn.c, console.c, qemu_argv.c, qemu_proc.c, tsc.c, snapshot.c,
 * boot_cache.c, qpool.c); nothing outside host/vmm includes it. */
#ifndef PROVIUM_VM_INTERNAL_H
#define PROVIUM_VM_INTERNAL_H
#include "vm.h"

#define QMP_TIMEOUT_MS 10000
#define AGENT_PORT_NAME "org.provium.agent.0"

/* tsc.c: the host's TSC rate in kHz (0: not constant or not measurable),
 * measured once per host boot and kept under the cache dir. */
long host_tsc_khz(void);

/* qemu_proc.c: the QEMU process. */
bool qemu_exited(pv_vm *vm, int *status); /* reaps it; *status says how it ended */
char *describe_exit(int status);          /* "exit status 1", "killed by signal 9" */
/* After a socket error: waits up to 0.5 s for QEMU to be reaped and, if it
 * was, writes how it ended into how. */
bool qemu_death(pv_vm *vm, char *how, size_t howlen);
char *qemu_stderr_tail(const pv_vm *vm); /* its last stderr lines (new string) */
int connect_unix(const char *path);
/* Connects to QEMU's socket vm->dir/what once QEMU listens on it. */
int connect_when_ready(pv_vm *vm, const char *what, int64_t deadline, char *err, size_t errlen);
/* A local profile: the agent binary runs on the host over a socketpair. */
int vm_launch_local(pv_vm *vm, char *err, size_t errlen);

/* console.c: the serial console log. */
/* Adds the console's last lines (and a kernel panic line) to err. */
void vm_console_explain(const pv_vm *vm, char *err, size_t errlen);
/* Looks at console bytes written since the last look for the first line of
 * an oops-class report (vm->oops_line, vm->oops_seen_ms). */
void vm_console_watch(pv_vm *vm);

/* agent_conn.c: the agent connection. */
/* The outer deadline the VM's owner set now (absolute now_ms(), 0: none). */
int64_t vm_outer_deadline(const pv_vm *vm);
/* deadline (-1: none), cut to the outer deadline. */
int64_t vm_cap_deadline(const pv_vm *vm, int64_t deadline);
/* Waits for the agent's READY on a fresh connection. */
int vm_wait_ready(pv_vm *vm, int64_t deadline, char *err, size_t errlen);
void vm_mark_dead(pv_vm *vm, const char *why);
/* The one death path: err gets the console tail, the VM is dead with err as
 * its reason, QEMU is killed. */
void vm_die(pv_vm *vm, char *err, size_t errlen);
/* Everything on the old connection is void: its replies, its channels. */
void vm_connection_reset(pv_vm *vm);

/* vm.c */
/* Launches QEMU (qemu_proc.c), optionally as a migration target. */
int vm_launch(pv_vm *vm, const vm_boot_opts *opts, const char *initrd, const char *cmdline, const char *ram_file,
              bool incoming, char *err, size_t errlen);
/* The two halves of vm_launch (qemu_proc.c): start the process, then
 * connect to it; the QEMU pool (qpool.c) runs them apart. With
 * fill_ram_from (and no ram_file), the new process copies that saved RAM
 * into the VM's fresh RAM file before it becomes QEMU, and QEMU runs with
 * -S (a spare stays paused when its state is loaded). */
int vm_launch_start(pv_vm *vm, const vm_boot_opts *opts, const char *initrd, const char *cmdline,
                    const char *ram_file, const char *fill_ram_from, bool incoming, char *err, size_t errlen);
int vm_launch_connect(pv_vm *vm, bool incoming, bool ram_file, char *err, size_t errlen);
/* vm_launch_connect once its QMP socket is connected (fd, taken over). */
int vm_launch_connected(pv_vm *vm, int fd, bool incoming, bool ram_file, char *err, size_t errlen);
/* qemu_argv.c: the VM's fields a launch sets (memory, CPUs, command line,
 * initrd, accelerator), without starting anything. */
int vm_launch_settings(pv_vm *vm, const vm_boot_opts *opts, const char *initrd, const char *cmdline, char *err,
                       size_t errlen);
/* qemu_argv.c: the argv a launch would run, as one string with the VM's
 * own paths as placeholders (NULL: no two launches of it can be alike). */
char *vm_qemu_argv_shape(const pv_vm *vm, const vm_boot_opts *opts, const char *initrd, const char *cmdline,
                         const char *ram_file, bool incoming);
int vm_set_ignore_shared(pv_vm *vm, bool on, char *err, size_t errlen);
int vm_qmp(pv_vm *vm, const char *cmd, json_t *args, json_t **ret, char *err, size_t errlen);
/* Adds QEMU's stderr and the console tail to err and kills QEMU. */
void vm_launch_failed(pv_vm *vm, char *err, size_t errlen);
/* agent_conn.c: after a restore, asks the agent to greet again (vm_hello
 * waits for the answer, vm_hello_send does not). */
int vm_hello(pv_vm *vm, int64_t deadline, char *err, size_t errlen);
int vm_hello_send(pv_vm *vm, char *err, size_t errlen);

/* snapshot.c: what a restore of a snapshot directory launches, checked
 * against the VM (kernel, initrd, machine, disk, RAM file) first. */
typedef struct {
    json_t *meta;     /* meta.json */
    char *state;      /* the migration stream */
    char *ram;        /* the RAM file to map (an unpacked ram.zst), NULL: RAM is in the stream */
    char *ram_copy;   /* a private copy of a read-only ram, or NULL */
    vm_boot_opts o;   /* memory, cpus, rng_seed of the saved machine */
} restore_plan;
/* The migrate-incoming URI that reads the state file (quoted for the shell). */
char *restore_incoming_uri(const char *state);
int restore_plan_make(pv_vm *vm, const char *dir, restore_plan *pl, char *err, size_t errlen);
void restore_plan_free(restore_plan *pl);
const char *restore_plan_initrd(const restore_plan *pl);
const char *restore_plan_cmdline(const restore_plan *pl);
const char *restore_plan_ram(const restore_plan *pl);

/* qpool.c: a QEMU started in advance for exactly this launch now runs as
 * vm's, connected: QPOOL_LAUNCHED when it waits for the migration stream,
 * QPOOL_LOADED when it has loaded it (the guest is paused), QPOOL_GREETED
 * when its guest runs and the agent has answered HELLO; QPOOL_NONE: none. */
enum { QPOOL_NONE, QPOOL_LAUNCHED, QPOOL_LOADED, QPOOL_GREETED };
int qpool_adopt(pv_vm *vm, const restore_plan *pl);
/* agent_conn.c: called while a wait for the agent is idle. */
extern void (*vm_idle_hook)(void);

/* ramzst.c: ram_compress stores the allocated parts of the RAM file src
 * (size bytes) as zstd frames in dst_path; ram_copy_into copies the
 * allocated parts of the file src_path into dst_fd (sparse). */
int ram_compress(int src, int64_t size, const char *dst_path, char *err, size_t errlen);
int ram_copy_into(const char *src_path, int dst_fd, char *err, size_t errlen);
#endif
