/* Host resources the pool is sized from, and CPU pressure (PSI). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runner.h"

int64_t host_memory_bytes(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    long long kb = 0;
    if (f) {
        char line[256];
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "MemTotal: %lld kB", &kb) == 1)
                break;
        fclose(f);
    }
    if (kb > 0)
        return (int64_t)kb * 1024;
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (int64_t)pages * size : (int64_t)4 << 30;
}

int host_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

double psi_cpu_some_avg10(void)
{
    const char *path = getenv("PROVIUM_PSI_FILE"); /* tests point this at a fake */
    FILE *f = fopen(path && *path ? path : "/proc/pressure/cpu", "r");
    if (!f)
        return -1;
    char line[256];
    double v = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "some avg10=%lf", &v) == 1)
            break;
    fclose(f);
    return v;
}
