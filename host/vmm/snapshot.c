/* Snapshots: QEMU's migration stream for device state, plus guest RAM as a
 * plain file. A running VM's RAM is a shared file mapping, so the stream
 * leaves it out (x-ignore-shared) and the snapshot stores the file's
 * allocated parts compressed; a restore maps an unpacked copy privately
 * (copy-on-write), so nothing is copied per restore and one snapshot serves
 * any number of VMs at once.
 *
 * Layout of a snapshot directory: state (migration stream), ram.zst (guest
 * RAM compressed, see ramzst.c; absent when RAM is inside the stream; older
 * snapshots have an uncompressed ram instead), meta.json (what it needs to be
 * restored: kernel, initrd, QEMU version, memory, cpus, command line). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../util/util.h"
#include "disk.h"
#include "rootfs.h"
#include "vm_internal.h"

#define MIGRATE_TIMEOUT_MS 60000

/* Large files (kernels, initramfs images) are hashed once per version, not
 * once per process: <cache>/ids/<sha256 of the path> records the hash with
 * the device, inode, size, mtime and ctime it was computed for (ctime cannot
 * be set back, so any rewrite shows). With hex[0] == 0, looks the record up
 * (true: hex filled in); otherwise stores hex for st. */
static bool persisted_identity(const char *path, const struct stat *st, char hex[65])
{
    if (st->st_size < (1 << 20))
        return false; /* small files are hashed every time */
    char name[65];
    sha256_hex(path, strlen(path), name);
    char *dir = xasprintf("%s/ids", cache_root()), *rec = xasprintf("%s/%s", dir, name);
    char *stamp = xasprintf("%llu %llu %lld %lld.%09ld %lld.%09ld ", (unsigned long long)st->st_dev,
                            (unsigned long long)st->st_ino, (long long)st->st_size, (long long)st->st_mtim.tv_sec,
                            st->st_mtim.tv_nsec, (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
    bool found = false;
    if (!hex[0]) {
        size_t n = 0, sl = strlen(stamp);
        char *text = read_whole_file(rec, &n);
        if (text && n == sl + 64 && memcmp(text, stamp, sl) == 0 && strspn(text + sl, "0123456789abcdef") == 64) {
            memcpy(hex, text + sl, 64);
            hex[64] = 0;
            found = true;
        }
        free(text);
    } else if (mkdir_p(dir, 0755) == 0) {
        char *text = xasprintf("%s%s", stamp, hex);
        write_file_atomic(rec, text, strlen(text), 0644);
        free(text);
    }
    free(stamp);
    free(rec);
    free(dir);
    return found;
}

const char *vm_file_identity(const char *path)
{
    /* hashing a kernel costs tens of milliseconds: remember the answer for
     * as long as the file's size and mtime stay the same */
    static struct {
        char *path;
        off_t size;
        struct timespec mtime;
        char hex[65];
    } cache[16];
    static int next;
    struct stat st;
    if (stat(path, &st) != 0)
        return "missing";
    for (int i = 0; i < 16; i++)
        if (cache[i].path && strcmp(cache[i].path, path) == 0 && cache[i].size == st.st_size &&
            cache[i].mtime.tv_sec == st.st_mtim.tv_sec && cache[i].mtime.tv_nsec == st.st_mtim.tv_nsec)
            return cache[i].hex;
    int slot = next++ % 16;
    free(cache[slot].path);
    cache[slot].path = xstrdup(path);
    cache[slot].size = st.st_size;
    cache[slot].mtime = st.st_mtim;
    cache[slot].hex[0] = 0;
    if (persisted_identity(path, &st, cache[slot].hex))
        return cache[slot].hex;
    size_t len;
    char *data = read_whole_file(path, &len);
    if (!data) {
        free(cache[slot].path);
        cache[slot].path = NULL;
        return "unreadable";
    }
    sha256_hex(data, len, cache[slot].hex);
    free(data);
    persisted_identity(path, &st, cache[slot].hex);
    return cache[slot].hex;
}

/* Polls query-migrate until the migration ends. */
static int wait_migration(pv_vm *vm, char *err, size_t errlen)
{
    int64_t deadline = now_ms() + MIGRATE_TIMEOUT_MS;
    int delay = 1;
    for (;;) {
        json_t *r = NULL;
        if (vm_qmp(vm, "query-migrate", NULL, &r, err, errlen) != 0)
            return -1;
        const char *st = json_string_value(json_object_get(r, "status"));
        char status[64];
        snprintf(status, sizeof(status), "%s", st ? st : "none");
        const char *why = json_string_value(json_object_get(r, "error-desc"));
        char desc[512];
        snprintf(desc, sizeof(desc), "%s", why ? why : "");
        json_decref(r);
        if (strcmp(status, "completed") == 0)
            return 0;
        if (strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0) {
            snprintf(err, errlen, "VM '%s': migration %s%s%s", vm->name, status, *desc ? ": " : "", desc);
            return -1;
        }
        if (now_ms() > deadline) {
            snprintf(err, errlen, "VM '%s': migration did not finish within %d s", vm->name,
                     MIGRATE_TIMEOUT_MS / 1000);
            return -1;
        }
        sleep_ms(delay);
        if (delay < 10)
            delay++;
    }
}

/* QEMU runs an exec: migration URI with /bin/sh -c: every path in one is
 * quoted with this, so a snapshot directory may hold any character. */
static char *shell_quote(const char *s)
{
    strbuf b;
    sb_init(&b);
    sb_adds(&b, "'");
    for (; *s; s++) {
        if (*s == '\'')
            sb_adds(&b, "'\\''");
        else
            sb_add(&b, s, 1);
    }
    sb_adds(&b, "'");
    return sb_take(&b);
}

char *restore_incoming_uri(const char *state)
{
    char *q = shell_quote(state);
    char *uri = xasprintf("exec:cat %s", q);
    free(q);
    return uri;
}

static int snapshot(pv_vm *vm, const char *dir, bool resume, char *err, size_t errlen);

int vm_snapshot(pv_vm *vm, const char *dir, char *err, size_t errlen) { return snapshot(vm, dir, true, err, errlen); }

int vm_snapshot_paused(pv_vm *vm, const char *dir, char *err, size_t errlen)
{
    return snapshot(vm, dir, false, err, errlen);
}

static int snapshot(pv_vm *vm, const char *dir, bool resume, char *err, size_t errlen)
{
    if (mkdir_p(dir, 0700) != 0) {
        snprintf(err, errlen, "snapshot: cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    char *state = xasprintf("%s/state", dir), *ram = xasprintf("%s/ram", dir), *zst = xasprintf("%s/ram.zst", dir),
         *meta = xasprintf("%s/meta.json", dir);
    char *q = shell_quote(state);
    char *uri = xasprintf("exec:cat > %s", q);
    free(q);
    int rc = -1;
    bool stopped = false;
    unlink(ram);
    unlink(zst);
    /* shared RAM stays out of the stream (it is copied as a file); private
     * RAM (a VM that was itself restored) goes into the stream */
    if (vm_set_ignore_shared(vm, vm->ram_shared, err, errlen) != 0)
        goto out;
    disk_drop_exports(vm);
    if (resume && vm_qmp(vm, "stop", NULL, NULL, err, errlen) != 0)
        goto out;
    stopped = resume;
    if (vm_qmp(vm, "migrate", json_pack("{s:s}", "uri", uri), NULL, err, errlen) != 0 ||
        wait_migration(vm, err, errlen) != 0 || rootfs_snapshot_save(vm, dir, err, errlen) != 0)
        goto out;
    char zerr[1024];
    if (vm->ram_shared && vm->ram_fd >= 0 && ram_compress(vm->ram_fd, vm->mem_bytes, zst, zerr, sizeof(zerr)) != 0) {
        snprintf(err, errlen, "snapshot of VM '%s': %s", vm->name, zerr);
        goto out;
    }
    json_t *m = json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:i,s:s,s:b}", "format", 1, "profile",
                          vm->profile.name, "kernel", vm->profile.kernel, "kernel_id",
                          vm_file_identity(vm->profile.kernel), "initrd", vm->initrd_path, "initrd_id",
                          vm_file_identity(vm->initrd_path), "qemu", vm->qemu_version ? vm->qemu_version : "?",
                          "memory", (json_int_t)vm->mem_bytes, "cpus", vm->cpus, "cmdline", vm->cmdline, "ram_file",
                          vm->ram_shared);
    json_object_set_new(m, "machine", json_string(vm_machine(&vm->profile)));
    json_object_set_new(m, "acpi", json_boolean(!vm->profile.no_acpi));
    /* disks: their files are copied while the VM is stopped, so the copy
     * matches the device state in the stream (host/vmm/disk.c) */
    if (vm->disks && disk_save(vm, dir, m, err, errlen) != 0) {
        json_decref(m);
        goto out;
    }
    if (vm->has_rng_seed)
        json_object_set_new(m, "rng_seed", json_integer((json_int_t)vm->rng_seed));
    rc = json_dump_file(m, meta, JSON_INDENT(2)) == 0 ? 0 : -1;
    json_decref(m);
    if (rc != 0)
        snprintf(err, errlen, "snapshot: cannot write %s", meta);
out:
    /* the source VM goes on running either way */
    if (stopped) {
        char cerr[512];
        if (vm_qmp(vm, "cont", NULL, NULL, cerr, sizeof(cerr)) != 0 && rc == 0) {
            snprintf(err, errlen, "%s", cerr);
            rc = -1;
        }
    }
    free(state);
    free(ram);
    free(zst);
    free(meta);
    free(uri);
    return rc;
}

/* Mixing bytes into /dev/urandom does not reseed the kernel's generator at
 * once (it reseeds on a timer): make it, so that VMs restored from one
 * snapshot draw different random numbers from the first. */
static int reseed(pv_vm *vm, char *err, size_t errlen)
{
    vm_reply r;
    vm_begin(vm, PV_MSG_OPEN);
    pv_put_str(&vm->out, PV_T_PATH, "/dev/urandom");
    pv_put_u64(&vm->out, PV_T_FLAGS, O_WRONLY | O_CLOEXEC);
    if (vm_call(vm, &r, 30000, NULL, err, errlen) != 0)
        return -1;
    int64_t fd = pv_msg_i64(&r.msg, PV_T_FD, -1);
    vm_reply_free(&r);
    vm_begin(vm, PV_MSG_SYSCALL);
    pv_put_i64(&vm->out, PV_T_NR, 16);        /* ioctl */
    pv_put_i64(&vm->out, PV_T_ARG, fd);
    pv_put_i64(&vm->out, PV_T_ARG, 0x5207);   /* RNDRESEEDCRNG */
    int rc = vm_call(vm, &r, 30000, NULL, err, errlen);
    if (rc == 0)
        vm_reply_free(&r); /* kernels before 4.17 lack the ioctl: the mixed-in bytes still count */
    vm_begin(vm, PV_MSG_FD_CLOSE);
    pv_put_i64(&vm->out, PV_T_FD, fd);
    if (vm_call(vm, &r, 30000, NULL, err, errlen) != 0)
        return -1;
    vm_reply_free(&r);
    return rc;
}

static const char *meta_str(json_t *m, const char *k)
{
    const char *s = json_string_value(json_object_get(m, k));
    return s ? s : "";
}

void restore_plan_free(restore_plan *pl)
{
    if (pl->ram_copy)
        unlink(pl->ram_copy); /* QEMU has it mapped (or failed) */
    free(pl->ram_copy);
    free(pl->ram);
    free(pl->state);
    json_decref(pl->meta);
    *pl = (restore_plan){0};
}

const char *restore_plan_initrd(const restore_plan *pl) { return meta_str(pl->meta, "initrd"); }
const char *restore_plan_cmdline(const restore_plan *pl) { return meta_str(pl->meta, "cmdline"); }
const char *restore_plan_ram(const restore_plan *pl) { return pl->ram_copy ? pl->ram_copy : pl->ram; }

int restore_plan_make(pv_vm *vm, const char *dir, restore_plan *pl, char *err, size_t errlen)
{
    *pl = (restore_plan){0};
    if (vm->profile.local) {
        snprintf(err, errlen, "VM '%s': restore needs a real VM; profile '%s' runs the agent as a host process",
                 vm->name, vm->profile.name);
        return -1;
    }
    char *meta_path = xasprintf("%s/meta.json", dir), *state = xasprintf("%s/state", dir),
         *ram = xasprintf("%s/ram", dir);
    json_error_t je;
    json_t *m = json_load_file(meta_path, 0, &je);
    int rc = -1;
    if (!m || !file_exists(state)) {
        snprintf(err, errlen, "restore: %s is not a snapshot (%s)", dir,
                 !m ? (file_exists(meta_path) ? "meta.json is unreadable" : "no meta.json") : "no state file");
        goto out;
    }
    /* QEMU waits for the rest of a stream that ends early instead of failing:
     * check the start of it here */
    char magic[4] = "";
    int sfd = open(state, O_RDONLY | O_CLOEXEC);
    bool qevm = sfd >= 0 && read(sfd, magic, 4) == 4 && memcmp(magic, "QEVM", 4) == 0;
    if (sfd >= 0)
        close(sfd);
    if (!qevm) {
        snprintf(err, errlen, "restore: %s is damaged: its state file is not a QEMU migration stream", dir);
        goto out;
    }
    /* A snapshot only makes sense with the very kernel, initrd and QEMU it
     * was taken with: refuse anything else instead of booting garbage. */
    const char *kid = vm_file_identity(vm->profile.kernel);
    if (strcmp(meta_str(m, "kernel_id"), kid) != 0) {
        snprintf(err, errlen,
                 "restore: snapshot %s was taken with kernel %s (sha256 %.12s), but VM '%s' uses profile '%s' "
                 "with kernel %s (sha256 %.12s)",
                 dir, meta_str(m, "kernel"), meta_str(m, "kernel_id"), vm->name, vm->profile.name,
                 vm->profile.kernel, kid);
        goto out;
    }
    const char *initrd = meta_str(m, "initrd");
    if (strcmp(meta_str(m, "initrd_id"), vm_file_identity(initrd)) != 0) {
        snprintf(err, errlen, "restore: the initramfs snapshot %s was taken with (%s) is gone or changed", dir,
                 initrd);
        goto out;
    }
    if (strcmp(vm_machine(&vm->profile), meta_str(m, "machine")) != 0) {
        snprintf(err, errlen, "restore: snapshot %s is of a %s machine, VM '%s' is %s", dir, meta_str(m, "machine"),
                 vm->name, vm_machine(&vm->profile));
        goto out;
    }
    /* a microvm's devices differ with ACPI; snapshots from before the acpi
     * key have none and were all taken with ACPI off */
    bool snap_acpi = json_is_true(json_object_get(m, "acpi"));
    if (strcmp(vm_machine(&vm->profile), "microvm") == 0 && snap_acpi != !vm->profile.no_acpi) {
        snprintf(err, errlen, "restore: snapshot %s was taken with ACPI %s, VM '%s' runs with it %s (profile key acpi)",
                 dir, snap_acpi ? "on" : "off", vm->name, vm->profile.no_acpi ? "off" : "on");
        goto out;
    }
    if (rootfs_snapshot_restore(vm, dir, err, errlen) != 0) /* the disk's image and overlay */
        goto out;
    bool has_ram = json_is_true(json_object_get(m, "ram_file"));
    char *zst = xasprintf("%s/ram.zst", dir);
    if (has_ram && !file_exists(ram) && file_exists(zst)) {
        /* compressed: restore from the unpacked copy (made on first use) */
        char uerr[1024];
        char *unpacked = ram_unpacked(zst, uerr, sizeof(uerr));
        if (!unpacked)
            snprintf(err, errlen, "restore of VM '%s' from %s: %s", vm->name, dir, uerr);
        free(ram);
        ram = unpacked;
    } else if (has_ram && !file_exists(ram)) {
        snprintf(err, errlen, "restore: snapshot %s lacks its RAM file", dir);
        free(ram);
        ram = NULL;
    }
    free(zst);
    if (has_ram && !ram)
        goto out;
    /* every part must be what it claims before QEMU sees it: an empty or
     * odd-sized RAM file (a full disk, a truncation) kills QEMU mid-load */
    int64_t mem = json_integer_value(json_object_get(m, "memory"));
    struct stat sst, rst;
    if (stat(state, &sst) != 0 || !S_ISREG(sst.st_mode) || sst.st_size == 0) {
        snprintf(err, errlen, "restore: snapshot %s is corrupt: its state file is %s", dir,
                 stat(state, &sst) != 0 ? "missing" : !S_ISREG(sst.st_mode) ? file_type_name(sst.st_mode) : "empty");
        goto out;
    }
    if (mem <= 0) {
        snprintf(err, errlen, "restore: snapshot %s is corrupt: meta.json gives no memory size", dir);
        goto out;
    }
    if (has_ram && (stat(ram, &rst) != 0 || !S_ISREG(rst.st_mode) || rst.st_size != mem)) {
        if (!S_ISREG(rst.st_mode))
            snprintf(err, errlen, "restore: snapshot %s is corrupt: its RAM file is a %s", dir,
                     file_type_name(rst.st_mode));
        else
            snprintf(err, errlen, "restore: snapshot %s is corrupt: its RAM file has %lld bytes, the VM had %lld",
                     dir, (long long)rst.st_size, (long long)mem);
        goto out;
    }
    /* QEMU opens the RAM file read-write even for a private mapping: a
     * read-only cache (a shared CI cache) gets a private sparse copy */
    char *ram_copy = NULL;
    if (has_ram && access(ram, W_OK) != 0) {
        int src = open(ram, O_RDONLY | O_CLOEXEC);
        ram_copy = xasprintf("%s/ram.copy", vm->dir);
        if (src < 0 || mkdir_p(vm->dir, 0700) != 0 || copy_sparse(src, ram_copy, mem) != 0) {
            snprintf(err, errlen, "restore: snapshot %s: its RAM file is read-only and cannot be copied to %s: %s",
                     dir, ram_copy, strerror(errno));
            if (src >= 0)
                close(src);
            unlink(ram_copy);
            free(ram_copy);
            goto out;
        }
        close(src);
    }
    if (disk_load(vm, dir, m, err, errlen) != 0) {
        if (ram_copy) {
            unlink(ram_copy);
            free(ram_copy);
        }
        goto out;
    }
    pl->o.memory = mem;
    pl->o.cpus = (int)json_integer_value(json_object_get(m, "cpus"));
    if (json_is_integer(json_object_get(m, "rng_seed"))) {
        pl->o.has_rng_seed = true; /* the device is part of the saved machine */
        pl->o.rng_seed = (uint64_t)json_integer_value(json_object_get(m, "rng_seed"));
    }
    pl->meta = m;
    pl->state = state;
    pl->ram = has_ram ? ram : NULL;
    pl->ram_copy = ram_copy;
    if (!has_ram)
        free(ram);
    free(meta_path);
    return 0;
out:
    json_decref(m);
    free(meta_path);
    free(state);
    free(ram);
    return rc;
}

int vm_restore(pv_vm *vm, const char *dir, char *err, size_t errlen)
{
    double t0 = now_s();
    vm->boot_cached = false;
    restore_plan pl;
    if (restore_plan_make(vm, dir, &pl, err, errlen) != 0)
        return -1;
    int rc = -1;
    json_t *m = pl.meta;
    const char *state = pl.state;
    /* a QEMU started in advance for exactly this launch, or a new one */
    int spare = qpool_adopt(vm, &pl);
    int launched = spare != QPOOL_NONE ? 0
                                       : vm_launch(vm, &pl.o, restore_plan_initrd(&pl), restore_plan_cmdline(&pl),
                                                   restore_plan_ram(&pl), true, err, errlen);
    if (pl.ram_copy) {
        unlink(pl.ram_copy);
        free(pl.ram_copy);
        pl.ram_copy = NULL;
    }
    if (launched != 0)
        goto fail;
    const char *want_qemu = meta_str(m, "qemu");
    if (vm->qemu_version && strcmp(want_qemu, vm->qemu_version) != 0) {
        snprintf(err, errlen, "restore: snapshot %s was taken with QEMU %s, this is QEMU %s", dir, want_qemu,
                 vm->qemu_version);
        goto fail;
    }
    char *uri = restore_incoming_uri(state);
    /* a spare has loaded it already */
    int r = spare >= QPOOL_LOADED ? 0 : vm_qmp(vm, "migrate-incoming", json_pack("{s:s}", "uri", uri), NULL, err, errlen);
    free(uri);
    if (r != 0)
        goto fail;
    /* wait until the incoming migration is applied and the guest runs */
    int64_t deadline = now_ms() + MIGRATE_TIMEOUT_MS;
    while (spare != QPOOL_GREETED) {
        json_t *st = NULL;
        if (vm_qmp(vm, "query-status", NULL, &st, err, errlen) != 0)
            goto fail;
        char status[64];
        snprintf(status, sizeof(status), "%s", meta_str(st, "status"));
        json_decref(st);
        if (strcmp(status, "running") == 0)
            break;
        if (strcmp(status, "inmigrate") != 0 && strcmp(status, "prelaunch") != 0 &&
            strcmp(status, "finish-migrate") != 0 && strcmp(status, "paused") != 0) {
            snprintf(err, errlen, "restore: the VM ended in state '%s' while loading %s (corrupt snapshot?)", status,
                     state);
            goto fail;
        }
        if (strcmp(status, "paused") == 0) {
            if (vm_qmp(vm, "cont", NULL, NULL, err, errlen) != 0)
                goto fail;
            continue; /* running now, normally */
        }
        if (now_ms() > deadline) {
            snprintf(err, errlen, "restore: loading %s did not finish within %d s", state, MIGRATE_TIMEOUT_MS / 1000);
            goto fail;
        }
        sleep_ms(2);
    }
    if (spare != QPOOL_GREETED && vm_hello(vm, now_ms() + 30000, err, errlen) != 0)
        goto fail;
    vm->state = VM_BOOTED;
    /* the guest clock stood still inside the snapshot */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (!vm->time_pinned && vm_set_clock(vm, (double)now.tv_sec + now.tv_nsec / 1e9, err, errlen) != 0)
        goto fail;
    /* every restore of one snapshot would otherwise produce the same
     * "random" numbers: stir fresh host entropy in, unless the test pinned
     * the RNG with rng_seed */
    if (!vm->has_rng_seed) {
        unsigned char noise[64];
        if (getentropy(noise, sizeof(noise)) == 0) {
            vm_reply r;
            vm_begin(vm, PV_MSG_WRITE_FILE);
            pv_put_str(&vm->out, PV_T_PATH, "/dev/urandom");
            pv_put_bytes(&vm->out, PV_T_DATA, noise, sizeof(noise));
            if (vm_call(vm, &r, 30000, NULL, err, errlen) != 0 || (vm_reply_free(&r), reseed(vm, err, errlen)) != 0)
                goto fail;
        }
    }
    vm->boot_seconds = now_s() - t0;
    rc = 0;
    goto out;
fail:
    vm_launch_failed(vm, err, errlen);
    vm->state = VM_CREATED;
out:
    restore_plan_free(&pl);
    return rc;
}
