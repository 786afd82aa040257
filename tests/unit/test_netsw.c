/*
 * test_netsw.c - the user-space switch (host/net/) driven through its real
 * unix sockets by fake QEMU ports speaking the stream netdev's framing
 * (4-byte big-endian length, then the frame): learning and flooding,
 * latency, seeded drops (binomial bounds, same seed = same frames, another
 * seed = other frames), the token bucket's rate, directional partitions,
 * isolation, link down, counters, pcap captures read back by tcpdump, a
 * reconnecting port, bad input, and the NAT uplink reaching a server this
 * test starts on 127.0.0.1 through the gateway address.
 */
#include "netsw.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static char dir[64], err[PV_NETSW_ERR];

static double now_ms_f(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const uint8_t MAC_A[6] = {0x52, 0x54, 0, 0, 0, 0xa}, MAC_B[6] = {0x52, 0x54, 0, 0, 0, 0xb},
                     MAC_C[6] = {0x52, 0x54, 0, 0, 0, 0xc}, MAC_X[6] = {0x52, 0x54, 0, 0, 0, 0x99},
                     BCAST[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

/* The socket path out of the netdev string, as QEMU would read it. */
static int connect_port(netsw *sw, netsw_port_id id)
{
    char nd[600];
    netsw_port_netdev(sw, id, "nd0", nd, sizeof(nd));
    const char *p = strstr(nd, "addr.path=");
    if (!p)
        return -1;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", p + 10);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    usleep(20000); /* let the switch thread accept before frames flow the other way */
    return fd;
}

static void send_raw(int fd, const uint8_t *frame, size_t len)
{
    uint8_t buf[4 + 2048];
    uint32_t be = htonl((uint32_t)len);
    memcpy(buf, &be, 4);
    memcpy(buf + 4, frame, len);
    if (write(fd, buf, 4 + len) != (ssize_t)(4 + len))
        perror("send_raw");
}

/* An Ethernet frame with a local-experimental ethertype carrying seq. */
static void send_frame(int fd, const uint8_t dst[6], const uint8_t src[6], uint32_t seq, size_t len)
{
    uint8_t f[2048] = {0};
    memcpy(f, dst, 6);
    memcpy(f + 6, src, 6);
    f[12] = 0x88, f[13] = 0xb5;
    uint32_t be = htonl(seq);
    memcpy(f + 14, &be, 4);
    send_raw(fd, f, len < 60 ? 60 : len);
}

static bool read_full(int fd, uint8_t *buf, size_t n, int timeout_ms)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) <= 0)
            return false;
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

/* One frame within timeout_ms: its length, its seq in *seq; -1 if none. */
static int recv_frame(int fd, uint8_t *frame, uint32_t *seq, int timeout_ms)
{
    uint8_t h[4];
    if (!read_full(fd, h, 4, timeout_ms))
        return -1;
    uint32_t len = (uint32_t)h[0] << 24 | h[1] << 16 | h[2] << 8 | h[3];
    if (len > 2048 || !read_full(fd, frame, len, 1000))
        return -1;
    if (seq) {
        uint32_t be;
        memcpy(&be, frame + 14, 4);
        *seq = ntohl(be);
    }
    return (int)len;
}

static bool got_seq(int fd, uint32_t want, int timeout_ms)
{
    uint8_t f[2048];
    uint32_t seq;
    while (recv_frame(fd, f, &seq, timeout_ms) >= 0)
        if (seq == want)
            return true;
    return false;
}

typedef struct {
    netsw *sw;
    netsw_port_id pa, pb, pc;
    int a, b, c;
} lan3;

static void lan_up(lan3 *l, uint64_t seed, bool three)
{
    memset(l, 0, sizeof(*l));
    l->sw = netsw_start(dir, err);
    CHECKF(l->sw != NULL, "start: %s", err);
    CHECKF(netsw_bridge_add(l->sw, "lan", seed, err) == 0, "bridge_add: %s", err);
    l->pa = netsw_port_add(l->sw, "lan", "a", MAC_A, err);
    l->pb = netsw_port_add(l->sw, "lan", "b", MAC_B, err);
    l->pc = three ? netsw_port_add(l->sw, "lan", "c", MAC_C, err) : 0;
    CHECKF(l->pa > 0 && l->pb > 0 && (!three || l->pc > 0), "port_add: %s", err);
    l->a = connect_port(l->sw, l->pa);
    l->b = connect_port(l->sw, l->pb);
    l->c = three ? connect_port(l->sw, l->pc) : -1;
    CHECK(l->a >= 0 && l->b >= 0 && (!three || l->c >= 0));
}

