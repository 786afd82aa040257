/* The HTML run report: one self-contained file (inline CSS, no scripts, no
 * external resources) built from the event stream of a run (--save-events
 * format), so `--html FILE` and `provium report EVENTS.jsonl -o FILE` make
 * the same page. Every text from the run goes through html_text(): HTML
 * metacharacters are escaped and bytes that are not UTF-8 show as \xNN. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../util/util.h"
#include "ci.h"

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (!len || len > n || (len == 2 && s[0] < 0xc2) || (len == 4 && s[0] > 0xf4))
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((len == 3 && s[0] == 0xe0 && s[1] < 0xa0) || (len == 3 && s[0] == 0xed && s[1] >= 0xa0) ||
        (len == 4 && s[0] == 0xf0 && s[1] < 0x90) || (len == 4 && s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return len;
}

static void html_text(strbuf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        size_t len = utf8_len(p + i, n - i);
        if (!len || (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
            sb_addf(b, "\\x%02X", c); /* invalid UTF-8, control bytes (console escapes) */
            i++;
            continue;
        }
        switch (c) {
        case '&': sb_adds(b, "&amp;"); break;
        case '<': sb_adds(b, "&lt;"); break;
        case '>': sb_adds(b, "&gt;"); break;
        case '"': sb_adds(b, "&quot;"); break;
        case '\'': sb_adds(b, "&#39;"); break;
        default: sb_add(b, p + i, len);
        }
        i += len;
    }
}

static void esc(strbuf *b, const char *s)
{
    if (s)
        html_text(b, s, strlen(s));
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

typedef struct {
    char *path;
    int64_t discovered, blocked, dispatched, completed;
    int64_t claim_wait, claim_got; /* a provium:claim that waited for room */
    char *status;
    int passed, failed, skipped;
} file_row;

typedef struct {
    char *file, *name, *profile;
    int64_t start, end;
    double boot_s;
    bool restored; /* from a snapshot, not a cold boot */
    char *console; /* the kept console log (--html), or NULL */
} vm_row;

typedef struct {
    json_t *events; /* array, sorted by ts */
    file_row *files;
    size_t nfiles;
    vm_row *vms;
    size_t nvms;
    int64_t t0, t1;
    size_t unreadable;
} run_data;

static file_row *file_of(run_data *r, const char *path)
{
    for (size_t i = 0; i < r->nfiles; i++)
        if (strcmp(r->files[i].path, path) == 0)
            return &r->files[i];
    r->files = xrealloc(r->files, (r->nfiles + 1) * sizeof(file_row));
    file_row *f = &r->files[r->nfiles++];
    memset(f, 0, sizeof(*f));
    f->path = xstrdup(path);
    return f;
}

static int by_ts(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "ts")),
               y = json_integer_value(json_object_get(*(json_t *const *)b, "ts"));
    return x < y ? -1 : x > y;
}

static int load_events(const char *path, run_data *r, char *err, size_t errlen)
{
    FILE *in = fopen(path, "r");
    if (!in) {
        snprintf(err, errlen, "cannot read the events %s: %s", path, strerror(errno));
        return -1;
    }
    json_t **ev = NULL;
    size_t n = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, in)) > 0) {
        json_error_t je;
        json_t *e = json_loadb(line, (size_t)len, 0, &je);
        if (!json_is_object(e) || !json_is_string(json_object_get(e, "kind")) ||
            !json_is_integer(json_object_get(e, "ts"))) {
            json_decref(e);
            if (len > 1)
                r->unreadable++;
            continue;
        }
        if (!json_is_object(json_object_get(e, "payload")))
            json_object_set_new(e, "payload", json_object());
        if (n == cap)
            ev = xrealloc(ev, (cap = cap ? 2 * cap : 256) * sizeof(json_t *));
        ev[n++] = e;
    }
    free(line);
    fclose(in);
    if (n)
        qsort(ev, n, sizeof(json_t *), by_ts); /* children's events arrive late */
    r->events = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(r->events, ev[i]);
    free(ev);
    if (!n) {
        snprintf(err, errlen, "%s holds no provium events", path);
        return -1;
    }
    return 0;
}

