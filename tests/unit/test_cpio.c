/*
 * test_cpio.c - tests for the newc writer in host/vmm/cpio.c.
 *
 * Builds an archive with directories (explicit and via cpio_add_parents),
 * files (empty, binary with NUL bytes, every size modulo 4, a leading-slash
 * path) and symlinks, then checks it three ways:
 *   1. our own parser: every header at a 4-byte aligned offset, "070701"
 *      magic, hex fields, namesize/filesize consistent, data aligned, unique
 *      inode numbers, trailer last and nothing after it;
 *   2. `cpio -it` lists exactly the expected names in order;
 *   3. `cpio -idm --no-absolute-filenames` extracts into a temp dir whose
 *      files have the exact bytes and modes, and whose symlinks point to the
 *      given targets.
 * Needs the GNU cpio tool in PATH. Prints "FAIL [case] ..." per failed check.
 */
#include "cpio.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* What the archive should contain, in archive order. */
enum kind { DIR_, FILE_, LINK_ };
typedef struct {
    enum kind kind;
    const char *name;   /* name as stored (no leading slash) */
    unsigned mode;      /* permission bits */
    const char *data;   /* file content or link target */
    size_t len;
} expect_entry;

#define MAXE 64
static expect_entry want[MAXE];
static size_t nwant;

static char blob[5001]; /* binary content: NULs, high bytes, odd size */
static char sizes[8][8]; /* files of 1..7 bytes, to hit every padding case */

static void want_add(enum kind k, const char *name, unsigned mode, const char *data, size_t len)
{
    if (nwant < MAXE)
        want[nwant++] = (expect_entry){k, name, mode, data, len};
}

static void build(cpio_writer *w)
{
    cpio_init(w);
    /* parents of a deep path: etc, etc/provium, etc/provium/conf.d */
    cpio_add_parents(w, "etc/provium/conf.d/x.conf");
    want_add(DIR_, "etc", 0755, NULL, 0);
    want_add(DIR_, "etc/provium", 0755, NULL, 0);
    want_add(DIR_, "etc/provium/conf.d", 0755, NULL, 0);
    cpio_add_file(w, "etc/provium/conf.d/x.conf", 0644, "key=1", 5);
    want_add(FILE_, "etc/provium/conf.d/x.conf", 0644, "key=1", 5);

    /* explicit directories with unusual modes; a leading slash is stripped */
    cpio_add_dir(w, "/secret", 0700);
    want_add(DIR_, "secret", 0700, NULL, 0);
    cpio_add_dir(w, "secret/shared", 02775);
    want_add(DIR_, "secret/shared", 02775, NULL, 0);
    /* cpio_add_dir keeps only permission bits of mode */
    cpio_add_dir(w, "masked", S_IFREG | 0751);
    want_add(DIR_, "masked", 0751, NULL, 0);

    /* empty file, binary file, sizes 1..7, a file with a leading slash */
    cpio_add_file(w, "secret/empty", 0600, NULL, 0);
    want_add(FILE_, "secret/empty", 0600, "", 0);
    for (size_t i = 0; i < sizeof(blob); i++)
        blob[i] = (char)(i % 3 == 0 ? 0 : (i * 37) & 0xFF);
    cpio_add_parents(w, "/usr/bin/blob");
    want_add(DIR_, "usr", 0755, NULL, 0);
    want_add(DIR_, "usr/bin", 0755, NULL, 0);
    cpio_add_file(w, "/usr/bin/blob", 0755, blob, sizeof(blob));
    want_add(FILE_, "usr/bin/blob", 0755, blob, sizeof(blob));
    static char names[8][32];
    for (int n = 1; n <= 7; n++) {
        for (int k = 0; k < n; k++)
            sizes[n][k] = (char)('a' + k);
        snprintf(names[n], sizeof(names[n]), "size%d%.*s", n, n, "xxxxxxx"); /* name lengths vary too */
        cpio_add_file(w, names[n], 0640, sizes[n], (size_t)n);
        want_add(FILE_, names[n], 0640, sizes[n], (size_t)n);
    }
    cpio_add_file(w, "setuid-like", 04711, "#!/bin/sh\n", 10);
    want_add(FILE_, "setuid-like", 04711, "#!/bin/sh\n", 10);

    /* symlinks: relative, absolute and dangling, odd target lengths */
    cpio_add_symlink(w, "usr/bin/link", "blob");
    want_add(LINK_, "usr/bin/link", 0777, "blob", 4);
    cpio_add_symlink(w, "etc/provium/abs", "/etc/provium/conf.d/x.conf");
    want_add(LINK_, "etc/provium/abs", 0777, "/etc/provium/conf.d/x.conf", 26);
    cpio_add_symlink(w, "dangling", "../nowhere/at/all");
    want_add(LINK_, "dangling", 0777, "../nowhere/at/all", 17);

    cpio_finish(w);
}

