/* Provium benchmarks. Every figure is printed next to the physical limit
 * measured in the same run on the same machine, as a ratio, because these
 * machines are too noisy for absolute thresholds:
 *   - cold boot until the first op vs raw QEMU boot-to-first-byte
 *   - what ACPI (on by default, for the power button) costs a cold boot:
 *     the same profile with acpi = false, booted alternately in the same loop
 *   - syscall(getpid) round trip vs a raw echo on the same channel
 *   - 1000 single ops vs one batch of 1000
 *   - 16 MiB write_file+read_file vs the raw channel (16 MiB echoed)
 *   - worker spawn (fork, thread) until its first op vs a cold boot
 *   - 8 one-VM test files with -j1 vs the default pool
 *   - the network switch's forwarding rate vs a raw relay, and guest-to-guest
 *     ping RTT and TCP through it vs a direct QEMU-to-QEMU link (bench_net.c)
 *   - a guest's sequential dd read of a scratch disk vs the host reading the
 *     same file, and a cold boot with one disk vs without
 * usage: build/bench [iterations] [section...]   (run from the repository root)
 *   sections: switch, net, boot, rtt, batch, files, workers, snapshot, bootcache, pool, disks
 *   (default: all) */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../host/config/config.h"
#include "../host/util/util.h"
#include "../host/vmm/accel.h"
#include "../host/vmm/boot_cache.h"
#include "../host/vmm/disk.h"
#include "../host/vmm/vm.h"
#include "bench_net.h"

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

double bench_median(double *v, int n) { return median(v, n); }

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench: %s: %s\n", what, err);
    exit(1);
}

/* Raw QEMU: spawn the same command line provium uses, connect to the agent
 * socket, and time the first byte the guest writes. */
static double raw_first_byte(const pv_profile *p, const char *scratch)
{
    char err[PV_ERR_MAX];
    pv_vm *vm = vm_new("raw", p, scratch);
    vm_boot_opts none = {0};
    char *initrd = shim_prepare_initrd(&vm->profile, NULL, 0, err, sizeof(err));
    if (!initrd)
        die("initrd", err);
    char *cmdline = vm_build_cmdline(vm, &none);
    char **argv = vm_qemu_argv(vm, &none, initrd, cmdline, NULL, false, err, sizeof(err));
    free(cmdline);
    free(initrd);
    if (!argv)
        die("qemu argv", err);
    char *sock = xasprintf("%s/agent.sock", vm->dir);
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    int fd = -1;
    while (fd < 0 && now_s() - t0 < 30) {
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            close(fd);
            fd = -1;
            sleep_ms(1);
        }
    }
    char byte;
    struct pollfd pf = {fd, POLLIN, 0};
    if (fd < 0 || poll(&pf, 1, 30000) != 1 || read(fd, &byte, 1) != 1)
        die("raw boot", "no byte from the guest within 30 s");
    double elapsed = now_s() - t0;
    close(fd);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    vm_argv_free(argv);
    free(sock);
    vm_free(vm);
    return elapsed;
}

static void call(pv_vm *vm, vm_reply *r)
{
    char err[PV_ERR_MAX];
    if (vm_call(vm, r, 60000, NULL, err, sizeof(err)) != 0)
        die("request", err);
}

static double time_ping(pv_vm *vm, size_t payload)
{
    char *data = xcalloc(1, payload ? payload : 1);
    double t0 = now_s();
    vm_begin(vm, PV_MSG_PING);
    pv_put_bytes(&vm->out, PV_T_ECHO, data, payload);
    vm_reply r;
    call(vm, &r);
    vm_reply_free(&r);
    free(data);
    return now_s() - t0;
}

static double time_getpid(pv_vm *vm)
{
    double t0 = now_s();
    vm_begin(vm, PV_MSG_SYSCALL);
    pv_put_i64(&vm->out, PV_T_NR, 39);
    vm_reply r;
    call(vm, &r);
    vm_reply_free(&r);
    return now_s() - t0;
}

