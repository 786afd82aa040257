/* Disks of a VM, part one: turning disk declarations into files (sparse
 * scratch files, qcow2 overlays made with qemu-img, private raw copies), the
 * QEMU block graph for each (see disk.h) and hot-plug over QMP. Host-side
 * I/O is in disk_io.c, fault rules and power cuts in disk_fault.c, the
 * copies in snapshots in disk_snapshot.c. */
#include "disk.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../util/util.h"
#include "vm_internal.h"

#define TOOL_TIMEOUT_MS 60000
#define PC_MAX_DISKS 20
#define MICROVM_TRANSPORTS 8 /* QEMU's microvm has eight virtio-mmio slots */

int disk_qmp(pv_vm *vm, const char *cmd, json_t *args, char *err, size_t errlen)
{
    return vm_qmp(vm, cmd, args, NULL, err, errlen);
}

char *disk_node(const vm_disk *d, const char *part) { return xasprintf("pvd%u-%s", d->index, part); }

/* Runs a host tool (qemu-img) with a deadline; its stdout lands in *out
 * when out is non-NULL, stderr's last line in why. */
static int run_tool(char *const argv[], char **out, char *why, size_t whylen)
{
    char tmpl[] = "/tmp/provium-tool-XXXXXX";
    int ofd = mkstemp(tmpl);
    if (ofd < 0) {
        snprintf(why, whylen, "mkstemp: %s", strerror(errno));
        return -1;
    }
    unlink(tmpl);
    char etmpl[] = "/tmp/provium-tool-XXXXXX";
    int efd = mkstemp(etmpl);
    unlink(etmpl);
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t pid = spawn_tied(argv, nullfd, ofd, efd >= 0 ? efd : ofd);
    close(nullfd);
    int status = 0;
    int64_t deadline = now_ms() + TOOL_TIMEOUT_MS;
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
        sleep_ms(5);
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        snprintf(why, whylen, "%s did not finish within %d s", argv[0], TOOL_TIMEOUT_MS / 1000);
        close(ofd);
        close(efd);
        return -1;
    }
    int rc = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
    if (out) {
        off_t len = lseek(ofd, 0, SEEK_END);
        *out = xcalloc(1, (size_t)(len > 0 ? len : 0) + 1);
        if (len > 0 && pread(ofd, *out, (size_t)len, 0) != len)
            (*out)[0] = 0;
    }
    if (rc != 0) {
        char buf[1024] = {0};
        ssize_t n = efd >= 0 ? pread(efd, buf, sizeof(buf) - 1, 0) : -1;
        if (n > 0) {
            buf[n] = 0;
            buf[strcspn(buf, "\n")] = 0;
        }
        snprintf(why, whylen, "%s failed: %s", argv[0], n > 0 ? buf : "(no message)");
    }
    close(ofd);
    if (efd >= 0)
        close(efd);
    return rc;
}

/* The image's format and virtual size, as qemu-img sees them. */
static int image_info(const char *path, char *fmt, size_t fmtlen, int64_t *size, char *why, size_t whylen)
{
    char *argv[] = {"qemu-img", "info", "--output=json", "-U", (char *)path, NULL};
    char *out = NULL;
    if (run_tool(argv, &out, why, whylen) != 0) {
        free(out);
        return -1;
    }
    json_t *j = json_loads(out, 0, NULL);
    free(out);
    const char *f = json_string_value(json_object_get(j, "format"));
    if (!f) {
        json_decref(j);
        snprintf(why, whylen, "qemu-img info gave no format");
        return -1;
    }
    snprintf(fmt, fmtlen, "%s", f);
    *size = json_integer_value(json_object_get(j, "virtual-size"));
    json_decref(j);
    return 0;
}

static int machine_max_disks(const pv_vm *vm, bool rng)
{
    const char *m = vm_machine(&vm->profile);
    if (strcmp(m, "microvm") == 0)
        return MICROVM_TRANSPORTS - 1 /* virtio-serial */ - (rng ? 1 : 0) - (vm->profile.rootfs ? 1 : 0);
    return PC_MAX_DISKS;
}

vm_disks *disk_set(pv_vm *vm)
{
    if (!vm->disks) {
        vm->disks = xcalloc(1, sizeof(vm_disks));
        vm->disks->dir = xasprintf("%s.disks", vm->dir);
    }
    if (!is_dir(vm->disks->dir))
        mkdir_p(vm->disks->dir, 0700);
    return vm->disks;
}