static void analyse(run_data *r)
{
    size_t i;
    json_t *e;
    json_array_foreach(r->events, i, e)
    {
        const char *kind = jstr(e, "kind");
        json_t *p = json_object_get(e, "payload");
        int64_t ts = json_integer_value(json_object_get(e, "ts"));
        if (!r->t0 || ts < r->t0)
            r->t0 = ts;
        if (ts > r->t1)
            r->t1 = ts;
        const char *path = jstr(p, strncmp(kind, "vm_", 3) == 0 ? "file" : "path");
        if (!*path)
            continue;
        file_row *f = file_of(r, path);
        if (!strcmp(kind, "file_discovered"))
            f->discovered = ts;
        else if (!strcmp(kind, "file_blocked") && !f->dispatched && !f->blocked)
            f->blocked = ts;
        else if (!strcmp(kind, "file_blocked") && f->dispatched && !f->claim_wait)
            f->claim_wait = ts;
        else if (!strcmp(kind, "claim_acquired") && f->claim_wait && !f->claim_got)
            f->claim_got = ts;
        else if (!strcmp(kind, "file_dispatched"))
            f->dispatched = ts;
        else if (!strcmp(kind, "file_completed")) {
            f->completed = ts;
            free(f->status);
            f->status = xstrdup(jstr(p, "status"));
        } else if (!strcmp(kind, "file_deselected")) {
            free(f->status);
            f->status = xstrdup("deselected");
        } else if (!strcmp(kind, "test_passed"))
            f->passed++;
        else if (!strcmp(kind, "test_failed"))
            f->failed++;
        else if (!strcmp(kind, "test_skipped"))
            f->skipped++;
        else if (!strcmp(kind, "vm_spawned") || !strcmp(kind, "vm_restored")) {
            bool restored = kind[3] == 'r';
            r->vms = xrealloc(r->vms, (r->nvms + 1) * sizeof(vm_row));
            double boot = json_number_value(json_object_get(p, restored ? "restore_seconds" : "boot_seconds"));
            r->vms[r->nvms++] = (vm_row){xstrdup(path), xstrdup(jstr(p, "vm_name")), xstrdup(jstr(p, "profile")),
                                         ts - (int64_t)(boot * 1e9), 0, boot, restored, NULL};
            if (r->vms[r->nvms - 1].start < r->t0)
                r->t0 = r->vms[r->nvms - 1].start;
        } else if (!strcmp(kind, "vm_shutdown")) {
            for (size_t k = r->nvms; k-- > 0;)
                if (!r->vms[k].end && !strcmp(r->vms[k].file, path) && !strcmp(r->vms[k].name, jstr(p, "vm_name"))) {
                    r->vms[k].end = ts;
                    if (*jstr(p, "console_log"))
                        r->vms[k].console = xstrdup(jstr(p, "console_log"));
                    break;
                }
        }
    }
}

/* The payload of the first event of kind at or after *i (*i moves to it), or NULL. */
static json_t *next_of(const run_data *r, const char *kind, size_t *i)
{
    for (; *i < json_array_size(r->events); (*i)++) {
        json_t *e = json_array_get(r->events, *i);
        if (!strcmp(jstr(e, "kind"), kind))
            return json_object_get(e, "payload");
    }
    return NULL;
}

/* "<open>PATH<between>NAME<close>" with both escaped */
static void path_name(strbuf *b, json_t *p, const char *open, const char *between, const char *close)
{
    sb_adds(b, open);
    esc(b, jstr(p, "path"));
    sb_adds(b, between);
    esc(b, jstr(p, "name"));
    sb_adds(b, close);
}

