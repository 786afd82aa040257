/* What a finished file's report becomes, and the run's summary.
 *
 * The child sends one JSON document (the framework's result table). Here
 * it becomes the --json object of the file (the upstream shape: a log is a
 * list of lines, message is null when absent, plus duration, started and
 * the verdict's flags), with a verdict: PASS, FAIL, ERROR (the file itself
 * raised), CRASH (no report) or TIMEOUT (with the test and what it waited
 * for). Then it is printed as text (failures always, the rest with -v),
 * as one --json line, or as TAP points. Text from the guest is escaped so
 * it cannot drive the user's terminal. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "output.h"
#include "run.h"

/* Writes guest-controlled text for a terminal: control characters (C0
 * except tab, DEL, and C1 as UTF-8) become visible \xNN escapes, so an
 * escape sequence from the guest cannot retitle, recolour or clear the
 * user's terminal. */
static void put_clean(FILE *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len; i++) {
        if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
            fprintf(out, "\\x%02X", p[i]);
        else if (p[i] == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f)
            fprintf(out, "\\u%04X", p[++i]);
        else
            fputc(p[i], out);
    }
}

static void print_indented(FILE *out, const char *text, const char *indent)
{
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        fputs(indent, out);
        /* a serial console ends its lines with \r\n: that \r is no escape */
        put_clean(out, p, len && p[len - 1] == '\r' ? len - 1 : len);
        fputc('\n', out);
        p += len + (nl ? 1 : 0);
    }
}

static char *log_tail(const file_run *f, int lines)
{
    size_t len = 0;
    char *text = read_whole_file(f->log_path, &len);
    char *tail = xstrdup(text ? tail_lines(text, len, lines) : "");
    free(text);
    return tail;
}

/* ---------------------------------------------------------------- progress */

void progress_clear(progress *pr)
{
    if (pr->shown) {
        fputs("\r\033[K", stdout);
        fflush(stdout);
        pr->shown = false;
    }
}

void progress_draw(progress *pr, size_t running, size_t done, size_t total, int failed, double elapsed)
{
    if (!pr->on)
        return;
    printf("\r\033[K[provium] %zu running, %zu/%zu done, %d failed, %.0fs", running, done, total, failed, elapsed);
    fflush(stdout);
    pr->shown = true;
}

/* ---------------------------------------------------------------- results */

static void count_status(json_t *tc, int *passed, int *failed, int *skipped)
{
    const char *st = json_string_value(json_object_get(tc, "status"));
    if (st && strcmp(st, "passed") == 0)
        (*passed)++;
    else if (st && strcmp(st, "skipped") == 0)
        (*skipped)++;
    else
        (*failed)++;
}

/* The "log" string of a test or sub-test becomes a list of lines (upstream's shape). */
static void log_to_lines(json_t *tc)
{
    const char *log = json_string_value(json_object_get(tc, "log"));
    json_t *lines = json_array();
    if (log && *log) {
        const char *p = log;
        for (;;) {
            const char *nl = strchr(p, '\n');
            json_array_append_new(lines, nl ? json_stringn(p, (size_t)(nl - p)) : json_string(p));
            if (!nl)
                break;
            p = nl + 1;
        }
    }
    json_object_set_new(tc, "log", lines);
}

/* One test or sub-test in the text output: a failure always, the rest with -v. */
static void print_case(json_t *tc, const run_opts *o, const char *indent)
{
    const char *st = json_string_value(json_object_get(tc, "status"));
    const char *name = json_string_value(json_object_get(tc, "name"));
    const char *msg = json_string_value(json_object_get(tc, "message"));
    bool is_fail = st && strcmp(st, "failed") == 0;
    if (!is_fail && !o->verbose)
        return;
    printf("%s%s ", indent, is_fail ? "FAIL" : st && strcmp(st, "skipped") == 0 ? "SKIP" : "ok  ");
    print_indented(stdout, name ? name : "?", ""); /* escapes what the guest or the test put there */
    char deeper[32];
    snprintf(deeper, sizeof(deeper), "%s    ", indent);
    if (msg)
        print_indented(stdout, msg, deeper);
    json_t *log = json_object_get(tc, "log");
    size_t k;
    json_t *l;
    if (o->verbose)
        json_array_foreach(log, k, l)
        {
            const char *line = json_string_value(l) ? json_string_value(l) : "";
            char lead[48];
            snprintf(lead, sizeof(lead), "%slog: ", deeper);
            if (*line)
                print_indented(stdout, line, lead);
            else
                printf("%s\n", lead);
        }
    const char *console = json_string_value(json_object_get(tc, "console"));
    if (is_fail && o->verbose && console && *console) {
        char bar[40];
        snprintf(bar, sizeof(bar), "%s| ", deeper);
        print_indented(stdout, console, bar);
    }
}