vm_disk *disk_find(const pv_vm *vm, const char *id)
{
    for (size_t i = 0; vm->disks && i < vm->disks->n; i++)
        if (!vm->disks->v[i]->detached && strcmp(vm->disks->v[i]->id, id) == 0)
            return vm->disks->v[i];
    return NULL;
}


/* Makes the file the VM will use for spec: "disk 'id' of VM 'x'" errors. */
static vm_disk *make_disk(pv_vm *vm, const pv_disk_spec *s, char *err, size_t errlen)
{
    vm_disks *ds = disk_set(vm);
    vm_disk *d = xcalloc(1, sizeof(*d));
    d->id = xstrdup(s->id);
    d->index = ds->next_index++;
    d->readonly = s->readonly;
    d->persist = s->persist;
    d->power_cut = s->power_cut;
    char why[1024];
    if (!s->path) {
        d->file = xasprintf("%s/%s.raw", ds->dir, s->id);
        d->format = "raw";
        d->size = s->size;
        int fd = open(d->file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || ftruncate(fd, s->size) != 0) {
            snprintf(err, errlen, "disk '%s' of VM '%s': cannot create the scratch file %s: %s", s->id, vm->name,
                     d->file, strerror(errno));
            if (fd >= 0)
                close(fd);
            disk_free(d);
            return NULL;
        }
        close(fd);
        return d;
    }
    d->source = xstrdup(s->path);
    struct stat st;
    if (stat(s->path, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "disk '%s' of VM '%s': image %s %s", s->id, vm->name, s->path,
                 errno == ENOENT ? "does not exist" : S_ISDIR(st.st_mode) ? "is a directory" : strerror(errno));
        disk_free(d);
        return NULL;
    }
    char fmt[32];
    int64_t vsize = 0;
    if (vm->profile.local) {
        snprintf(fmt, sizeof(fmt), "raw"); /* no QEMU to read anything else */
        vsize = st.st_size;
    } else if (image_info(s->path, fmt, sizeof(fmt), &vsize, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "disk '%s' of VM '%s': cannot read image %s: %s", s->id, vm->name, s->path, why);
        disk_free(d);
        return NULL;
    }
    const char *want = s->format ? s->format : "raw";
    if (strcmp(fmt, want) != 0) {
        snprintf(err, errlen, "disk '%s' of VM '%s': image %s is %s, but the disk says format = \"%s\"%s", s->id,
                 vm->name, s->path, fmt, want, s->format ? "" : " (the default); set format to match");
        disk_free(d);
        return NULL;
    }
    d->size = vsize;
    if (s->readonly || s->persist) {
        d->file = xstrdup(s->path);
        d->format = strcmp(want, "qcow2") == 0 ? "qcow2" : "raw";
        if (s->power_cut && s->persist) {
            snprintf(err, errlen, "disk '%s' of VM '%s': power_cut rewrites the disk from a copy; it needs a private "
                     "disk, not persist = true", s->id, vm->name);
            disk_free(d);
            return NULL;
        }
        return d;
    }
    if (vm->profile.local || s->power_cut) {
        /* a private raw copy: local I/O reads it directly, and a power cut
         * rebuilds it from a copy taken at boot */
        if (strcmp(want, "raw") != 0) {
            snprintf(err, errlen, "disk '%s' of VM '%s': %s needs a raw image, not %s", s->id, vm->name,
                     vm->profile.local ? "a local profile" : "power_cut", want);
            disk_free(d);
            return NULL;
        }
        d->file = xasprintf("%s/%s.raw", ds->dir, s->id);
        d->format = "raw";
        if (copy_file(s->path, d->file) != 0) {
            snprintf(err, errlen, "disk '%s' of VM '%s': cannot copy image %s: %s", s->id, vm->name, s->path,
                     strerror(errno));
            disk_free(d);
            return NULL;
        }
        return d;
    }
    d->file = xasprintf("%s/%s.qcow2", ds->dir, s->id);
    d->format = "qcow2";
    char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-b", (char *)s->path, "-F", (char *)want, d->file, NULL};
    if (run_tool(argv, NULL, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "disk '%s' of VM '%s': cannot create an overlay on %s: %s", s->id, vm->name, s->path,
                 why);
        disk_free(d);
        return NULL;
    }
    return d;
}

void disk_add(vm_disks *ds, vm_disk *d)
{
    ds->v = xrealloc(ds->v, (ds->n + 1) * sizeof(vm_disk *));
    ds->v[ds->n++] = d;
}