/* left/width of [a, b] on the run's time axis, in percent */
static void bar(strbuf *b, const run_data *r, const char *cls, int64_t a, int64_t z, const char *title)
{
    double span = r->t1 > r->t0 ? (double)(r->t1 - r->t0) : 1;
    if (z < a)
        z = a;
    double left = (a - r->t0) / span * 100, width = (z - a) / span * 100;
    sb_addf(b, "<div class=\"bar %s\" style=\"left:%.3f%%;width:%.3f%%\" title=\"", cls, left,
            width < 0.2 ? 0.2 : width);
    esc(b, title);
    sb_addf(b, " (%.2fs)\"></div>", (z - a) / 1e9);
}

static const char css[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}"
    "h1{margin:0 0 .3em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}"
    ".verdict{display:inline-block;padding:.1em .6em;border-radius:3px;color:#fff;font-weight:bold}"
    ".verdict.passed{background:#2a7d2e}.verdict.failed{background:#b3261e}"
    "table{border-collapse:collapse}td,th{padding:.2em .8em .2em 0;text-align:left;vertical-align:top}"
    ".lane{display:flex;align-items:center;margin:2px 0}.label{width:28%;overflow:hidden;text-overflow:ellipsis;"
    "white-space:nowrap;font-family:monospace;font-size:12px;padding-right:6px}"
    ".track{position:relative;flex:1;height:14px;background:#f4f4f4}"
    ".vmlane .label{padding-left:1.5em;color:#555}.vmlane .track{height:9px}"
    ".bar{position:absolute;top:0;bottom:0;border-radius:2px}.bar.wait{background:#e0c060}"
    ".bar.passed{background:#4caf50}.bar.failed,.bar.crashed{background:#e53935}.bar.timed_out{background:#8e24aa}"
    ".bar.interrupted{background:#999}.bar.running{background:#90a4ae}.bar.vm{background:#1e88e5}"
    ".bar.vm.restored{background:#00acc1}"
    ".legend span{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 1em;vertical-align:middle}"
    ".failure{border-left:4px solid #e53935;padding:.2em .8em;margin:1em 0;background:#fdf3f3}"
    ".failure.timed_out,.failure.crashed{border-color:#8e24aa}"
    "pre{white-space:pre-wrap;word-break:break-all;background:#fff;border:1px solid #eee;padding:.5em;margin:.3em 0}"
    ".console{font-size:12px;max-height:24em;overflow:auto}.location{font-family:monospace;color:#555}"
    ".kernel-report{border:1px solid #e53935;padding:.3em .6em;margin:.4em 0}.muted{color:#777}";

/* "path:line:" at the start of a failure message, if there is one */
static size_t location_len(const char *m)
{
    const char *c = strchr(m, ':');
    const char *nl = strchr(m, '\n');
    if (!c || (nl && c > nl) || c == m)
        return 0;
    const char *d = c + 1;
    while (*d >= '0' && *d <= '9')
        d++;
    return d > c + 1 && *d == ':' ? (size_t)(d - m) : 0;
}

