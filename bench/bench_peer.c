/* The peer section: provium's exec latency against qemu-guest-agent's, the
 * agent vmtest drives, in the same guest on the same kernel.
 *
 * Debian's qemu-ga (apt-get install qemu-guest-agent) is a dynamic binary:
 * it is pushed with the shared libraries ldd names and started through the
 * pushed ld-linux with --library-path. Its port, a virtserialport named
 * org.qemu.guest_agent.0 on a chardev socket the bench listens on, is
 * hot-plugged into the running VM through QMP (chardev-add, device_add), so
 * the VM is an ordinary provium VM. Then, alternately:
 *   provium: the EXEC request vm:run("true") sends, until its result;
 *   qemu-ga: guest-exec of the same command (/bin/sh -c true, output
 *     captured), then guest-exec-status polled back to back (no sleep: the
 *     most favourable case for qemu-ga) until it says exited.
 * Printed: medians and 90th percentiles, and the ratio of the medians. */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../host/util/util.h"
#include "bench.h"

#define QGA_BIN "/usr/sbin/qemu-ga"
#define QGA_DIR "/tmp/qga"

typedef struct {
    int fd;
    strbuf in;
} qga_conn;

static void push(pv_vm *vm, const char *host, const char *guest)
{
    size_t len;
    char *data = read_whole_file(host, &len);
    if (!data)
        die("peer: cannot read", host);
    vm_begin(vm, PV_MSG_WRITE_FILE);
    pv_put_str(&vm->out, PV_T_PATH, guest);
    pv_put_bytes(&vm->out, PV_T_DATA, data, len);
    pv_put_u64(&vm->out, PV_T_MODE, 0755);
    vm_reply r;
    call(vm, &r);
    vm_reply_free(&r);
    free(data);
}

/* qemu-ga and every library ldd lists, into QGA_DIR under their sonames. */
static void push_qemu_ga(pv_vm *vm)
{
    guest_shell(vm, "mkdir -p " QGA_DIR, NULL);
    push(vm, QGA_BIN, QGA_DIR "/qemu-ga");
    FILE *f = popen("ldd " QGA_BIN, "r");
    if (!f)
        die("peer", "cannot run ldd");
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        char name[256], path[256];
        if (sscanf(line, " %255s => %255s", name, path) == 2 && path[0] == '/') {
        } else if (sscanf(line, " %255s", path) == 1 && path[0] == '/') {
            snprintf(name, sizeof(name), "%s", strrchr(path, '/') + 1);
        } else {
            continue; /* linux-vdso */
        }
        char *to = xasprintf(QGA_DIR "/%s", name);
        push(vm, path, to);
        free(to);
    }
    pclose(f);
}

/* Sends one command line; returns the first reply that is not an event,
 * matching want_id when given (replies to earlier guest-syncs are skipped). */
static json_t *qga_command(qga_conn *q, const char *cmd, json_t *want_id, int64_t deadline)
{
    size_t len = strlen(cmd);
    if (send(q->fd, cmd, len, MSG_NOSIGNAL) != (ssize_t)len)
        die("peer", "cannot write to the qemu-ga socket");
    for (;;) {
        char *nl = q->in.s ? memchr(q->in.s, '\n', q->in.len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - q->in.s) + 1;
            json_error_t je;
            json_t *j = json_loadb(q->in.s, n, 0, &je);
            memmove(q->in.s, q->in.s + n, q->in.len - n);
            q->in.len -= n;
            q->in.s[q->in.len] = 0;
            json_t *ret = j ? json_object_get(j, "return") : NULL;
            if (j && json_object_get(j, "error"))
                die("peer: qemu-ga answered an error", cmd);
            if (ret && (!want_id || json_equal(ret, want_id)))
                return j;
            json_decref(j);
            continue;
        }
        int left = (int)(deadline - now_ms());
        struct pollfd p = {q->fd, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, left) <= 0)
            return NULL;
        char buf[4096];
        ssize_t got = read(q->fd, buf, sizeof(buf));
        if (got <= 0)
            die("peer", "the qemu-ga socket closed");
        sb_add(&q->in, buf, (size_t)got);
    }
}

