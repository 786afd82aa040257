/*
 * test_rootfs.c - tests for the root disk of a profile (host/vmm/rootfs.c)
 * and the ext4 image helper (host/tools/ext4_image.c), with the real
 * qemu-img and mke2fs: the command line of each boot mode, the QEMU drive
 * (read-only image, escaped commas, the writable overlay), the image checks
 * and their messages, the overlay qemu-img makes (backed by the untouched
 * image), the identity that keys the caches, the snapshot record, and the
 * wrapper error quoted from a console log.
 */
#include "../../host/vmm/rootfs.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../host/tools/ext4_image.h"
#include "../../host/util/util.h"
#include "../../host/vmm/vm.h"

#include "check.h"

static char root[] = "/tmp/pvrootfsXXXXXX";

static char *cmdline_of(const pv_profile *p, const char *base)
{
    strbuf b;
    sb_init(&b);
    sb_adds(&b, base);
    rootfs_add_cmdline(p, &b);
    return sb_take(&b);
}

TEST(cmdline)
{
    pv_profile p = {.name = "p", .init = "/sbin/init", .rootfs = "/img"};
    set_case("disk boot, read-only");
    char *c = cmdline_of(&p, "console=ttyS0");
    CHECKF(strcmp(c, "console=ttyS0 root=/dev/vda ro init=/sbin/init") == 0, "%s", c);
    free(c);
    set_case("disk boot, rootfs_writable");
    p.rootfs_writable = true;
    c = cmdline_of(&p, "console=ttyS0");
    CHECKF(strcmp(c, "console=ttyS0 root=/dev/vda rw init=/sbin/init") == 0, "%s", c);
    free(c);
    set_case("the user's root= is kept, provium adds none");
    c = cmdline_of(&p, "console=ttyS0 root=/dev/vdb");
    CHECKF(strcmp(c, "console=ttyS0 root=/dev/vdb rw init=/sbin/init") == 0, "%s", c);
    free(c);
    set_case("a key ending in root= is not root=");
    c = cmdline_of(&p, "console=ttyS0 provium.root=/x");
    CHECKF(strstr(c, " root=/dev/vda ") != NULL, "%s", c);
    free(c);
    set_case("initrd and rootfs: the initramfs boots");
    p.initrd = "/initrd";
    c = cmdline_of(&p, "q");
    CHECKF(strcmp(c, "q rdinit=/provium-wrapper provium.init=/sbin/init") == 0, "%s", c);
    CHECK(!rootfs_boots_from_disk(&p));
    free(c);
    set_case("no rootfs");
    p.rootfs = NULL;
    p.rootfs_writable = false;
    c = cmdline_of(&p, "q");
    CHECKF(strcmp(c, "q rdinit=/provium-wrapper provium.init=/sbin/init") == 0, "%s", c);
    free(c);
}

static pv_vm make_vm(pv_profile *p, const char *dir)
{
    pv_vm vm;
    memset(&vm, 0, sizeof(vm));
    vm.name = "v";
    vm.profile = *p;
    vm.dir = (char *)dir;
    return vm;
}

TEST(qemu_args)
{
    pv_profile p = {.name = "p", .init = "/sbin/init", .rootfs = "/images/a,b.img"};
    pv_vm vm = make_vm(&p, "/scratch/vm-1");
    set_case("read-only drive, commas doubled");
    char **a = rootfs_qemu_args(&vm, true);
    if (CHECK(a && a[0] && a[1] && a[2] && a[3] && !a[4])) {
        CHECK(strcmp(a[0], "-drive") == 0 && strcmp(a[2], "-device") == 0);
        CHECKF(strcmp(a[1], "if=none,id=rootfs,file=/images/a,,b.img,format=raw,readonly=on") == 0, "%s", a[1]);
        CHECKF(strcmp(a[3], "virtio-blk-device,drive=rootfs,serial=provium-rootfs") == 0, "%s", a[3]);
    }
    for (size_t i = 0; a && a[i]; i++)
        free(a[i]);
    free(a);
    set_case("writable: the overlay in the scratch dir, on PCI");
    vm.profile.rootfs_writable = true;
    a = rootfs_qemu_args(&vm, false);
    if (CHECK(a && a[3])) {
        CHECKF(strcmp(a[1], "if=none,id=rootfs,file=/scratch/vm-1/rootfs.qcow2,format=qcow2") == 0, "%s", a[1]);
        CHECK(strncmp(a[3], "virtio-blk-pci,", 15) == 0);
    }
    for (size_t i = 0; a && a[i]; i++)
        free(a[i]);
    free(a);
    set_case("no rootfs: no arguments");
    vm.profile.rootfs = NULL;
    CHECK(rootfs_qemu_args(&vm, true) == NULL);
}

