/* What the benchmark files share: bench.c's helpers and the sections kept in
 * files of their own (each prints its rows as ratios against a limit or a
 * peer measured in the same run, as bench.c does):
 *   transfer (bench_transfer.c): 16 MiB write_file, read_file and push_file
 *     through the Lua API against the raw channel on the same VM, and the
 *     host's peak memory while a 1 GiB file is pushed
 *   memory, scaling (bench_mem.c): host RSS per running test file, guest RAM
 *     per VM (PSS of QEMU) and what identical restored VMs share; N one-VM
 *     files at -j1, 2, 4 and the default pool against the ideal
 *   peer (bench_peer.c): vm:run("true") against the same command through
 *     Debian's qemu-guest-agent (guest-exec + guest-exec-status) on the same
 *     kernel in the same VM
 * Sizes can be made smaller for a quick run: BENCH_PUSH_MIB (1024),
 * BENCH_SCALE_FILES (32), BENCH_SHARE_VMS (4). */
#ifndef PROVIUM_BENCH_H
#define PROVIUM_BENCH_H
#include <stddef.h>

#include "../host/config/config.h"
#include "../host/vmm/vm.h"

double median(double *v, int n);
void die(const char *what, const char *err);
/* vm_call with a 60 s limit; dies on failure. */
void call(pv_vm *vm, vm_reply *r);
/* A PING carrying payload bytes, echoed back; its round-trip time. */
double time_ping(pv_vm *vm, size_t payload);
/* Runs `build/provium [JOBS] PATH` with its output thrown away and returns
 * its wall time; dies unless it passes. jobs NULL: the default pool. */
double time_provium(const char *jobs_arg, const char *dir);

/* bench_util.c */
/* Runs cmd in the guest through the shell; dies unless it exits 0. With out,
 * *out gets its stdout (a new string). */
void guest_shell(pv_vm *vm, const char *cmd, char **out);
/* The value of a size-like environment variable, or dflt when unset or bad. */
long bench_env(const char *name, long dflt, long min);
/* A field of /proc/<pid>/FILE (status, smaps_rollup) given in kB there
 * ("VmHWM", "Pss"); pid 0 is this process. -1 when absent. */
long long proc_field_kb(int pid, const char *file, const char *field);

void bench_transfer(const pv_config *cfg, const char *tmpl);
void bench_memory(const pv_profile *p, const char *tmpl);
void bench_scaling(const char *tmpl);
void bench_peer(const pv_profile *p, const char *tmpl, int iters);
#endif
