/* Small helpers shared by the benchmark sections: knobs from the
 * environment, figures from /proc, and shell commands in the guest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../host/util/util.h"
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

void guest_shell(pv_vm *vm, const char *cmd, char **out)
{
    vm_begin(vm, PV_MSG_EXEC);
    pv_put_str(&vm->out, PV_T_SHELL, cmd);
    vm_reply r;
    call(vm, &r);
    if (pv_msg_i64(&r.msg, PV_T_EXIT_CODE, -1) != 0)
        die("guest command failed", cmd);
    if (out) {
        const pv_field *f = pv_msg_get(&r.msg, PV_T_STDOUT);
        *out = f ? xasprintf("%.*s", (int)f->len, (const char *)f->data) : xstrdup("");
    }
    vm_reply_free(&r);
}
