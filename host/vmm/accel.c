/* The accelerator probe: see accel.h for why opening /dev/kvm proves nothing. */
#include "accel.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../util/util.h"

/* A KVM guest prints its banner within milliseconds; TCG never gets here.
 * Long enough for a loaded machine, short enough to pay once per host. */
#define PROBE_DEADLINE_MS 8000
#define KVM_DEVICE "/dev/kvm"
#define BANNER "Linux version"

const char *accel_requested(const pv_profile *p, char *err, size_t errlen)
{
    const char *env = getenv("PROVIUM_ACCEL");
    const char *v = env && *env ? env : p && p->accel ? p->accel : "auto";
    if (strcmp(v, "auto") && strcmp(v, "kvm") && strcmp(v, "tcg")) {
        snprintf(err, errlen, "%s accel = \"%s\" is not one of auto, kvm, tcg",
                 env && *env ? "PROVIUM_ACCEL (or --accel):" : "profile", v);
        return NULL;
    }
    return v;
}

/* Cache key: whatever could change the verdict. The fake-device tests rely
 * on the device identity being part of it. */
static char *verdict_path(void)
{
    struct utsname u;
    if (uname(&u) != 0)
        memset(&u, 0, sizeof(u));
    struct stat q = {0}, k = {0};
    char *qemu = find_in_path("qemu-system-x86_64");
    if (qemu)
        stat(qemu, &q);
    stat(KVM_DEVICE, &k);
    char *id = xasprintf("%s|%lld|%lld|%s|%s|%llx|%llx|%llx", qemu ? qemu : "-", (long long)q.st_size,
                         (long long)q.st_mtime, u.release, u.version, (unsigned long long)k.st_rdev,
                         (unsigned long long)k.st_ino, (unsigned long long)k.st_dev);
    char hex[65];
    sha256_hex(id, strlen(id), hex);
    hex[16] = 0;
    free(id);
    free(qemu);
    return xasprintf("%s/accel/%s", cache_root(), hex);
}

static bool read_verdict(const char *path, accel_verdict *out)
{
    size_t len = 0;
    char *text = read_whole_file(path, &len);
    if (!text)
        return false;
    bool ok = true;
    if (strncmp(text, "kvm\n", 4) == 0) {
        out->kvm = true;
        out->reason[0] = 0;
    } else if (strncmp(text, "tcg\n", 4) == 0) {
        out->kvm = false;
        snprintf(out->reason, sizeof(out->reason), "%s", text + 4);
        out->reason[strcspn(out->reason, "\n")] = 0;
    } else {
        ok = false; /* torn or foreign: probe again */
    }
    free(text);
    return ok;
}

static void write_verdict(const char *path, const accel_verdict *v)
{
    char *dir = path_dirname(path);
    mkdir_p(dir, 0755);
    free(dir);
    char *text = xasprintf("%s\n%s\n", v->kvm ? "kvm" : "tcg", v->reason);
    /* concurrent probes from parallel test files never see half a file */
    write_file_atomic(path, text, strlen(text), 0644);
    free(text);
}

/* QEMU's own words: the first line of its stderr that says "error" (the MSR
 * failure before an assertion), else its first line. */
static void quote_qemu(const char *text, char *out, size_t len)
{
    const char *pick = NULL;
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (*l == '\n')
            continue;
        if (!pick)
            pick = l;
        const char *eol = strchr(l, '\n');
        size_t n = eol ? (size_t)(eol - l) : strlen(l);
        if (memmem(l, n, "error", 5) || memmem(l, n, "failed", 6)) {
            pick = l;
            break;
        }
    }
    if (!pick) {
        snprintf(out, len, "QEMU gave no message");
        return;
    }
    const char *eol = strchr(pick, '\n');
    snprintf(out, len, "%.*s", (int)(eol ? eol - pick : (long)strlen(pick)), pick);
}

/* Boots kernel under -accel ACCEL (-cpu host for kvm: what a VM would get)
 * with no initrd, and waits for the kernel banner on the serial console. */
