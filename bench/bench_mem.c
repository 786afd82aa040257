/* The memory and scaling sections.
 *   memory: the RSS of the provium process that runs a test file (the file's
 *     own child process, QEMU excluded), with one VM and with eight, against
 *     the 20 MiB per file target; the guest RAM a default VM really costs
 *     the host (PSS of its QEMU, from smaps_rollup); and what N identical
 *     VMs restored from one snapshot share (their RAM is the snapshot's file
 *     mapped MAP_PRIVATE, so pages nobody wrote are counted once).
 *   scaling: N one-VM files (BENCH_SCALE_FILES, 32) at -j1, 2, 4 and the
 *     default pool; each wall time against the ideal, N x the per-file time
 *     of -j1 / the CPUs the run can use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../host/util/util.h"
#include "bench.h"

#define MiB(kb) ((double)(kb) / 1024.0)

/* A test file that boots nvms default VMs, runs a command on each, and
 * writes "VmRSS VmHWM Pss" (kB) of its own process to out. */
static char *rss_test_file(const char *dir, int nvms, const char *out)
{
    char *path = xasprintf("%s/rss%d.test.lua", dir, nvms);
    char *body = xasprintf(
        "local vms = {}\n"
        "for i = 1, %d do vms[i] = provium:vm('m' .. i, 'default'):boot() end\n"
        "test('rss', function(t)\n"
        "  for _, vm in ipairs(vms) do t:assert_eq(vm:run('true').exit_code, 0) end\n"
        "  local function field(file, name)\n"
        "    local f = assert(io.open(file)); local s = f:read('a'); f:close()\n"
        "    return s:match(name .. ':%%s*(%%d+)')\n"
        "  end\n"
        "  local o = assert(io.open('%s', 'w'))\n"
        "  o:write(field('/proc/self/status', 'VmRSS'), ' ', field('/proc/self/status', 'VmHWM'), ' ',\n"
        "          field('/proc/self/smaps_rollup', 'Pss'), '\\n')\n"
        "  o:close()\n"
        "end)\n",
        nvms, out);
    write_whole_file(path, body, strlen(body), 0644);
    free(body);
    return path;
}

static void host_rss_rows(const char *tmpl)
{
    char *dir = xasprintf("%s/rss", tmpl);
    mkdir_p(dir, 0700);
    long long kb[2][3];
    int counts[2] = {1, 8};
    for (int k = 0; k < 2; k++) {
        char *out = xasprintf("%s/rss%d.out", dir, counts[k]);
        char *file = rss_test_file(dir, counts[k], out);
        time_provium("-j1", file);
        size_t len;
        char *text = read_whole_file(out, &len);
        if (!text || sscanf(text, "%lld %lld %lld", &kb[k][0], &kb[k][1], &kb[k][2]) != 3)
            die("memory", "the RSS test file wrote no figures");
        free(text);
        free(file);
        free(out);
    }
    const char *label[2] = {"host RSS of a running test file, 1 VM", "host RSS of a running test file, 8 VMs"};
    for (int k = 0; k < 2; k++) {
        printf("%s%-44s %9.1f MiB   (%.2f x of the 20 MiB target)\n", k ? "" : "\n", label[k], MiB(kb[k][0]),
               MiB(kb[k][0]) / 20);
        printf("%-44s %9.1f MiB   (PSS %.1f MiB)\n", "  its peak (VmHWM)", MiB(kb[k][1]), MiB(kb[k][2]));
    }
    printf("%-44s %9.2f MiB\n", "  each VM past the first", MiB(kb[1][0] - kb[0][0]) / 7);
    free(dir);
}

/* PSS and RSS (kB) of a running VM's QEMU after it has settled. */
static void qemu_memory(const pv_vm *vm, long long *pss, long long *rss)
{
    *pss = proc_field_kb(vm->qemu_pid, "smaps_rollup", "Pss");
    *rss = proc_field_kb(vm->qemu_pid, "smaps_rollup", "Rss");
    if (*pss < 0 || *rss < 0)
        die("memory", "cannot read QEMU's smaps_rollup");
}