/* The summary: verdict, counts, time, exit status. */
static void render_summary(strbuf *b, run_data *r)
{
    json_t *done = NULL;
    size_t i;
    json_t *e;
    int tp = 0, tf = 0, ts = 0;
    json_array_foreach(r->events, i, e)
    {
        const char *kind = jstr(e, "kind");
        if (!strcmp(kind, "run_completed"))
            done = json_object_get(e, "payload");
        tp += !strcmp(kind, "test_passed");
        tf += !strcmp(kind, "test_failed");
        ts += !strcmp(kind, "test_skipped");
    }
    int files_failed = 0, files_run = 0;
    for (size_t k = 0; k < r->nfiles; k++) {
        const char *st = r->files[k].status ? r->files[k].status : "";
        files_run += r->files[k].dispatched != 0;
        files_failed += strcmp(st, "passed") && strcmp(st, "deselected") && r->files[k].dispatched;
    }
    bool ok = done ? json_integer_value(json_object_get(done, "exit_code")) == 0 : files_failed == 0 && tf == 0;
    char when[64] = "";
    time_t t0 = (time_t)(r->t0 / 1000000000);
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime(&t0));
    sb_adds(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
               "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
               "<title>provium run report</title><style>");
    sb_adds(b, css);
    sb_adds(b, "</style></head><body>\n<h1>Provium run</h1>\n<section id=\"summary\">");
    sb_addf(b, "<p><span class=\"verdict %s\">%s</span> <span class=\"muted\">started %s</span></p>\n<table>",
            ok ? "passed" : "failed", ok ? "PASSED" : "FAILED", when);
    sb_addf(b, "<tr><th>files</th><td id=\"files-run\">%d run</td><td>%d passed</td><td>%d failed</td></tr>", files_run,
            files_run - files_failed, files_failed);
    sb_addf(b, "<tr><th>tests</th><td id=\"tests-total\">%d</td><td>%d passed</td><td>%d failed</td><td>%d skipped</td></tr>",
            tp + tf + ts, tp, tf, ts);
    sb_addf(b, "<tr><th>time</th><td>%.1f s</td></tr>", (r->t1 - r->t0) / 1e9);
    if (done)
        sb_addf(b, "<tr><th>exit status</th><td>%lld</td></tr>",
                (long long)json_integer_value(json_object_get(done, "exit_code")));
    sb_adds(b, "</table>");
    if (r->unreadable)
        sb_addf(b, "<p class=\"muted\">%zu lines of the events file were not provium events and were left out.</p>",
                r->unreadable);
    sb_adds(b, "</section>\n");
}

/* The VMs of file f, one lane each, under the file's lane. */
static void vm_lanes(strbuf *b, run_data *r, const file_row *f, const char *html_path)
{
    for (size_t v = 0; v < r->nvms; v++) {
        vm_row *m = &r->vms[v];
        if (strcmp(m->file, f->path))
            continue;
        sb_adds(b, "<div class=\"lane vmlane\"><div class=\"label\">VM ");
        esc(b, m->name);
        sb_adds(b, " <span class=\"muted\">(");
        esc(b, m->profile);
        sb_addf(b, ", %s in %.1fs)</span>", m->restored ? "restored" : "booted", m->boot_s);
        if (m->console && file_exists(m->console)) {
            /* relative to the report when beside it, so the pair can be moved together */
            char *dir = path_dirname(html_path), *abs = path_absolute(dir);
            size_t dl = strlen(abs);
            const char *link = !strncmp(m->console, abs, dl) && m->console[dl] == '/' ? m->console + dl + 1
                                                                                       : m->console;
            sb_adds(b, " <a class=\"console-link\" href=\"");
            esc(b, link);
            sb_adds(b, "\">console</a>");
            free(dir);
            free(abs);
        }
        sb_adds(b, "</div><div class=\"track\">");
        char *title = xasprintf("VM %s (%s)", m->name, m->restored ? "restored from a snapshot" : "cold boot");
        int64_t end = m->end ? m->end : f->completed ? f->completed : r->t1;
        bar(b, r, m->restored ? "vm restored" : "vm", m->start, end, title);
        free(title);
        sb_adds(b, "</div></div>\n");
    }
}

static void render_timeline(strbuf *b, run_data *r, const char *html_path)
{
    sb_adds(b, "<section id=\"timeline\"><h2>Timeline</h2><p class=\"legend\"><span class=\"bar wait\" "
               "style=\"position:static\"></span>waiting for the pool<span style=\"background:#4caf50\"></span>passed"
               "<span style=\"background:#e53935\"></span>failed / crashed<span style=\"background:#8e24aa\"></span>"
               "timed out<span style=\"background:#1e88e5\"></span>VM, cold boot to shutdown"
               "<span style=\"background:#00acc1\"></span>VM restored from a snapshot</p>\n");
    for (size_t k = 0; k < r->nfiles; k++) {
        file_row *f = &r->files[k];
        if (!f->dispatched)
            continue;
        sb_adds(b, "<div class=\"lane file\" data-path=\"");
        esc(b, f->path);
        sb_adds(b, "\"><div class=\"label\" title=\"");
        esc(b, f->path);
        sb_adds(b, "\">");
        esc(b, f->path);
        sb_adds(b, "</div><div class=\"track\">");
        if (f->blocked && f->blocked < f->dispatched)
            bar(b, r, "wait", f->blocked, f->dispatched, "waiting for the pool");
        const char *st = f->status ? f->status : "running";
        bar(b, r, st, f->dispatched, f->completed ? f->completed : r->t1, st);
        if (f->claim_wait)
            bar(b, r, "wait", f->claim_wait, f->claim_got ? f->claim_got : f->completed ? f->completed : r->t1,
                "its provium:claim waiting for the pool");
        sb_adds(b, "</div></div>\n");
        vm_lanes(b, r, f, html_path);
    }
    sb_adds(b, "</section>\n");
}

