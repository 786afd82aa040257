#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void oom(void)
{
    fputs("provium: out of memory\n", stderr);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom();
    return p;
}

void *xcalloc(size_t n, size_t m)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p)
        oom();
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        oom();
    return p;
}

char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        oom();
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[1];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap2);
    va_end(ap2);
    char *s = xmalloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

void sb_init(strbuf *b) { memset(b, 0, sizeof(*b)); }

void sb_free(strbuf *b)
{
    free(b->s);
    sb_init(b);
}

void sb_add(strbuf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->s = xrealloc(b->s, cap);
        b->cap = cap;
    }
    if (n)
        memcpy(b->s + b->len, data, n);
    b->len += n;
    b->s[b->len] = 0;
}

void sb_adds(strbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

void sb_addf(strbuf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if ((size_t)n < sizeof(tmp)) {
        sb_add(b, tmp, (size_t)n);
    } else {
        char *big = xmalloc((size_t)n + 1);
        vsnprintf(big, (size_t)n + 1, fmt, ap2);
        sb_add(b, big, (size_t)n);
        free(big);
    }
    va_end(ap2);
}

char *sb_take(strbuf *b)
{
    char *s = b->s ? b->s : xstrdup("");
    sb_init(b);
    return s;
}

static _Thread_local char refused_kind[32];

const char *file_type_name(mode_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return "regular file";
    case S_IFDIR: return "directory";
    case S_IFIFO: return "FIFO";
    case S_IFCHR: return "character device";
    case S_IFBLK: return "block device";
    case S_IFSOCK: return "socket";
    case S_IFLNK: return "symbolic link";
    default: return "special file";
    }
}

const char *read_error_text(int e)
{
    static _Thread_local char text[96];
    if (e == EINVAL && refused_kind[0]) {
        snprintf(text, sizeof(text), "it is a %s, not a regular file", refused_kind);
        return text;
    }
    return strerror(e);
}

int open_regular_file(const char *path, struct stat *st)
{
    refused_kind[0] = 0;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; only regular
     * files are read (a device such as /dev/zero never ends) */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    int e = fstat(fd, st) != 0 ? errno : 0;
    if (!e && !S_ISREG(st->st_mode)) {
        snprintf(refused_kind, sizeof(refused_kind), "%s", file_type_name(st->st_mode));
        e = EINVAL;
    }
    if (e) {
        close(fd);
        errno = e;
        return -1;
    }
    fcntl(fd, F_SETFL, 0);
    return fd;
}

char *read_whole_file(const char *path, size_t *len)
{
    struct stat st;
    int fd = open_regular_file(path, &st);
    if (fd < 0)
        return NULL;
    strbuf b;
    sb_init(&b);
    char tmp[65536];
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            sb_free(&b);
            errno = e;
            return NULL;
        }
        if (n == 0)
            break;
        sb_add(&b, tmp, (size_t)n);
    }
    close(fd);
    if (len)
        *len = b.len;
    return sb_take(&b);
}

int write_whole_file(const char *path, const void *data, size_t len, int mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return close(fd);
}

int write_file_atomic(const char *path, const void *data, size_t len, int mode)
{
    char *tmp = xasprintf("%s.%d.tmp", path, (int)getpid());
    int rc = write_whole_file(tmp, data, len, mode);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -1;
    if (rc != 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
    }
    free(tmp);
    return rc;
}

bool file_exists(const char *path) { return access(path, F_OK) == 0; }

bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int mkdir_p(const char *path, int mode)
{
    char *tmp = xstrdup(path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, (mode_t)mode) != 0 && errno != EEXIST) {
                free(tmp);
                return -1;
            }
            *p = '/';
        }
    }
    int rc = mkdir(tmp, (mode_t)mode);
    free(tmp);
    return (rc == 0 || errno == EEXIST) ? 0 : -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

int rm_rf(const char *path) { return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

int64_t disk_usage(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0;
    if (S_ISREG(st.st_mode))
        return (int64_t)st.st_blocks * 512;
    if (!S_ISDIR(st.st_mode))
        return 0;
    int64_t total = 0;
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *p = xasprintf("%s/%s", path, e->d_name);
        total += disk_usage(p);
        free(p);
    }
    if (d)
        closedir(d);
    return total;
}

char *path_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return xstrdup(".");
    if (slash == path)
        return xstrdup("/");
    return strndup(path, (size_t)(slash - path));
}

char *path_join(const char *base, const char *rel)
{
    if (rel[0] == '/')
        return xstrdup(rel);
    if (rel[0] == '~' && rel[1] == '/' && getenv("HOME"))
        return xasprintf("%s/%s", getenv("HOME"), rel + 2);
    return xasprintf("%s/%s", base, rel);
}

