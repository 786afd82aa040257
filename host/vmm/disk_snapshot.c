/* Disks of a VM, part four: disks in snapshots. A snapshot copies each
 * private disk file (overlays, scratch files, private copies) while the VM
 * is stopped for the migration stream, and lists every disk in meta.json; a
 * restore rebuilds the disk set from that list before QEMU starts. The
 * user's own images (readonly, persist) are referred to, not copied, and an
 * overlay is only restored over the very image it was made on. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/util.h"
#include "disk.h"
#include "vm_internal.h"

static bool private_file(const vm_disk *d) { return d->file && !d->persist && !d->readonly; }

void disk_drop_exports(pv_vm *vm)
{
    for (size_t i = 0; vm->disks && i < vm->disks->n; i++)
        disk_forget_export(vm, vm->disks->v[i]);
}

int disk_save(pv_vm *vm, const char *dir, json_t *meta, char *err, size_t errlen)
{
    json_t *list = json_array();
    json_object_set_new(meta, "disks", list);
    for (size_t i = 0; vm->disks && i < vm->disks->n; i++) {
        vm_disk *d = vm->disks->v[i];
        if (d->detached || !d->file)
            continue;
        /* an overlay's copy is only good on the very image it was made over */
        json_array_append_new(list, json_pack("{s:s, s:i, s:s, s:I, s:b, s:b, s:b, s:s?, s:s?, s:s}", "id", d->id,
                                              "index", (int)d->index, "format",
                                              d->format, "size", (json_int_t)d->size, "readonly", d->readonly,
                                              "persist", d->persist, "power_cut", d->power_cut, "source", d->source,
                                              "source_id", d->source ? vm_file_identity(d->source) : NULL, "file",
                                              private_file(d) ? "copy" : d->file));
        if (!private_file(d))
            continue; /* the user's own image is not the VM's to copy */
        char *dst = xasprintf("%s/disk-%s", dir, d->id);
        int rc = copy_file(d->file, dst);
        free(dst);
        if (rc != 0) {
            snprintf(err, errlen, "snapshot of VM '%s': cannot copy disk '%s' (%s): %s", vm->name, d->id, d->file,
                     strerror(errno));
            return -1;
        }
    }
    return 0;
}

int disk_load(pv_vm *vm, const char *dir, json_t *meta, char *err, size_t errlen)
{
    json_t *list = json_object_get(meta, "disks");
    size_t i;
    json_t *e;
    if (vm->disks)
        disk_free_all(vm); /* the VM's own disks give way to the snapshot's */
    json_array_foreach(list, i, e) {
        const char *id = json_string_value(json_object_get(e, "id"));
        const char *fmt = json_string_value(json_object_get(e, "format"));
        const char *file = json_string_value(json_object_get(e, "file"));
        if (!id || !fmt || !file) {
            snprintf(err, errlen, "restore: snapshot %s is corrupt: its disk list has an entry without id, format "
                     "or file", dir);
            return -1;
        }
        vm_disks *ds = disk_set(vm);
        vm_disk *d = xcalloc(1, sizeof(*d));
        d->id = xstrdup(id);
        /* the snapshot's numbering: Disk handles of a VM restored in place
         * (reset_between_tests) go on naming the same disks */
        d->index = (unsigned)json_integer_value(json_object_get(e, "index"));
        if (d->index >= ds->next_index)
            ds->next_index = d->index + 1;
        d->format = strcmp(fmt, "qcow2") == 0 ? "qcow2" : "raw";
        d->size = json_integer_value(json_object_get(e, "size"));
        d->readonly = json_is_true(json_object_get(e, "readonly"));
        d->persist = json_is_true(json_object_get(e, "persist"));
        d->power_cut = json_is_true(json_object_get(e, "power_cut"));
        const char *source = json_string_value(json_object_get(e, "source"));
        const char *source_id = json_string_value(json_object_get(e, "source_id"));
        d->source = source ? xstrdup(source) : NULL;
        disk_add(ds, d);
        if (source && source_id && strcmp(vm_file_identity(source), source_id) != 0) {
            snprintf(err, errlen, "restore of VM '%s': disk '%s' was made over image %s, which changed (or is gone) "
                     "since the snapshot", vm->name, id, source);
            return -1;
        }
        if (strcmp(file, "copy") != 0) {
            d->file = xstrdup(file);
            continue;
        }
        d->file = xasprintf("%s/%s.%s", ds->dir, id, d->format);
        char *srcp = xasprintf("%s/disk-%s", dir, id);
        if (copy_file(srcp, d->file) != 0) {
            snprintf(err, errlen, "restore of VM '%s': the snapshot has no usable copy of disk '%s' (%s): %s",
                     vm->name, id, srcp, strerror(errno));
            free(srcp);
            return -1;
        }
        free(srcp);
    }
    return 0;
}

