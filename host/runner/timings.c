/* Recorded durations of test files: one JSON file, one entry per file,
 * merged across runs, read by --shard to balance shards by time.
 *   {"provium_timings": 1,
 *    "files": {"tests/a.test.lua": {"duration": 12.5, "updated": 1796410038}},
 *    "pending": {...}}
 * "files" is what --shard plans with. A sharded run records into "pending"
 * instead, so the shards of one plan run one after the other on one machine
 * still split the same way; the next run without --shard, and `timings
 * merge`, fold "pending" into "files". */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "../util/util.h"
#include "ci.h"

char *project_state_path(const pv_config *cfg, const char *kind)
{
    const char *project = cfg->dir ? cfg->dir : "/";
    char hex[65];
    sha256_hex(project, strlen(project), hex);
    hex[16] = 0;
    return xasprintf("%s/%s/%s.json", cache_root(), kind, hex);
}

char *timings_path(const pv_config *cfg, const char *given)
{
    return given && *given ? xstrdup(given) : project_state_path(cfg, "timings");
}

char *timings_key(const pv_config *cfg, const char *abs_path)
{
    const char *dir = cfg->dir;
    size_t len = dir ? strlen(dir) : 0;
    while (len > 1 && dir[len - 1] == '/')
        len--;
    if (len && strncmp(abs_path, dir, len) == 0 && abs_path[len] == '/')
        return xstrdup(abs_path + len + 1);
    return xstrdup(abs_path);
}

/* The "files" object of a timings document; NULL with err when the
 * document is not one. */
static bool entries_ok(json_t *entries, const char *path, char *err, size_t errlen)
{
    const char *k;
    json_t *v;
    json_object_foreach(entries, k, v)
    {
        if (!json_is_number(json_object_get(v, "duration")) || json_number_value(json_object_get(v, "duration")) < 0) {
            snprintf(err, errlen, "timings file %s: entry '%s' has no non-negative \"duration\"", path, k);
            return false;
        }
    }
    return true;
}

/* Whether doc is a timings document; err says why not. */
static bool doc_ok(json_t *doc, const char *path, char *err, size_t errlen)
{
    json_t *files = json_object_get(doc, "files"), *pending = json_object_get(doc, "pending");
    if (!json_is_object(doc) || !json_is_object(files) || (pending && !json_is_object(pending))) {
        snprintf(err, errlen, "timings file %s: not a provium timings file (no \"files\" object)", path);
        return false;
    }
    return entries_ok(files, path, err, errlen) && (!pending || entries_ok(pending, path, err, errlen));
}