static void lan_down(lan3 *l)
{
    close(l->a);
    close(l->b);
    if (l->c >= 0)
        close(l->c);
    netsw_stop(l->sw);
}

static void test_learning_and_flooding(void)
{
    set_case("learning/flooding");
    lan3 l;
    lan_up(&l, 1, true);
    send_frame(l.a, BCAST, MAC_A, 1, 60);
    CHECK(got_seq(l.b, 1, 1000));
    CHECK(got_seq(l.c, 1, 1000));
    CHECK(!got_seq(l.a, 1, 100)); /* never back to the sender */
    send_frame(l.a, MAC_X, MAC_A, 2, 60); /* unknown unicast floods */
    CHECK(got_seq(l.b, 2, 1000));
    CHECK(got_seq(l.c, 2, 1000));
    send_frame(l.b, MAC_A, MAC_B, 3, 60); /* A was learnt from frame 1 */
    CHECK(got_seq(l.a, 3, 1000));
    CHECK(!got_seq(l.c, 3, 200));
    send_frame(l.a, MAC_B, MAC_A, 4, 60); /* B learnt from frame 3 */
    CHECK(got_seq(l.b, 4, 1000));
    CHECK(!got_seq(l.c, 4, 200));
    uint8_t mcast[6] = {0x01, 0x00, 0x5e, 0, 0, 1};
    send_frame(l.c, mcast, MAC_C, 5, 60);
    CHECK(got_seq(l.a, 5, 1000));
    CHECK(got_seq(l.b, 5, 1000));
    lan_down(&l);
}

static void test_latency(void)
{
    set_case("latency");
    lan3 l;
    lan_up(&l, 1, false);
    netsw_impair im = {.latency_ms = 60};
    CHECKF(netsw_set_impair(l.sw, "lan", NULL, NULL, &im, err) == 0, "%s", err);
    netsw_impair back;
    CHECK(netsw_get_impair(l.sw, "lan", NULL, NULL, &back, err) == 0 && back.latency_ms == 60);
    CHECK(netsw_get_impair(l.sw, "lan", "a", "b", &back, err) == 0 && back.latency_ms == 60);
    double t0 = now_ms_f();
    send_frame(l.a, BCAST, MAC_A, 7, 60);
    CHECK(got_seq(l.b, 7, 3000));
    double dt = now_ms_f() - t0;
    CHECKF(dt >= 60 && dt < 60 + 500, "one way took %.1f ms, configured 60", dt);
    /* A pair rule overrides the bridge: b -> a without delay. */
    netsw_impair none = {0};
    CHECK(netsw_set_impair(l.sw, "lan", "b", "a", &none, err) == 0);
    t0 = now_ms_f();
    send_frame(l.b, BCAST, MAC_B, 8, 60);
    CHECK(got_seq(l.a, 8, 3000));
    dt = now_ms_f() - t0;
    CHECKF(dt < 50, "b -> a took %.1f ms with no latency on that direction", dt);
    /* Without jitter, a delayed pair keeps its order. */
    for (uint32_t i = 0; i < 50; i++)
        send_frame(l.a, MAC_B, MAC_A, 100 + i, 60);
    uint8_t f[2048];
    uint32_t seq, want = 100;
    bool in_order = true;
    while (want < 150 && recv_frame(l.b, f, &seq, 2000) >= 0)
        in_order &= seq == want++;
    CHECKF(in_order && want == 150, "50 delayed frames arrived in order (stopped at %u)", want);
    lan_down(&l);
}