static void expect_refused(const char *label, const char *image, const char *want)
{
    set_case("%s", label);
    pv_profile p = {.name = "p", .init = "/sbin/init", .rootfs = (char *)image};
    char *dir = xasprintf("%s/vm", root);
    pv_vm vm = make_vm(&p, dir);
    char err[1024] = "";
    CHECK(rootfs_prepare(&vm, err, sizeof(err)) == -1);
    CHECKF(strstr(err, want) != NULL, "message \"%s\" lacks \"%s\"", err, want);
    CHECKF(strncmp(err, "VM 'v': profile 'p': rootfs image ", 34) == 0, "message \"%s\" names no VM/profile", err);
    free(dir);
}

static char *write_file_in(const char *name, const void *data, size_t len)
{
    char *path = xasprintf("%s/%s", root, name);
    write_whole_file(path, data, len, 0644);
    return path;
}

TEST(image_checks)
{
    char *missing = xasprintf("%s/missing.img", root);
    expect_refused("a missing image", missing, "missing.img: No such file or directory (relative paths");
    free(missing);
    expect_refused("a directory", root, "is a directory; it must be a regular file");
    char *small = write_file_in("small.img", "tiny", 4);
    expect_refused("too small", small, "is 4 bytes: too small to hold a filesystem");
    free(small);
    static unsigned char head[8192];
    memcpy(head, "QFI\xfb", 4);
    char *q = write_file_in("disk.qcow2", head, sizeof(head));
    expect_refused("qcow2", q, "is in qcow2 format; rootfs takes a raw image (convert it: qemu-img convert -O raw");
    free(q);
    memcpy(head, "KDMV", 4);
    char *v = write_file_in("disk.vmdk", head, sizeof(head));
    expect_refused("vmdk", v, "is in vmdk format");
    free(v);
}