char *path_absolute(const char *path)
{
    char *joined;
    if (path[0] == '/')
        joined = xstrdup(path);
    else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof(cwd)))
            strcpy(cwd, "/");
        joined = xasprintf("%s/%s", cwd, path);
    }
    /* collapse "//", "/./" and "/../" lexically */
    char *out = xmalloc(strlen(joined) + 2);
    size_t o = 0;
    for (char *seg = strtok(joined, "/"); seg; seg = strtok(NULL, "/")) {
        if (strcmp(seg, ".") == 0)
            continue;
        if (strcmp(seg, "..") == 0) {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
            continue;
        }
        out[o++] = '/';
        size_t l = strlen(seg);
        memcpy(out + o, seg, l);
        o += l;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = 0;
    free(joined);
    return out;
}

const char *tail_lines(const char *text, size_t len, int max_lines)
{
    if (!text || !len)
        return "";
    size_t i = len;
    if (text[i - 1] == '\n')
        i--;
    int lines = 0;
    while (i > 0) {
        if (text[i - 1] == '\n' && ++lines >= max_lines)
            break;
        i--;
    }
    return text + i;
}

int64_t parse_size(const char *s)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0 || !isfinite(v))
        return -1;
    double mult = 1;
    switch (*end) {
    case 0: break;
    case 'k': case 'K': mult = 1024.0; end++; break;
    case 'm': case 'M': mult = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: return -1;
    }
    if (*end == 'i' && mult > 1)
        end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end)
        return -1;
    double bytes = v * mult;
    if (bytes > 9.0e18)
        return -1;
    return (int64_t)bytes;
}

int64_t parse_duration_ms(const char *s)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0 || !isfinite(v))
        return -1;
    double mult;
    if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else
        return -1;
    double ms = v * mult;
    if (ms > 9.0e15)
        return -1;
    return (int64_t)(ms + 0.5);
}

const char *cache_root(void)
{
    static char *root;
    if (root)
        return root;
    const char *env = getenv("PROVIUM_CACHE_DIR");
    if (env && *env)
        root = xstrdup(env);
    else if ((env = getenv("XDG_CACHE_HOME")) && *env)
        root = xasprintf("%s/provium", env);
    else
        root = xasprintf("%s/.cache/provium", getenv("HOME") ? getenv("HOME") : "/tmp");
    return root;
}

void sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
    out[64] = 0;
}

/* First executable called name in $PATH (new string), or NULL. */
char *find_in_path(const char *name)
{
    const char *path = getenv("PATH");
    if (!path)
        return NULL;
    char *copy = xstrdup(path), *save = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        char *p = xasprintf("%s/%s", *dir ? dir : ".", name);
        if (access(p, X_OK) == 0) {
            free(copy);
            return p;
        }
        free(p);
    }
    free(copy);
    return NULL;
}

pid_t spawn_tied(char *const argv[], int in, int out, int err) { return spawn_tied_after(argv, in, out, err, NULL, NULL); }

pid_t spawn_tied_after(char *const argv[], int in, int out, int err, int (*before)(void *), void *arg)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) /* the parent died before the prctl */
        _exit(127);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    if (before && before(arg) != 0)
        _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execvp(argv[0], argv);
    dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* Closes fd keeping errno (the cause of a failed copy) intact. */
static int close_failed(int fd)
{
    int e = errno ? errno : EIO;
    close(fd);
    errno = e;
    return -1;
}

/* Copies only the allocated parts of src (guest RAM and disk overlays are
 * mostly holes). On
 * failure errno says why (ENOSPC for a full disk, never 0). */
int copy_sparse(int src, const char *dst_path, off_t size)
{
    int dst = open(dst_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (dst < 0)
        return -1;
    if (ftruncate(dst, size) != 0)
        return close_failed(dst);
    off_t pos = 0;
    while (pos < size) {
        off_t data = lseek(src, pos, SEEK_DATA);
        if (data < 0)
            break; /* ENXIO: only holes remain */
        off_t hole = lseek(src, data, SEEK_HOLE);
        if (hole < 0)
            hole = size;
        /* pread/pwrite: copy_file_range cannot cross from tmpfs to disk */
        static char buf[1 << 20];
        for (off_t off = data; off < hole;) {
            size_t want = (size_t)(hole - off) < sizeof(buf) ? (size_t)(hole - off) : sizeof(buf);
            ssize_t n = pread(src, buf, want, off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                if (n == 0)
                    errno = EIO; /* the source is shorter than it said */
                return close_failed(dst);
            }
            for (ssize_t w = 0; w < n;) {
                errno = 0;
                ssize_t k = pwrite(dst, buf + w, (size_t)(n - w), off + w);
                if (k < 0 && errno == EINTR)
                    continue;
                if (k <= 0) {
                    if (k == 0 || !errno)
                        errno = ENOSPC;
                    return close_failed(dst);
                }
                w += k;
            }
            off += n;
        }
        pos = hole;
    }
    if (close(dst) != 0)
        return -1; /* e.g. a quota or NFS error on the final flush */
    return 0;
}

int copy_file(const char *src_path, const char *dst_path)
{
    int src = open(src_path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    int rc = src >= 0 && fstat(src, &st) == 0 ? copy_sparse(src, dst_path, st.st_size) : -1;
    int e = errno;
    if (src >= 0)
        close(src);
    errno = e;
    return rc;
}