/* What a file came to: its counts, verdict and the reason when it has no
 * report of its own (timeout, crash). */
typedef struct {
    int passed, failed, skipped;
    const char *verdict;     /* PASS FAIL ERROR CRASH TIMEOUT */
    const char *chunk_error; /* the file's own error, in its report */
    char *extra;             /* why it has no report, or NULL */
} outcome;

/* The child's report as an object, or NULL when there is none usable. */
static json_t *load_report(const file_run *f)
{
    json_error_t je;
    json_t *r = f->report.len ? json_loadb(f->report.s, f->report.len, 0, &je) : NULL;
    if (r && !json_is_object(r)) {
        json_decref(r);
        return NULL;
    }
    /* an empty Lua table encodes as {}; the schema says tests is an array */
    if (r && !json_is_array(json_object_get(r, "tests")))
        json_object_set_new(r, "tests", json_array());
    return r;
}

static void judge(const file_run *f, json_t *r, double timeout_s, outcome *out)
{
    size_t i;
    json_t *tc;
    /* sub-tests (t:ktap, vm:kselftest) count like tests */
    json_array_foreach(r ? json_object_get(r, "tests") : NULL, i, tc)
    {
        count_status(tc, &out->passed, &out->failed, &out->skipped);
        size_t k;
        json_t *sub;
        json_array_foreach(json_object_get(tc, "subtests"), k, sub)
        {
            count_status(sub, &out->passed, &out->failed, &out->skipped);
        }
    }
    out->chunk_error = r ? json_string_value(json_object_get(r, "chunk_error")) : NULL;
    if (f->timed_out) {
        out->verdict = "TIMEOUT";
        /* which test, and what it was blocked on, if it was */
        char *in = f->current_test ? xasprintf(" in test '%s'", f->current_test) : xstrdup(" outside any test");
        char *on = f->waiting_for ? xasprintf(", waiting for %s", f->waiting_for) : xstrdup("");
        out->extra = xasprintf("timed out after %.0f s%s%s", timeout_s, in, on);
        free(in);
        free(on);
    } else if (!r) {
        out->verdict = "CRASH";
        if (WIFSIGNALED(f->wstatus))
            out->extra = xasprintf("the test process was killed by signal %d (%s)", WTERMSIG(f->wstatus),
                                   strsignal(WTERMSIG(f->wstatus)));
        else
            out->extra =
                xasprintf("the test process exited with status %d without a report", WEXITSTATUS(f->wstatus));
    } else if (out->chunk_error) {
        out->verdict = "ERROR";
    } else {
        out->verdict = out->failed ? "FAIL" : "PASS";
    }
}

/* A test or sub-test in the upstream shape: message null when absent, log a list of lines. */
static void shape_case(json_t *tc)
{
    if (!json_is_string(json_object_get(tc, "message")))
        json_object_set_new(tc, "message", json_null());
    log_to_lines(tc);
}

/* The --json object of the file: the report itself (r, changed in place)
 * with the runner's fields, or a stand-in when there is no report. */
static json_t *shape_result(const file_run *f, json_t *r, bool ok, const outcome *out)
{
    json_t *line = r ? json_incref(r) : json_object();
    json_object_set_new(line, "path", json_string(f->shown));
    json_object_set_new(line, "timeout", json_string(f->timed_out ? "timed_out" : "in_time"));
    json_object_set_new(line, "passed", json_boolean(ok));
    if (!r)
        json_object_set_new(line, "tests", json_array());
    if (out->extra && !out->chunk_error)
        json_object_set_new(line, "chunk_error", json_string(out->extra));
    if (!json_object_get(line, "chunk_error"))
        json_object_set_new(line, "chunk_error", json_null());
    if (f->timed_out)
        json_object_set_new(line, "timed_out", json_true());
    if (!r)
        json_object_set_new(line, "crashed", json_true());
    json_object_set_new(line, "duration", json_real(f->elapsed));
    json_object_set_new(line, "started", json_integer(f->started_wall / 1000000000));
    size_t i;
    json_t *tc;
    json_array_foreach(json_object_get(line, "tests"), i, tc)
    {
        shape_case(tc);
        json_t *subs = json_object_get(tc, "subtests");
        if (subs && !json_is_array(subs)) {
            json_object_del(tc, "subtests");
        } else {
            size_t k;
            json_t *sub;
            json_array_foreach(subs, k, sub)
            {
                shape_case(sub);
            }
        }
    }
    return line;
}

