/* Which files run, and the state that later selections read.
 *
 * Before a run: --rerun-failed keeps the files that failed last time in
 * this project, --since those modified after a file, --shard K/N one
 * deterministic slice balanced by recorded durations. Then a pre-pass
 * lists each file (in list mode, VMs inert) when --filter, --tag or
 * --tag-meta select tests inside files, and deselects the files in which
 * the selection keeps no test; a file whose path matches --filter runs
 * whole. After a run: the rerun state and the timings file are updated. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ci.h"
#include "run.h"

const char *shown_path(const char *path)
{
    static char cwd[4096];
    static size_t cwdlen = (size_t)-1;
    if (cwdlen == (size_t)-1)
        cwdlen = getcwd(cwd, sizeof(cwd)) ? strlen(cwd) : 0;
    if (cwdlen && strncmp(path, cwd, cwdlen) == 0 && path[cwdlen] == '/')
        return path + cwdlen + 1;
    return path;
}

char *rerun_state_path(const pv_config *cfg)
{
    const char *env = getenv("PROVIUM_RERUN_STATE");
    if (env && *env)
        return xstrdup(env);
    /* outside the fixture cache: `fixture clean` leaves it alone */
    return project_state_path(cfg, "rerun");
}

static json_t *rerun_load(const pv_config *cfg)
{
    char *p = rerun_state_path(cfg);
    json_error_t je;
    json_t *st = json_load_file(p, 0, &je);
    free(p);
    json_t *failed = json_object_get(st, "failed");
    if (!json_is_array(failed)) {
        json_decref(st);
        return NULL;
    }
    json_incref(failed);
    json_decref(st);
    return failed;
}

