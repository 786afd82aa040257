/* Disks of a VM, part two: host-side sector I/O.
 *
 * On a real VM the bytes come from QEMU's own block layer: QEMU serves the
 * node under the fault filter as an NBD export on a unix socket in the
 * disk directory (nbd-server-start + block-export-add, once per QEMU and
 * disk), and libnbd reads and writes it. So a qcow2 overlay reads as the
 * guest sees it, and a write is visible to the guest's next uncached read.
 * Every NBD step runs through libnbd's asynchronous calls with a deadline.
 * On a local profile (no QEMU), and for a raw disk while its VM's QEMU is
 * not running, the disk's file is read and written directly.
 * The reference's host-side fault modes (eio_read, eio_write, slow) apply
 * here and only here. */
#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util/util.h"
#include "disk.h"
#include "vm_internal.h"

#define NBD_DEADLINE_MS 30000
#define NBD_CHUNK (4u << 20)

void disk_close_nbd(vm_disk *d)
{
    if (d->nbd)
        nbd_close(d->nbd);
    d->nbd = NULL;
}

void disk_forget_qemu(pv_vm *vm)
{
    for (size_t i = 0; vm->disks && i < vm->disks->n; i++) {
        disk_close_nbd(vm->disks->v[i]);
        vm->disks->v[i]->exported = false;
    }
    if (vm->disks)
        vm->disks->nbd_pid = 0;
}

void disk_forget_export(pv_vm *vm, vm_disk *d)
{
    disk_close_nbd(d);
    if (!d->exported || d->export_pid != vm->qemu_pid)
        return;
    char id[32], why[256];
    snprintf(id, sizeof(id), "pvx%u", d->index);
    disk_qmp(vm, "block-export-del", json_pack("{s:s, s:s}", "id", id, "mode", "hard"), why, sizeof(why));
    d->exported = false;
}

/* The node host I/O uses: below the fault filter. */
static char *io_node(const vm_disk *d) { return disk_node(d, d->power_cut ? "log" : "fmt"); }

static int wait_cookie(struct nbd_handle *h, int64_t cookie, int64_t deadline, char *why, size_t whylen)
{
    for (;;) {
        int r = nbd_aio_command_completed(h, (uint64_t)cookie);
        if (r == 1)
            return 0;
        if (r < 0) {
            snprintf(why, whylen, "%s", nbd_get_error() ? nbd_get_error() : strerror(nbd_get_errno()));
            return -1;
        }
        int64_t left = deadline - now_ms();
        if (left <= 0 || nbd_poll(h, (int)left) < 0) {
            snprintf(why, whylen, "%s", left <= 0 ? "no answer from QEMU's NBD export within 30 s" : nbd_get_error());
            return -1;
        }
    }
}

static int nbd_ready(pv_vm *vm, vm_disk *d, char *err, size_t errlen)
{
    if (d->nbd && d->export_pid == vm->qemu_pid)
        return 0;
    disk_close_nbd(d);
    if (vm->qemu_pid <= 0 || (vm->state != VM_BOOTED && vm->state != VM_PAUSED)) {
        snprintf(err, errlen, "disk '%s' of VM '%s': a %s disk is read through QEMU, which is not running (the VM "
                 "is %s)", d->id, vm->name, d->format, vm_state_name(vm->state));
        return -1;
    }
    char *sock = xasprintf("%s/nbd.sock", vm->disks->dir);
    if (vm->disks->nbd_pid != vm->qemu_pid) {
        unlink(sock);
        if (disk_qmp(vm, "nbd-server-start",
                     json_pack("{s:{s:s, s:{s:s}}}", "addr", "type", "unix", "data", "path", sock), err, errlen) != 0) {
            free(sock);
            return -1;
        }
        vm->disks->nbd_pid = vm->qemu_pid;
    }
    if (!d->exported || d->export_pid != vm->qemu_pid) {
        char id[32];
        snprintf(id, sizeof(id), "pvx%u", d->index);
        char *node = io_node(d);
        int rc = disk_qmp(vm, "block-export-add",
                          json_pack("{s:s, s:s, s:s, s:s, s:b}", "type", "nbd", "id", id, "node-name", node, "name",
                                    d->id, "writable", !d->readonly),
                          err, errlen);
        free(node);
        if (rc != 0) {
            free(sock);
            return -1;
        }
        d->exported = true;
        d->export_pid = vm->qemu_pid;
    }
    struct nbd_handle *h = nbd_create();
    int64_t deadline = now_ms() + NBD_DEADLINE_MS;
    char why[512] = "";
    int rc = !h || nbd_set_export_name(h, d->id) < 0 || nbd_aio_connect_unix(h, sock) < 0 ? -1 : 0;
    while (rc == 0 && nbd_aio_is_connecting(h)) {
        int64_t left = deadline - now_ms();
        if (left <= 0 || nbd_poll(h, (int)left) < 0)
            rc = -1;
    }
    if (rc == 0 && !nbd_aio_is_ready(h))
        rc = -1;
    free(sock);
    if (rc != 0) {
        snprintf(why, sizeof(why), "%s", nbd_get_error() ? nbd_get_error() : "timed out");
        snprintf(err, errlen, "disk '%s' of VM '%s': cannot connect to QEMU's NBD export: %s", d->id, vm->name, why);
        if (h)
            nbd_close(h);
        return -1;
    }
    d->nbd = h;
    return 0;
}

