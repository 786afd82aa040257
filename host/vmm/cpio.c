#include "cpio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void cpio_init(cpio_writer *w)
{
    sb_init(&w->out);
    w->next_ino = 0x50000; /* away from small numbers a user archive might use */
}

static void pad4(cpio_writer *w)
{
    static const char zeros[4];
    size_t rem = w->out.len & 3;
    if (rem)
        sb_add(&w->out, zeros, 4 - rem);
}

static void entry(cpio_writer *w, const char *path, unsigned mode, const void *data, size_t len)
{
    while (*path == '/')
        path++;
    size_t namesize = strlen(path) + 1;
    char hdr[111];
    snprintf(hdr, sizeof(hdr), "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", w->next_ino++, mode,
             0u, 0u, (mode & S_IFMT) == S_IFDIR ? 2u : 1u, 0u, (unsigned)len, 0u, 0u, 0u, 0u, (unsigned)namesize, 0u);
    sb_add(&w->out, hdr, 110);
    sb_add(&w->out, path, namesize);
    pad4(w);
    if (len) {
        sb_add(&w->out, data, len);
        pad4(w);
    }
}

void cpio_add_dir(cpio_writer *w, const char *path, unsigned mode) { entry(w, path, S_IFDIR | (mode & 07777), NULL, 0); }

void cpio_add_parents(cpio_writer *w, const char *path)
{
    while (*path == '/')
        path++;
    for (const char *p = strchr(path, '/'); p; p = strchr(p + 1, '/')) {
        char *dir = strndup(path, (size_t)(p - path));
        if (dir && *dir)
            cpio_add_dir(w, dir, 0755);
        free(dir);
    }
}

void cpio_add_file(cpio_writer *w, const char *path, unsigned mode, const void *data, size_t len)
{
    entry(w, path, S_IFREG | (mode & 07777), data, len);
}

void cpio_add_symlink(cpio_writer *w, const char *path, const char *target)
{
    entry(w, path, S_IFLNK | 0777, target, strlen(target));
}

void cpio_finish(cpio_writer *w) { entry(w, "TRAILER!!!", 0, NULL, 0); }

void cpio_free(cpio_writer *w) { sb_free(&w->out); }
