/* Benchmark rows for the user-space switch (host/net/), switch only: frames
 * pushed from one fake QEMU port to another through the switch, against the
 * physical limit measured in the same run: a plain relay thread copying the
 * same frames between two socketpairs (the same two unix-socket hops, no
 * switching). Also the switch's CPU time per Gbit/s forwarded: the sender
 * and receiver run in child processes, so this process's CPU time is the
 * forwarding thread's. bench_guests: ping RTT and TCP throughput between two
 * guests through the switch against the same pairing on a direct
 * QEMU-to-QEMU stream link; it needs the VM NICs of host/vmm/vm_nic.h (the
 * networking API) and says so when they are not built in. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../host/net/netsw.h"
#include "../host/util/util.h"
#include "bench_net.h"
#if __has_include("../host/vmm/vm_nic.h")
#define HAVE_VM_NIC 1
#include "../common/proto.h"
#include "../host/vmm/vm.h"
#include "../host/vmm/vm_nic.h"
#endif

#define FRAME 1514
#define HDR 4

static void fail(const char *what, const char *why)
{
    fprintf(stderr, "bench: switch: %s: %s\n", what, why);
    exit(1);
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static bool write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Child: n broadcast frames in the stream netdev's framing, as fast as the socket takes them. */
static void sender(int fd, int n)
{
    uint8_t buf[HDR + FRAME] = {0};
    uint32_t be = htonl(FRAME);
    memcpy(buf, &be, 4);
    memset(buf + HDR, 0xff, 6);
    const uint8_t src[6] = {0x52, 0x54, 0, 0, 0, 1};
    memcpy(buf + HDR + 6, src, 6);
    buf[HDR + 12] = 0x88, buf[HDR + 13] = 0xb5;
    for (int i = 0; i < n; i++)
        if (!write_all(fd, buf, sizeof(buf)))
            _exit(1);
    _exit(0);
}

/* Child: reads until n frames' worth of bytes arrived. */
static void receiver(int fd, int n)
{
    static uint8_t buf[1 << 16];
    size_t want = (size_t)n * (HDR + FRAME), got = 0;
    while (got < want) {
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r <= 0)
            _exit(1);
        got += (size_t)r;
    }
    _exit(0);
}

/* Starts sender and receiver children, waits for both; wall seconds. */
static double run_pair(int in_fd, int out_fd, int n)
{
    double t0 = now_s();
    pid_t s = fork();
    if (s == 0)
        sender(in_fd, n);
    pid_t r = fork();
    if (r == 0)
        receiver(out_fd, n);
    int st_s = 0, st_r = 0;
    waitpid(s, &st_s, 0);
    waitpid(r, &st_r, 0);
    if (!WIFEXITED(st_s) || WEXITSTATUS(st_s) || !WIFEXITED(st_r) || WEXITSTATUS(st_r))
        fail("transfer", "a sender or receiver failed");
    return now_s() - t0;
}

typedef struct {
    int from, to;
} relay_args;

static void *relay(void *arg)
{
    relay_args *a = arg;
    static uint8_t buf[256 * 1024]; /* as large as the switch's read buffer */
    for (;;) {
        ssize_t r = read(a->from, buf, sizeof(buf));
        if (r <= 0 || !write_all(a->to, buf, (size_t)r))
            return NULL;
    }
}

/* The limit: sender -> socketpair -> relay thread -> socketpair -> receiver. */
static double relay_rate(int n, double *cpu)
{
    int a[2], b[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, a) < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, b) < 0)
        fail("socketpair", strerror(errno));
    relay_args ra = {a[1], b[0]};
    pthread_t t;
    pthread_create(&t, NULL, relay, &ra);
    double c0 = cpu_s();
    double secs = run_pair(a[0], b[1], n);
    *cpu = cpu_s() - c0;
    close(a[0]);
    pthread_join(t, NULL);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    return (double)n * FRAME * 8 / secs;
}

static int connect_path(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        fail("connect", strerror(errno));
    return fd;
}