static size_t live_disks(const pv_vm *vm)
{
    size_t n = 0;
    for (size_t i = 0; vm->disks && i < vm->disks->n; i++)
        n += !vm->disks->v[i]->detached;
    return n;
}

static int check_new(pv_vm *vm, const pv_disk_spec *s, bool rng, char *err, size_t errlen)
{
    if (disk_find(vm, s->id)) {
        snprintf(err, errlen, "disk '%s' of VM '%s': the VM already has a disk with this id", s->id, vm->name);
        return -1;
    }
    int max = machine_max_disks(vm, rng);
    if (!vm->profile.local && (int)live_disks(vm) >= max) {
        snprintf(err, errlen,
                 "disk '%s' of VM '%s': more disks than the machine allows (%s takes at most %d besides its own "
                 "devices)",
                 s->id, vm->name, vm_machine(&vm->profile), max);
        return -1;
    }
    return 0;
}

int disk_prepare(pv_vm *vm, const pv_disk_spec *specs, size_t n, bool rng, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(specs[j].id, specs[i].id) == 0) {
                snprintf(err, errlen, "disk '%s' of VM '%s': two disks of this boot have this id (the profile's "
                         "come first, then the boot option's); ids must be unique", specs[i].id, vm->name);
                return -1;
            }
    size_t had = vm->disks ? vm->disks->n : 0;
    for (size_t i = 0; i < n; i++) {
        if (disk_find(vm, specs[i].id))
            continue; /* a second boot of this VM: the disk keeps its contents */
        vm_disk *d = check_new(vm, &specs[i], rng, err, errlen) == 0 ? make_disk(vm, &specs[i], err, errlen) : NULL;
        if (!d) {
            /* a failed boot leaves no half-made disks behind */
            while (vm->disks && vm->disks->n > had) {
                vm_disk *made = vm->disks->v[--vm->disks->n];
                if (made->file && (!made->source || strcmp(made->file, made->source) != 0))
                    unlink(made->file); /* ours, never the user's image */
                disk_free(made);
            }
            return -1;
        }
        disk_add(disk_set(vm), d);
    }
    return 0;
}

/* The block graph of d (see disk.h), as one nested blockdev object. */
static json_t *graph_json(const pv_vm *vm, const vm_disk *d)
{
    char *n_top = disk_node(d, "top"), *n_flt = disk_node(d, "flt0"), *n_fmt = disk_node(d, "fmt"),
         *n_proto = disk_node(d, "proto");
    json_t *fmt = json_pack("{s:s, s:s, s:b, s:{s:s, s:s, s:s, s:b}}", "driver", d->format, "node-name", n_fmt,
                            "read-only", d->readonly, "file", "driver", "file", "node-name", n_proto, "filename",
                            d->file, "read-only", d->readonly);
    json_t *below = fmt;
    if (d->power_cut) {
        char *n_log = disk_node(d, "log"), *n_logf = disk_node(d, "logf");
        char *logpath = xasprintf("%s/%s.wlog", vm->disks->dir, d->id);
        below = json_pack("{s:s, s:s, s:o, s:{s:s, s:s, s:s}}", "driver", "blklogwrites", "node-name", n_log, "file",
                          fmt, "log", "driver", "file", "node-name", n_logf, "filename", logpath);
        free(n_log);
        free(n_logf);
        free(logpath);
    }
    json_t *top = json_pack("{s:s, s:s, s:b, s:{s:s, s:s, s:o}}", "driver", "raw", "node-name", n_top, "read-only",
                            d->readonly, "file", "driver", "blkdebug", "node-name", n_flt, "image", below);
    free(n_top);
    free(n_flt);
    free(n_fmt);
    free(n_proto);
    return top;
}

static char *device_props(const vm_disk *d, bool microvm)
{
    return xasprintf("%s,id=pvdisk-%s,drive=pvd%u-top,serial=%s,share-rw=on,write-cache=on,werror=report,"
                     "rerror=report",
                     microvm ? "virtio-blk-device" : "virtio-blk-pci", d->id, d->index, d->id);
}

/* A power-cut disk starts each QEMU with an empty write log and a copy of
 * its contents, the state the log's writes apply to. */
