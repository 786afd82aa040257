/* Machine-readable outputs of a run: JUnit XML (--junit) and TAP 14 (--tap).
 * Both work from the per-file result objects the dispatcher builds (the
 * --json line of each file). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../util/util.h"
#include "output.h"

/* Copies text, replacing invalid UTF-8 and control characters other than
 * tab/newline (console logs carry ANSI escapes; XML 1.0 forbids them). */
static void clean_text(strbuf *b, const char *s, bool xml)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        unsigned c = *p;
        size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        bool ok = n > 0;
        for (size_t i = 1; ok && i < n; i++)
            ok = (p[i] & 0xc0) == 0x80;
        if (ok && n == 2 && c < 0xc2)
            ok = false;
        if (!ok) {
            sb_adds(b, "?");
            p++;
            continue;
        }
        if (n == 1) {
            if (c < 0x20 && c != '\n' && c != '\t') {
                if (c != '\r')
                    sb_adds(b, "?");
            } else if (c == 0x7f) {
                sb_adds(b, "?");
            } else if (xml && c == '&') {
                sb_adds(b, "&amp;");
            } else if (xml && c == '<') {
                sb_adds(b, "&lt;");
            } else if (xml && c == '>') {
                sb_adds(b, "&gt;");
            } else if (xml && c == '"') {
                sb_adds(b, "&quot;");
            } else {
                sb_add(b, p, 1);
            }
        } else {
            sb_add(b, p, n);
        }
        p += n;
    }
}

static void xml_attr(FILE *out, const char *name, const char *value)
{
    strbuf b;
    sb_init(&b);
    clean_text(&b, value, true);
    /* a literal newline or tab in an attribute is normalised to a space by
     * parsers; character references keep them */
    fprintf(out, " %s=\"", name);
    for (size_t i = 0; i < b.len; i++) {
        if (b.s[i] == '\n')
            fputs("&#10;", out);
        else if (b.s[i] == '\t')
            fputs("&#9;", out);
        else
            fputc(b.s[i], out);
    }
    fputc('"', out);
    sb_free(&b);
}

