/* The root disk of a profile (rootfs.h).
 *
 * The image is attached read-only: QEMU opens it with readonly=on, so no
 * guest write and no provium bug can change it. rootfs_writable gives the
 * guest a qcow2 overlay backed by the image instead, created per boot in the
 * VM's scratch directory with qemu-img; the guest's writes land there and
 * vanish with the VM. In a disk boot the agent's wrapper (agent/rootfs.c)
 * reads root=, ro/rw and init= from the command line, as an initramfs of a
 * distribution does. */
#include "rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/run_tool.h"
#include "vm.h"

#define QEMU_IMG_TIMEOUT_MS 60000
/* how agent/rootfs.c starts the message it prints before giving up */
#define ROOTFS_WRAPPER_ERROR "provium-wrapper: cannot boot from "

bool rootfs_boots_from_disk(const pv_profile *p) { return p->rootfs && !p->initrd; }

/* Formats QEMU cannot be told are raw: their first bytes. */
static const char *foreign_format(const unsigned char *head, size_t n)
{
    if (n >= 4 && memcmp(head, "QFI\xfb", 4) == 0)
        return "qcow2";
    if (n >= 4 && memcmp(head, "KDMV", 4) == 0)
        return "vmdk";
    if (n >= 64 && memcmp(head + 64, "\x7f\x10\xda\xbe", 4) == 0)
        return "vdi";
    if (n >= 8 && memcmp(head, "vhdxfile", 8) == 0)
        return "vhdx";
    return NULL;
}

static int check_image(const pv_vm *vm, char *err, size_t errlen)
{
    const pv_profile *p = &vm->profile;
    struct stat st;
    if (stat(p->rootfs, &st) != 0) {
        snprintf(err, errlen, "VM '%s': profile '%s': rootfs image %s: %s%s", vm->name, p->name, p->rootfs,
                 strerror(errno),
                 errno == ENOENT ? " (relative paths in provium.toml resolve against its directory)" : "");
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "VM '%s': profile '%s': rootfs image %s is a %s; it must be a regular file (a raw disk "
                              "image)", vm->name, p->name, p->rootfs, file_type_name(st.st_mode));
        return -1;
    }
    int fd = open(p->rootfs, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "VM '%s': profile '%s': rootfs image %s is not readable: %s", vm->name, p->name,
                 p->rootfs, strerror(errno));
        return -1;
    }
    unsigned char head[512];
    ssize_t n = read(fd, head, sizeof(head));
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "VM '%s': profile '%s': rootfs image %s: read: %s", vm->name, p->name, p->rootfs,
                 strerror(errno));
        return -1;
    }
    if (st.st_size < 4096) {
        snprintf(err, errlen, "VM '%s': profile '%s': rootfs image %s is %lld bytes: too small to hold a filesystem "
                              "(make one with `provium mkimage` or provium.ext4_image)",
                 vm->name, p->name, p->rootfs, (long long)st.st_size);
        return -1;
    }
    const char *fmt = foreign_format(head, (size_t)n);
    if (fmt) {
        snprintf(err, errlen, "VM '%s': profile '%s': rootfs image %s is in %s format; rootfs takes a raw image (convert "
                              "it: qemu-img convert -O raw %s IMAGE.raw)",
                 vm->name, p->name, p->rootfs, fmt, p->rootfs);
        return -1;
    }
    return 0;
}

/* QEMU option values double their commas. */
static void add_escaped(strbuf *b, const char *s)
{
    for (; *s; s++)
        sb_add(b, *s == ',' ? ",," : s, *s == ',' ? 2 : 1);
}

static char *overlay_path(const pv_vm *vm) { return xasprintf("%s/%s", vm->dir, ROOTFS_OVERLAY_NAME); }

int rootfs_prepare(pv_vm *vm, char *err, size_t errlen)
{
    const pv_profile *p = &vm->profile;
    if (!p->rootfs)
        return 0;
    if (check_image(vm, err, errlen) != 0)
        return -1;
    if (!p->rootfs_writable)
        return 0;
    if (mkdir_p(vm->dir, 0700) != 0) {
        snprintf(err, errlen, "VM '%s': cannot create %s: %s", vm->name, vm->dir, strerror(errno));
        return -1;
    }
    /* every boot starts from the image's bytes: a previous boot's overlay goes */
    char *overlay = overlay_path(vm);
    unlink(overlay);
    char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-b", p->rootfs, "-F", "raw", overlay, NULL};
    char why[2400];
    int rc = run_tool(argv, QEMU_IMG_TIMEOUT_MS, why, sizeof(why));
    if (rc != 0)
        snprintf(err, errlen, "VM '%s': profile '%s': cannot create the copy-on-write overlay %s of rootfs %s: %s",
                 vm->name, p->name, overlay, p->rootfs, why);
    free(overlay);
    return rc;
}

/* Does the command line already have a token that starts with key? */
static bool has_token(const char *line, const char *key)
{
    size_t n = strlen(key);
    for (const char *s = line; (s = strstr(s, key)) != NULL; s += n)
        if (s == line || s[-1] == ' ')
            return true;
    return false;
}