static int arm_power_cut(const pv_vm *vm, const vm_disk *d, char *why, size_t whylen)
{
    char *log = xasprintf("%s/%s.wlog", vm->disks->dir, d->id);
    char *base = xasprintf("%s/%s.base", vm->disks->dir, d->id);
    int rc = write_whole_file(log, "", 0, 0600) == 0 ? copy_file(d->file, base) : -1;
    if (rc != 0)
        snprintf(why, whylen, "cannot prepare the power-cut log of disk '%s': %s", d->id, strerror(errno));
    free(log);
    free(base);
    return rc;
}

char *const *disk_qemu_args(const pv_vm *vm, bool microvm)
{
    vm_disks *ds = vm->disks;
    if (!ds)
        return NULL;
    for (char **a = ds->args; a && *a; a++)
        free(*a);
    free(ds->args);
    ds->args = xcalloc(4 * ds->n + 1, sizeof(char *));
    size_t k = 0;
    ds->nbd_pid = 0;
    for (size_t i = 0; i < ds->n; i++) {
        vm_disk *d = ds->v[i];
        /* a new QEMU: no swapped-in filter, no rules, no export yet; a disk
         * hot-plugged into the last one is on the command line now */
        disk_close_nbd(d);
        d->exported = false;
        d->hotplugged = false;
        json_decref(d->rules);
        d->rules = NULL;
        d->filter_gen = 0;
        d->filter_throttled = false;
        if (d->detached || !d->file)
            continue;
        char why[512];
        if (d->power_cut && arm_power_cut(vm, d, why, sizeof(why)) != 0)
            fprintf(stderr, "provium: VM '%s': %s\n", vm->name, why); /* the power cut then says so too */
        json_t *g = graph_json(vm, d);
        ds->args[k++] = xstrdup("-blockdev");
        ds->args[k++] = json_dumps(g, JSON_COMPACT);
        json_decref(g);
        ds->args[k++] = xstrdup("-device");
        ds->args[k++] = device_props(d, microvm);
    }
    return ds->args;
}

vm_disk *disk_attach(pv_vm *vm, const pv_disk_spec *spec, bool modeled, char *err, size_t errlen)
{
    if (check_new(vm, spec, vm->has_rng_seed, err, errlen) != 0)
        return NULL;
    const char *machine = vm_machine(&vm->profile);
    if (strcmp(machine, "microvm") == 0) {
        snprintf(err, errlen,
                 "disk '%s' of VM '%s': attach_disk: the microvm machine cannot hot-plug disks; declare it before "
                 "the boot: vm:boot({disks = {{id = \"%s\", size = \"64M\"}}}) or the profile's disks = [{ id = "
                 "\"%s\", path = \"...\" }], or use a profile on machine = \"pc\" (default-pc)",
                 spec->id, vm->name, spec->id, spec->id);
        return NULL;
    }
    if (strcmp(machine, "q35") == 0) {
        /* q35's root complex takes no hot-plugged devices; that needs PCIe
         * root ports, which this VM's machine was not given */
        snprintf(err, errlen,
                 "disk '%s' of VM '%s': attach_disk: q35 cannot hot-plug a device on its root complex; use "
                 "machine = \"pc\" (the default-pc profile), or declare the disk before the boot: vm:boot({disks "
                 "= {{id = \"%s\", size = \"64M\"}}})",
                 spec->id, vm->name, spec->id);
        return NULL;
    }
    if (modeled) {
        /* a local profile without an image: bookkeeping only (the reference's modeled disk) */
        vm_disk *d = xcalloc(1, sizeof(*d));
        d->id = xstrdup(spec->id);
        d->size = spec->size;
        d->format = "raw";
        d->index = disk_set(vm)->next_index++;
        disk_add(vm->disks, d);
        return d;
    }
    if (spec->power_cut && !vm->profile.local) {
        snprintf(err, errlen, "disk '%s' of VM '%s': power_cut disks are declared before the boot (the write log "
                 "starts with QEMU)", spec->id, vm->name);
        return NULL;
    }
    vm_disk *d;
    if (vm->profile.local && spec->path && !spec->copy) {
        /* the reference's attach: the image itself is the disk */
        struct stat st;
        if (stat(spec->path, &st) != 0) {
            snprintf(err, errlen, "disk '%s' of VM '%s': image %s: %s", spec->id, vm->name, spec->path,
                     strerror(errno));
            return NULL;
        }
        d = xcalloc(1, sizeof(*d));
        d->id = xstrdup(spec->id);
        d->source = xstrdup(spec->path);
        d->file = xstrdup(spec->path);
        d->format = "raw";
        d->size = st.st_size;
        d->readonly = spec->readonly;
        d->persist = true;
        d->index = disk_set(vm)->next_index++;
    } else if (!(d = make_disk(vm, spec, err, errlen)))
        return NULL;
    if (!vm->profile.local) {
        json_t *g = graph_json(vm, d);
        char id[64], drive[32];
        snprintf(id, sizeof(id), "pvdisk-%s", d->id);
        snprintf(drive, sizeof(drive), "pvd%u-top", d->index);
        json_t *dev = json_pack("{s:s, s:s, s:s, s:s, s:b, s:s, s:s, s:s}", "driver", "virtio-blk-pci", "id", id,
                                "drive", drive, "serial", d->id, "share-rw", 1, "write-cache", "on", "werror",
                                "report", "rerror", "report");
        if (disk_qmp(vm, "blockdev-add", g, err, errlen) != 0) {
            json_decref(dev);
            disk_free(d);
            return NULL;
        }
        if (disk_qmp(vm, "device_add", dev, err, errlen) != 0) {
            char ignore[256];
            disk_qmp(vm, "blockdev-del", json_pack("{s:s}", "node-name", drive), ignore, sizeof(ignore));
            disk_free(d);
            return NULL;
        }
        d->hotplugged = true;
    }
    disk_add(vm->disks, d);
    return d;
}