static int local_io(pv_vm *vm, vm_disk *d, bool write, int64_t off, void *buf, size_t len, char *err, size_t errlen)
{
    int fd = open(d->file, (write ? O_WRONLY : O_RDONLY) | O_CLOEXEC);
    ssize_t n = -1;
    if (fd >= 0) {
        n = write ? pwrite(fd, buf, len, off) : pread(fd, buf, len, off);
        if (write && n >= 0 && fsync(fd) != 0)
            n = -1;
        close(fd);
    }
    if (n < 0) {
        snprintf(err, errlen, "disk '%s' of VM '%s': %s: %s: %s", d->id, vm->name,
                 write ? "write_sectors" : "read_sectors", d->file, strerror(errno));
        return -1;
    }
    if (!write && (size_t)n < len)
        memset((char *)buf + n, 0, len - (size_t)n); /* past the end of a shrunk image: zeros */
    return 0;
}

static int host_io(pv_vm *vm, vm_disk *d, bool write, int64_t off, void *buf, size_t len, char *err, size_t errlen)
{
    const char *op = write ? "write_sectors" : "read_sectors";
    unsigned eio = write ? DISK_HOST_EIO_WRITE : DISK_HOST_EIO_READ;
    if (d->detached) {
        snprintf(err, errlen, "disk '%s' of VM '%s': disk:%s: disk is detached", d->id, vm->name, op);
        return -1;
    }
    if (!d->file) {
        snprintf(err, errlen, "disk '%s' of VM '%s': disk:%s: no backing image — attach_disk{image = ...} required",
                 d->id, vm->name, op);
        return -1;
    }
    if (write && d->readonly) {
        snprintf(err, errlen, "disk '%s' of VM '%s': disk:write_sectors: the disk is read-only", d->id, vm->name);
        return -1;
    }
    /* the reference's order: check, sleep, check, do the I/O, check again */
    for (int pass = 0; pass < 2; pass++) {
        if (d->host_faults & eio) {
            snprintf(err, errlen, "disk '%s' of VM '%s': disk:%s: EIO (fault_inject)", d->id, vm->name, op);
            return -1;
        }
        if (pass == 0 && (d->host_faults & DISK_HOST_SLOW))
            sleep_ms(DISK_SLOW_MS);
    }
    int rc;
    bool qemu_runs = vm->qemu_pid > 0 && (vm->state == VM_BOOTED || vm->state == VM_PAUSED);
    if (vm->profile.local || (!qemu_runs && strcmp(d->format, "raw") == 0))
        rc = local_io(vm, d, write, off, buf, len, err, errlen); /* nobody else has the file open */
    else if ((rc = nbd_ready(vm, d, err, errlen)) == 0) {
        char why[512];
        int64_t deadline = now_ms() + NBD_DEADLINE_MS;
        for (size_t done = 0; rc == 0 && done < len;) {
            size_t n = len - done < NBD_CHUNK ? len - done : NBD_CHUNK;
            int64_t c = write ? nbd_aio_pwrite(d->nbd, (char *)buf + done, n, (uint64_t)off + done, NBD_NULL_COMPLETION,
                                               0)
                              : nbd_aio_pread(d->nbd, (char *)buf + done, n, (uint64_t)off + done, NBD_NULL_COMPLETION,
                                              0);
            rc = c < 0 ? (snprintf(why, sizeof(why), "%s", nbd_get_error()), -1)
                       : wait_cookie(d->nbd, c, deadline, why, sizeof(why));
            done += n;
        }
        if (rc == 0 && write) {
            /* a host write is durable at once: a power cut never drops it */
            int64_t c = nbd_aio_flush(d->nbd, NBD_NULL_COMPLETION, 0);
            rc = c < 0 ? -1 : wait_cookie(d->nbd, c, deadline, why, sizeof(why));
        }
        if (rc != 0) {
            snprintf(err, errlen, "disk '%s' of VM '%s': disk:%s through QEMU's NBD export: %s", d->id, vm->name, op,
                     why);
            disk_close_nbd(d);
        }
    }
    if (rc == 0 && (d->host_faults & eio)) {
        snprintf(err, errlen, "disk '%s' of VM '%s': disk:%s: EIO (fault_inject)", d->id, vm->name, op);
        return -1;
    }
    return rc;
}

int disk_host_read(pv_vm *vm, vm_disk *d, int64_t off, void *buf, size_t len, char *err, size_t errlen)
{
    return host_io(vm, d, false, off, buf, len, err, errlen);
}

int disk_host_write(pv_vm *vm, vm_disk *d, int64_t off, const void *buf, size_t len, char *err, size_t errlen)
{
    return host_io(vm, d, true, off, (void *)buf, len, err, errlen);
}