static double time_batch(pv_vm *vm, int n)
{
    pv_buf one;
    pv_buf_init(&one);
    double t0 = now_s();
    vm_begin(vm, PV_MSG_BATCH);
    for (int i = 0; i < n; i++) {
        pv_buf_reset(&one);
        pv_frame_begin(&one, PV_MSG_SYSCALL, 0, (uint32_t)i + 1);
        pv_put_i64(&one, PV_T_NR, 39);
        pv_frame_end(&one);
        pv_put_bytes(&vm->out, PV_T_OP, one.buf, one.len);
    }
    vm_reply r;
    call(vm, &r);
    if (pv_msg_count(&r.msg, PV_T_REPLY) != (size_t)n)
        die("batch", "wrong number of replies");
    vm_reply_free(&r);
    pv_buf_free(&one);
    return now_s() - t0;
}

static double time_write_file(pv_vm *vm, const char *data, size_t size)
{
    double t0 = now_s();
    vm_begin(vm, PV_MSG_WRITE_FILE);
    pv_put_str(&vm->out, PV_T_PATH, "/tmp/bench.bin");
    pv_put_bytes(&vm->out, PV_T_DATA, data, size);
    vm_reply r;
    call(vm, &r);
    vm_reply_free(&r);
    return now_s() - t0;
}

static double time_read_file(pv_vm *vm, size_t size)
{
    double t0 = now_s();
    vm_begin(vm, PV_MSG_READ_FILE);
    pv_put_str(&vm->out, PV_T_PATH, "/tmp/bench.bin");
    vm_reply r;
    call(vm, &r);
    if (pv_msg_get(&r.msg, PV_T_DATA)->len != size)
        die("read_file", "short read");
    vm_reply_free(&r);
    return now_s() - t0;
}

/* 16 MiB through write_file and read_file against the same bytes echoed by
 * a PING (16 MiB each way), best of 5 each, interleaved so that load on the
 * host hits both alike. */
static void bench_files(pv_vm *vm)
{
    size_t size = 16u << 20;
    char *data = xmalloc(size);
    for (size_t i = 0; i < size; i++)
        data[i] = (char)(i * 7 + (i >> 12));
    double chan = 1e9, wr = 1e9, rd = 1e9;
    for (int i = 0; i < 5; i++) {
        double c = time_ping(vm, size), w = time_write_file(vm, data, size), r = time_read_file(vm, size);
        chan = c < chan ? c : chan;
        wr = w < wr ? w : wr;
        rd = r < rd ? r : rd;
    }
    free(data);
    /* the echo moves 16 MiB each way, a write or a read 16 MiB one way */
    double chan_mib = 32.0 / chan, file_mib = 32.0 / (wr + rd);
    printf("%-44s %9.1f MiB/s\n", "raw channel, 16 MiB echoed (best of 5)", chan_mib);
    printf("%-44s %9.1f MiB/s\n", "write_file 16 MiB (best of 5)", 16.0 / wr);
    printf("%-44s %9.1f MiB/s\n", "read_file 16 MiB (best of 5)", 16.0 / rd);
    printf("%-44s %9.2f x of the channel   (target >= 0.8)\n", "  write_file + read_file", file_mib / chan_mib);
}

/* Runs `build/provium ARGS... DIR` and returns its wall time. */
static double time_provium(const char *jobs_arg, const char *dir)
{
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 1);
        dup2(null, 2);
        /* host load must not serialise the pooled run */
        setenv("PROVIUM_PSI_THRESHOLD", "off", 1);
        if (jobs_arg)
            execl("build/provium", "provium", jobs_arg, dir, (char *)NULL);
        else
            execl("build/provium", "provium", dir, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("pool benchmark", "a provium run failed");
    return now_s() - t0;
}

/* 8 test files of one VM each: one at a time vs the default pool. */
static void bench_pool(const char *tmp)
{
    char *dir = xasprintf("%s/pool", tmp);
    mkdir_p(dir, 0700);
    for (int i = 0; i < 8; i++) {
        char *f = xasprintf("%s/f%d.test.lua", dir, i);
        const char *body = "local vm = provium:vm('v', 'default'):boot()\n"
                           "test('one', function(t) t:assert_eq(vm:run('true').exit_code, 0) end)\n";
        write_whole_file(f, body, strlen(body), 0644);
        free(f);
    }
    double serial = time_provium("-j1", dir);
    double pooled = time_provium(NULL, dir);
    printf("\n%-44s %9.2f s\n", "8 one-VM files, -j1", serial);
    printf("%-44s %9.2f s\n", "8 one-VM files, default pool", pooled);
    printf("%-44s %9.2f x   (%ld host CPUs)\n", "  speedup", serial / pooled, sysconf(_SC_NPROCESSORS_ONLN));
    free(dir);
}

