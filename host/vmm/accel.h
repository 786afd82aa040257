/* Which accelerator a VM runs under: KVM when it can really run a guest on
 * this host, TCG otherwise.
 *
 * "/dev/kvm opens" is not "KVM works": a host can expose a KVM that only runs
 * specially built guests (PVM), or one whose CPU model QEMU cannot set up.
 * So the decision comes from a probe (a short boot of a real kernel under
 * KVM, watched until the kernel prints its banner), made once per host and
 * cached under the cache dir, keyed by the QEMU binary, the host kernel
 * release and the identity of /dev/kvm. */
#ifndef PROVIUM_ACCEL_H
#define PROVIUM_ACCEL_H
#include <stdbool.h>
#include <stddef.h>

#include "../config/config.h"

/* The -cpu of a VM under each accelerator. Under TCG the "max" model
 * without ERMS and FSRM: with them the guest kernel copies user memory,
 * clears pages and memcpys with `rep movsb`, which TCG runs one byte per
 * iteration; without them it uses `rep movsq`, eight bytes per iteration,
 * and every guest copy (the agent channel's included) gets several times
 * faster (docs/performance.md). The boot cache's key includes it. */
#define ACCEL_CPU_KVM "host"
#define ACCEL_CPU_TCG "max,erms=off,fsrm=off"

typedef struct {
    bool kvm;          /* run with -accel kvm -cpu host */
    char reason[512];  /* why KVM is not used (empty when kvm) */
    bool probed_now;   /* this call ran the probe (not answered from the cache) */
} accel_verdict;

/* The accelerator the user asked for: PROVIUM_ACCEL (also set by --accel),
 * else the profile's accel, else "auto". Returns NULL and sets err when the
 * value is not auto/kvm/tcg. */
const char *accel_requested(const pv_profile *p, char *err, size_t errlen);

/* What "auto" means on this host, probing with kernel (a guest kernel image)
 * when no cached verdict exists. Never fails: an impossible probe is a
 * verdict of TCG with the reason. */
void accel_probe(const char *kernel, const char *machine, accel_verdict *out);

/* The probe itself, uncached: boots kernel under -accel accel and reports
 * kvm = true when the kernel banner appeared (for tests: "tcg" proves the
 * banner detection on any host). */
void accel_probe_run(const char *accel, const char *kernel, const char *machine, accel_verdict *out);

/* Decides for one VM. Returns 0 with *kvm set, or -1 with err set when the
 * profile or the environment forces kvm and KVM cannot run a guest here. */
int accel_decide(const pv_profile *p, const char *machine, bool *kvm, char *err, size_t errlen);
#endif
