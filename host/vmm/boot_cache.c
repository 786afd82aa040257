/* The boot cache (see boot_cache.h).
 *
 * Key: everything that decides what the guest looks like when the agent has
 * said READY: the kernel and the prepared initramfs by content (the latter
 * holds the agent, the profile's modules and the boot `files`), the kernel
 * command line, machine, memory, CPUs, accelerator, the QEMU binary and a
 * rootfs image (by path, inode, size, mtime and ctime: rootfs_identity).
 * The entry is the snapshot taken the moment a cold boot of that key
 * handshook, plus that boot's console log (and a rootfs_writable overlay).
 *
 * A restore then gives the VM what makes it itself: the clock (the host's
 * time, or initial_time), a reseeded kernel RNG (vm_restore), a fresh shared
 * RAM file (so the VM behaves like a cold-booted one, snapshots included) and
 * the boot's console log. Boots with rng_seed bypass the cache: a seeded
 * virtio-rng stream would start over after a restore, not continue. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fixtures/fixtures.h"
#include "accel.h"
#include "boot_cache.h"
#include "disk.h"
#include "qpool.h"
#include "rootfs.h"
#include "vm_internal.h"
#include "vm_nic.h"

#define KEY_VERSION "provium-boot-cache 1"

/* "path size mtime" of the first qemu-system-x86_64 on PATH */
static void add_qemu_identity(strbuf *b)
{
    const char *path = getenv("PATH");
    char *copy = xstrdup(path && *path ? path : "/usr/bin:/bin");
    for (char *save = NULL, *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char *q = xasprintf("%s/qemu-system-x86_64", d);
        struct stat st;
        if (stat(q, &st) == 0 && access(q, X_OK) == 0) {
            sb_addf(b, "qemu:%s %lld %lld.%09ld\n", q, (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                    st.st_mtim.tv_nsec);
            free(q);
            break;
        }
        free(q);
    }
    free(copy);
}

static char *boot_key(pv_vm *vm, const vm_boot_opts *o, const char *initrd, char *err, size_t errlen)
{
    const pv_profile *p = &vm->profile;
    bool kvm = false;
    if (accel_decide(p, vm_machine(p), &kvm, err, errlen) != 0)
        return NULL;
    char *cmdline = vm_build_cmdline(vm, o);
    strbuf b;
    sb_init(&b);
    sb_addf(&b, "%s\nkernel:%s\ninitrd:%s\ncmdline:%s\nmachine:%s\nmemory:%lld\ncpus:%d\naccel:%s\n", KEY_VERSION,
            vm_file_identity(p->kernel), vm_file_identity(initrd), cmdline, vm_machine(p),
            (long long)(o->memory ? o->memory : p->memory), o->cpus ? o->cpus : p->cpus, kvm ? "kvm" : "tcg");
    sb_addf(&b, "cpu:%s\n", kvm ? ACCEL_CPU_KVM : ACCEL_CPU_TCG); /* the kernel picks its copy routines by it */
    char *disk = rootfs_identity(p);
    sb_addf(&b, "rootfs:%s\n", disk);
    free(disk);
    add_qemu_identity(&b);
    char *hex = xmalloc(65);
    sha256_hex(b.s, b.len, hex);
    sb_free(&b);
    free(cmdline);
    return hex;
}

const char *boot_cache_bypass(const pv_vm *vm, const vm_boot_opts *opts, const pv_config *cfg)
{
    const char *env = getenv("PROVIUM_BOOT_CACHE");
    if (!cfg)
        return "no configuration";
    if (env && (strcmp(env, "off") == 0 || strcmp(env, "0") == 0))
        return "--no-boot-cache (PROVIUM_BOOT_CACHE=off)";
    if (vm->profile.local)
        return "a local profile does not boot";
    if (vm->profile.no_boot_cache)
        return "the profile sets boot_cache = false";
    if (opts->no_boot_cache)
        return "the boot option boot_cache = false";
    if (vm_nic_count(vm))
        return "the VM has NICs on bridges (their switch ports are not part of a cached boot)";
    if (opts->has_rng_seed)
        return "rng_seed: a seeded RNG stream must run on from the boot, not start over";
    if (vm->profile.ndisks || opts->ndisks || (vm->disks && vm->disks->n))
        return "the VM has disks: a cached boot would hold another disk's state";
    return NULL;
}

/* After the VM is up (cold or restored): what the boot options ask for once
 * the agent answers. */
static int finish(pv_vm *vm, const vm_boot_opts *opts, double t0, char *err, size_t errlen)
{
    vm->time_pinned = opts->initial_time > 0;
    if (vm->time_pinned && vm_set_clock(vm, opts->initial_time, err, errlen) != 0) {
        vm_launch_failed(vm, err, errlen);
        vm->state = VM_CREATED;
        return -1;
    }
    vm->boot_seconds = now_s() - t0;
    return 0;
}

void boot_cache_seed_console(const char *entry, const char *console_path)
{
    char *log = xasprintf("%s/console.log", entry);
    size_t len = 0;
    char *text = read_whole_file(log, &len);
    free(log);
    write_whole_file(console_path, text ? text : "", text ? len : 0, 0600);
    free(text);
}

static int restore_entry(pv_vm *vm, const char *entry, char *err, size_t errlen)
{
    if (mkdir_p(vm->dir, 0700) != 0) {
        snprintf(err, errlen, "VM '%s': cannot create %s: %s", vm->name, vm->dir, strerror(errno));
        return -1;
    }
    boot_cache_seed_console(entry, vm->console_path);
    vm->ram_copy = true;
    vm->console_append = true;
    vm->time_pinned = false; /* vm_restore sets the host's time; finish() applies initial_time */
    int rc = vm_restore(vm, entry, err, errlen);
    vm->ram_copy = false;
    vm->console_append = false;
    return rc;
}

/* Snapshots the VM that just booted cold into the cache entry for key. A
 * failure leaves the boot as it is: the VM runs, the next boot tries again. */
static int store(pv_vm *vm, const pv_config *cfg, const char *key)
{
    char err[PV_ERR_MAX];
    char *dir = xasprintf("%s/%s.build-%d", fixture_cache_dir(cfg), key, (int)getpid());
    rm_rf(dir);
    char *profile = xstrdup(vm->profile.name);
    char *name = xasprintf("boot:%s", vm->profile.name);
    int rc = vm_snapshot(vm, dir, err, sizeof(err));
    if (rc == 0) {
        size_t len = 0;
        char *text = read_whole_file(vm->console_path, &len);
        char *log = xasprintf("%s/console.log", dir);
        rc = write_whole_file(log, text ? text : "", text ? len : 0, 0644);
        if (rc != 0)
            snprintf(err, sizeof(err), "cannot write %s: %s", log, strerror(errno));
        free(log);
        free(text);
    }
    if (rc == 0)
        rc = fixture_install(cfg, key, name, dir, NULL, 0, &profile, 1, err, sizeof(err));
    if (rc != 0) {
        free(vm->boot_warning);
        vm->boot_warning =
            xasprintf("warning: VM '%s': boot cache: cannot store the booted VM (the boot itself is fine): %s", vm->name,
                      err);
        rm_rf(dir);
    }
    free(name);
    free(profile);
    free(dir);
    return rc;
}

int boot_cache_boot(pv_vm *vm, const vm_boot_opts *opts, const pv_config *cfg, char *err, size_t errlen)
{
    vm_boot_opts none = {0};
    if (!opts)
        opts = &none;
    free(vm->boot_warning);
    vm->boot_warning = NULL;
    if (boot_cache_bypass(vm, opts, cfg)) {
        qpool_settle(); /* no restore: no spare will be used */
        return vm_boot(vm, opts, err, errlen);
    }
    double t0 = now_s();
    char why[4096];
    char *initrd = shim_prepare_initrd(&vm->profile, opts->files, opts->nfiles, why, sizeof(why));
    char *key = initrd ? boot_key(vm, opts, initrd, why, sizeof(why)) : NULL;
    free(initrd);
    if (!key) { /* vm_boot reports the problem in its own words */
        qpool_settle();
        return vm_boot(vm, opts, err, errlen);
    }
    int lock_ms = (int)vm->profile.boot_timeout_ms + 60000;
    int lock = -1;
    char *entry = fixture_lookup(cfg, key);
    if (!entry) {
        /* a miss: whoever holds the lock is building this entry; wait for it */
        lock = fixture_lock(cfg, key, lock_ms, why, sizeof(why));
        entry = lock >= 0 ? fixture_lookup(cfg, key) : NULL;
    }
    if (entry) {
        if (restore_entry(vm, entry, why, sizeof(why)) == 0) {
            qpool_prepare(vm, entry); /* for the next boot like this one */
            free(entry);
            free(key);
            if (lock >= 0)
                fixture_unlock(lock);
            vm->boot_cached = true;
            return finish(vm, opts, t0, err, errlen);
        }
        /* corrupt or unusable: drop it and boot cold, which rebuilds it */
        free(vm->boot_warning);
        vm->boot_warning = xasprintf("warning: VM '%s': cached boot unusable, booting cold and rebuilding it (%s)",
                                     vm->name, why);
        rm_rf(entry);
        free(entry);
        vm->state = VM_CREATED;
        if (lock < 0)
            lock = fixture_lock(cfg, key, lock_ms, why, sizeof(why));
    }
    /* without the lock (it timed out) the VM still boots, uncached */
    qpool_settle(); /* spares do not wait, uncounted, through a cold boot */
    vm_boot_opts cold = *opts;
    cold.initial_time = 0; /* the entry holds the boot as it comes up, finish() pins the clock */
    int rc = vm_boot(vm, &cold, err, errlen);
    vm->boot_cached = false;
    if (rc == 0 && lock >= 0 && store(vm, cfg, key) == 0 && (entry = fixture_lookup(cfg, key))) {
        qpool_prepare(vm, entry);
        free(entry);
    }
    if (lock >= 0)
        fixture_unlock(lock);
    free(key);
    return rc == 0 ? finish(vm, opts, t0, err, errlen) : rc;
}