static double du_mib(const char *dir)
{
    char *du = xasprintf("du -sk '%s' | cut -f1", dir);
    FILE *f = popen(du, "r");
    long kb = 0;
    if (!f || fscanf(f, "%ld", &kb) != 1)
        kb = -1;
    if (f)
        pclose(f);
    free(du);
    return kb / 1024.0;
}

/* Sends the first op to a VM that just came up. */
static void first_op(pv_vm *vm)
{
    vm_reply rep;
    vm_begin(vm, PV_MSG_PING);
    call(vm, &rep);
    vm_reply_free(&rep);
}

/* A restore of dir until the first op. */
static double time_restore(const pv_profile *p, const char *tmpl, const char *dir)
{
    char err[PV_ERR_MAX];
    pv_vm *r = vm_new("restored", p, tmpl);
    double t0 = now_s();
    if (vm_restore(r, dir, err, sizeof(err)) != 0)
        die("restore", err);
    first_op(r);
    double t = now_s() - t0;
    vm_shutdown(r, err, sizeof(err));
    vm_free(r);
    return t;
}

/* snapshots: take one of the booted VM, then restore it repeatedly; the
 * stored (compressed) snapshot against the same snapshot with its RAM stored
 * uncompressed, as before compression, restored alternately */
static void bench_snapshot(pv_vm *vm, const pv_profile *p, const char *tmpl, int iters, double cold_m)
{
    char err[PV_ERR_MAX];
    char *snapdir = xasprintf("%s/bench.snap", tmpl), *rawdir = xasprintf("%s/bench.raw", tmpl);
    double *snap_t = xcalloc((size_t)iters, sizeof(double)), *rest_t = xcalloc((size_t)iters, sizeof(double)),
           *raw_t = xcalloc((size_t)iters, sizeof(double));
    for (int i = 0; i < iters; i++) {
        rm_rf(snapdir);
        double t0 = now_s();
        if (vm_snapshot(vm, snapdir, err, sizeof(err)) != 0)
            die("snapshot", err);
        snap_t[i] = now_s() - t0;
    }
    double first = time_restore(p, tmpl, snapdir); /* unpacks the RAM */
    char *zst = xasprintf("%s/ram.zst", snapdir);
    char *unpacked = ram_unpacked(zst, err, sizeof(err));
    if (!unpacked)
        die("unpack", err);
    char *cp = xasprintf("mkdir -p '%s' && cp '%s/state' '%s/meta.json' '%s/' && cp --sparse=always '%s' '%s/ram'",
                         rawdir, snapdir, snapdir, rawdir, unpacked, rawdir);
    if (system(cp) != 0)
        die("bench", "cannot make the uncompressed copy of the snapshot");
    for (int i = 0; i < iters; i++) {
        rest_t[i] = time_restore(p, tmpl, snapdir);
        raw_t[i] = time_restore(p, tmpl, rawdir);
    }
    double snap_m = median(snap_t, iters), rest_m = median(rest_t, iters), raw_m = median(raw_t, iters);
    double zst_mib = du_mib(snapdir), raw_mib = du_mib(rawdir);
    printf("\n%-44s %9.3f s\n", "snapshot of a running VM (median)", snap_m);
    printf("%-44s %9.3f s\n", "first restore (unpacks the RAM once)", first);
    printf("%-44s %9.3f s   (target <= 0.05)\n", "restore until the first op (median)", rest_m);
    printf("%-44s %9.3f s\n", "  same, RAM stored uncompressed (median)", raw_m);
    printf("%-44s %9.2f x   (target <= 1.2)\n", "  compressed / uncompressed restore", rest_m / raw_m);
    if (cold_m > 0) {
        printf("%-44s %9.3f s\n", "cold boot until the first op (median)", cold_m);
        printf("%-44s %9.2f x\n", "  restore / cold boot", rest_m / cold_m);
    }
    printf("%-44s %9.1f MiB on disk   (target <= 30)\n", "snapshot (cache entry) size", zst_mib);
    printf("%-44s %9.1f MiB on disk\n", "  same, RAM stored uncompressed", raw_mib);
    free(cp);
    free(unpacked);
    free(zst);
    free(snapdir);
    free(rawdir);
    free(snap_t);
    free(rest_t);
    free(raw_t);
}

