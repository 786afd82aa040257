/* The rules one disk declaration must follow, whether it came from a
 * profile's `disks` in provium.toml or from the Lua boot option `disks`:
 * exactly one source, a known format, and flags that make sense for it.
 * Kept apart from the TOML and Lua readers so both refuse the same things
 * with the same words. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "config.h"

int disk_spec_check(pv_disk_spec *d, size_t index, const char *where, char *err, size_t errlen)
{
    if (d->path && d->size > 0) {
        snprintf(err, errlen,
                 "%s names both path and scratch/size: a disk takes exactly one source (path or template: an "
                 "image; scratch or size: a blank disk)",
                 where);
        return -1;
    }
    if (!d->path && d->size <= 0) {
        snprintf(err, errlen,
                 "%s names no source: a disk takes exactly one of path or template (an image) and scratch or "
                 "size (a blank disk of that many bytes)",
                 where);
        return -1;
    }
    if (d->format && strcmp(d->format, "raw") && strcmp(d->format, "qcow2")) {
        snprintf(err, errlen, "%s: format must be \"raw\" or \"qcow2\", not \"%s\"", where, d->format);
        return -1;
    }
    if (!d->path && (d->persist || d->copy || (d->format && strcmp(d->format, "raw")))) {
        snprintf(err, errlen, "%s: a scratch disk is a blank raw file; %s needs a path", where,
                 d->persist ? "persist" : d->copy ? "template" : "format");
        return -1;
    }
    if (d->persist && d->readonly) {
        snprintf(err, errlen, "%s: persist (write through to the image) contradicts readonly", where);
        return -1;
    }
    if (d->persist && d->copy) {
        snprintf(err, errlen, "%s: persist writes to path itself; a template is copied instead, never written", where);
        return -1;
    }
    if (d->power_cut && (d->readonly || d->persist)) {
        snprintf(err, errlen, "%s: power_cut rebuilds a private copy of the disk; it cannot be %s", where,
                 d->readonly ? "readonly" : "persist");
        return -1;
    }
    if (d->size > 0 && d->size % 512) {
        snprintf(err, errlen, "%s: size %lld is not a whole number of 512-byte sectors", where, (long long)d->size);
        return -1;
    }
    if (d->id && (!d->id[0] || strlen(d->id) > 20 || strspn(d->id, "abcdefghijklmnopqrstuvwxyz"
                                                                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") !=
                                                              strlen(d->id))) {
        /* the id becomes the virtio serial the guest sees (20 bytes at most)
         * and part of QEMU node names */
        snprintf(err, errlen, "%s: id \"%s\" must be 1 to 20 letters, digits, '_', '-' or '.'", where, d->id);
        return -1;
    }
    if (!d->id) {
        char buf[32];
        snprintf(buf, sizeof(buf), "disk%zu", index);
        d->id = xstrdup(buf);
    }
    return 0;
}

void disk_spec_copy(pv_disk_spec *dst, const pv_disk_spec *src)
{
    *dst = *src;
    dst->id = src->id ? xstrdup(src->id) : NULL;
    dst->path = src->path ? xstrdup(src->path) : NULL;
    dst->format = src->format ? xstrdup(src->format) : NULL;
}

void disk_spec_free(pv_disk_spec *d)
{
    free(d->id);
    free(d->path);
    free(d->format);
    memset(d, 0, sizeof(*d));
}
