/* ext4 images from host directories (ext4_image.h).
 *
 * mke2fs -d copies a directory into the new filesystem as it is created,
 * which needs no loop device and no root. The image is written beside the
 * target and renamed over it, so a reader never sees half an image. */
#include "ext4_image.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/run_tool.h"
#include "../util/util.h"

#define MKE2FS_TIMEOUT_MS 300000
#define MIN_SIZE (8LL << 20)      /* the smallest ext4 with a journal mke2fs makes without complaint */
#define MAX_SIZE (16LL << 40)
#define BLOCK 4096

static int64_t tree_bytes;

static int add_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)path, (void)type, (void)ftw;
    /* every entry takes an inode and at least a block; files their data */
    tree_bytes += BLOCK + (S_ISREG(st->st_mode) ? (st->st_size + BLOCK - 1) / BLOCK * BLOCK : 0);
    return 0;
}

int64_t ext4_image_default_size(const char *dir)
{
    tree_bytes = 0;
    if (nftw(dir, add_entry, 32, FTW_PHYS) != 0)
        return -1;
    /* twice the tree plus room for the journal and metadata, in MiB */
    int64_t want = tree_bytes * 2 + (16LL << 20);
    return (want + (1 << 20) - 1) / (1 << 20) * (1 << 20);
}

int ext4_image_build(const ext4_image_opts *o, char *err, size_t errlen)
{
    struct stat st;
    if (!o->dir || !o->path) {
        snprintf(err, errlen, "ext4 image: %s is required", !o->dir ? "the source directory (dir)" : "the image path");
        return -1;
    }
    if (stat(o->dir, &st) != 0) {
        snprintf(err, errlen, "ext4 image %s: source directory %s: %s", o->path, o->dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "ext4 image %s: source %s is a %s, not a directory", o->path, o->dir,
                 file_type_name(st.st_mode));
        return -1;
    }
    int64_t size = o->size;
    if (size == 0 && (size = ext4_image_default_size(o->dir)) < 0) {
        snprintf(err, errlen, "ext4 image %s: cannot walk %s: %s", o->path, o->dir, strerror(errno));
        return -1;
    }
    if (size < MIN_SIZE || size > MAX_SIZE) {
        snprintf(err, errlen, "ext4 image %s: size %lld bytes is out of range (%lld MiB to %lld TiB)", o->path,
                 (long long)size, MIN_SIZE >> 20, MAX_SIZE >> 40);
        return -1;
    }
    if (o->label && strlen(o->label) > 16) {
        snprintf(err, errlen, "ext4 image %s: label '%s' is longer than ext4's 16 bytes", o->path, o->label);
        return -1;
    }
    char *parent = path_dirname(o->path);
    bool parent_ok = is_dir(parent);
    if (!parent_ok)
        snprintf(err, errlen, "ext4 image %s: directory %s does not exist", o->path, parent);
    free(parent);
    if (!parent_ok)
        return -1;
    char *tmp = xasprintf("%s.%d.tmp", o->path, (int)getpid());
    char *blocks = xasprintf("%lldk", (long long)(size / 1024));
    unlink(tmp);
    /* -F: the target is a file, not a block device; -m 0: no blocks kept
     * for root (a test image has no daemons to protect); -E root_owner with
     * -d: the copied tree's own root owner */
    char *argv[16];
    int n = 0;
    argv[n++] = "mke2fs";
    argv[n++] = "-q";
    argv[n++] = "-F";
    argv[n++] = "-t";
    argv[n++] = "ext4";
    argv[n++] = "-m";
    argv[n++] = "0";
    argv[n++] = "-d";
    argv[n++] = (char *)o->dir;
    if (o->label) {
        argv[n++] = "-L";
        argv[n++] = (char *)o->label;
    }
    argv[n++] = tmp;
    argv[n++] = blocks;
    argv[n] = NULL;
    char why[2400];
    int rc = run_tool(argv, MKE2FS_TIMEOUT_MS, why, sizeof(why));
    if (rc != 0)
        snprintf(err, errlen, "ext4 image %s from %s: %s", o->path, o->dir, why);
    else if (rename(tmp, o->path) != 0) {
        snprintf(err, errlen, "ext4 image %s: rename from %s: %s", o->path, tmp, strerror(errno));
        rc = -1;
    }
    if (rc != 0)
        unlink(tmp);
    free(tmp);
    free(blocks);
    return rc;
}

static int mkimage_usage(FILE *out, int status)
{
    fprintf(out, "usage: provium mkimage [--size SIZE] [--label LABEL] DIR IMAGE\n"
                    "  builds an ext4 image of DIR's tree (mke2fs -d; no root needed); SIZE like 64M,\n"
                    "  by default twice the tree plus 16 MiB\n");
    return status;
}

int mkimage_cli(int argc, char **argv)
{
    ext4_image_opts o = {0};
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
            if ((o.size = parse_size(argv[++i])) <= 0) {
                fprintf(stderr, "provium mkimage: --size %s is not a size like 64M or 1G\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--label") == 0 && i + 1 < argc)
            o.label = argv[++i];
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return mkimage_usage(stdout, 0);
        else if (argv[i][0] == '-') {
            fprintf(stderr, "provium mkimage: unknown option '%s'\n", argv[i]);
            return mkimage_usage(stderr, 2);
        }
        else if (!o.dir)
            o.dir = argv[i];
        else if (!o.path)
            o.path = argv[i];
        else
            return mkimage_usage(stderr, 2);
    }
    if (!o.dir || !o.path)
        return mkimage_usage(stderr, 2);
    char err[PV_ERR_MAX];
    if (ext4_image_build(&o, err, sizeof(err)) != 0) {
        fprintf(stderr, "provium mkimage: %s\n", err);
        return 1;
    }
    return 0;
}