/* Which of 1000 frames a -> b survive 10 % drops with this seed (bitmap). */
static int drop_run(uint64_t seed, uint8_t seen[1000])
{
    lan3 l;
    lan_up(&l, seed, false);
    netsw_impair im = {.drop_pct = 10};
    CHECKF(netsw_set_impair(l.sw, "lan", "a", "b", &im, err) == 0, "%s", err);
    memset(seen, 0, 1000);
    for (uint32_t i = 0; i < 1000; i++)
        send_frame(l.a, MAC_B, MAC_A, i, 60);
    int n = 0;
    uint8_t f[2048];
    uint32_t seq;
    while (recv_frame(l.b, f, &seq, 500) >= 0)
        if (seq < 1000 && !seen[seq]) {
            seen[seq] = 1;
            n++;
        }
    netsw_counters c;
    CHECK(netsw_port_counters(l.sw, l.pa, &c, err) == 0);
    CHECKF(c.tx_packets == 1000 && c.dropped == 1000 - (uint64_t)n, "tx %llu dropped %llu delivered %d",
           (unsigned long long)c.tx_packets, (unsigned long long)c.dropped, n);
    lan_down(&l);
    return n;
}

static void test_drop_rate_replayable(void)
{
    set_case("drop rate");
    static uint8_t s1[1000], s2[1000], s3[1000];
    int n1 = drop_run(42, s1), n2 = drop_run(42, s2), n3 = drop_run(43, s3);
    /* Binomial(1000, 0.9): mean 900, sd 9.5; +-5 sd. */
    CHECKF(n1 >= 852 && n1 <= 948, "delivered %d of 1000 at 10 %% loss", n1);
    CHECKF(n3 >= 852 && n3 <= 948, "delivered %d of 1000 at 10 %% loss (seed 43)", n3);
    CHECK(n1 == n2 && memcmp(s1, s2, 1000) == 0); /* the same seed drops the same frames */
    CHECK(memcmp(s1, s3, 1000) != 0);
}

static void test_bandwidth(void)
{
    set_case("bandwidth");
    lan3 l;
    lan_up(&l, 1, false);
    const uint64_t rate = 2000000;
    const int n = 150, size = 1250; /* 1.5 Mbit: 0.75 s at 2 Mbit/s */
    netsw_impair im = {.rate_bps = rate};
    CHECKF(netsw_set_impair(l.sw, "lan", "a", "b", &im, err) == 0, "%s", err);
    double t0 = now_ms_f();
    for (int i = 0; i < n; i++)
        send_frame(l.a, MAC_B, MAC_A, (uint32_t)i, size);
    int got = 0;
    uint8_t f[2048];
    uint32_t seq;
    while (got < n && recv_frame(l.b, f, &seq, 2000) >= 0)
        got++;
    double secs = (now_ms_f() - t0) / 1e3;
    double measured = n * size * 8 / secs;
    CHECKF(got == n, "received %d of %d shaped frames", got, n);
    CHECKF(fabs(measured - (double)rate) <= 0.2 * (double)rate, "measured %.0f bit/s for %llu", measured,
           (unsigned long long)rate);
    lan_down(&l);
}

static void test_partition_isolation_link(void)
{
    set_case("partitions");
    lan3 l;
    lan_up(&l, 1, false);
    CHECKF(netsw_set_blocked(l.sw, "lan", "a", "b", true, err) == 0, "%s", err);
    CHECK(netsw_is_blocked(l.sw, "lan", "a", "b") && !netsw_is_blocked(l.sw, "lan", "b", "a"));
    send_frame(l.a, BCAST, MAC_A, 1, 60);
    CHECK(!got_seq(l.b, 1, 300));
    send_frame(l.b, BCAST, MAC_B, 2, 60);
    CHECK(got_seq(l.a, 2, 1000));
    CHECK(netsw_set_blocked(l.sw, "lan", "a", "b", false, err) == 0);
    send_frame(l.a, BCAST, MAC_A, 3, 60);
    CHECK(got_seq(l.b, 3, 1000));

    set_case("isolation");
    CHECKF(netsw_set_isolated(l.sw, "lan", "a", true, err) == 0, "%s", err);
    CHECK(netsw_is_isolated(l.sw, "lan", "a") && !netsw_is_isolated(l.sw, "lan", "b"));
    send_frame(l.a, BCAST, MAC_A, 4, 60);
    CHECK(!got_seq(l.b, 4, 300));
    send_frame(l.b, BCAST, MAC_B, 5, 60);
    CHECK(!got_seq(l.a, 5, 300));
    CHECK(netsw_set_isolated(l.sw, "lan", "a", false, err) == 0);
    send_frame(l.b, BCAST, MAC_B, 6, 60);
    CHECK(got_seq(l.a, 6, 1000));

    set_case("link down");
    CHECK(netsw_port_set_link(l.sw, l.pb, false, err) == 0);
    send_frame(l.a, BCAST, MAC_A, 7, 60);
    CHECK(!got_seq(l.b, 7, 300));
    send_frame(l.b, BCAST, MAC_B, 8, 60);
    CHECK(!got_seq(l.a, 8, 300));
    CHECK(netsw_port_set_link(l.sw, l.pb, true, err) == 0);
    send_frame(l.a, BCAST, MAC_A, 9, 60);
    CHECK(got_seq(l.b, 9, 1000));

    set_case("reset");
    netsw_impair im = {.latency_ms = 500};
    CHECK(netsw_set_impair(l.sw, "lan", "a", "b", &im, err) == 0);
    CHECK(netsw_set_blocked(l.sw, "lan", "b", "a", true, err) == 0);
    CHECK(netsw_reset(l.sw, "lan", err) == 0);
    CHECK(!netsw_is_blocked(l.sw, "lan", "b", "a"));
    netsw_impair back;
    CHECK(netsw_get_impair(l.sw, "lan", "a", "b", &back, err) == 0 && back.latency_ms == 0);
    lan_down(&l);
}