static void xml_text(FILE *out, const char *value)
{
    strbuf b;
    sb_init(&b);
    clean_text(&b, value, true);
    fputs(b.s ? b.s : "", out);
    sb_free(&b);
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static double jnum(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : 0;
}

/* The log of a test: the framework gives lines, --json gives an array. */
static char *joined_log(json_t *tc)
{
    json_t *log = json_object_get(tc, "log");
    if (json_is_string(log))
        return xstrdup(json_string_value(log));
    strbuf b;
    sb_init(&b);
    size_t i;
    json_t *l;
    json_array_foreach(log, i, l)
    {
        sb_addf(&b, "%s%s", i ? "\n" : "", json_string_value(l) ? json_string_value(l) : "");
    }
    return b.s ? sb_take(&b) : xstrdup("");
}

/* Tests and their sub-tests (t:ktap, vm:kselftest); returns how many, adds failed and skipped ones. */
static int count_cases(json_t *ts, int *failed, int *skipped)
{
    int n = 0;
    size_t k, m;
    json_t *tc, *sub;
    json_array_foreach(ts, k, tc)
    {
        n++;
        *failed += strcmp(jstr(tc, "status"), "failed") == 0;
        *skipped += strcmp(jstr(tc, "status"), "skipped") == 0;
        json_array_foreach(json_object_get(tc, "subtests"), m, sub)
        {
            n++;
            *failed += strcmp(jstr(sub, "status"), "failed") == 0;
            *skipped += strcmp(jstr(sub, "status"), "skipped") == 0;
        }
    }
    return n;
}

/* One <testcase>: a test, or a sub-test named "<test> / <suite> / <case>". */
static void junit_case(FILE *out, json_t *tc, const char *path_shown)
{
    const char *st = jstr(tc, "status");
    fprintf(out, "    <testcase");
    xml_attr(out, "name", jstr(tc, "name"));
    xml_attr(out, "classname", path_shown);
    fprintf(out, " time=\"%.3f\"", jnum(tc, "duration"));
    char *log = joined_log(tc);
    bool body = strcmp(st, "passed") != 0 || *log;
    fprintf(out, body ? ">\n" : "/>\n");
    if (strcmp(st, "failed") == 0) {
        const char *msg = jstr(tc, "message");
        fprintf(out, "      <failure");
        xml_attr(out, "message", msg);
        xml_attr(out, "type", "failure");
        fprintf(out, ">");
        xml_text(out, msg);
        const char *console = jstr(tc, "console");
        if (*console) {
            fprintf(out, "\n\nconsole excerpt:\n");
            xml_text(out, console);
        }
        fprintf(out, "</failure>\n");
    } else if (strcmp(st, "skipped") == 0) {
        fprintf(out, "      <skipped");
        xml_attr(out, "message", *jstr(tc, "message") ? jstr(tc, "message") : "skipped");
        fprintf(out, "/>\n");
    }
    if (*log) {
        fprintf(out, "      <system-out>");
        xml_text(out, log);
        fprintf(out, "</system-out>\n");
    }
    if (body)
        fprintf(out, "    </testcase>\n");
    free(log);
}

int junit_write(const char *path, json_t *const *results, const char *const *file_logs, size_t n, double total_s)
{
    FILE *out = fopen(path, "w");
    if (!out)
        return -1;
    int tests = 0, failures = 0, errors = 0, skipped = 0;
    for (size_t i = 0; i < n; i++) {
        if (!results[i])
            continue;
        json_t *ts = json_object_get(results[i], "tests");
        int f = 0, s = 0;
        tests += count_cases(ts, &f, &s);
        failures += f;
        skipped += s;
        if (json_is_string(json_object_get(results[i], "chunk_error"))) {
            errors++;
            tests++;
        }
    }
    char host[256] = "localhost";
    gethostname(host, sizeof(host) - 1);
    fprintf(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(out, "<testsuites name=\"provium\" tests=\"%d\" failures=\"%d\" errors=\"%d\" skipped=\"%d\" time=\"%.3f\">\n",
            tests, failures, errors, skipped, total_s);
    for (size_t i = 0; i < n; i++) {
        json_t *r = results[i];
        if (!r)
            continue;
        json_t *ts = json_object_get(r, "tests");
        const char *path_shown = jstr(r, "path");
        const char *chunk_error = json_string_value(json_object_get(r, "chunk_error"));
        int f = 0, s = 0;
        int t = count_cases(ts, &f, &s) + (chunk_error ? 1 : 0);
        size_t k;
        json_t *tc;
        time_t started = (time_t)jnum(r, "started");
        char stamp[32] = "1970-01-01T00:00:00";
        struct tm tmv;
        if (started && gmtime_r(&started, &tmv))
            strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tmv);
        fprintf(out, "  <testsuite");
        xml_attr(out, "name", path_shown);
        fprintf(out, " tests=\"%d\" failures=\"%d\" errors=\"%d\" skipped=\"%d\" time=\"%.3f\" timestamp=\"%s\"", t, f,
                chunk_error ? 1 : 0, s, jnum(r, "duration"), stamp);
        xml_attr(out, "hostname", host);
        xml_attr(out, "file", path_shown);
        fprintf(out, ">\n");
        json_array_foreach(ts, k, tc)
        {
            junit_case(out, tc, path_shown);
            size_t m;
            json_t *sub;
            json_array_foreach(json_object_get(tc, "subtests"), m, sub)
            {
                junit_case(out, sub, path_shown);
            }
        }
        if (chunk_error) {
            fprintf(out, "    <testcase");
            xml_attr(out, "name", "(file)");
            xml_attr(out, "classname", path_shown);
            fprintf(out, " time=\"%.3f\">\n      <error", jnum(r, "duration"));
            xml_attr(out, "message", chunk_error);
            xml_attr(out, "type", json_is_true(json_object_get(r, "timed_out")) ? "timeout" : "error");
            fprintf(out, ">");
            xml_text(out, chunk_error);
            const char *console = jstr(r, "console");
            if (*console) {
                fprintf(out, "\n\nconsole excerpt:\n");
                xml_text(out, console);
            }
            fprintf(out, "</error>\n    </testcase>\n");
        }
        if (file_logs && file_logs[i] && *file_logs[i]) {
            fprintf(out, "    <system-out>");
            xml_text(out, file_logs[i]);
            fprintf(out, "</system-out>\n");
        }
        fprintf(out, "  </testsuite>\n");
    }
    fprintf(out, "</testsuites>\n");
    return fclose(out) == 0 ? 0 : -1;
}

/* ---- TAP 14 ---- */

static void tap_desc(FILE *out, const char *path, const char *name)
{
    strbuf b;
    sb_init(&b);
    clean_text(&b, path, false);
    if (name) {
        sb_adds(&b, ": ");
        clean_text(&b, name, false);
    }
    for (size_t i = 0; i < b.len; i++) {
        if (b.s[i] == '\n' || b.s[i] == '\t')
            b.s[i] = ' ';
        if (b.s[i] == '#' || b.s[i] == '\\')
            fputc('\\', out);
        fputc(b.s[i], out);
    }
    sb_free(&b);
}

/* A YAML double-quoted scalar: TAP::Parser's YAMLish reads these, and
 * any text survives the round trip. */
static void tap_yaml(FILE *out, const char *indent, const char *key, const char *text)
{
    strbuf b;
    sb_init(&b);
    clean_text(&b, text, false);
    fprintf(out, "%s  %s: \"", indent, key);
    for (size_t i = 0; i < b.len; i++) {
        char c = b.s[i];
        if (c == '\n')
            fputs("\\n", out);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else
            fputc(c, out);
    }
    fputs("\"\n", out);
    sb_free(&b);
}

/* One test point (indent: "" for a test, "    " for a sub-test). */
static void tap_point(FILE *out, const char *indent, int n, const char *path, json_t *tc)
{
    const char *st = jstr(tc, "status");
    bool failed = strcmp(st, "failed") == 0;
    fprintf(out, "%s%s %d - ", indent, failed ? "not ok" : "ok", n);
    tap_desc(out, path, jstr(tc, "name"));
    if (strcmp(st, "skipped") == 0) {
        fprintf(out, " # SKIP ");
        tap_desc(out, *jstr(tc, "message") ? jstr(tc, "message") : "skipped", NULL);
    }
    fputc('\n', out);
    if (failed) {
        fprintf(out, "%s  ---\n", indent);
        tap_yaml(out, indent, "message", jstr(tc, "message"));
        fprintf(out, "%s  duration_s: %.3f\n", indent, jnum(tc, "duration"));
        if (*jstr(tc, "console"))
            tap_yaml(out, indent, "console", jstr(tc, "console"));
        fprintf(out, "%s  ...\n", indent);
    }
}

void tap_begin(FILE *out) { fprintf(out, "TAP version 14\n"); }

int tap_file(FILE *out, json_t *r, int n)
{
    const char *path = jstr(r, "path");
    json_t *ts = json_object_get(r, "tests");
    size_t k;
    json_t *tc;
    json_array_foreach(ts, k, tc)
    {
        json_t *subs = json_object_get(tc, "subtests");
        if (json_array_size(subs) > 0) {
            /* TAP 14 subtest: indented points, then the parent's own point */
            fprintf(out, "    # Subtest: ");
            tap_desc(out, path, jstr(tc, "name"));
            fprintf(out, "\n    1..%zu\n", json_array_size(subs));
            size_t m;
            json_t *sub;
            json_array_foreach(subs, m, sub)
            {
                tap_point(out, "    ", (int)m + 1, path, sub);
            }
        }
        tap_point(out, "", ++n, path, tc);
    }
    const char *chunk_error = json_string_value(json_object_get(r, "chunk_error"));
    if (chunk_error) {
        fprintf(out, "not ok %d - ", ++n);
        tap_desc(out, path, NULL);
        fprintf(out, "\n  ---\n");
        tap_yaml(out, "", "message", chunk_error);
        fprintf(out, "  ...\n");
    } else if (json_array_size(ts) == 0) {
        fprintf(out, "ok %d - ", ++n);
        tap_desc(out, path, NULL);
        fprintf(out, " # SKIP no tests\n");
    }
    fflush(out);
    return n;
}

void tap_end(FILE *out, int n)
{
    if (n == 0)
        fprintf(out, "1..0 # SKIP no tests ran\n");
    else
        fprintf(out, "1..%d\n", n);
    fflush(out);
}