/* ---- our own parser ---- */

static bool hex8(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 8; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                             : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | (unsigned)d;
    }
    *out = v;
    return true;
}

static void check_structure(const char *a, size_t len)
{
    CHECKF(len % 4 == 0, "archive length %zu is not a multiple of 4", len);
    size_t off = 0, idx = 0;
    unsigned inodes[MAXE + 1];
    bool trailer = false;
    while (off < len && !trailer) {
        set_case("archive entry %zu at offset %zu", idx, off);
        if (!CHECKF(off % 4 == 0, "header at unaligned offset %zu", off))
            return;
        if (!CHECKF(off + 110 <= len, "header runs past the end"))
            return;
        if (!CHECKF(memcmp(a + off, "070701", 6) == 0, "bad magic %.6s", a + off))
            return;
        unsigned f[13];
        for (int i = 0; i < 13; i++)
            if (!CHECKF(hex8(a + off + 6 + 8 * i, &f[i]), "field %d is not 8 hex digits", i))
                return;
        unsigned ino = f[0], mode = f[1], uid = f[2], gid = f[3], nlink = f[4], mtime = f[5], fsize = f[6];
        unsigned namesize = f[11], check = f[12];
        size_t name_off = off + 110;
        if (!CHECKF(namesize >= 1 && name_off + namesize <= len, "namesize %u out of range", namesize))
            return;
        const char *name = a + name_off;
        CHECKF(name[namesize - 1] == 0 && strlen(name) == namesize - 1, "name is not NUL-terminated at namesize");
        size_t data_off = (name_off + namesize + 3) & ~(size_t)3;
        for (size_t p = name_off + namesize; p < data_off && p < len; p++)
            CHECKF(a[p] == 0, "name padding byte at %zu is not NUL", p);
        CHECKF(data_off % 4 == 0, "data at unaligned offset %zu", data_off);
        if (!CHECKF(data_off + fsize <= len, "filesize %u runs past the end", fsize))
            return;
        size_t next = (data_off + fsize + 3) & ~(size_t)3;
        for (size_t p = data_off + fsize; p < next && p < len; p++)
            CHECKF(a[p] == 0, "data padding byte at %zu is not NUL", p);
        CHECKF(uid == 0 && gid == 0 && mtime == 0 && check == 0, "uid/gid/mtime/check not zero");
        for (int i = 7; i <= 10; i++)
            CHECKF(f[i] == 0, "device field %d is %u", i, f[i]);
        if (strcmp(name, "TRAILER!!!") == 0) {
            trailer = true;
            CHECKF(fsize == 0, "trailer has data");
            CHECKF(next == len, "%zu bytes after the trailer", len - next);
        } else if (CHECKF(idx < nwant, "unexpected extra entry \"%s\"", name)) {
            const expect_entry *e = &want[idx];
            set_case("archive entry %zu \"%s\"", idx, e->name);
            CHECKF(strcmp(name, e->name) == 0, "name \"%s\"", name);
            unsigned type = e->kind == DIR_ ? S_IFDIR : e->kind == FILE_ ? S_IFREG : S_IFLNK;
            CHECKF(mode == (type | e->mode), "mode %o, expected %o", mode, type | e->mode);
            CHECKF(nlink == (e->kind == DIR_ ? 2u : 1u), "nlink %u", nlink);
            if (e->kind == DIR_)
                CHECKF(fsize == 0, "directory with filesize %u", fsize);
            else
                CHECKF(fsize == e->len && memcmp(a + data_off, e->data, e->len) == 0, "data differs (size %u vs %zu)",
                       fsize, e->len);
            for (size_t i = 0; i < idx; i++)
                CHECKF(inodes[i] != ino, "inode %u reused (entry %zu)", ino, i);
            inodes[idx] = ino;
            CHECKF(ino != 0, "inode 0");
        }
        idx++;
        off = next;
    }
    set_case("archive structure");
    CHECKF(trailer, "no TRAILER!!! entry");
    CHECKF(idx == nwant + 1, "%zu entries, expected %zu plus the trailer", idx, nwant);
}