void rootfs_add_cmdline(const pv_profile *p, strbuf *b)
{
    if (!rootfs_boots_from_disk(p)) {
        sb_addf(b, " rdinit=/provium-wrapper provium.init=%s", p->init);
        return;
    }
    /* the shim's /init is the wrapper (the kernel runs /init of an
     * initramfs by default); it mounts root= and becomes init= */
    if (!has_token(b->s ? b->s : "", "root="))
        sb_adds(b, " root=" ROOTFS_GUEST_DEVICE);
    sb_addf(b, " %s init=%s", p->rootfs_writable ? "rw" : "ro", p->init);
}

char **rootfs_qemu_args(const pv_vm *vm, bool microvm)
{
    const pv_profile *p = &vm->profile;
    if (!p->rootfs)
        return NULL;
    strbuf drive;
    sb_init(&drive);
    sb_adds(&drive, "if=none,id=rootfs,file=");
    if (p->rootfs_writable) {
        char *overlay = overlay_path(vm);
        add_escaped(&drive, overlay);
        free(overlay);
        sb_adds(&drive, ",format=qcow2");
    } else {
        add_escaped(&drive, p->rootfs);
        sb_adds(&drive, ",format=raw,readonly=on");
    }
    char **a = xcalloc(5, sizeof(char *));
    a[0] = xstrdup("-drive");
    a[1] = sb_take(&drive);
    a[2] = xstrdup("-device");
    /* the serial tells the root disk from others in the guest's /sys/block/vdX/serial */
    a[3] = xstrdup(microvm ? "virtio-blk-device,drive=rootfs,serial=provium-rootfs"
                           : "virtio-blk-pci,drive=rootfs,serial=provium-rootfs");
    return a;
}

char *rootfs_identity(const pv_profile *p)
{
    struct stat st;
    if (!p->rootfs)
        return xstrdup("-");
    if (stat(p->rootfs, &st) != 0)
        return xasprintf("%s missing", p->rootfs);
    return xasprintf("%s dev=%llu ino=%llu size=%lld mtime=%lld.%09ld ctime=%lld.%09ld%s", p->rootfs,
                     (unsigned long long)st.st_dev, (unsigned long long)st.st_ino, (long long)st.st_size,
                     (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (long long)st.st_ctim.tv_sec,
                     st.st_ctim.tv_nsec, p->rootfs_writable ? " writable" : "");
}

void rootfs_quote_wrapper_error(const char *console_path, strbuf *msg)
{
    size_t len = 0;
    char *log = read_whole_file(console_path, &len);
    const char *line = log ? strstr(log, ROOTFS_WRAPPER_ERROR) : NULL;
    if (line) {
        size_t n = strcspn(line, "\r\n");
        sb_addf(msg, "\n  guest: %.*s", (int)n, line);
    }
    free(log);
}

#define SNAP_ID_NAME "rootfs.id"

int rootfs_snapshot_save(const pv_vm *vm, const char *dir, char *err, size_t errlen)
{
    const pv_profile *p = &vm->profile;
    char *idpath = xasprintf("%s/" SNAP_ID_NAME, dir);
    unlink(idpath);
    int rc = 0;
    if (p->rootfs) {
        char *id = rootfs_identity(p);
        rc = write_whole_file(idpath, id, strlen(id), 0644);
        if (rc != 0)
            snprintf(err, errlen, "snapshot of VM '%s': cannot write %s: %s", vm->name, idpath, strerror(errno));
        free(id);
    }
    free(idpath);
    if (rc == 0 && p->rootfs_writable) {
        char *src = overlay_path(vm), *dst = xasprintf("%s/%s", dir, ROOTFS_OVERLAY_NAME);
        rc = copy_file(src, dst);
        if (rc != 0)
            snprintf(err, errlen, "snapshot of VM '%s': cannot copy the root disk's overlay %s to %s: %s", vm->name,
                     src, dst, strerror(errno));
        free(src);
        free(dst);
    }
    return rc;
}

int rootfs_snapshot_restore(pv_vm *vm, const char *dir, char *err, size_t errlen)
{
    const pv_profile *p = &vm->profile;
    char *idpath = xasprintf("%s/" SNAP_ID_NAME, dir);
    size_t len = 0;
    char *saved = read_whole_file(idpath, &len);
    free(idpath);
    char *now = p->rootfs ? rootfs_identity(p) : NULL;
    int rc = 0;
    if (!saved != !now) {
        snprintf(err, errlen, "restore: snapshot %s was taken %s a root disk, and VM '%s' (profile '%s') has %s", dir,
                 saved ? "with" : "without", vm->name, p->name, now ? "one" : "none");
        rc = -1;
    } else if (saved && strcmp(saved, now) != 0) {
        snprintf(err, errlen, "restore: snapshot %s was taken with rootfs image %s as it was then (%s); it has changed "
                              "or moved since (%s), and the guest's view of it would be stale",
                 dir, p->rootfs, saved, now);
        rc = -1;
    }
    free(saved);
    free(now);
    if (rc != 0 || !p->rootfs_writable)
        return rc;
    char *src = xasprintf("%s/%s", dir, ROOTFS_OVERLAY_NAME), *dst = overlay_path(vm);
    if (mkdir_p(vm->dir, 0700) != 0 || copy_file(src, dst) != 0) {
        snprintf(err, errlen, "restore of VM '%s' from %s: cannot copy the root disk's overlay %s to %s: %s", vm->name,
                 dir, src, dst, strerror(errno));
        rc = -1;
    }
    free(src);
    free(dst);
    return rc;
}