static double switch_rate(const char *dir, int n, double *cpu)
{
    char err[PV_NETSW_ERR], path[256];
    netsw *sw = netsw_start(dir, err);
    if (!sw || netsw_bridge_add(sw, "bench", 1, err) < 0)
        fail("start", err);
    const uint8_t ma[6] = {0x52, 0x54, 0, 0, 0, 1}, mb[6] = {0x52, 0x54, 0, 0, 0, 2};
    netsw_port_id pa = netsw_port_add(sw, "bench", "a", ma, err), pb = netsw_port_add(sw, "bench", "b", mb, err);
    if (pa < 0 || pb < 0)
        fail("port", err);
    int a = connect_path(netsw_port_path(sw, pa, path, sizeof(path)));
    int b = connect_path(netsw_port_path(sw, pb, path, sizeof(path)));
    sleep_ms(50); /* both accepted before the first frame */
    double c0 = cpu_s();
    double secs = run_pair(a, b, n);
    *cpu = cpu_s() - c0;
    close(a);
    close(b);
    netsw_stop(sw);
    return (double)n * FRAME * 8 / secs;
}

void bench_switch(const char *scratch, int iters)
{
    char *dir = xasprintf("%s/switch", scratch);
    mkdir_p(dir, 0700);
    const int n = 100000; /* 151 MB of 1514-byte frames */
    double *sw = xcalloc((size_t)iters, sizeof(double)), *raw = xcalloc((size_t)iters, sizeof(double));
    double *cpu = xcalloc((size_t)iters, sizeof(double));
    for (int i = 0; i < iters; i++) {
        double c_sw, c_raw;
        raw[i] = relay_rate(n, &c_raw);
        sw[i] = switch_rate(dir, n, &c_sw);
        cpu[i] = c_sw / ((double)n * FRAME * 8 / 1e9); /* CPU seconds per Gbit */
    }
    double sw_m = bench_median(sw, iters), raw_m = bench_median(raw, iters), cpu_m = bench_median(cpu, iters);
    printf("%-44s %9.2f Gbit/s\n", "raw relay between socketpairs (median)", raw_m / 1e9);
    printf("%-44s %9.2f Gbit/s\n", "switch port to port, 1514-byte frames (med.)", sw_m / 1e9);
    printf("%-44s %9.2f x   (target >= 0.7)\n", "  ratio", sw_m / raw_m);
    printf("%-44s %9.3f s   (= %.0f%% of a core at 1 Gbit/s)\n\n", "switch CPU per Gbit forwarded (median)", cpu_m,
           cpu_m * 100);
    free(sw);
    free(raw);
    free(cpu);
    rm_rf(dir);
    free(dir);
}

#ifdef HAVE_VM_NIC
/* A guest shell command's stdout (new string); dies when it fails. */
static char *guest_out(pv_vm *vm, const char *cmd)
{
    char err[PV_ERR_MAX];
    vm_begin(vm, PV_MSG_EXEC);
    pv_put_str(&vm->out, PV_T_SHELL, cmd);
    vm_reply r;
    if (vm_call(vm, &r, 300000, NULL, err, sizeof(err)) != 0)
        fail(cmd, err);
    if (pv_msg_i64(&r.msg, PV_T_EXIT_CODE, -1) != 0)
        fail("guest command failed", cmd);
    char *out = pv_msg_strdup(&r.msg, PV_T_STDOUT);
    vm_reply_free(&r);
    return out ? out : xstrdup("");
}

/* Boots a VM with one NIC whose -netdev value is netdev, address ip/24 on eth0. */
static pv_vm *boot_with_nic(const pv_profile *p, const char *scratch, const char *name, const char *netdev,
                            int last_octet)
{
    char err[PV_ERR_MAX];
    pv_vm *vm = vm_new(name, p, scratch);
    char mac[32], cmd[200];
    snprintf(mac, sizeof(mac), "52:54:00:99:00:%02x", last_octet);
    if (vm_nic_add(vm, "nd0", netdev, mac, err, sizeof(err)) != 0 || vm_boot(vm, NULL, err, sizeof(err)) != 0)
        fail(name, err);
    snprintf(cmd, sizeof(cmd), "ip link set eth0 up && ip addr add 10.99.0.%d/24 dev eth0", last_octet);
    free(guest_out(vm, cmd));
    return vm;
}