static void test_counters(void)
{
    set_case("counters");
    lan3 l;
    lan_up(&l, 1, false);
    for (uint32_t i = 0; i < 5; i++)
        send_frame(l.a, BCAST, MAC_A, i, 100);
    for (uint32_t i = 0; i < 5; i++)
        CHECK(got_seq(l.b, i, 1000));
    CHECK(netsw_set_blocked(l.sw, "lan", "b", "a", true, err) == 0);
    send_frame(l.b, BCAST, MAC_B, 9, 200);
    usleep(200000);
    netsw_counters ca, cb;
    CHECK(netsw_port_counters(l.sw, l.pa, &ca, err) == 0 && netsw_port_counters(l.sw, l.pb, &cb, err) == 0);
    CHECKF(ca.tx_packets == 5 && ca.tx_bytes == 500 && ca.rx_packets == 0 && ca.dropped == 0, "a: tx %llu/%llu rx %llu drop %llu",
           (unsigned long long)ca.tx_packets, (unsigned long long)ca.tx_bytes, (unsigned long long)ca.rx_packets,
           (unsigned long long)ca.dropped);
    CHECKF(cb.rx_packets == 5 && cb.rx_bytes == 500 && cb.tx_packets == 1 && cb.tx_bytes == 200 && cb.dropped == 1,
           "b: rx %llu/%llu tx %llu drop %llu", (unsigned long long)cb.rx_packets, (unsigned long long)cb.rx_bytes,
           (unsigned long long)cb.tx_packets, (unsigned long long)cb.dropped);
    CHECK(netsw_port_counters(l.sw, 999, &ca, err) < 0 && strstr(err, "999"));
    lan_down(&l);
}

static int count_lines(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    int n = 0;
    char line[512];
    while (fgets(line, sizeof(line), p))
        n++;
    return pclose(p) == 0 ? n : -1;
}

/* Frames of the test's ethertype that a real pcap consumer finds in path. */
static int tcpdump_count(const char *path)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "tcpdump -nn -e -r %s 2>/dev/null | grep 'ethertype Unknown (0x88b5)'", path);
    return count_lines(cmd);
}