void accel_probe_run(const char *accel, const char *kernel, const char *machine, accel_verdict *out)
{
    memset(out, 0, sizeof(*out));
    int o[2], e[2];
    if (pipe2(o, O_CLOEXEC) != 0 || pipe2(e, O_CLOEXEC) != 0) {
        snprintf(out->reason, sizeof(out->reason), "cannot probe KVM: pipe: %s", strerror(errno));
        return;
    }
    bool microvm = strcmp(machine, "microvm") == 0;
    char *argv[] = {"qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                    "-monitor", "none", "-machine", microvm ? "microvm,acpi=off" : (char *)machine, "-accel",
                    (char *)accel, "-cpu", strcmp(accel, "kvm") == 0 ? "host" : "max", "-m", "128M", "-serial", "stdio", "-kernel", (char *)kernel, "-append",
                    "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1 reboot=t acpi=off pci=off rdinit=/-", NULL};
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t pid = spawn_tied(argv, null, o[1], e[1]);
    if (null >= 0)
        close(null);
    close(o[1]);
    close(e[1]);
    if (pid < 0) {
        snprintf(out->reason, sizeof(out->reason), "cannot probe KVM: fork: %s", strerror(errno));
        close(o[0]);
        close(e[0]);
        return;
    }
    strbuf con, qerr;
    sb_init(&con);
    sb_init(&qerr);
    int64_t deadline = now_ms() + PROBE_DEADLINE_MS;
    bool open_o = true, open_e = true, banner = false;
    while ((open_o || open_e) && !banner) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            break;
        struct pollfd p[2] = {{open_o ? o[0] : -1, POLLIN, 0}, {open_e ? e[0] : -1, POLLIN, 0}};
        if (poll(p, 2, (int)left) < 0 && errno != EINTR)
            break;
        char buf[4096];
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read(p[i].fd, buf, sizeof(buf));
            if (n <= 0) {
                if (i == 0)
                    open_o = false;
                else
                    open_e = false;
                continue;
            }
            sb_add(i == 0 ? &con : &qerr, buf, (size_t)n);
        }
        banner = con.s && strstr(con.s, BANNER);
    }
    kill(pid, SIGKILL);
    int st = 0;
    waitpid(pid, &st, 0);
    close(o[0]);
    close(e[0]);
    if (banner) {
        out->kvm = true;
        out->reason[0] = 0;
    } else {
        char why[400];
        if (qerr.len)
            quote_qemu(qerr.s, why, sizeof(why));
        else
            snprintf(why, sizeof(why), "the guest printed %s within %d s under %s",
                     con.len ? "no kernel banner" : "nothing", PROBE_DEADLINE_MS / 1000, accel);
        if (strcmp(accel, "kvm") == 0)
            snprintf(out->reason, sizeof(out->reason), "%s opens but cannot run a guest: %s", KVM_DEVICE, why);
        else
            snprintf(out->reason, sizeof(out->reason), "a probe guest under %s did not run: %s", accel, why);
    }
    sb_free(&con);
    sb_free(&qerr);
}

void accel_probe(const char *kernel, const char *machine, accel_verdict *out)
{
    memset(out, 0, sizeof(*out));
    int fd = open(KVM_DEVICE, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        /* nothing to probe, nothing worth caching */
        snprintf(out->reason, sizeof(out->reason), "%s is not usable: %s", KVM_DEVICE, strerror(errno));
        return;
    }
    close(fd);
    char *path = verdict_path();
    if (read_verdict(path, out)) {
        free(path);
        return;
    }
    if (!kernel || !file_exists(kernel)) {
        /* no kernel to try: an unproven KVM is not trusted, and not cached */
        snprintf(out->reason, sizeof(out->reason), "%s opens, but there is no guest kernel to probe it with",
                 KVM_DEVICE);
        free(path);
        return;
    }
    accel_probe_run("kvm", kernel, machine ? machine : "microvm", out);
    out->probed_now = true;
    write_verdict(path, out);
    free(path);
}

int accel_decide(const pv_profile *p, const char *machine, bool *kvm, char *err, size_t errlen)
{
    const char *want = accel_requested(p, err, errlen);
    if (!want)
        return -1;
    *kvm = false;
    if (strcmp(want, "tcg") == 0)
        return 0;
    accel_verdict v;
    accel_probe(p->kernel, machine, &v);
    if (!v.kvm && strcmp(want, "kvm") == 0) {
        snprintf(err, errlen, "accel = \"kvm\" was asked for (%s), but %s",
                 getenv("PROVIUM_ACCEL") && *getenv("PROVIUM_ACCEL") ? "--accel or PROVIUM_ACCEL" : "profile setting",
                 v.reason);
        return -1;
    }
    *kvm = v.kvm;
    return 0;
}