/* Median ping RTT (ms) from a to 10.99.0.2, and TCP throughput (bit/s) of 16 MiB. */
static void measure(pv_vm *a, pv_vm *b, double *rtt_ms, double *bps)
{
    char *out = guest_out(a, "ping -c 21 -i 0.2 -W 2 10.99.0.2");
    double v[32];
    int n = 0;
    for (const char *t = strstr(out, "time="); t && n < 32; t = strstr(t + 5, "time="))
        v[n++] = atof(t + 5);
    free(out);
    if (n < 10)
        fail("ping", "fewer than 10 of 21 echo replies between the guests");
    *rtt_ms = bench_median(v, n);
    const long total = 16L * 1024 * 1024;
    free(guest_out(a, "dd if=/dev/zero of=/tmp/blob bs=1M count=16 2>/dev/null"));
    /* The listener outlives the exec that starts it (setsid), and its stdin
     * stays open: busybox nc ends the connection at EOF on stdin. */
    free(guest_out(b, "rm -f /tmp/got; setsid sh -c 'sleep 900 | nc -l -p 5001 > /tmp/got' < /dev/null > /dev/null 2>&1 &"
                      " for i in 1 2 3 4 5 6 7 8 9 10; do netstat -ltn | grep -q :5001 && break; sleep 0.2; done"));
    double t0 = now_s();
    free(guest_out(a, "nc -w 5 10.99.0.2 5001 < /tmp/blob"));
    /* done when every byte is on b, not when a's socket took the last one */
    long got = 0;
    while (got < total && now_s() - t0 < 300) {
        char *out = guest_out(b, "wc -c < /tmp/got");
        got = atol(out);
        free(out);
    }
    if (got < total)
        fail("tcp", "the receiving guest did not get all 16 MiB within 300 s");
    *bps = (double)total * 8 / (now_s() - t0);
}

void bench_guests(const pv_profile *p, const char *scratch)
{
    char err[PV_NETSW_ERR], nd[600], path[300];
    char *dir = xasprintf("%s/guests", scratch);
    mkdir_p(dir, 0700);
    netsw *sw = netsw_start(dir, err);
    const uint8_t ma[6] = {0x52, 0x54, 0, 0x99, 0, 1}, mb[6] = {0x52, 0x54, 0, 0x99, 0, 2};
    if (!sw || netsw_bridge_add(sw, "bench", 1, err) < 0)
        fail("start", err);
    netsw_port_id pa = netsw_port_add(sw, "bench", "a", ma, err), pb = netsw_port_add(sw, "bench", "b", mb, err);
    if (pa < 0 || pb < 0)
        fail("port", err);
    pv_vm *a = boot_with_nic(p, scratch, "net-a", netsw_port_netdev(sw, pa, "nd0", nd, sizeof(nd)), 1);
    pv_vm *b = boot_with_nic(p, scratch, "net-b", netsw_port_netdev(sw, pb, "nd0", nd, sizeof(nd)), 2);
    double sw_rtt, sw_bps, d_rtt, d_bps;
    measure(a, b, &sw_rtt, &sw_bps);
    vm_free(a);
    vm_free(b);
    netsw_stop(sw);
    /* The same pairing on a direct link: b listens, a connects. */
    snprintf(path, sizeof(path), "%s/direct.sock", dir);
    snprintf(nd, sizeof(nd), "stream,id=nd0,server=on,addr.type=unix,addr.path=%s", path);
    b = boot_with_nic(p, scratch, "net-b", nd, 2);
    snprintf(nd, sizeof(nd), "stream,id=nd0,server=off,addr.type=unix,addr.path=%s", path);
    a = boot_with_nic(p, scratch, "net-a", nd, 1);
    measure(a, b, &d_rtt, &d_bps);
    vm_free(a);
    vm_free(b);
    printf("%-44s %9.3f ms\n", "ping RTT guest to guest, direct stream link", d_rtt);
    printf("%-44s %9.3f ms\n", "ping RTT guest to guest through the switch", sw_rtt);
    printf("%-44s %9.2f x   (%+.3f ms; target <= 1.3 x or +0.1 ms)\n", "  ratio", sw_rtt / d_rtt, sw_rtt - d_rtt);
    printf("%-44s %9.1f Mbit/s\n", "TCP guest to guest, direct stream link", d_bps / 1e6);
    printf("%-44s %9.1f Mbit/s\n", "TCP guest to guest through the switch", sw_bps / 1e6);
    printf("%-44s %9.2f x   (target >= 0.7)\n\n", "  ratio", sw_bps / d_bps);
    rm_rf(dir);
    free(dir);
}
#else
void bench_guests(const pv_profile *p, const char *scratch)
{
    (void)p;
    (void)scratch;
    printf("guest-to-guest network rows: not built (no VM NICs, host/vmm/vm_nic.h)\n\n");
}
#endif