/* ---- the real cpio tool ---- */

static int run_sh(const char *cmd)
{
    int st = system(cmd);
    return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void check_listing(const char *archive, const char *tmp)
{
    set_case("cpio -it");
    char cmd[PATH_MAX * 3], out[PATH_MAX], errf[PATH_MAX];
    snprintf(out, sizeof(out), "%s/list.txt", tmp);
    snprintf(errf, sizeof(errf), "%s/list.err", tmp);
    snprintf(cmd, sizeof(cmd), "cpio -it --quiet < '%s' > '%s' 2> '%s'", archive, out, errf);
    CHECKF(run_sh(cmd) == 0, "`%s` failed", cmd);
    size_t len = 0, elen = 0;
    char *list = read_whole_file(out, &len);
    char *errs = read_whole_file(errf, &elen);
    CHECKF(errs && elen == 0, "cpio complained: %s", errs ? errs : "(no stderr file)");
    strbuf expect;
    sb_init(&expect);
    for (size_t i = 0; i < nwant; i++)
        sb_addf(&expect, "%s\n", want[i].name);
    CHECKF(list && strcmp(list, expect.s) == 0, "listing differs.\n--- got:\n%s--- expected:\n%s", list ? list : "",
           expect.s);
    sb_free(&expect);
    free(list);
    free(errs);

    /* the verbose listing shows the types and modes cpio decoded */
    set_case("cpio -itv types and modes");
    snprintf(cmd, sizeof(cmd), "cpio -itv --quiet < '%s' > '%s' 2> '%s'", archive, out, errf);
    CHECKF(run_sh(cmd) == 0, "`%s` failed", cmd);
    list = read_whole_file(out, &len);
    size_t i = 0;
    for (char *line = list ? strtok(list, "\n") : NULL; line && i < nwant; line = strtok(NULL, "\n"), i++) {
        char want_perm[11];
        const expect_entry *e = &want[i];
        want_perm[0] = e->kind == DIR_ ? 'd' : e->kind == FILE_ ? '-' : 'l';
        static const char rwx[] = "rwxrwxrwx";
        for (int b = 0; b < 9; b++)
            want_perm[1 + b] = (e->mode & (0400u >> b)) ? rwx[b] : '-';
        if (e->mode & 04000)
            want_perm[3] = (e->mode & 0100) ? 's' : 'S';
        if (e->mode & 02000)
            want_perm[6] = (e->mode & 0010) ? 's' : 'S';
        want_perm[10] = 0;
        CHECKF(strncmp(line, want_perm, 10) == 0, "entry %s: listed as \"%.10s\", expected \"%s\"", e->name, line,
               want_perm);
        if (e->kind == LINK_) {
            char arrow[300];
            snprintf(arrow, sizeof(arrow), "%s -> %.*s", e->name, (int)e->len, e->data);
            CHECKF(strstr(line, arrow) != NULL, "symlink line \"%s\" lacks \"%s\"", line, arrow);
        }
    }
    CHECKF(i == nwant, "verbose listing has %zu lines, expected %zu", i, nwant);
    free(list);
}

static void check_extract(const char *archive, const char *tmp)
{
    set_case("cpio -idm --no-absolute-filenames");
    char dest[PATH_MAX], cmd[PATH_MAX * 4], errf[PATH_MAX];
    snprintf(dest, sizeof(dest), "%s/root", tmp);
    snprintf(errf, sizeof(errf), "%s/extract.err", tmp);
    CHECK_EQ_INT(mkdir(dest, 0755), 0);
    snprintf(cmd, sizeof(cmd), "cd '%s' && cpio -idm --no-absolute-filenames --quiet < '%s' 2> '%s'", dest, archive,
             errf);
    CHECKF(run_sh(cmd) == 0, "`%s` failed", cmd);
    size_t elen = 0;
    char *errs = read_whole_file(errf, &elen);
    CHECKF(errs && elen == 0, "cpio complained: %s", errs ? errs : "(no stderr file)");
    free(errs);
    for (size_t i = 0; i < nwant; i++) {
        const expect_entry *e = &want[i];
        set_case("extracted \"%s\"", e->name);
        char path[PATH_MAX * 2];
        snprintf(path, sizeof(path), "%s/%s", dest, e->name);
        struct stat st;
        if (!CHECKF(lstat(path, &st) == 0, "lstat: %s", strerror(errno)))
            continue;
        if (e->kind == DIR_) {
            CHECKF(S_ISDIR(st.st_mode), "not a directory (mode %o)", st.st_mode);
            CHECKF((st.st_mode & 07777) == e->mode, "mode %o, expected %o", st.st_mode & 07777, e->mode);
        } else if (e->kind == FILE_) {
            CHECKF(S_ISREG(st.st_mode), "not a regular file (mode %o)", st.st_mode);
            CHECKF((st.st_mode & 07777) == e->mode, "mode %o, expected %o", st.st_mode & 07777, e->mode);
            CHECKF(st.st_mtime == 0, "mtime %lld, expected 0 (reproducible archives)", (long long)st.st_mtime);
            size_t len = 0;
            char *got = read_whole_file(path, &len);
            CHECKF(got && len == e->len && memcmp(got, e->data, len) == 0, "content differs (%zu bytes vs %zu)", len,
                   e->len);
            free(got);
        } else {
            CHECKF(S_ISLNK(st.st_mode), "not a symlink (mode %o)", st.st_mode);
            char target[PATH_MAX];
            ssize_t n = readlink(path, target, sizeof(target) - 1);
            CHECKF(n >= 0 && (size_t)n == e->len && memcmp(target, e->data, e->len) == 0,
                   "link target \"%.*s\", expected \"%.*s\"", n < 0 ? 0 : (int)n, target, (int)e->len, e->data);
        }
    }
    /* nothing beyond what was listed */
    set_case("extracted tree has no extra entries");
    char out[PATH_MAX];
    snprintf(out, sizeof(out), "%s/find.txt", tmp);
    snprintf(cmd, sizeof(cmd), "cd '%s' && find . -mindepth 1 | wc -l > '%s'", dest, out);
    CHECK_EQ_INT(run_sh(cmd), 0);
    char *count = read_whole_file(out, NULL);
    CHECKF(count && (size_t)atol(count) == nwant, "%s entries on disk, expected %zu", count ? count : "?", nwant);
    free(count);
}

TEST(small_cases)
{
    set_case("empty archive is only a trailer");
    cpio_writer w;
    cpio_init(&w);
    cpio_finish(&w);
    CHECKF(w.out.len == 124, "length %zu, expected 110 + 11 + pad = 124", w.out.len);
    CHECK(w.out.len >= 110 + 11 && memcmp(w.out.s, "070701", 6) == 0 && strcmp(w.out.s + 110, "TRAILER!!!") == 0);
    cpio_free(&w);

    set_case("cpio_add_parents of a path without directories adds nothing");
    cpio_init(&w);
    cpio_add_parents(&w, "file");
    CHECK_EQ_INT(w.out.len, 0);
    cpio_add_parents(&w, "/file");
    CHECK_EQ_INT(w.out.len, 0);
    cpio_add_parents(&w, "a/b");
    CHECK(w.out.len > 0 && strcmp(w.out.s + 110, "a") == 0);
    size_t one = w.out.len;
    CHECKF(one == 112, "one dir entry of name \"a\" is %zu bytes, expected 112", one);
    cpio_free(&w);
}

/* Names of the directory entries of an archive made by our writer, joined by ' '. */
static void dir_names(const cpio_writer *w, char *out, size_t outlen)
{
    out[0] = 0;
    for (size_t off = 0; off + 110 <= w->out.len;) {
        unsigned mode, fsize, nsize;
        if (!hex8(w->out.s + off + 14, &mode) || !hex8(w->out.s + off + 54, &fsize) ||
            !hex8(w->out.s + off + 94, &nsize))
            return;
        const char *name = w->out.s + off + 110;
        if ((mode & S_IFMT) == S_IFDIR)
            snprintf(out + strlen(out), outlen - strlen(out), "%s%s", out[0] ? " " : "", name);
        off = (off + 110 + nsize + 3) & ~3u;
        off = (off + fsize + 3) & ~3u;
    }
}

/* Parents that the base initramfs already has are not re-added: the kernel
 * would apply the entry's 0755/root to /tmp (1777) or /home/user (uid 1000). */
static void check_known_dirs(const char *tmp)
{
    set_case("cpio_know_dirs: GNU cpio archives, concatenated");
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "cd %s && mkdir -p stage/tmp stage/home/user stage/etc && cd stage && "
             "find . ! -path ./home/user | LC_ALL=C sort | cpio --quiet -o -H newc > ../base.cpio && "
             "echo ./home/user | cpio --quiet -o -H newc >> ../base.cpio && gzip -c ../base.cpio > ../base.cpio.gz",
             tmp);
    if (!CHECKF(run_sh(cmd) == 0, "`%s` failed", cmd))
        return;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/base.cpio", tmp);
    size_t len;
    char *base = read_whole_file(path, &len);
    if (!CHECK(base != NULL))
        return;
    cpio_writer w;
    cpio_init(&w);
    cpio_know_dirs(&w, base, len);
    cpio_add_parents(&w, "/tmp/a");
    cpio_add_parents(&w, "/home/user/.profile");
    cpio_add_parents(&w, "etc/x.conf");
    cpio_add_parents(&w, "/srv/data/one");
    cpio_add_parents(&w, "/srv/data/two");
    cpio_add_parents(&w, "/home/other/f");
    char names[512];
    dir_names(&w, names, sizeof(names));
    CHECKF(strcmp(names, "srv srv/data home/other") == 0, "parents added: \"%s\"", names);
    cpio_free(&w);
    free(base);

    set_case("cpio_know_dirs: a compressed base is not parsed, every parent is added");
    snprintf(path, sizeof(path), "%s/base.cpio.gz", tmp);
    base = read_whole_file(path, &len);
    if (!CHECK(base != NULL))
        return;
    cpio_init(&w);
    cpio_know_dirs(&w, base, len);
    cpio_add_parents(&w, "/tmp/a");
    cpio_add_parents(&w, "/tmp/b");
    dir_names(&w, names, sizeof(names));
    CHECKF(strcmp(names, "tmp") == 0, "parents added: \"%s\"", names);
    cpio_free(&w);
    free(base);
}

/* The archive build() makes, and the temporary directory the cases extract
 * it into: made once by make_archive, removed by remove_archive. */
static char tmp[] = "/tmp/provium-test-cpio-XXXXXX";
static char archive[PATH_MAX];
static cpio_writer built;

static bool make_archive(void)
{
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return false;
    }
    umask(022);
    build(&built);
    snprintf(archive, sizeof(archive), "%s/test.cpio", tmp);
    set_case("write %s", archive);
    return CHECK_EQ_INT(write_whole_file(archive, built.out.s, built.out.len, 0644), 0);
}

static void remove_archive(void)
{
    cpio_free(&built);
    rm_rf(tmp);
}

TEST(structure) { check_structure(built.out.s, built.out.len); }
TEST(listing) { check_listing(archive, tmp); }
TEST(extract) { check_extract(archive, tmp); }
TEST(known_dirs) { check_known_dirs(tmp); }

int main(int argc, char **argv) { return check_main(argc, argv, make_archive, remove_archive); }