static void guest_ram_rows(const pv_profile *p, const char *tmpl)
{
    char err[PV_ERR_MAX];
    pv_vm *cold = vm_new("bench-cold", p, tmpl);
    if (vm_boot(cold, NULL, err, sizeof(err)) != 0)
        die("boot", err);
    time_ping(cold, 0);
    sleep_ms(500);
    long long cold_pss, cold_rss;
    qemu_memory(cold, &cold_pss, &cold_rss);
    char *snap = xasprintf("%s/share.snap", tmpl);
    if (vm_snapshot(cold, snap, err, sizeof(err)) != 0)
        die("snapshot", err);
    vm_shutdown(cold, err, sizeof(err));
    vm_free(cold);
    int n = (int)bench_env("BENCH_SHARE_VMS", 4, 2);
    pv_vm **vms = xcalloc((size_t)n, sizeof(*vms));
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "bench-share%d", i);
        vms[i] = vm_new(name, p, tmpl);
        if (vm_restore(vms[i], snap, err, sizeof(err)) != 0)
            die("restore", err);
        time_ping(vms[i], 0);
    }
    sleep_ms(500);
    long long pss_sum = 0, rss_sum = 0;
    for (int i = 0; i < n; i++) {
        long long pss, rss;
        qemu_memory(vms[i], &pss, &rss);
        pss_sum += pss;
        rss_sum += rss;
    }
    for (int i = 0; i < n; i++) {
        vm_shutdown(vms[i], err, sizeof(err));
        vm_free(vms[i]);
    }
    free(vms);
    rm_rf(snap);
    free(snap);
    printf("\n%-44s %9.1f MiB   (RSS %.1f, guest memory %lld MiB)\n", "QEMU PSS of a cold-booted default VM",
           MiB(cold_pss), MiB(cold_rss), (long long)(p->memory >> 20));
    char label[64];
    snprintf(label, sizeof(label), "QEMU PSS per VM, %d restored from one snap.", n);
    printf("%-44s %9.1f MiB   (RSS %.1f)\n", label, MiB(pss_sum) / n, MiB(rss_sum) / n);
    printf("%-44s %9.2f x   (PSS / RSS: 1 = nothing shared)\n", "  shared by the restored VMs", (double)pss_sum / rss_sum);
    printf("%-44s %9.2f x\n", "  restored PSS / cold-booted PSS", (double)pss_sum / n / cold_pss);
}

void bench_memory(const pv_profile *p, const char *tmpl)
{
    host_rss_rows(tmpl);
    guest_ram_rows(p, tmpl);
}

void bench_scaling(const char *tmpl)
{
    int n = (int)bench_env("BENCH_SCALE_FILES", 32, 1);
    char *dir = xasprintf("%s/scale", tmpl);
    mkdir_p(dir, 0700);
    for (int i = 0; i < n; i++) {
        char *f = xasprintf("%s/s%02d.test.lua", dir, i);
        const char *body = "local vm = provium:vm('v', 'default'):boot()\n"
                           "test('one', function(t) t:assert_eq(vm:run('true').exit_code, 0) end)\n";
        write_whole_file(f, body, strlen(body), 0644);
        free(f);
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    const char *jobs[] = {"-j1", "-j2", "-j4", NULL};
    int width[] = {1, 2, 4, (int)cpus};
    double per_file = 0;
    printf("\n%d one-VM files (%ld host CPUs); ideal = files x per-file time (-j1) / CPUs used\n", n, cpus);
    for (int k = 0; k < 4; k++) {
        double wall = time_provium(jobs[k], dir);
        if (k == 0)
            per_file = wall / n;
        int used = width[k] < cpus ? width[k] : (int)cpus;
        double ideal = n * per_file / used;
        char label[64];
        snprintf(label, sizeof(label), "  %s", jobs[k] ? jobs[k] : "default pool");
        printf("%-44s %9.2f s   (%.2f x of the ideal %.2f s)\n", label, wall, wall / ideal, ideal);
    }
    rm_rf(dir);
    free(dir);
}