/* a plain boot through the boot cache (a private cache, built by the first
 * boot) against a cold boot, alternately */
static void bench_boot_cache(const pv_config *cfg, const pv_profile *p, const char *tmpl, int iters)
{
    char err[PV_ERR_MAX];
    pv_config c = *cfg;
    c.cache_dir = xasprintf("%s/cache", tmpl);
    double *cold = xcalloc((size_t)iters, sizeof(double)), *hit = xcalloc((size_t)iters, sizeof(double));
    double first = 0;
    for (int i = -1; i < iters; i++) {
        for (int cached = 0; cached <= 1; cached++) {
            if (i < 0 && !cached)
                continue;
            pv_vm *vm = vm_new("bench", p, tmpl);
            vm_boot_opts o = {0};
            o.no_boot_cache = !cached;
            double t0 = now_s();
            if (boot_cache_boot(vm, &o, &c, err, sizeof(err)) != 0)
                die("boot", err);
            first_op(vm);
            double t = now_s() - t0;
            if (cached && vm->boot_cached != (i >= 0))
                die("boot cache", i < 0 ? "the first boot was not cold" : "a boot missed the cache");
            if (i < 0)
                first = t;
            else
                (cached ? hit : cold)[i] = t;
            vm_shutdown(vm, err, sizeof(err));
            vm_free(vm);
        }
    }
    double cold_m = median(cold, iters), hit_m = median(hit, iters);
    printf("\n%-44s %9.3f s\n", "first boot: cold + storing the entry", first);
    printf("%-44s %9.3f s\n", "cold boot to first op (median)", cold_m);
    printf("%-44s %9.3f s\n", "plain boot via the boot cache (median)", hit_m);
    printf("%-44s %9.2f x   (target <= 0.25)\n", "  boot cache / cold boot", hit_m / cold_m);
    free(cold);
    free(hit);
    free((char *)c.cache_dir);
}

static int n_sections;
static char **sections;

/* true when SECTION was asked for on the command line (or none was) */
static bool want(const char *section)
{
    if (n_sections == 0)
        return true;
    for (int i = 0; i < n_sections; i++)
        if (strcmp(sections[i], section) == 0)
            return true;
    return false;
}

/* Runs cmd in the guest through the shell; dies unless it exits 0. */
/* True when every section asked for is one of these (NULL-terminated), e.g.
 * `build/bench 3 switch`: the sections that need no shared VM. */
static bool wants_only(const char *const *these)
{
    for (int i = 0; i < n_sections; i++) {
        bool listed = false;
        for (const char *const *t = these; *t; t++)
            listed |= strcmp(sections[i], *t) == 0;
        if (!listed)
            return false;
    }
    return n_sections > 0;
}

static void guest_sh(pv_vm *vm, const char *cmd)
{
    vm_begin(vm, PV_MSG_EXEC);
    pv_put_str(&vm->out, PV_T_SHELL, cmd);
    vm_reply r;
    call(vm, &r);
    if (pv_msg_i64(&r.msg, PV_T_EXIT_CODE, -1) != 0)
        die("guest command failed", cmd);
    vm_reply_free(&r);
}

/* Kernel health rows: how long a call under which the kernel oopses takes
 * to fail (it used to wait out the 60 s reply timeout), and the cold boot of
 * the debug kernel (KASAN, lockdep) against the default one. */
