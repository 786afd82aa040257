/* The QEMU pool: QEMU processes started in advance, waiting in
 * `-incoming defer` for the next boot-cache restore of a configuration the
 * test file has just booted, so that restore skips QEMU's own start-up and
 * the guest RAM copy. A spare is used only when the argv it was started
 * with is exactly the argv the restore would run (see qpool.c). */
#ifndef PROVIUM_QPOOL_H
#define PROVIUM_QPOOL_H
#include <stdbool.h>
#include <stdint.h>

#include "vm.h"

/* Asks the runner for room for a spare of `memory` bytes (take: 0 when
 * granted, never waits), or gives that room back (!take). */
typedef int (*qpool_charge_fn)(int64_t memory, bool take);

/* Turns the pool on in this process (the test file's process: spares are
 * never shared across files). charge counts spares in the resource pool;
 * NULL counts them nowhere (the benchmark, which has no runner). Without a
 * call the pool stays off. */
void qpool_install(qpool_charge_fn charge);
/* How many spares a file may keep: $PROVIUM_QEMU_POOL (default 1, 0: off). */
int qpool_capacity(void);
/* A boot of profile with memory/cpus is about to be charged: every spare
 * gives its charge back first (so a spare never makes a boot wait or fail);
 * spares of another configuration are stopped, the others wait for the
 * boot to use them. */
void qpool_before_boot(const char *profile, int64_t memory, int cpus);
/* After that boot: spares that are no longer counted are stopped. */
void qpool_settle(void);
/* vm has just booted through the boot cache from entry: start a spare for
 * the next boot of the same configuration, if the pool has room. */
void qpool_prepare(const pv_vm *vm, const char *entry);
/* Stops every spare (the file ends). */
void qpool_drain(void);
/* Spares alive now, and spares adopted by restores so far (the benchmark). */
int qpool_count(void);
int qpool_used(void);
#endif
