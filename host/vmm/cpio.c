#include "cpio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void cpio_init(cpio_writer *w)
{
    sb_init(&w->out);
    w->next_ino = 0x50000; /* away from small numbers a user archive might use */
    w->dirs = NULL;
    w->ndirs = 0;
}

static bool dir_known(const cpio_writer *w, const char *path, size_t n)
{
    for (size_t i = 0; i < w->ndirs; i++)
        if (strlen(w->dirs[i]) == n && memcmp(w->dirs[i], path, n) == 0)
            return true;
    return false;
}

/* path without leading "/" or "./" (the root itself is ""). */
static void know_dir(cpio_writer *w, const char *path, size_t n)
{
    while (n && (*path == '/' || (*path == '.' && (n == 1 || path[1] == '/')))) {
        path++;
        n--;
    }
    while (n && path[n - 1] == '/')
        n--;
    if (dir_known(w, path, n))
        return;
    w->dirs = xrealloc(w->dirs, (w->ndirs + 1) * sizeof(char *));
    w->dirs[w->ndirs++] = strndup(path, n);
}

static bool hex8(const char *p, unsigned long *out)
{
    char buf[9];
    memcpy(buf, p, 8);
    buf[8] = 0;
    char *end;
    *out = strtoul(buf, &end, 16);
    return *end == 0;
}

void cpio_know_dirs(cpio_writer *w, const void *data, size_t len)
{
    const char *d = data;
    size_t off = 0;
    while (off + 110 <= len) {
        if (d[off] == 0) { /* padding between archives */
            off += 4 - (off & 3);
            continue;
        }
        if (memcmp(d + off, "07070", 5) != 0 || (d[off + 5] != '1' && d[off + 5] != '2'))
            return;
        unsigned long mode, filesize, namesize;
        if (!hex8(d + off + 14, &mode) || !hex8(d + off + 54, &filesize) || !hex8(d + off + 94, &namesize))
            return;
        size_t name = off + 110;
        if (namesize == 0 || name + namesize > len)
            return;
        if ((mode & S_IFMT) == S_IFDIR)
            know_dir(w, d + name, strnlen(d + name, namesize));
        off = (name + namesize + 3) & ~(size_t)3;
        off = (off + filesize + 3) & ~(size_t)3;
    }
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

void cpio_add_dir(cpio_writer *w, const char *path, unsigned mode)
{
    entry(w, path, S_IFDIR | (mode & 07777), NULL, 0);
    know_dir(w, path, strlen(path));
}

void cpio_add_parents(cpio_writer *w, const char *path)
{
    while (*path == '/')
        path++;
    for (const char *p = strchr(path, '/'); p; p = strchr(p + 1, '/')) {
        if (p == path || dir_known(w, path, (size_t)(p - path)))
            continue;
        char *dir = strndup(path, (size_t)(p - path));
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

void cpio_free(cpio_writer *w)
{
    sb_free(&w->out);
    for (size_t i = 0; i < w->ndirs; i++)
        free(w->dirs[i]);
    free(w->dirs);
    w->dirs = NULL;
    w->ndirs = 0;
}