static void test_capture(void)
{
    set_case("capture");
    lan3 l;
    lan_up(&l, 1, false);
    char whole[128], perport[128];
    snprintf(whole, sizeof(whole), "%s.bridge.pcap", dir);
    snprintf(perport, sizeof(perport), "%s.b.pcap", dir);
    int cw = netsw_capture_start(l.sw, "lan", 0, whole, err);
    int cp = netsw_capture_start(l.sw, "lan", l.pb, perport, err);
    CHECKF(cw > 0 && cp > 0, "capture_start: %s", err);
    for (uint32_t i = 0; i < 4; i++)
        send_frame(l.a, BCAST, MAC_A, i, 80);
    for (uint32_t i = 0; i < 3; i++)
        send_frame(l.b, MAC_A, MAC_B, 10 + i, 90);
    for (uint32_t i = 0; i < 4; i++)
        CHECK(got_seq(l.b, i, 1000));
    for (uint32_t i = 0; i < 3; i++)
        CHECK(got_seq(l.a, 10 + i, 1000));
    CHECKF(netsw_capture_packets(l.sw, cw) == 7, "bridge capture has %llu frames",
           (unsigned long long)netsw_capture_packets(l.sw, cw));
    CHECKF(netsw_capture_packets(l.sw, cp) == 7, "port capture has %llu frames",
           (unsigned long long)netsw_capture_packets(l.sw, cp));
    CHECK(netsw_capture_stop(l.sw, cw, err) == 0 && netsw_capture_stop(l.sw, cp, err) == 0);
    CHECK(netsw_capture_stop(l.sw, cw, err) < 0);
    FILE *f = fopen(whole, "rb");
    uint32_t magic = 0, linktype = 0;
    uint8_t h[24];
    if (f && fread(h, 1, 24, f) == 24) {
        memcpy(&magic, h, 4);
        memcpy(&linktype, h + 20, 4);
    }
    if (f)
        fclose(f);
    CHECK(magic == 0xa1b2c3d4 && linktype == 1);
    if (access("/usr/bin/tcpdump", X_OK) == 0 || access("/usr/sbin/tcpdump", X_OK) == 0) {
        int nw = tcpdump_count(whole), np = tcpdump_count(perport);
        CHECKF(nw == 7 && np == 7, "tcpdump -r read %d and %d frames of 7", nw, np);
    } else {
        printf("test_netsw: tcpdump not installed, the capture is checked by header only\n");
    }
    if (n_fail == 0) {
        unlink(whole);
        unlink(perport);
    }
    CHECK(netsw_capture_start(l.sw, "lan", 0, "/nonexistent/dir/x.pcap", err) < 0 && strstr(err, "lan"));
    lan_down(&l);
}

/* A child sends n frames of 1500 bytes a -> b (blocking writes, as QEMU's
 * socket would block); returns its pid. */
static pid_t send_in_child(int fd, int n)
{
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < n; i++)
            send_frame(fd, MAC_B, MAC_A, (uint32_t)i, 1500);
        _exit(0);
    }
    return pid;
}