static void render_failures(strbuf *b, run_data *r)
{
    size_t i;
    /* failures: failed tests with their kernel reports, then files that
     * failed without a failed test (crash, timeout, top-level error) */
    sb_addf(b, "<section id=\"failures\"><h2>Failures</h2>\n");
    int nfail = 0;
    json_t *p;
    for (i = 0; (p = next_of(r, "test_failed", &i)); i++) {
        nfail++;
        path_name(b, p, "<article class=\"failure\"><h3>", " &#8212; <span class=\"test-name\">", "</span></h3>");
        const char *msg = jstr(p, "reason");
        size_t loc = location_len(msg);
        if (loc) {
            sb_adds(b, "<p class=\"location\">");
            html_text(b, msg, loc);
            sb_adds(b, "</p>");
        }
        sb_adds(b, "<pre class=\"message\">");
        esc(b, msg);
        sb_adds(b, "</pre>");
        json_t *q;
        for (size_t k = 0; (q = next_of(r, "kernel_report", &k)); k++) {
            if (strcmp(jstr(q, "path"), jstr(p, "path")) || strcmp(jstr(q, "test"), jstr(p, "name")))
                continue;
            sb_adds(b, "<div class=\"kernel-report\"><strong>kernel report</strong> (VM ");
            esc(b, jstr(q, "vm"));
            sb_adds(b, ", ");
            esc(b, jstr(q, "kind"));
            sb_adds(b, "): ");
            esc(b, jstr(q, "title"));
            sb_adds(b, "</div>");
        }
        const char *console = jstr(p, "console_excerpt");
        if (*console) {
            sb_adds(b, "<details open><summary>console</summary><pre class=\"console\">");
            esc(b, console);
            sb_adds(b, "</pre></details>");
        }
        sb_adds(b, "</article>\n");
    }
    for (size_t k = 0; k < r->nfiles; k++) {
        file_row *f = &r->files[k];
        const char *st = f->status ? f->status : "";
        if (!f->dispatched || !strcmp(st, "passed") || (f->failed && !strcmp(st, "failed")))
            continue;
        nfail++;
        sb_addf(b, "<article class=\"failure %s\"><h3>", st);
        esc(b, f->path);
        sb_addf(b, "</h3><pre class=\"message\">%s</pre></article>\n",
                !strcmp(st, "timed_out")     ? "the file timed out and was killed"
                : !strcmp(st, "crashed")     ? "the test process crashed"
                : !strcmp(st, "interrupted") ? "the run was interrupted"
                : !*st                       ? "the file did not finish"
                                             : "the file failed outside a test (a top-level error)");
    }
    if (!nfail)
        sb_adds(b, "<p>None.</p>");
    sb_adds(b, "</section>\n");
}

static void render_skipped(strbuf *b, run_data *r)
{
    size_t i;
    json_t *p;
    sb_adds(b, "<section id=\"skipped\"><h2>Skipped tests</h2><table>");
    int nskip = 0;
    for (i = 0; (p = next_of(r, "test_skipped", &i)); i++) {
        nskip++;
        path_name(b, p, "<tr><td>", "</td><td class=\"test-name\">", "</td><td>");
        esc(b, jstr(p, "reason"));
        sb_adds(b, "</td></tr>");
    }
    sb_adds(b, nskip ? "</table>" : "</table><p>None.</p>");
    sb_adds(b, "</section>\n");
}

