/* Small host-side helpers: time, growable strings, files, sizes. */
#ifndef PROVIUM_UTIL_H
#define PROVIUM_UTIL_H
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The size of every buffer an error message is written into: one size, so
 * a message that fits one caller fits them all (a Lua traceback, a path and
 * the cause, and the console lines a boot error quotes, can run long; 8 KiB
 * holds them without truncation). Inner "why" buffers that are quoted into
 * one of these may be smaller. */
#define PV_ERR_MAX 8192

int64_t now_ms(void);
double now_s(void);
void sleep_ms(int ms);

typedef struct {
    char *s;
    size_t len, cap;
} strbuf;

void sb_init(strbuf *b);
void sb_free(strbuf *b);
void sb_add(strbuf *b, const void *data, size_t n);
void sb_adds(strbuf *b, const char *s);
void sb_addf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Returns the string and leaves b empty; caller frees. */
char *sb_take(strbuf *b);

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reads a whole regular file; NULL with errno set on failure. Anything else
 * (a FIFO, a device, a directory) is refused with EINVAL: read_error_text
 * then says what it was. */
char *read_whole_file(const char *path, size_t *len);
/* Opens a regular file for reading (blocking descriptor, O_CLOEXEC) and
 * fills *st; -1 with errno set otherwise, refusing other kinds as above. */
struct stat;
int open_regular_file(const char *path, struct stat *st);
const char *read_error_text(int e);
const char *file_type_name(mode_t mode);
int write_whole_file(const char *path, const void *data, size_t len, int mode);
/* Like write_whole_file, through a temporary file renamed over path, so a
 * concurrent reader sees the old file or the new one, never half of one. */
int write_file_atomic(const char *path, const void *data, size_t len, int mode);
/* Copies the allocated parts of src (size bytes) into a new file dst_path
 * (mode 0600), leaving holes as holes; on failure errno says why. */
int copy_sparse(int src, const char *dst_path, off_t size);
/* The same for the file at src_path. */
int copy_file(const char *src_path, const char *dst_path);
bool file_exists(const char *path);
bool is_dir(const char *path);
int mkdir_p(const char *path, int mode);
int rm_rf(const char *path);
/* Bytes the regular files at or under path take on disk (st_blocks, so
 * holes cost nothing); symlinks are not followed. 0 when path is missing. */
int64_t disk_usage(const char *path);
/* dirname of path as a new string */
char *path_dirname(const char *path);
/* base joined with rel unless rel is absolute; new string */
char *path_join(const char *base, const char *rel);
/* Absolute, normalised form of path (need not exist); new string. */
char *path_absolute(const char *path);

/* Last max_lines lines of text (pointer into text). */
const char *tail_lines(const char *text, size_t len, int max_lines);

/* "512M", "2G", "1024" (bytes) -> bytes; -1 on malformed input. */
int64_t parse_size(const char *s);
/* "500ms", "30s", "10m", "2h", "1.5" (seconds) -> milliseconds; -1 on error. */
int64_t parse_duration_ms(const char *s);

/* The cache root: $PROVIUM_CACHE_DIR, else $XDG_CACHE_HOME/provium, else ~/.cache/provium. */
const char *cache_root(void);

/* Lowercase hex SHA-256 of the data (65 bytes incl. NUL). */
void sha256_hex(const void *data, size_t len, char out[65]);
/* Forks and execs argv[0] from $PATH with in/out/err as its fds 0/1/2 and
 * an empty signal mask. The child is tied to this process: it gets SIGKILL
 * when this process dies (PR_SET_PDEATHSIG), so it can never outlive it.
 * Returns the pid, or -1 with errno set when fork fails; an exec failure
 * makes the child print "cannot run NAME: why" on err and exit 127. */
pid_t spawn_tied(char *const argv[], int in, int out, int err);
/* spawn_tied that runs before(arg) in the child first; it returning
 * non-zero ends the child with status 127 instead of the exec. */
pid_t spawn_tied_after(char *const argv[], int in, int out, int err, int (*before)(void *), void *arg);

/* The first executable file called name in $PATH (new string), or NULL. */
char *find_in_path(const char *name);
#endif