static void test_backpressure(void)
{
    set_case("backpressure");
    lan3 l;
    lan_up(&l, 1, false);
    send_frame(l.b, BCAST, MAC_B, 0, 60); /* learn b */
    CHECK(got_seq(l.a, 0, 1000));
    /* A receiver that is late but drains: the sender waits, nothing is lost. */
    const int n = 4000; /* 6 MB: more than every buffer on the way */
    pid_t pid = send_in_child(l.a, n);
    usleep(150000);
    int got = 0;
    uint8_t f[2048];
    uint32_t seq;
    while (got < n && recv_frame(l.b, f, &seq, 2000) >= 0)
        got++;
    waitpid(pid, NULL, 0);
    netsw_counters c;
    CHECK(netsw_port_counters(l.sw, l.pa, &c, err) == 0);
    CHECKF(got == n && c.dropped == 0, "a late reader got %d of %d frames, %llu dropped", got, n,
           (unsigned long long)c.dropped);
    /* A receiver that never reads (a paused VM) does not stall its sender for good. */
    double t0 = now_ms_f();
    pid = send_in_child(l.a, 4 * n); /* 24 MB: past every buffer and the queue limit */
    int status = -1;
    for (int i = 0; i < 100 && waitpid(pid, &status, WNOHANG) == 0; i++)
        usleep(50000);
    CHECKF(status == 0, "the sender finished in %.0f ms while b did not read", now_ms_f() - t0);
    if (status != 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    CHECK(netsw_port_counters(l.sw, l.pa, &c, err) == 0 && c.dropped > 0);
    lan_down(&l);
}

static void test_reconnect(void)
{
    set_case("reconnect");
    lan3 l;
    lan_up(&l, 1, false);
    int a2 = connect_port(l.sw, l.pa); /* a new QEMU for NIC a, e.g. after a restore */
    CHECK(a2 >= 0);
    uint8_t f[64];
    CHECK(recv_frame(l.a, f, NULL, 1000) < 0); /* the old connection was dropped */
    send_frame(l.b, BCAST, MAC_B, 1, 60);
    CHECK(got_seq(a2, 1, 1000));
    send_frame(a2, BCAST, MAC_A, 2, 60);
    CHECK(got_seq(l.b, 2, 1000));
    close(a2);
    lan_down(&l);
}

static void test_bad_input(void)
{
    set_case("bad input");
    netsw *sw = netsw_start("/nonexistent", err);
    CHECK(!sw && strstr(err, "/nonexistent"));
    lan3 l;
    lan_up(&l, 1, false);
    CHECK(netsw_bridge_add(l.sw, "lan", 1, err) < 0 && strstr(err, "lan"));
    CHECK(netsw_bridge_add(l.sw, "", 1, err) < 0);
    CHECK(netsw_port_add(l.sw, "nope", "a", MAC_A, err) < 0 && strstr(err, "nope"));
    CHECK(netsw_port_add(l.sw, "lan", NULL, MAC_A, err) < 0);
    const netsw_impair bad[] = {{.latency_ms = -1}, {.latency_ms = NAN}, {.latency_ms = 1e12}, {.jitter_ms = INFINITY},
                                {.drop_pct = -0.5}, {.drop_pct = 100.5}, {.drop_pct = NAN}, {.rate_bps = 1}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECKF(netsw_set_impair(l.sw, "lan", NULL, NULL, &bad[i], err) < 0 && strstr(err, "lan"), "bad impairment %zu", i);
    netsw_impair ok = {.drop_pct = 100};
    CHECK(netsw_set_impair(l.sw, "lan", NULL, NULL, &ok, err) == 0);
    CHECK(netsw_set_impair(l.sw, "lan", "a", NULL, &ok, err) < 0);
    CHECK(netsw_set_impair(l.sw, "lan", "a", "ghost", &ok, err) < 0 && strstr(err, "bridge:attach first"));
    CHECK(netsw_set_blocked(l.sw, "lan", "a", "a", true, err) < 0);
    CHECK(netsw_set_isolated(l.sw, "lan", "ghost", true, err) < 0 && strstr(err, "ghost"));
    CHECK(netsw_capture_start(l.sw, "lan", 999, "/tmp/x.pcap", err) < 0);
    CHECK(netsw_port_remove(l.sw, 999, err) < 0);
    CHECK(netsw_uplink_enable(l.sw, "lan", "10.0.0.0", err) < 0 && strstr(err, "subnet"));
    CHECK(netsw_uplink_enable(l.sw, "lan", "10.0.0.0/31", err) < 0);
    CHECK(netsw_uplink_enable(l.sw, "lan", "300.0.0.0/24", err) < 0);
    char path[200], gw[16], dns[16];
    CHECK(strstr(netsw_port_path(l.sw, l.pa, path, sizeof(path)), dir) == path && access(path, F_OK) == 0);
    CHECK(netsw_port_path(l.sw, 999, path, sizeof(path))[0] == 0);
    CHECK(netsw_uplink_addresses("10.9.8.7/16", gw, dns, err) == 0 && strcmp(gw, "10.9.255.254") == 0 &&
          strcmp(dns, "10.9.255.253") == 0);
    char nd[16];
    netsw_port_netdev(l.sw, l.pa, "nd0", nd, sizeof(nd)); /* too small: empty, never truncated */
    CHECK(nd[0] == 0);
    CHECK(netsw_bridge_remove(l.sw, "lan", err) == 0 && netsw_bridge_remove(l.sw, "lan", err) < 0);
    lan_down(&l);
}

/* Nothing of the switch is left in its directory once stopped. */
static void test_cleanup(void)
{
    set_case("cleanup");
    lan3 l;
    lan_up(&l, 1, true);
    CHECK(netsw_port_remove(l.sw, l.pc, err) == 0);
    lan_down(&l);
    int entries = count_lines("true"); /* popen works */
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "ls -A %s", dir);
    entries = count_lines(cmd);
    CHECKF(entries == 0, "%d files left in the switch's directory", entries);
}

static uint16_t csum(const uint8_t *p, size_t n, uint32_t sum)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += (uint32_t)p[i] << 8 | p[i + 1];
    if (n & 1)
        sum += (uint32_t)p[n - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* A TCP SYN from 10.77.0.10:40000 to gw:port, as a guest would send it. */
static size_t tcp_syn(uint8_t *f, const uint8_t gw_mac[6], uint32_t gw, uint16_t port)
{
    memset(f, 0, 64);
    memcpy(f, gw_mac, 6);
    memcpy(f + 6, MAC_A, 6);
    f[12] = 0x08, f[13] = 0x00;
    uint8_t *ip = f + 14, *tcp = ip + 20;
    uint32_t src = htonl(0x0a4d000a), dst = htonl(gw);
    ip[0] = 0x45, ip[3] = 40, ip[8] = 64, ip[9] = 6;
    memcpy(ip + 12, &src, 4);
    memcpy(ip + 16, &dst, 4);
    uint16_t c = htons(csum(ip, 20, 0));
    memcpy(ip + 10, &c, 2);
    tcp[0] = 40000 >> 8, tcp[1] = 40000 & 0xff, tcp[2] = (uint8_t)(port >> 8), tcp[3] = (uint8_t)port;
    tcp[7] = 1, tcp[12] = 0x50, tcp[13] = 0x02, tcp[14] = 0xff, tcp[15] = 0xff;
    uint8_t pseudo[12 + 20];
    memcpy(pseudo, ip + 12, 8);
    pseudo[8] = 0, pseudo[9] = 6, pseudo[10] = 0, pseudo[11] = 20;
    memcpy(pseudo + 12, tcp, 20);
    c = htons(csum(pseudo, sizeof(pseudo), 0));
    memcpy(tcp + 16, &c, 2);
    return 54;
}

/* The uplink's NAT reaches a server on the host's 127.0.0.1 through the
 * gateway address, and nothing else is contacted. */
static void test_uplink(void)
{
    set_case("uplink");
    lan3 l;
    lan_up(&l, 1, false);
    CHECKF(netsw_uplink_enable(l.sw, "lan", "10.77.0.0/24", err) == 0, "%s", err);
    CHECK(netsw_uplink_enabled(l.sw, "lan"));
    CHECK(netsw_uplink_enable(l.sw, "lan", "10.77.0.0/24", err) < 0 && strstr(err, "already"));
    int srv = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    CHECK(bind(srv, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(srv, 1) == 0);
    getsockname(srv, (struct sockaddr *)&sa, &sl);
    uint16_t port = ntohs(sa.sin_port);

    uint8_t arp[60] = {0}, f[2048];
    memcpy(arp, BCAST, 6);
    memcpy(arp + 6, MAC_A, 6);
    const uint8_t arp_req[] = {0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1};
    memcpy(arp + 12, arp_req, sizeof(arp_req));
    memcpy(arp + 22, MAC_A, 6);
    const uint8_t me[4] = {10, 77, 0, 10}, gw[4] = {10, 77, 0, 254};
    memcpy(arp + 28, me, 4);
    memcpy(arp + 38, gw, 4);
    send_raw(l.a, arp, 60);
    uint8_t gw_mac[6] = {0};
    bool replied = false;
    for (int tries = 0; tries < 20 && !replied; tries++) {
        int n = recv_frame(l.a, f, NULL, 500);
        if (n >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 && memcmp(f + 28, gw, 4) == 0) {
            memcpy(gw_mac, f + 22, 6);
            replied = true;
        }
    }
    CHECKF(replied, "the gateway 10.77.0.254 answered ARP through the switch");
    size_t n = tcp_syn(f, gw_mac, 0x0a4d00fe, port);
    send_raw(l.a, f, n < 60 ? 60 : n);
    struct pollfd p = {srv, POLLIN, 0};
    CHECKF(poll(&p, 1, 10000) == 1, "the server on 127.0.0.1:%u saw a connection through gateway:%u", port, port);
    bool synack = false;
    for (int tries = 0; tries < 20 && !synack; tries++) {
        int m = recv_frame(l.a, f, NULL, 500);
        synack = m >= 54 && f[12] == 0x08 && f[23] == 6 && f[14 + 20 + 13] == 0x12;
    }
    CHECK(synack);
    close(srv);
    CHECK(netsw_uplink_disable(l.sw, "lan", err) == 0 && !netsw_uplink_enabled(l.sw, "lan"));
    lan_down(&l);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/netsw-test.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_learning_and_flooding();
    test_latency();
    test_drop_rate_replayable();
    test_bandwidth();
    test_partition_isolation_link();
    test_counters();
    test_capture();
    test_backpressure();
    test_reconnect();
    test_bad_input();
    test_uplink();
    test_cleanup();
    rmdir(dir);
    printf("test_netsw: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
