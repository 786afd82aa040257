/* Small helpers of the benchmark sections kept outside bench.c: knobs from
 * the environment and figures from /proc. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

long bench_env(const char *name, long dflt, long min)
{
    const char *s = getenv(name);
    char *end;
    long v = s ? strtol(s, &end, 10) : dflt;
    if (!s || *end || v < min)
        return dflt;
    return v;
}

long long proc_field_kb(int pid, const char *file, const char *field)
{
    char path[64], line[256];
    if (pid)
        snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
    else
        snprintf(path, sizeof(path), "/proc/self/%s", file);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = strlen(field);
    long long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            kb = strtoll(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}
