/* Building an ext4 image from a host directory without root privileges
 * (mke2fs -d from e2fsprogs): for rootfs profiles and data disks in tests
 * (provium.ext4_image) and on the command line (provium mkimage). */
#ifndef PROVIUM_EXT4_IMAGE_H
#define PROVIUM_EXT4_IMAGE_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *dir;   /* the tree to copy in (owners and modes are kept) */
    const char *path;  /* the image to write; replaced atomically */
    int64_t size;      /* bytes; 0: room for the tree, with space to spare */
    const char *label; /* filesystem label, or NULL */
} ext4_image_opts;

/* 0, or -1 with err saying what was wrong (the directory, the size, the
 * output) or mke2fs's own message. */
int ext4_image_build(const ext4_image_opts *o, char *err, size_t errlen);

/* The size a tree needs by default (bytes, a whole number of MiB); -1 with
 * errno when dir cannot be walked. */
int64_t ext4_image_default_size(const char *dir);

/* provium mkimage [--size SIZE] [--label L] DIR IMAGE */
int mkimage_cli(int argc, char **argv);
#endif