static void bench_health(const pv_config *cfg, const pv_profile *p, const char *tmpl, int iters)
{
    char err[PV_ERR_MAX];
    const char *ko = "build/kmod-faulty/provium_faulty.ko";
    size_t kolen = 0;
    char *kodata = read_whole_file(ko, &kolen);
    if (kodata) {
        double *fail = xcalloc((size_t)iters, sizeof(double));
        for (int i = 0; i < iters; i++) {
            pv_vm *vm = vm_new("bench-oops", p, tmpl);
            if (vm_boot(vm, NULL, err, sizeof(err)) != 0)
                die("boot", err);
            vm_begin(vm, PV_MSG_WRITE_FILE);
            pv_put_str(&vm->out, PV_T_PATH, "/tmp/faulty.ko");
            pv_put_bytes(&vm->out, PV_T_DATA, kodata, kolen);
            vm_reply r;
            call(vm, &r);
            vm_reply_free(&r);
            guest_sh(vm, "insmod /tmp/faulty.ko");
            /* the agent itself writes: the oops kills the process serving the call */
            double t0 = now_s();
            vm_begin(vm, PV_MSG_WRITE_FILE);
            pv_put_str(&vm->out, PV_T_PATH, "/proc/provium_faulty");
            pv_put_bytes(&vm->out, PV_T_DATA, "oops", 4);
            int gerr = 0;
            if (vm_call(vm, &r, 60000, &gerr, err, sizeof(err)) == 0 || !strstr(err, "kernel oops"))
                die("oops under a call did not fail as one", err);
            fail[i] = now_s() - t0;
            vm_free(vm);
        }
        double m = median(fail, iters);
        printf("%-44s %9.3f s\n", "oops under a call, to the call's failure", m);
        printf("%-44s %9.3f x   (the 60 s reply timeout it waited for before)\n", "  ratio", m / 60.0);
        free(fail);
        free(kodata);
    } else {
        printf("%-44s %9s   (make kmod-faulty first)\n", "oops under a call, to the call's failure", "-");
    }
    const pv_profile *dbg = config_profile(cfg, "debug");
    if (dbg && file_exists(dbg->kernel)) {
        double *d = xcalloc((size_t)iters, sizeof(double)), *c = xcalloc((size_t)iters, sizeof(double));
        for (int i = 0; i < iters; i++) {
            const pv_profile *which[2] = {p, dbg};
            for (int k = 0; k < 2; k++) {
                pv_vm *vm = vm_new("bench-debug", which[k], tmpl);
                double t0 = now_s();
                if (vm_boot(vm, NULL, err, sizeof(err)) != 0)
                    die("boot", err);
                (k ? d : c)[i] = now_s() - t0;
                vm_shutdown(vm, err, sizeof(err));
                vm_free(vm);
            }
        }
        double dm = median(d, iters), cm = median(c, iters);
        printf("%-44s %9.3f s\n", "debug profile cold boot (median)", dm);
        printf("%-44s %9.2f x   (against the default profile, %.3f s)\n\n", "  ratio", dm / cm, cm);
        free(d);
        free(c);
    } else {
        printf("%-44s %9s   (make image builds it)\n\n", "debug profile cold boot", "-");
    }
}

/* Disk rows: what a virtio disk served by QEMU (through the fault filter)
 * costs a guest's sequential read, against the host reading the same file
 * from the same page cache; and what declaring one disk costs a cold boot. */