/* Waits for QEMU's DEVICE_DELETED for id: the guest let the device go. */
static int wait_device_deleted(pv_vm *vm, const char *id, int64_t deadline)
{
    for (;;) {
        if (qmp_take_deleted(&vm->qmp, id))
            return 0;
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = {.fd = vm->qmp.fd, .events = POLLIN};
        if (poll(&p, 1, (int)(left < 200 ? left : 200)) < 0 && errno != EINTR)
            return -1;
        if (qmp_drain_events(&vm->qmp) < 0)
            return -1;
    }
}

int disk_detach(pv_vm *vm, vm_disk *d, int64_t timeout_ms, char *err, size_t errlen)
{
    if (d->detached) {
        snprintf(err, errlen, "disk '%s' of VM '%s': detach: disk is detached", d->id, vm->name);
        return -1;
    }
    if (vm->profile.local || !d->file) {
        d->detached = true;
        return 0;
    }
    if (!d->hotplugged && strcmp(vm_machine(&vm->profile), "microvm") == 0) {
        snprintf(err, errlen, "disk '%s' of VM '%s': detach: the microvm machine cannot hot-unplug a disk; it "
                 "stays until the VM shuts down", d->id, vm->name);
        return -1;
    }
    char id[64];
    snprintf(id, sizeof(id), "pvdisk-%s", d->id);
    disk_forget_export(vm, d);
    if (disk_qmp(vm, "device_del", json_pack("{s:s}", "id", id), err, errlen) != 0)
        return -1;
    if (wait_device_deleted(vm, id, now_ms() + timeout_ms) != 0) {
        snprintf(err, errlen,
                 "disk '%s' of VM '%s': detach: the guest did not release the device within %lld ms (QEMU waits "
                 "for the guest's ACPI hot-plug driver: a kernel without CONFIG_HOTPLUG_PCI_ACPI never does); the "
                 "disk stays attached",
                 d->id, vm->name, (long long)timeout_ms);
        return -1;
    }
    char *top = disk_node(d, "top");
    char why[512];
    disk_qmp(vm, "blockdev-del", json_pack("{s:s}", "node-name", top), why, sizeof(why));
    free(top);
    disk_drop_filter(vm, d);
    d->detached = true;
    return 0;
}

int64_t disk_size(const vm_disk *d)
{
    struct stat st;
    if (d->file && strcmp(d->format, "raw") == 0 && stat(d->file, &st) == 0)
        return st.st_size; /* the live size, as the reference says */
    return d->size;
}

void disk_free(vm_disk *d)
{
    if (!d)
        return;
    disk_close_nbd(d);
    free(d->id);
    free(d->source);
    free(d->file);
    json_decref(d->rules);
    free(d);
}

void disk_free_all(pv_vm *vm)
{
    vm_disks *ds = vm->disks;
    if (!ds)
        return;
    for (size_t i = 0; i < ds->n; i++)
        disk_free(ds->v[i]);
    free(ds->v);
    for (char **a = ds->args; a && *a; a++)
        free(*a);
    free(ds->args);
    if (is_dir(ds->dir))
        rm_rf(ds->dir);
    free(ds->dir);
    free(ds);
    vm->disks = NULL;
}