/* Hot-plugs the qemu-ga port, starts qemu-ga in the guest and connects. */
static void start_qemu_ga(pv_vm *vm, const char *tmpl, qga_conn *q)
{
    char err[PV_ERR_MAX];
    char *sock = xasprintf("%s/qga.sock", tmpl);
    json_t *args = json_pack("{s:s, s:{s:s, s:{s:{s:s, s:{s:s}}, s:b, s:b}}}", "id", "qga0", "backend", "type",
                             "socket", "data", "addr", "type", "unix", "data", "path", sock, "server", 1, "wait", 0);
    json_t *r = qmp_command(&vm->qmp, "chardev-add", args, now_ms() + 10000, err, sizeof(err));
    if (!r)
        die("peer: chardev-add", err);
    json_decref(r);
    args = json_pack("{s:s, s:s, s:s, s:s}", "driver", "virtserialport", "chardev", "qga0", "name",
                     "org.qemu.guest_agent.0", "id", "qga0port");
    r = qmp_command(&vm->qmp, "device_add", args, now_ms() + 10000, err, sizeof(err));
    if (!r)
        die("peer: device_add", err);
    json_decref(r);
    push_qemu_ga(vm);
    char *dev = NULL;
    guest_shell(vm,
                "for i in $(seq 100); do for d in /sys/class/virtio-ports/*; do "
                "[ \"$(cat $d/name 2>/dev/null)\" = org.qemu.guest_agent.0 ] && echo /dev/${d##*/} && exit 0; done; "
                "sleep 0.1; done; exit 1",
                &dev);
    dev[strcspn(dev, "\n")] = 0;
    char *start = xasprintf("setsid " QGA_DIR "/ld-linux-x86-64.so.2 --library-path " QGA_DIR " " QGA_DIR
                            "/qemu-ga -m virtio-serial -p %s -t " QGA_DIR " -f " QGA_DIR "/qga.pid "
                            "</dev/null >" QGA_DIR "/log 2>&1 &",
                            dev);
    guest_shell(vm, start, NULL);
    free(start);
    free(dev);
    q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    if (q->fd < 0 || connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        die("peer: connect to the qemu-ga chardev", strerror(errno));
    sb_init(&q->in);
    /* until qemu-ga answers: syncs sent before it opened the port may be
     * lost, so one goes every half second; a last one with its own id
     * skips the answers to the others */
    int64_t deadline = now_ms() + 60000;
    json_t *id = json_integer(1), *j = NULL;
    while (!j && now_ms() < deadline)
        j = qga_command(q, "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":1}}\n", id, now_ms() + 500);
    if (!j)
        die("peer", "qemu-ga did not answer guest-sync within 60 s");
    json_decref(j);
    json_decref(id);
    id = json_integer(2);
    j = qga_command(q, "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":2}}\n", id, now_ms() + 10000);
    if (!j)
        die("peer", "qemu-ga did not answer the second guest-sync");
    json_decref(j);
    json_decref(id);
    free(sock);
}

static double time_qga_exec(qga_conn *q)
{
    double t0 = now_s();
    int64_t deadline = now_ms() + 30000;
    json_t *j = qga_command(q,
                            "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"/bin/sh\","
                            "\"arg\":[\"-c\",\"true\"],\"capture-output\":true}}\n",
                            NULL, deadline);
    if (!j)
        die("peer", "no answer to guest-exec");
    json_int_t pid = json_integer_value(json_object_get(json_object_get(j, "return"), "pid"));
    json_decref(j);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":%lld}}\n", (long long)pid);
    for (;;) {
        j = qga_command(q, cmd, NULL, deadline);
        if (!j)
            die("peer", "no answer to guest-exec-status");
        bool exited = json_is_true(json_object_get(json_object_get(j, "return"), "exited"));
        json_decref(j);
        if (exited)
            return now_s() - t0;
    }
}

static double time_provium_exec(pv_vm *vm)
{
    double t0 = now_s();
    vm_begin(vm, PV_MSG_EXEC);
    pv_put_str(&vm->out, PV_T_SHELL, "true");
    vm_reply r;
    call(vm, &r);
    vm_reply_free(&r);
    return now_s() - t0;
}

static double p90(double *v, int n)
{
    median(v, n); /* sorts */
    return v[(int)(0.9 * (n - 1))];
}

void bench_peer(const pv_profile *p, const char *tmpl, int iters)
{
    if (access(QGA_BIN, X_OK) != 0) {
        printf("\n%-44s %9s   (apt-get install qemu-guest-agent)\n", "qemu-guest-agent peer", "-");
        return;
    }
    char err[PV_ERR_MAX];
    pv_vm *vm = vm_new("bench-peer", p, tmpl);
    if (vm_boot(vm, NULL, err, sizeof(err)) != 0)
        die("boot", err);
    qga_conn q;
    start_qemu_ga(vm, tmpl, &q);
    int n = iters * 5 < 20 ? 20 : iters * 5;
    double *pv = xcalloc((size_t)n, sizeof(double)), *qg = xcalloc((size_t)n, sizeof(double));
    time_provium_exec(vm); /* warm both: the first fork of each pulls pages in */
    time_qga_exec(&q);
    for (int i = 0; i < n; i++) {
        pv[i] = time_provium_exec(vm);
        qg[i] = time_qga_exec(&q);
    }
    double pm = median(pv, n), qm = median(qg, n), p9 = p90(pv, n), q9 = p90(qg, n);
    printf("\n%-44s %9.2f ms   (p90 %.2f)\n", "vm:run('true') (median of alternate runs)", pm * 1e3, p9 * 1e3);
    printf("%-44s %9.2f ms   (p90 %.2f)\n", "qemu-ga guest-exec + exec-status, same cmd", qm * 1e3, q9 * 1e3);
    printf("%-44s %9.2f x   (target <= 0.5)\n", "  provium / qemu-ga", pm / qm);
    close(q.fd);
    sb_free(&q.in);
    free(pv);
    free(qg);
    vm_shutdown(vm, err, sizeof(err));
    vm_free(vm);
}