static void bench_disks(const pv_profile *p, const char *tmpl, int iters)
{
    enum { MIB = 64 };
    char err[PV_ERR_MAX];
    pv_disk_spec spec = {.id = "bench", .size = (int64_t)MIB << 20};
    double *with = xcalloc((size_t)iters, sizeof(double)), *without = xcalloc((size_t)iters, sizeof(double));
    double *guest = xcalloc((size_t)iters, sizeof(double)), *host = xcalloc((size_t)iters, sizeof(double));
    char *buf = xmalloc(1 << 20);
    for (int i = 0; i < (1 << 20); i++)
        buf[i] = (char)(i * 7 + 1); /* real data: a sparse file would read as holes */
    for (int i = 0; i < iters; i++) {
        pv_vm *vm = vm_new("bench-nodisk", p, tmpl);
        double t0 = now_s();
        if (vm_boot(vm, NULL, err, sizeof(err)) != 0)
            die("boot", err);
        without[i] = now_s() - t0;
        vm_free(vm);
        vm = vm_new("bench-disk", p, tmpl);
        if (disk_prepare(vm, &spec, 1, false, err, sizeof(err)) != 0)
            die("disk", err);
        const char *file = disk_find(vm, "bench")->file;
        int fd = open(file, O_WRONLY | O_CLOEXEC);
        for (int m = 0; fd >= 0 && m < MIB; m++)
            if (pwrite(fd, buf, 1 << 20, (off_t)m << 20) != 1 << 20)
                die("fill the scratch disk", strerror(errno));
        if (fd >= 0)
            close(fd);
        t0 = now_s();
        if (vm_boot(vm, NULL, err, sizeof(err)) != 0)
            die("boot with a disk", err);
        with[i] = now_s() - t0;
        t0 = now_s();
        guest_sh(vm, "dd if=/dev/vda of=/dev/null bs=1M iflag=direct 2>/dev/null");
        guest[i] = now_s() - t0;
        t0 = now_s();
        fd = open(file, O_RDONLY | O_CLOEXEC);
        for (int m = 0; fd >= 0 && m < MIB; m++)
            if (pread(fd, buf, 1 << 20, (off_t)m << 20) != 1 << 20)
                die("read the scratch file", strerror(errno));
        if (fd >= 0)
            close(fd);
        host[i] = now_s() - t0;
        vm_shutdown(vm, err, sizeof(err));
        vm_free(vm);
    }
    double g = median(guest, iters), h = median(host, iters), w = median(with, iters), wo = median(without, iters);
    printf("\n%-44s %9.1f MiB/s\n", "guest dd of a 64 MiB scratch disk (median)", MIB / g);
    printf("%-44s %9.1f MiB/s\n", "host read of the same file (median)", MIB / h);
    printf("%-44s %9.3f x of the host\n", "  guest / host", h / g);
    printf("%-44s %9.3f s\n", "cold boot with one disk (median)", w);
    printf("%-44s %9.3f s\n", "cold boot without (median)", wo);
    printf("%-44s %+9.3f s   (%+.0f%%)\n", "  a disk's cost at boot", w - wo, (w / wo - 1) * 100);
    free(buf);
    free(with);
    free(without);
    free(guest);
    free(host);
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 7;
    n_sections = argc > 2 ? argc - 2 : 0;
    sections = argv + 2;
    if (iters < 1)
        iters = 1;
    pv_config cfg;
    char err[PV_ERR_MAX];
    if (config_load(NULL, &cfg, err, sizeof(err)) != 0)
        die("config", err);
    const pv_profile *p = config_profile(&cfg, "default");
    if (!p)
        die("config", "no profile 'default' in provium.toml");
    char tmpl[] = "/tmp/provium-bench-XXXXXX";
    if (!mkdtemp(tmpl))
        die("mkdtemp", strerror(errno));
    if (want("switch"))
        bench_switch(tmpl, iters);
    if (wants_only((const char *const[]){"switch", NULL})) {
        rm_rf(tmpl);
        config_free(&cfg);
        return 0;
    }
    bool kvm = false;
    if (accel_decide(p, vm_machine(p), &kvm, err, sizeof(err)) != 0)
        die("accel", err);
    printf("provium benchmarks (profile 'default', %d iterations, %s)\n\n", iters,
           kvm ? "KVM" : "TCG software emulation");
    if (want("net"))
        bench_guests(p, tmpl);
    if (wants_only((const char *const[]){"switch", "net", NULL})) {
        rm_rf(tmpl);
        config_free(&cfg);
        return 0;
    }

    pv_profile no_acpi;
    profile_copy(&no_acpi, p);
    no_acpi.no_acpi = true;
    double *raw = xcalloc((size_t)iters, sizeof(double)), *cold = xcalloc((size_t)iters, sizeof(double));
    double *cold_off = xcalloc((size_t)iters, sizeof(double)), *button = xcalloc((size_t)iters, sizeof(double));
    /* without the boot section, ratios against the cold boot are not printed */
    double raw_m = 0, cold_m = 0;
    for (int i = 0; want("boot") && i < iters; i++) {
        raw[i] = raw_first_byte(p, tmpl);
        pv_vm *vm = vm_new("bench", p, tmpl);
        double t0 = now_s();
        if (vm_boot(vm, NULL, err, sizeof(err)) != 0)
            die("boot", err);
        cold[i] = now_s() - t0;
        t0 = now_s();
        if (vm_power_button(vm, err, sizeof(err)) != 0)
            die("power_button", err);
        button[i] = now_s() - t0;
        vm_free(vm);
        vm = vm_new("bench-noacpi", &no_acpi, tmpl);
        t0 = now_s();
        if (vm_boot(vm, NULL, err, sizeof(err)) != 0)
            die("boot (acpi = false)", err);
        cold_off[i] = now_s() - t0;
        vm_shutdown(vm, err, sizeof(err));
        vm_free(vm);
    }
    if (want("boot")) {
        raw_m = median(raw, iters);
        cold_m = median(cold, iters);
        double off_m = median(cold_off, iters), button_m = median(button, iters);
        printf("%-44s %9.3f s\n", "raw QEMU boot to first byte (median)", raw_m);
        printf("%-44s %9.3f s\n", "provium cold boot to first op (median)", cold_m);
        printf("%-44s %9.2f x   (target <= 1.2)\n", "  ratio", cold_m / raw_m);
        printf("%-44s %9.3f s\n", "cold boot with acpi = false (median)", off_m);
        printf("%-44s %+9.3f s   (%+.0f%%)\n", "  ACPI's cost at boot (default - acpi=false)", cold_m - off_m,
               (cold_m / off_m - 1) * 100);
        printf("%-44s %9.3f s\n\n", "power_button right after boot, to exit (med.)", button_m);
    }
    profile_free(&no_acpi);
    free(cold_off);
    free(button);
    if (want("health"))
        bench_health(&cfg, p, tmpl, iters);

    pv_vm *vm = vm_new("bench", p, tmpl);
    if (vm_boot(vm, NULL, err, sizeof(err)) != 0)
        die("boot", err);
    enum { N = 1000 };
    double *echo = xcalloc(N, sizeof(double)), *sys = xcalloc(N, sizeof(double));
    if (want("rtt")) {
        for (int i = 0; i < N; i++) {
            echo[i] = time_ping(vm, 16);
            sys[i] = time_getpid(vm);
        }
        double echo_m = median(echo, N), sys_m = median(sys, N);
        printf("%-44s %9.1f us\n", "raw echo round trip, 16 bytes (median)", echo_m * 1e6);
        printf("%-44s %9.1f us\n", "vm:syscall(getpid) round trip (median)", sys_m * 1e6);
        printf("%-44s %9.2f x   (target <= 1.5)\n\n", "  ratio", sys_m / echo_m);
    }

    if (want("batch")) {
        double singles = 0;
        for (int i = 0; i < N; i++)
            singles += time_getpid(vm);
        double batch = time_batch(vm, N);
        printf("%-44s %9.3f s\n", "1000 single syscalls", singles);
        printf("%-44s %9.3f s\n", "one batch of 1000 syscalls", batch);
        printf("%-44s %9.1f x   (target >= 10)\n\n", "  speedup", singles / batch);
    }

    if (want("files"))
        bench_files(vm);

    /* workers: spawn (fork and thread) until the first op on the worker, then kill */
    for (int thread = 0; want("workers") && thread <= 1; thread++) {
        double *spawn_t = xcalloc((size_t)iters * 4, sizeof(double));
        for (int i = 0; i < iters * 4; i++) {
            vm_reply r;
            double t0 = now_s();
            vm_begin(vm, PV_MSG_WORKER_SPAWN);
            pv_put_u64(&vm->out, PV_T_THREAD, (uint64_t)thread);
            call(vm, &r);
            uint32_t id = (uint32_t)pv_msg_u64(&r.msg, PV_T_WORKER, 0);
            vm_reply_free(&r);
            vm_begin_on(vm, PV_MSG_PING, id << PV_WORKER_SHIFT); /* the first op on the worker */
            call(vm, &r);
            vm_reply_free(&r);
            spawn_t[i] = now_s() - t0;
            vm_begin(vm, PV_MSG_WORKER_KILL);
            pv_put_u64(&vm->out, PV_T_WORKER, id);
            call(vm, &r);
            vm_reply_free(&r);
            /* let it go before the next one (WORKER_EXIT is pushed on its channel) */
            for (int k = 0; k < 50 && vm_pump(vm, now_ms() + 20, err, sizeof(err)) == 1; k++) {
            }
        }
        double spawn_m = median(spawn_t, iters * 4);
        printf("\n%-44s %9.1f ms\n", thread ? "thread worker spawn to first op (median)" : "fork worker spawn to first op (median)",
               spawn_m * 1e3);
        printf("%-44s %9.4f x   (target <= 0.05)\n", "  worker spawn / cold boot", spawn_m / cold_m);
        free(spawn_t);
    }

    if (want("snapshot"))
        bench_snapshot(vm, p, tmpl, iters, cold_m);

    vm_shutdown(vm, err, sizeof(err));
    vm_free(vm);
    if (want("bootcache"))
        bench_boot_cache(&cfg, p, tmpl, iters);
    if (want("pool"))
        bench_pool(tmpl);
    if (want("disks"))
        bench_disks(p, tmpl, iters);
    rm_rf(tmpl);
    config_free(&cfg);
    free(raw);
    free(cold);
    free(echo);
    free(sys);
    return 0;
}