/* The ten slowest tests. */
static void render_slowest(strbuf *b, run_data *r)
{
    size_t i;
    json_t *e;
    json_t *tests = json_array();
    json_array_foreach(r->events, i, e)
    {
        const char *kind = jstr(e, "kind");
        if (!strcmp(kind, "test_passed") || !strcmp(kind, "test_failed") || !strcmp(kind, "test_skipped"))
            json_array_append(tests, e);
    }
    sb_adds(b, "<section id=\"slowest\"><h2>Slowest tests</h2><table>");
    for (int top = 0; top < 10; top++) {
        json_t *best = NULL;
        size_t bi = 0;
        json_array_foreach(tests, i, e)
        {
            json_int_t d = json_integer_value(json_object_get(json_object_get(e, "payload"), "duration_ns"));
            if (!best || d > json_integer_value(json_object_get(json_object_get(best, "payload"), "duration_ns"))) {
                best = e;
                bi = i;
            }
        }
        if (!best)
            break;
        json_t *p = json_object_get(best, "payload");
        sb_addf(b, "<tr><td>%.2f s</td>", json_integer_value(json_object_get(p, "duration_ns")) / 1e9);
        path_name(b, p, "<td>", "</td><td class=\"test-name\">", "</td>");
        sb_addf(b, "<td>%s</td></tr>", jstr(best, "kind") + 5);
        json_array_remove(tests, bi);
    }
    json_decref(tests);
    sb_adds(b, "</table></section>\n</body></html>\n");}

static void render(strbuf *b, run_data *r, const char *html_path)
{
    render_summary(b, r);
    render_timeline(b, r, html_path);
    render_failures(b, r);
    render_skipped(b, r);
    render_slowest(b, r);
}

int report_html(const char *events_path, const char *html_path, char *err, size_t errlen)
{
    run_data r = {0};
    int rc = load_events(events_path, &r, err, errlen);
    if (rc == 0) {
        analyse(&r);
        strbuf b;
        sb_init(&b);
        render(&b, &r, html_path);
        char *tmp = xasprintf("%s.tmp.%d", html_path, (int)getpid());
        rc = write_whole_file(tmp, b.s, b.len, 0644);
        if (rc == 0)
            rc = rename(tmp, html_path);
        if (rc != 0) {
            snprintf(err, errlen, "cannot write the report %s: %s", html_path, strerror(errno));
            unlink(tmp);
        }
        free(tmp);
        sb_free(&b);
    }
    for (size_t i = 0; i < r.nfiles; i++) {
        free(r.files[i].path);
        free(r.files[i].status);
    }
    free(r.files);
    for (size_t i = 0; i < r.nvms; i++) {
        free(r.vms[i].file);
        free(r.vms[i].name);
        free(r.vms[i].profile);
        free(r.vms[i].console);
    }
    free(r.vms);
    json_decref(r.events);
    return rc;
}

const char report_usage[] = "usage: provium report EVENTS.jsonl -o FILE.html\n"
                            "\n"
                            "Writes the HTML report of a run from its --save-events file: the page\n"
                            "--html writes. A file with no provium events exits 1.\n"
                            "  -o, --output FILE   where the report goes\n";

int report_cli(int argc, char **argv)
{
    const char *events = NULL, *out = NULL;
    for (int i = 0; i < argc; i++) {
        if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) && i + 1 < argc)
            out = argv[++i];
        else if (!events && argv[i][0] != '-')
            events = argv[i];
        else
            events = out = NULL, i = argc;
    }
    if (!events || !out) {
        fputs(report_usage, stderr);
        return 2;
    }
    char err[PV_ERR_MAX];
    if (report_html(events, out, err, sizeof(err)) != 0) {
        fprintf(stderr, "provium report: %s\n", err);
        return 1;
    }
    return 0;
}