TEST(image_and_overlay)
{
    set_case("provium's ext4 helper makes the image");
    char *tree = xasprintf("%s/tree", root), *file = xasprintf("%s/tree/etc/hello", root);
    char *image = xasprintf("%s/root.ext4", root), *dir = xasprintf("%s/vm", root);
    CHECK(mkdir_p(tree, 0755) == 0 && mkdir_p(file, 0755) == 0 && rmdir(file) == 0);
    CHECK(write_whole_file(file, "hi\n", 3, 0644) == 0);
    ext4_image_opts o = {.dir = tree, .path = image, .label = "unit"};
    char err[3000] = "";
    CHECKF(ext4_image_build(&o, err, sizeof(err)) == 0, "%s", err);
    struct stat st;
    CHECK(stat(image, &st) == 0 && st.st_size == ext4_image_default_size(tree) && st.st_size >= (16 << 20));
    unsigned char sb[2];
    FILE *f = fopen(image, "rb");
    CHECK(f && fseek(f, 1024 + 56, SEEK_SET) == 0 && fread(sb, 1, 2, f) == 2 && sb[0] == 0x53 && sb[1] == 0xef);
    if (f)
        fclose(f);
    set_case("the helper refuses a label ext4 cannot hold, and a file as the tree");
    o.label = "a-label-longer-than-16";
    CHECK(ext4_image_build(&o, err, sizeof(err)) == -1 && strstr(err, "longer than ext4's 16 bytes"));
    o.label = NULL;
    o.dir = file;
    CHECK(ext4_image_build(&o, err, sizeof(err)) == -1 && strstr(err, "is a regular file, not a directory"));

    set_case("a read-only image passes and makes no overlay");
    pv_profile p = {.name = "p", .init = "/sbin/init", .rootfs = image};
    pv_vm vm = make_vm(&p, dir);
    CHECKF(rootfs_prepare(&vm, err, sizeof(err)) == 0, "%s", err);
    char *overlay = xasprintf("%s/rootfs.qcow2", dir);
    CHECK(!file_exists(overlay));

    set_case("rootfs_writable: a qcow2 overlay backed by the image");
    char *id_before = rootfs_identity(&vm.profile);
    vm.profile.rootfs_writable = true;
    CHECKF(rootfs_prepare(&vm, err, sizeof(err)) == 0, "%s", err);
    size_t len = 0;
    char *ov = read_whole_file(overlay, &len);
    CHECK(ov && len > 4 && memcmp(ov, "QFI\xfb", 4) == 0);
    CHECK(ov && memmem(ov, len, image, strlen(image)) != NULL); /* the backing file's name */
    free(ov);
    vm.profile.rootfs_writable = false;
    char *id_after = rootfs_identity(&vm.profile);
    CHECKF(strcmp(id_before, id_after) == 0, "the image changed: %s -> %s", id_before, id_after);

    set_case("the identity follows the image and the writable flag");
    vm.profile.rootfs_writable = true;
    char *id_rw = rootfs_identity(&vm.profile);
    CHECK(strcmp(id_rw, id_after) != 0);
    vm.profile.rootfs_writable = false;
    sleep_ms(20);
    utimensat(AT_FDCWD, image, NULL, 0);
    char *id_touched = rootfs_identity(&vm.profile);
    CHECK(strcmp(id_touched, id_after) != 0);

    set_case("snapshots record the image and refuse another one");
    char *snap = xasprintf("%s/snap", root);
    CHECK(mkdir_p(snap, 0755) == 0);
    CHECKF(rootfs_snapshot_save(&vm, snap, err, sizeof(err)) == 0, "%s", err);
    CHECKF(rootfs_snapshot_restore(&vm, snap, err, sizeof(err)) == 0, "%s", err);
    sleep_ms(20);
    utimensat(AT_FDCWD, image, NULL, 0);
    CHECK(rootfs_snapshot_restore(&vm, snap, err, sizeof(err)) == -1);
    CHECKF(strstr(err, "was taken with rootfs image") && strstr(err, "has changed"), "%s", err);
    pv_vm bare = make_vm(&p, dir);
    bare.profile.rootfs = NULL;
    CHECK(rootfs_snapshot_restore(&bare, snap, err, sizeof(err)) == -1);
    CHECKF(strstr(err, "was taken with a root disk, and VM 'v' (profile 'p') has none"), "%s", err);

    free(id_before);
    free(id_after);
    free(id_rw);
    free(id_touched);
    free(snap);
    free(overlay);
    free(tree);
    free(file);
    free(image);
    free(dir);
}

TEST(quote)
{
    set_case("the wrapper's error is quoted from the console log");
    static const char text[] = "[    0.5] booting\n[    1.0] provium-wrapper: cannot boot from /dev/vdz: the root "
                               "device did not appear within 2 s\nKernel panic - not syncing\n";
    char *log = write_file_in("console.log", text, strlen(text));
    strbuf b;
    sb_init(&b);
    sb_adds(&b, "boot failed");
    rootfs_quote_wrapper_error(log, &b);
    CHECKF(strstr(b.s, "boot failed\n  guest: provium-wrapper: cannot boot from /dev/vdz: the root device") != NULL &&
               !strstr(b.s, "Kernel panic"),
           "%s", b.s);
    sb_free(&b);
    set_case("nothing to quote");
    sb_adds(&b, "x");
    rootfs_quote_wrapper_error("/nonexistent/console.log", &b);
    CHECK(strcmp(b.s, "x") == 0);
    sb_free(&b);
    free(log);
}

static bool make_root(void)
{
    if (mkdtemp(root))
        return true;
    perror("mkdtemp");
    return false;
}

static void remove_root(void) { rm_rf(root); }

int main(int argc, char **argv) { return check_main(argc, argv, make_root, remove_root); }