static bool in_array(json_t *a, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (json_string_value(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

int runner_select_files(const pv_config *cfg, file_list *files, const run_opts *o, const char **notice)
{
    *notice = NULL;
    json_t *failed = NULL;
    if (o->rerun_failed && !o->watch) {
        failed = rerun_load(cfg);
        if (!failed || json_array_size(failed) == 0) {
            *notice = failed ? "--rerun-failed: the previous runs left no failed files; nothing to re-run."
                             : "--rerun-failed: no prior failure state for this project; nothing to re-run.";
            json_decref(failed);
            for (size_t i = 0; i < files->n; i++)
                free(files->paths[i]);
            files->n = 0;
            return 0;
        }
    }
    struct stat ref;
    if (o->since && stat(o->since, &ref) != 0) {
        fprintf(stderr, "provium: --since %s: %s\n", o->since, strerror(errno));
        json_decref(failed);
        return 2;
    }
    size_t keep = 0;
    bool *in_shard = NULL;
    if (o->shard_n) {
        char err[PV_ERR_MAX];
        in_shard = xcalloc(files->n ? files->n : 1, sizeof(bool));
        if (shard_select(cfg, o->timings_path, files->paths, files->n, o->shard_k, o->shard_n, in_shard, err,
                         sizeof(err)) != 0) {
            fprintf(stderr, "provium: --shard %d/%d: %s\n", o->shard_k, o->shard_n, err);
            free(in_shard);
            json_decref(failed);
            return 2;
        }
    }
    for (size_t i = 0; i < files->n; i++) {
        char *p = files->paths[i];
        bool ok = true;
        if (failed && !in_array(failed, p))
            ok = false;
        struct stat st;
        if (ok && o->since && stat(p, &st) == 0 &&
            !(st.st_mtim.tv_sec > ref.st_mtim.tv_sec ||
              (st.st_mtim.tv_sec == ref.st_mtim.tv_sec && st.st_mtim.tv_nsec > ref.st_mtim.tv_nsec)))
            ok = false;
        if (ok && in_shard)
            ok = in_shard[i];
        if (ok)
            files->paths[keep++] = p;
        else
            free(p);
    }
    files->n = keep;
    free(in_shard);
    json_decref(failed);
    return 0;
}

/* The rerun state after a run: earlier failures of files that did not run
 * this time, plus this run's failures. A clean run of everything empties it. */
void rerun_save(const pv_config *cfg, const file_run *runs, size_t n)
{
    json_t *prev = rerun_load(cfg);
    json_t *out = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(prev, i, v)
    {
        const char *p = json_string_value(v);
        bool ran = false;
        for (size_t k = 0; k < n && p && !ran; k++)
            ran = runs[k].phase == F_DONE && strcmp(runs[k].path, p) == 0;
        if (p && !ran)
            json_array_append(out, v);
    }
    for (size_t k = 0; k < n; k++)
        if (runs[k].phase == F_DONE && runs[k].failed)
            json_array_append_new(out, json_string(runs[k].path));
    json_decref(prev);
    char *path = rerun_state_path(cfg);
    char *dir = path_dirname(path);
    mkdir_p(dir, 0755);
    json_t *doc = json_pack("{s:s,s:o}", "project", cfg->dir ? cfg->dir : "/", "failed", out);
    char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
    if (json_dump_file(doc, tmp, JSON_INDENT(1)) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "provium: cannot write the rerun state %s: %s\n", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    json_decref(doc);
    free(dir);
    free(path);
}

/* --filter / --tag / --tag-meta: which files have any test the selection
 * keeps. Files whose path matches --filter run whole. */
bool selection_by_test(const run_opts *o)
{
    const test_select *s = &o->sel;
    return o->filter || s->ntags || s->nno_tags || s->ntag_meta || s->nno_tag_meta;
}

/* Any per-test selection left in s (the name filter or a tag choice). */
static bool selects_tests(const test_select *s)
{
    return s->filter || s->ntags || s->nno_tags || s->ntag_meta || s->nno_tag_meta;
}

char *selection_text(const run_opts *o)
{
    strbuf b;
    sb_init(&b);
    const test_select *s = &o->sel;
    if (o->filter)
        sb_addf(&b, " --filter %s", o->filter);
    for (size_t i = 0; i < s->ntags; i++)
        sb_addf(&b, " --tag %s", s->tags[i]);
    for (size_t i = 0; i < s->nno_tags; i++)
        sb_addf(&b, " --no-tag %s", s->no_tags[i]);
    for (size_t i = 0; i < s->ntag_meta; i++)
        sb_addf(&b, " --tag-meta %s", s->tag_meta[i]);
    for (size_t i = 0; i < s->nno_tag_meta; i++)
        sb_addf(&b, " --no-tag-meta %s", s->no_tag_meta[i]);
    char *text = xstrdup(b.s ? b.s + 1 : "the selection");
    sb_free(&b);
    return text;
}

/* Lists a file to learn whether the selection keeps any of its tests; a
 * file that cannot be listed runs (its error is then reported). */
static bool keeps_none(const pv_config *cfg, const file_run *f, int *ntests)
{
    char *js = NULL;
    if (list_file(cfg, f->path, f->shown, &f->sel, &js) != 0)
        return false; /* cannot tell: run it */
    json_error_t je;
    json_t *r = json_loads(js, 0, &je);
    free(js);
    bool any = false;
    size_t k;
    json_t *tc;
    json_array_foreach(json_object_get(r, "tests"), k, tc)
    {
        any = any || json_is_true(json_object_get(tc, "selected"));
    }
    bool broken = json_is_string(json_object_get(r, "chunk_error"));
    *ntests = (int)json_array_size(json_object_get(r, "tests"));
    json_decref(r);
    return !any && !broken;
}

void prepass(const pv_config *cfg, file_run *runs, size_t n, const run_opts *o, size_t *deselected,
             int *tests_deselected)
{
    for (size_t i = 0; i < n; i++) {
        file_run *f = &runs[i];
        f->sel = o->sel;
        if (o->filter && strstr(f->shown, o->filter))
            f->sel.filter = NULL; /* the path matched: the whole file runs */
        if (!selection_by_test(o) || !selects_tests(&f->sel))
            continue;
        int ntests = 0;
        if (keeps_none(cfg, f, &ntests)) {
            f->phase = F_SKIPPED;
            (*deselected)++;
            *tests_deselected += ntests;
            events_emit("file_deselected", json_pack("{s:s}", "path", f->shown), 0);
        }
    }
}

/* Durations of the files that ran whole (no per-test selection) go into
 * the timings file that --shard balances by. */
void record_timings(const pv_config *cfg, const file_run *runs, size_t n, const run_opts *o)
{
    char **keys = xcalloc(n, sizeof(char *));
    double *secs = xcalloc(n, sizeof(double));
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (runs[i].phase == F_DONE && !selects_tests(&runs[i].sel)) {
            keys[m] = timings_key(cfg, runs[i].path);
            secs[m++] = runs[i].elapsed;
        }
    }
    char *path = timings_path(cfg, o->timings_path), err[PV_ERR_MAX];
    if (timings_record(path, keys, secs, m, o->shard_n > 0, err, sizeof(err)) != 0)
        fprintf(stderr, "provium: %s\n", err);
    for (size_t i = 0; i < m; i++)
        free(keys[i]);
    free(keys);
    free(secs);
    free(path);
}
