/* The QEMU pool's benchmark: a plain boot through the boot cache (a private
 * cache, built by the first boot) until its first op, with a spare QEMU
 * waiting for it against without one, alternately in the same run, and
 * their ratio. Each booted VM then runs a guest command of the same length
 * (a test's own work, during which a spare starts and loads its state).
 * usage: build/bench_qpool [iterations]   (run from the repository root) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../host/config/config.h"
#include "../host/util/util.h"
#include "../host/vmm/boot_cache.h"
#include "../host/vmm/qpool.h"
#include "../host/vmm/vm.h"

#define IDLE_MS 300

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench_qpool: %s: %s\n", what, err);
    exit(1);
}

/* One plain boot until its first op (a ping); then the VM works (a guest
 * sleep of IDLE_MS) and shuts down. */
static double boot_to_first_op(const pv_config *cfg, const pv_profile *p, const char *tmpl, bool *cached)
{
    char err[PV_ERR_MAX];
    pv_vm *vm = vm_new("bench", p, tmpl);
    vm_boot_opts o = {0};
    double t0 = now_s();
    if (boot_cache_boot(vm, &o, cfg, err, sizeof(err)) != 0)
        die("boot", err);
    vm_reply r;
    vm_begin(vm, PV_MSG_PING);
    if (vm_call(vm, &r, 30000, NULL, err, sizeof(err)) != 0)
        die("first op", err);
    vm_reply_free(&r);
    double t = now_s() - t0;
    *cached = vm->boot_cached;
    char *cmd = xasprintf("sleep %g", IDLE_MS / 1000.0);
    vm_begin(vm, PV_MSG_EXEC);
    pv_put_str(&vm->out, PV_T_SHELL, cmd);
    free(cmd);
    if (vm_call(vm, &r, 30000, NULL, err, sizeof(err)) != 0 || pv_msg_i64(&r.msg, PV_T_EXIT_CODE, -1) != 0)
        die("the VM's work", err);
    vm_reply_free(&r);
    vm_shutdown(vm, err, sizeof(err));
    vm_free(vm);
    return t;
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 7;
    if (iters < 1)
        iters = 1;
    pv_config cfg;
    char err[PV_ERR_MAX];
    if (config_load(NULL, &cfg, err, sizeof(err)) != 0)
        die("config", err);
    const pv_profile *p = config_profile(&cfg, "default");
    if (!p)
        die("config", "no profile 'default' in provium.toml");
    char tmpl[] = "/tmp/provium-bench-qpool-XXXXXX";
    if (!mkdtemp(tmpl))
        die("mkdtemp", strerror(errno));
    pv_config c = cfg;
    c.cache_dir = xasprintf("%s/cache", tmpl);
    qpool_install(NULL); /* no runner: the spares are counted nowhere */
    bool cached;
    setenv("PROVIUM_QEMU_POOL", "0", 1);
    boot_to_first_op(&c, p, tmpl, &cached); /* cold: stores the entry */
    double *with = xcalloc((size_t)iters, sizeof(double)), *without = xcalloc((size_t)iters, sizeof(double));
    for (int i = 0; i < iters; i++) {
        setenv("PROVIUM_QEMU_POOL", "0", 1);
        without[i] = boot_to_first_op(&c, p, tmpl, &cached);
        if (!cached)
            die("boot cache", "a boot missed the cache");
        setenv("PROVIUM_QEMU_POOL", "1", 1);
        boot_to_first_op(&c, p, tmpl, &cached); /* leaves a spare for the next boot */
        int used = qpool_used();
        with[i] = boot_to_first_op(&c, p, tmpl, &cached);
        if (qpool_used() != used + 1)
            die("qemu pool", "the boot did not use the spare waiting for it");
        qpool_drain();
    }
    double with_m = median(with, iters), without_m = median(without, iters);
    printf("\nQEMU pool (profile 'default', %d iterations, %d ms of work on each VM)\n", iters, IDLE_MS);
    printf("%-44s %9.3f s\n", "restore to first op, no spare (median)", without_m);
    printf("%-44s %9.3f s   (target <= 0.05)\n", "restore to first op, spare waiting (median)", with_m);
    printf("%-44s %9.2f x   (target <= 0.4)\n", "  with spare / without", with_m / without_m);
    free(with);
    free(without);
    rm_rf(tmpl);
    free((char *)c.cache_dir);
    config_free(&cfg);
    return 0;
}