/* Reads a timings document: a missing file is an empty one. */
static json_t *load_doc(const char *path, bool missing_ok, char *err, size_t errlen)
{
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    if (!doc) {
        if (missing_ok && access(path, F_OK) != 0 && errno == ENOENT)
            return json_pack("{s:i,s:{}}", "provium_timings", 1, "files");
        if (access(path, R_OK) != 0)
            snprintf(err, errlen, "timings file %s: %s", path, strerror(errno));
        else
            snprintf(err, errlen, "timings file %s: invalid JSON at line %d: %s", path, je.line, je.text);
        return NULL;
    }
    if (!doc_ok(doc, path, err, errlen)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static json_t *table;

int timings_load(const char *path, char *err, size_t errlen)
{
    json_decref(table);
    table = load_doc(path, true, err, errlen);
    return table ? 0 : -1;
}

int64_t timings_ms(const char *key)
{
    json_t *e = json_object_get(json_object_get(table, "files"), key);
    json_t *d = json_object_get(e, "duration");
    return json_is_number(d) ? (int64_t)(json_number_value(d) * 1000 + 0.5) : -1;
}

/* The newer of two entries for one path (ties: the longer, so merging is
 * order-independent). */
static bool newer(json_t *a, json_t *b)
{
    json_int_t ua = json_integer_value(json_object_get(a, "updated")),
               ub = json_integer_value(json_object_get(b, "updated"));
    if (ua != ub)
        return ua > ub;
    return json_number_value(json_object_get(a, "duration")) > json_number_value(json_object_get(b, "duration"));
}

static void merge_into(json_t *dst_files, json_t *src_files)
{
    const char *k;
    json_t *v;
    json_object_foreach(src_files, k, v)
    {
        json_t *cur = json_object_get(dst_files, k);
        if (!cur || newer(v, cur))
            json_object_set_new(dst_files, k,
                                json_pack("{s:f,s:I}", "duration", json_number_value(json_object_get(v, "duration")),
                                          "updated", json_integer_value(json_object_get(v, "updated"))));
    }
}

static char *dump(json_t *doc)
{
    return json_dumps(doc, JSON_INDENT(1) | JSON_SORT_KEYS);
}

int timings_record(const char *path, char *const *keys, const double *seconds, size_t n, bool pending, char *err,
                   size_t errlen)
{
    if (n == 0)
        return 0;
    char *dir = path_dirname(path);
    mkdir_p(dir, 0755);
    free(dir);
    char *lock_path = xasprintf("%s.lock", path);
    int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    free(lock_path);
    /* concurrent runs of one project merge instead of losing entries; the
     * wait is bounded, a run never hangs on another's lock */
    int64_t deadline = now_ms() + 10000;
    while (lock >= 0 && flock(lock, LOCK_EX | LOCK_NB) != 0 && now_ms() < deadline)
        sleep_ms(20);
    json_t *doc = load_doc(path, true, err, errlen);
    int rc = -1;
    if (doc) {
        json_t *files = json_object_get(doc, "files");
        if (!pending) { /* a run without --shard plans the next ones: fold */
            merge_into(files, json_object_get(doc, "pending"));
            json_object_del(doc, "pending");
        } else if (!json_is_object(json_object_get(doc, "pending"))) {
            json_object_set_new(doc, "pending", json_object());
        }
        json_t *dst = pending ? json_object_get(doc, "pending") : files;
        json_int_t now = (json_int_t)time(NULL);
        for (size_t i = 0; i < n; i++)
            json_object_set_new(dst, keys[i], json_pack("{s:f,s:I}", "duration", round(seconds[i] * 1000) / 1000,
                                                          "updated", now));
        char *text = dump(doc);
        char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
        rc = write_whole_file(tmp, text, strlen(text), 0644);
        if (rc == 0)
            rc = rename(tmp, path);
        if (rc != 0) {
            snprintf(err, errlen, "cannot write the timings file %s: %s", path, strerror(errno));
            unlink(tmp);
        }
        free(tmp);
        free(text);
        json_decref(doc);
    }
    if (lock >= 0)
        close(lock);
    return rc;
}

const char timings_usage[] = "usage: provium timings merge FILE... > MERGED.json\n"
                             "\n"
                             "Merges timings files (e.g. one per CI shard), their pending entries\n"
                             "included: per path the newest entry wins. A missing or malformed input\n"
                             "exits 2 naming it.\n";

int timings_cli(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "merge") != 0) {
        if (argc >= 1 && strcmp(argv[0], "-h") && strcmp(argv[0], "--help"))
            fprintf(stderr, "provium timings: unknown command '%s'\n", argv[0]);
        fputs(timings_usage, stderr);
        return 2;
    }
    if (argc < 2) {
        fputs(timings_usage, stderr);
        return 2;
    }
    json_t *out = json_pack("{s:i,s:{}}", "provium_timings", 1, "files");
    for (int i = 1; i < argc; i++) {
        char err[PV_ERR_MAX];
        json_t *doc = load_doc(argv[i], false, err, sizeof(err));
        if (!doc) {
            fprintf(stderr, "provium timings merge: %s\n", err);
            json_decref(out);
            return 2;
        }
        merge_into(json_object_get(out, "files"), json_object_get(doc, "files"));
        merge_into(json_object_get(out, "files"), json_object_get(doc, "pending"));
        json_decref(doc);
    }
    char *text = dump(out);
    printf("%s\n", text);
    free(text);
    json_decref(out);
    return fflush(stdout) == 0 ? 0 : 2;
}

/* ---------------------------------------------------------------- --shard */

static shard_summary last;
static char **last_paths;
static int64_t *last_ms;
static size_t last_n;

const shard_summary *shard_last(void) { return last.timings ? &last : NULL; }

int64_t shard_file_ms(const char *abs_path)
{
    for (size_t i = 0; i < last_n; i++)
        if (strcmp(last_paths[i], abs_path) == 0)
            return last_ms[i];
    return -1;
}

int shard_select(const pv_config *cfg, const char *timings_file, char *const *paths, size_t n, int k, int nshards,
                 bool *keep, char *err, size_t errlen)
{
    char *tp = timings_path(cfg, timings_file);
    if (timings_load(tp, err, errlen) != 0) {
        free(tp);
        return -1;
    }
    char **keys = xcalloc(n ? n : 1, sizeof(char *));
    int64_t *ms = xcalloc(n ? n : 1, sizeof(int64_t));
    int *shard_of = xcalloc(n ? n : 1, sizeof(int));
    for (size_t i = 0; i < n; i++) {
        keys[i] = timings_key(cfg, paths[i]);
        ms[i] = timings_ms(keys[i]);
    }
    shard_plan((const char *const *)keys, ms, n, nshards, shard_of);
    free(last.timings);
    memset(&last, 0, sizeof(last));
    last.timings = tp;
    for (size_t i = 0; i < last_n; i++)
        free(last_paths[i]);
    free(last_paths);
    free(last_ms);
    last_paths = xcalloc(n ? n : 1, sizeof(char *));
    last_ms = xcalloc(n ? n : 1, sizeof(int64_t));
    last_n = 0;
    for (size_t i = 0; i < n; i++) {
        keep[i] = shard_of[i] == k - 1;
        if (keep[i]) {
            last_paths[last_n] = xstrdup(paths[i]);
            last_ms[last_n++] = ms[i];
            if (ms[i] >= 0) {
                last.timed++;
                last.timed_ms += ms[i];
            } else {
                last.untimed++;
            }
        }
        free(keys[i]);
    }
    free(keys);
    free(ms);
    free(shard_of);
    return 0;
}