/* The text output of one file: its line, why it ended badly, warnings, and
 * its tests (failures always, the rest with -v). */
static void print_text(const file_run *f, const run_opts *o, json_t *r, const outcome *out)
{
    printf("%s %s (%d passed, %d failed, %d skipped) %.1fs\n", out->verdict, f->shown, out->passed, out->failed,
           out->skipped, f->elapsed);
    if (out->extra) {
        print_indented(stdout, out->extra, "    ");
        char *tail = log_tail(f, 20);
        if (*tail) {
            printf("    last output:\n");
            print_indented(stdout, tail, "    | ");
        }
        free(tail);
    }
    if (out->chunk_error)
        print_indented(stdout, out->chunk_error, "    ");
    /* a corrupt fixture cache entry was discarded and rebuilt: say so
     * here too, not only in --json */
    size_t i;
    json_t *fw;
    json_array_foreach(r ? json_object_get(r, "fixtures") : NULL, i, fw)
    {
        const char *w = json_string_value(json_object_get(fw, "warning"));
        if (w)
            print_indented(stdout, w, "    ");
    }
    json_t *tc;
    json_array_foreach(r ? json_object_get(r, "tests") : NULL, i, tc)
    {
        print_case(tc, o, "    ");
        size_t k;
        json_t *sub;
        json_array_foreach(json_object_get(tc, "subtests"), k, sub)
        {
            print_case(sub, o, "      ");
        }
    }
}

void results_file(file_run *f, const run_opts *o, totals *t, double timeout_s, int *tap_n, progress *pr)
{
    json_t *r = load_report(f);
    outcome out = {0};
    judge(f, r, timeout_s, &out);
    bool ok = strcmp(out.verdict, "PASS") == 0;
    f->failed = !ok;
    if (ok)
        t->files_passed++;
    else
        t->files_failed++;
    t->tests_passed += out.passed;
    t->tests_failed += out.failed;
    t->tests_skipped += out.skipped;
    if (r)
        t->tests_deselected += (int)json_integer_value(json_object_get(r, "deselected"));
    f->result = shape_result(f, r, ok, &out);
    if (out.extra)
        f->file_log = log_tail(f, 40);
    progress_clear(pr);
    if (o->json) {
        char *s = json_dumps(f->result, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
    } else if (o->tap) {
        *tap_n = tap_file(stdout, f->result, *tap_n);
    } else if (!(o->quiet && ok)) {
        print_text(f, o, r, &out);
    }
    fflush(stdout);
    free(out.extra);
    json_decref(r);
}

/* ---------------------------------------------------------------- the run */

void results_no_files(const run_opts *o)
{
    if (o->tap) {
        tap_begin(stdout);
        tap_end(stdout, 0);
    } else if (o->json) {
        json_t *nf = json_pack("{s:{s:s,s:s}}", "no_files", "pattern", "*.test.lua", "searched",
                               o->searched ? o->searched : ".");
        char *line = json_dumps(nf, JSON_COMPACT);
        printf("%s\n", line);
        free(line);
        json_decref(nf);
    } else if (!o->explained_empty) {
        printf("no *.test.lua files found (searched: %s)\n", o->searched ? o->searched : ".");
    }
}

void results_summary(const run_opts *o, const totals *t, size_t ran, size_t deselected, size_t not_run,
                     bool interrupted, double total_s, int tap_n)
{
    char summary[512];
    snprintf(summary, sizeof(summary), "%zu files: %d passed, %d failed; %d tests: %d passed, %d failed, %d skipped; %.1fs",
             ran, t->files_passed, t->files_failed, t->tests_passed + t->tests_failed + t->tests_skipped,
             t->tests_passed, t->tests_failed, t->tests_skipped, total_s);
    if (o->tap) {
        tap_end(stdout, tap_n);
        printf("# %s\n", summary);
    } else if (!o->json) {
        printf("\n%s\n", summary);
        if (deselected)
            printf("%zu files deselected (no test matches the selection)\n", deselected);
        if (t->tests_deselected)
            printf("%d tests deselected (not run, not counted)\n", t->tests_deselected);
        if (not_run && !interrupted)
            printf("%zu files not run (--fail-fast)\n", not_run);
    }
    fflush(stdout);
}
