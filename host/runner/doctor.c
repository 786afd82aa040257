/* provium doctor: checks what running tests needs, explains what is
 * missing, and exits 1 when something required is. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/util.h"
#include "../vmm/accel.h"
#include "../vmm/vm.h"
#include "runner.h"

static int failures;

static void line(const char *tag, const char *what, const char *detail)
{
    printf("%-5s %-16s %s\n", tag, what, detail);
}

static void check(bool ok, bool required, const char *what, const char *good, const char *bad)
{
    if (ok)
        line("ok", what, good);
    else {
        line(required ? "FAIL" : "warn", what, bad);
        failures += required;
    }
}

static bool can_open(const char *path, char *why, size_t len)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, len, "%s: %s", path, strerror(errno));
        return false;
    }
    close(fd);
    return true;
}

int runner_doctor(const pv_config *cfg)
{
    failures = 0;
    char buf[PV_ERR_MAX + 128], why[PV_ERR_MAX]; /* buf: why and a sentence after it */
    /* QEMU */
    char *qemu = find_in_path("qemu-system-x86_64");
    if (qemu) {
        char *cmd = xasprintf("'%s' --version 2>/dev/null", qemu);
        FILE *p = popen(cmd, "r");
        char ver[256] = "";
        if (p) {
            if (!fgets(ver, sizeof(ver), p))
                ver[0] = 0;
            pclose(p);
        }
        ver[strcspn(ver, "\n")] = 0;
        snprintf(buf, sizeof(buf), "%s (%s)", *ver ? ver : "version unknown", qemu);
        check(*ver != 0, true, "qemu", buf, buf);
        free(cmd);
    } else {
        check(false, true, "qemu", "", "qemu-system-x86_64 is not on PATH (Debian: apt-get install qemu-system-x86)");
    }
    free(qemu);
    /* qemu-img: disks from images get their overlays from it (host/vmm/disk.c) */
    char *qimg = find_in_path("qemu-img");
    check(qimg != NULL, false, "qemu-img", qimg ? qimg : "",
          "qemu-img is not on PATH: disks from images cannot be used (Debian: apt-get install qemu-utils)");
    free(qimg);
    /* KVM */
    /* KVM: what the probe found, not whether /dev/kvm opens */
    {
        const pv_profile *kp = config_profile(cfg, "default");
        for (size_t i = 0; (!kp || kp->local || !kp->kernel) && i < cfg->nprofiles; i++)
            kp = &cfg->profiles[i];
        accel_verdict v;
        accel_probe(kp && !kp->local ? kp->kernel : NULL, kp && !kp->local ? vm_machine(kp) : NULL, &v);
        const char *forced = getenv("PROVIUM_ACCEL");
        snprintf(buf, sizeof(buf), "%s; VMs run under TCG software emulation (works, much slower)", v.reason);
        if (forced && strcmp(forced, "tcg") == 0)
            line("info", "kvm", "PROVIUM_ACCEL=tcg: VMs run under TCG software emulation");
        else
            check(v.kvm, forced && strcmp(forced, "kvm") == 0, "kvm",
                  "a probe guest ran under KVM: VMs run with hardware acceleration", buf);
    }
    /* vhost-vsock: optional, the agent uses virtio-serial */
    bool vsock = can_open("/dev/vhost-vsock", why, sizeof(why));
    snprintf(buf, sizeof(buf), "%s; not needed (the agent talks over virtio-serial)", why);
    check(vsock, false, "vhost-vsock", "/dev/vhost-vsock is usable", buf);
    /* tun */
    bool tun = can_open("/dev/net/tun", why, sizeof(why));
    snprintf(buf, sizeof(buf), "%s; tap networking between VMs is unavailable", why);
    check(tun, false, "tun", "/dev/net/tun is usable", buf);
    /* cache dir */
    const char *cache = cfg->cache_dir ? cfg->cache_dir : cache_root();
    bool writable = false;
    if (mkdir_p(cache, 0755) == 0) {
        char *probe = xasprintf("%s/.doctor-%d", cache, (int)getpid());
        writable = write_whole_file(probe, "x", 1, 0600) == 0;
        unlink(probe);
        free(probe);
    }
    snprintf(buf, sizeof(buf), "%s is writable", cache);
    snprintf(why, sizeof(why), "%s is not writable: %s (set PROVIUM_CACHE_DIR)", cache, strerror(errno));
    check(writable, true, "cache dir", buf, why);
    /* default image */
    const pv_profile *d = config_profile(cfg, "default");
    if (!d) {
        check(false, true, "default image", "",
              cfg->path ? "provium.toml has no [profiles.default]" : "no provium.toml found (use -c FILE)");
    } else {
        bool k = d->kernel && file_exists(d->kernel), i = !d->initrd || file_exists(d->initrd);
        if (k && i)
            snprintf(buf, sizeof(buf), "kernel %s, initrd %s", d->kernel, d->initrd ? d->initrd : "(none)");
        else
            snprintf(buf, sizeof(buf), "%s is missing; run 'make image'",
                     !k ? (d->kernel ? d->kernel : "the profile's kernel") : d->initrd);
        check(k && i, true, "default image", buf, buf);
    }
    /* CPU pressure */
    double psi = psi_cpu_some_avg10();
    if (psi >= 0)
        snprintf(buf, sizeof(buf), "/proc/pressure/cpu: some avg10=%.1f%%; dispatch pauses at %s%%", psi,
                 getenv("PROVIUM_PSI_THRESHOLD") ? getenv("PROVIUM_PSI_THRESHOLD") : "90");
    check(psi >= 0, false, "cpu pressure", buf, "/proc/pressure/cpu is unavailable; no pressure gating");
    snprintf(buf, sizeof(buf), "%d CPUs, %lld MiB RAM (pool default: %lld MiB)", host_cpu_count(),
             (long long)(host_memory_bytes() >> 20), (long long)(host_memory_bytes() * 8 / 10 >> 20));
    line("info", "host", buf);
    printf("\n%s\n", failures ? "provium doctor: something required is missing (FAIL lines above)"
                              : "provium doctor: ready to run tests");
    return failures ? 1 : 0;
}
