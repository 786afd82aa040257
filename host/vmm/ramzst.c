/* Guest RAM in snapshots, compressed: a snapshot stores the allocated parts of
 * the RAM file as zstd frames (ram.zst); the first restore unpacks them once
 * into a sparse file on /dev/shm, which every later restore of the snapshot
 * maps copy-on-write as before. So the entry on disk is small and a restore
 * costs no decompression, only the first one pays it.
 *
 * ram.zst: "PVRAMZ1\n", u64 RAM size, then records of u64 offset, u64 length,
 * u64 compressed length and one zstd frame (with its checksum) holding that
 * many bytes of RAM from that offset; a record with offset UINT64_MAX ends
 * the file. All integers little-endian. Ranges not in a record are zeros. */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "../util/util.h"
#include "vm_internal.h"

#define MAGIC "PVRAMZ1\n"
#define CHUNK (1u << 20)
#define PAGE 4096
#define LEVEL 3
/* unpacked copies nobody restored for this long are removed */
#define UNPACKED_MAX_IDLE_S 3600
/* and beyond this much memory in all, the least recently restored go */
#define UNPACKED_MAX_BYTES (1LL << 30)

/* Reads or writes all n bytes; -1 on an error or an early EOF. */
static int io_all(int fd, void *p, size_t n, bool writing)
{
    char *c = p;
    while (n) {
        ssize_t r = writing ? write(fd, c, n) : read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_all(int fd, const void *p, size_t n) { return io_all(fd, (void *)p, n, true); }
static int read_all(int fd, void *p, size_t n) { return io_all(fd, p, n, false); }

static int put_u64s(int fd, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t v[3] = {a, b, c}; /* x86-64 and every host provium runs on: little-endian */
    return write_all(fd, v, sizeof(v));
}

int ram_compress(int src, int64_t size, const char *dst_path, char *err, size_t errlen)
{
    int dst = open(dst_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (dst < 0) {
        snprintf(err, errlen, "cannot create %s: %s", dst_path, strerror(errno));
        return -1;
    }
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    size_t bound = ZSTD_compressBound(CHUNK);
    char *in = xmalloc(CHUNK), *out = xmalloc(bound);
    int rc = -1;
    const char *why = NULL;
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, LEVEL);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    if (write_all(dst, MAGIC, 8) != 0 || write_all(dst, &(uint64_t){(uint64_t)size}, 8) != 0)
        goto io;
    for (off_t pos = 0; pos < size;) {
        off_t data = lseek(src, pos, SEEK_DATA);
        if (data < 0)
            break; /* ENXIO: only holes remain */
        off_t hole = lseek(src, data, SEEK_HOLE);
        if (hole < 0 || hole > size)
            hole = size;
        for (off_t off = data; off < hole;) {
            size_t want = (size_t)(hole - off) < CHUNK ? (size_t)(hole - off) : CHUNK;
            ssize_t n = pread(src, in, want, off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                goto io;
            size_t c = ZSTD_compress2(cctx, out, bound, in, (size_t)n);
            if (ZSTD_isError(c)) {
                why = ZSTD_getErrorName(c);
                goto io;
            }
            if (put_u64s(dst, (uint64_t)off, (uint64_t)n, c) != 0 || write_all(dst, out, c) != 0)
                goto io;
            off += n;
        }
        pos = hole;
    }
    if (put_u64s(dst, UINT64_MAX, 0, 0) != 0)
        goto io;
    rc = 0;
io:
    if (rc != 0)
        snprintf(err, errlen, "cannot compress guest RAM into %s: %s", dst_path, why ? why : strerror(errno));
    if (close(dst) != 0 && rc == 0) {
        snprintf(err, errlen, "cannot write %s: %s", dst_path, strerror(errno));
        rc = -1;
    }
    if (rc != 0)
        unlink(dst_path);
    ZSTD_freeCCtx(cctx);
    free(in);
    free(out);
    return rc;
}

static bool all_zero(const char *p, size_t n)
{
    static const char zero[PAGE];
    return memcmp(p, zero, n) == 0;
}

/* Writes the frames of src (after the header) into dst, leaving zero pages
 * as holes. */
static int unpack(int src, int dst, uint64_t size, const char *what, char *err, size_t errlen)
{
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    char *in = xmalloc(ZSTD_compressBound(CHUNK)), *out = xmalloc(CHUNK);
    int rc = -1;
    for (;;) {
        uint64_t rec[3];
        if (read_all(src, rec, sizeof(rec)) != 0) {
            snprintf(err, errlen, "%s is truncated", what);
            break;
        }
        if (rec[0] == UINT64_MAX) {
            rc = 0;
            break;
        }
        if (rec[1] > CHUNK || rec[2] > ZSTD_compressBound(CHUNK) || rec[0] > size || rec[1] > size - rec[0]) {
            snprintf(err, errlen, "%s is corrupt (a record of %llu bytes at %llu)", what, (unsigned long long)rec[1],
                     (unsigned long long)rec[0]);
            break;
        }
        if (read_all(src, in, rec[2]) != 0) {
            snprintf(err, errlen, "%s is truncated", what);
            break;
        }
        size_t n = ZSTD_decompressDCtx(dctx, out, CHUNK, in, rec[2]);
        if (ZSTD_isError(n) || n != rec[1]) {
            snprintf(err, errlen, "%s is corrupt: %s", what,
                     ZSTD_isError(n) ? ZSTD_getErrorName(n) : "a frame has the wrong length");
            break;
        }
        bool failed = false;
        for (size_t p = 0; p < n && !failed; p += PAGE) {
            size_t len = n - p < PAGE ? n - p : PAGE;
            if (!all_zero(out + p, len) && pwrite(dst, out + p, len, (off_t)(rec[0] + p)) != (ssize_t)len)
                failed = true;
        }
        if (failed) {
            snprintf(err, errlen, "cannot unpack %s: %s", what, strerror(errno));
            break;
        }
    }
    ZSTD_freeDCtx(dctx);
    free(in);
    free(out);
    return rc;
}

static char *unpacked_dir(void)
{
    struct stat st;
    const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
                           ? "/dev/shm"
                           : (getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return xasprintf("%s/provium-ram-%u", base, (unsigned)getuid());
}

/* The identity of one version of a compressed RAM file. */
static char *zst_identity(const struct stat *st)
{
    return xasprintf("%llu:%llu:%llu:%lld.%09ld", (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
                     (unsigned long long)st->st_size, (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
}

typedef struct {
    char *path;
    time_t mtime;
    int64_t bytes;
} unpacked_copy;

static int by_mtime(const void *a, const void *b)
{
    const unpacked_copy *x = a, *y = b;
    return x->mtime < y->mtime ? -1 : x->mtime > y->mtime;
}

static void drop_copy(const char *path)
{
    char *src = xasprintf("%.*s.src", (int)(strlen(path) - 4), path);
    unlink(path);
    unlink(src);
    free(src);
}

/* Removes unpacked copies whose compressed file is gone or changed (a
 * snapshot directory removed, a fixture evicted or rebuilt) or that nobody
 * restored for a while, then the least recently restored ones while all of
 * them take more than UNPACKED_MAX_BYTES (removing a copy a VM runs on is
 * harmless: the VM keeps its mapping). Each copy NAME.ram has NAME.src beside
 * it: the identity of its source and its path. */
static void drop_stale(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    time_t now = time(NULL);
    unpacked_copy *keep = NULL;
    size_t nkeep = 0;
    int64_t total = 0;
    while (d && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 5 || strcmp(e->d_name + len - 4, ".ram") != 0)
            continue;
        char *p = xasprintf("%s/%s", dir, e->d_name);
        char *src = xasprintf("%.*s.src", (int)(strlen(p) - 4), p);
        struct stat st, zs;
        size_t n = 0;
        char *rec = read_whole_file(src, &n);
        char *nl = rec ? memchr(rec, '\n', n) : NULL;
        bool stale = lstat(p, &st) != 0 || now - st.st_mtime > UNPACKED_MAX_IDLE_S || !nl;
        if (!stale) {
            *nl = 0;
            char *zpath = xasprintf("%.*s", (int)(n - (size_t)(nl + 1 - rec)), nl + 1);
            char *id = stat(zpath, &zs) == 0 ? zst_identity(&zs) : NULL;
            stale = !id || strcmp(id, rec) != 0;
            free(id);
            free(zpath);
        }
        if (stale) {
            drop_copy(p);
            free(p);
        } else {
            keep = xrealloc(keep, (nkeep + 1) * sizeof(*keep));
            keep[nkeep++] = (unpacked_copy){p, st.st_mtime, (int64_t)st.st_blocks * 512};
            total += (int64_t)st.st_blocks * 512;
        }
        free(rec);
        free(src);
    }
    if (d)
        closedir(d);
    qsort(keep, nkeep, sizeof(*keep), by_mtime);
    for (size_t i = 0; i < nkeep; i++) {
        if (total > UNPACKED_MAX_BYTES) {
            drop_copy(keep[i].path);
            total -= keep[i].bytes;
        }
        free(keep[i].path);
    }
    free(keep);
}

char *ram_unpacked(const char *zst_path, char *err, size_t errlen)
{
    int src = open(zst_path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (src < 0 || fstat(src, &st) != 0) {
        snprintf(err, errlen, "cannot open %s: %s", zst_path, strerror(errno));
        if (src >= 0)
            close(src);
        return NULL;
    }
    /* one unpacked copy per version of the compressed file */
    char *id = zst_identity(&st);
    char hex[65];
    sha256_hex(id, strlen(id), hex);
    char *dir = unpacked_dir();
    char *path = xasprintf("%s/%.32s.ram", dir, hex);
    if (file_exists(path)) {
        /* in use: keep it from being dropped as idle */
        utimensat(AT_FDCWD, path, NULL, 0);
        close(src);
        free(dir);
        free(id);
        return path;
    }
    char *tmp = NULL;
    int dst = -1, rc = -1;
    char magic[8];
    uint64_t size = 0;
    if (mkdir_p(dir, 0700) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        goto out;
    }
    drop_stale(dir);
    if (read_all(src, magic, 8) != 0 || memcmp(magic, MAGIC, 8) != 0 || read_all(src, &size, 8) != 0) {
        snprintf(err, errlen, "%s is not a compressed RAM file", zst_path);
        goto out;
    }
    tmp = xasprintf("%s.%d.tmp", path, (int)getpid());
    dst = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (dst < 0 || ftruncate(dst, (off_t)size) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (unpack(src, dst, size, zst_path, err, errlen) != 0)
        goto out;
    char *abs = realpath(zst_path, NULL);
    char *rec = xasprintf("%s\n%s", id, abs ? abs : zst_path);
    char *src_rec = xasprintf("%s/%.32s.src", dir, hex);
    free(abs);
    /* the record first: a copy without one is removed as stale */
    int wrc = write_whole_file(src_rec, rec, strlen(rec), 0600);
    free(rec);
    free(src_rec);
    int crc = close(dst);
    if (wrc != 0 || crc != 0 || rename(tmp, path) != 0) {
        dst = -1;
        snprintf(err, errlen, "cannot install %s: %s", path, strerror(errno));
        goto out;
    }
    dst = -1;
    rc = 0;
out:
    if (dst >= 0)
        close(dst);
    if (rc != 0 && tmp)
        unlink(tmp);
    close(src);
    free(tmp);
    free(dir);
    free(id);
    if (rc != 0) {
        free(path);
        return NULL;
    }
    return path;
}

int ram_copy_into(const char *src_path, int dst, char *err, size_t errlen)
{
    int src = open(src_path, O_RDONLY | O_CLOEXEC);
    if (src < 0) {
        snprintf(err, errlen, "cannot open the saved guest RAM %s: %s", src_path, strerror(errno));
        return -1;
    }
    struct stat st;
    int rc = fstat(src, &st);
    char *buf = xmalloc(CHUNK);
    for (off_t pos = 0; rc == 0 && pos < st.st_size;) {
        off_t data = lseek(src, pos, SEEK_DATA);
        if (data < 0)
            break; /* ENXIO: only holes remain */
        off_t hole = lseek(src, data, SEEK_HOLE);
        if (hole < 0)
            hole = st.st_size;
        for (off_t off = data; rc == 0 && off < hole;) {
            size_t want = (size_t)(hole - off) < CHUNK ? (size_t)(hole - off) : CHUNK;
            ssize_t n = pread(src, buf, want, off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0 || pwrite(dst, buf, (size_t)n, off) != n)
                rc = -1;
            else
                off += n;
        }
        pos = hole;
    }
    if (rc != 0)
        snprintf(err, errlen, "cannot copy the saved guest RAM %s: %s", src_path, strerror(errno));
    free(buf);
    close(src);
    return rc;
}
