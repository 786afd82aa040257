/* The host's TSC rate, for the kernel command line (tsc_early_khz=): under
 * TCG the guest reads the host's TSC, and the kernel's own calibration
 * against the PIT fails or hangs on a busy host. The figure keys the boot
 * cache and snapshots, so it is measured once per host boot and kept. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../util/util.h"
#include "vm_internal.h"

/* The host's TSC rate in kHz, measured once against CLOCK_MONOTONIC_RAW;
 * 0 when the TSC is not constant or cannot be measured. Under TCG the
 * guest reads the host's TSC, so this is the guest's rate too. */
static long measure_tsc_khz(void);

/* The TSC rate goes into the kernel command line, which keys the boot cache
 * and snapshots: measure it once per host boot (boot_id) and keep it under
 * the cache dir, so every process of every run passes the same figure. */
long host_tsc_khz(void)
{
    static long khz = -1;
    if (khz >= 0)
        return khz;
    size_t len = 0;
    char *boot = read_whole_file("/proc/sys/kernel/random/boot_id", &len);
    if (boot)
        boot[strcspn(boot, "\n")] = 0;
    char *path = xasprintf("%s/tsc-khz", cache_root());
    char *saved = read_whole_file(path, &len);
    char id[64];
    long k = 0;
    if (boot && saved && sscanf(saved, "%63s %ld", id, &k) == 2 && strcmp(id, boot) == 0 && k >= 0) {
        khz = k;
    } else {
        khz = measure_tsc_khz();
        if (boot) {
            mkdir_p(cache_root(), 0755);
            char *text = xasprintf("%s %ld\n", boot, khz);
            write_file_atomic(path, text, strlen(text), 0644);
            free(text);
        }
    }
    free(saved);
    free(path);
    free(boot);
    return khz;
}

static long measure_tsc_khz(void)
{
    long khz = 0;
#if defined(__x86_64__)
    size_t len = 0;
    char *info = read_whole_file("/proc/cpuinfo", &len);
    bool constant = info && strstr(info, " constant_tsc") && strstr(info, " nonstop_tsc");
    free(info);
    if (!constant)
        return khz;
    long best = 0;
    for (int tries = 0, good = 0; tries < 10 && good < 3; tries++) {
        struct timespec a, b;
        uint64_t a0 = __builtin_ia32_rdtsc();
        clock_gettime(CLOCK_MONOTONIC_RAW, &a);
        uint64_t a1 = __builtin_ia32_rdtsc();
        struct timespec nap = {0, 10 * 1000 * 1000};
        nanosleep(&nap, NULL);
        uint64_t b0 = __builtin_ia32_rdtsc();
        clock_gettime(CLOCK_MONOTONIC_RAW, &b);
        uint64_t b1 = __builtin_ia32_rdtsc();
        if (a1 - a0 > 20000 || b1 - b0 > 20000)
            continue; /* preempted between the reads: try again */
        double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
        long k = (long)((double)((b0 + b1) / 2 - (a0 + a1) / 2) / ns * 1e6 + 0.5);
        if (k > best)
            best = k; /* a late wake-up can only lower the figure */
        good++;
    }
    khz = best;
#endif
    return khz;
}
