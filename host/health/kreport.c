/* Kernel report classification; see kreport.h. The markers are the ones
 * the kernel itself prints (lib/bug.c, kernel/panic.c, mm/kasan/report.c,
 * lib/ubsan.c, kernel/locking/lockdep.c, kernel/hung_task.c,
 * kernel/watchdog*.c, kernel/rcu/tree_stall.h, mm/kmemleak.c, the x86 fault
 * and die paths), matched at the start of a line, not anywhere in it. */
#include "kreport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"

/* A report with no end marker of its own is cut here. */
#define MAX_REPORT_LINES 200

char *kmsg_to_text(const char *records, size_t len)
{
    strbuf b;
    sb_init(&b);
    const char *p = records, *end = records + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
        /* " KEY=value" lines are the record's dictionary: not log text */
        if (n && *p != ' ') {
            const char *semi = memchr(p, ';', n);
            const char *msg = semi ? semi + 1 : p;
            sb_add(&b, msg, (size_t)(p + n - msg));
            sb_add(&b, "\n", 1);
        }
        p += n + 1;
    }
    if (!b.s)
        sb_adds(&b, "");
    return sb_take(&b);
}

static bool starts(const char *line, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(line, prefix, n) == 0;
}

static bool has(const char *line, size_t len, const char *needle)
{
    return memmem(line, len, needle, strlen(needle)) != NULL;
}

/* Console lines may carry a "[    1.234567] " timestamp; kmsg text does not. */
static const char *strip_time(const char *line, size_t *len)
{
    if (*len && line[0] == '[') {
        const char *close = memchr(line, ']', *len);
        if (close && close - line < 20) {
            const char *rest = close + 1;
            if (rest < line + *len && *rest == ' ')
                rest++;
            *len -= (size_t)(rest - line);
            return rest;
        }
    }
    return line;
}

bool kreport_is_oops_line(const char *line, size_t len)
{
    line = strip_time(line, &len);
    return starts(line, len, "BUG: kernel NULL pointer dereference") || starts(line, len, "BUG: unable to handle") ||
           starts(line, len, "general protection fault") || starts(line, len, "kernel BUG at ") ||
           starts(line, len, "Oops: ") || starts(line, len, "BUG: KASAN: ") ||
           starts(line, len, "Kernel panic - not syncing");
}

static bool is_rule(const char *line, size_t len)
{
    if (len < 20)
        return false;
    for (size_t i = 0; i < len; i++)
        if (line[i] != '=')
            return false;
    return true;
}

/* The kind of report a line opens, or NULL. */
static const char *opens(const char *line, size_t len)
{
    static const char *const lockdep[] = {
        "WARNING: possible circular locking", "WARNING: possible recursive locking", "WARNING: inconsistent lock state",
        "WARNING: bad unlock balance", "WARNING: suspicious RCU usage", "WARNING: held lock freed",
        "WARNING: possible irq lock inversion", "WARNING: lock held when returning to user space",
        "WARNING: Nested lock was not taken", "WARNING: held lock",
    };
    if (starts(line, len, "------------[ cut here ]------------"))
        return "cut";
    if (starts(line, len, "WARNING: CPU: "))
        return "warning";
    if (starts(line, len, "BUG: KASAN: "))
        return "kasan";
    if (starts(line, len, "BUG: KFENCE: "))
        return "kfence";
    if (starts(line, len, "UBSAN: "))
        return "ubsan";
    for (size_t i = 0; i < sizeof(lockdep) / sizeof(lockdep[0]); i++)
        if (starts(line, len, lockdep[i]))
            return "lockdep";
    if (starts(line, len, "INFO: task ") && has(line, len, " blocked for more than "))
        return "hung_task";
    if (starts(line, len, "watchdog: BUG: soft lockup"))
        return "soft_lockup";
    if (has(line, len, "Watchdog detected hard LOCKUP"))
        return "hard_lockup";
    if ((starts(line, len, "rcu: INFO: ") || starts(line, len, "INFO: rcu")) && has(line, len, "stall"))
        return "rcu_stall";
    if (starts(line, len, "kmemleak: ") && has(line, len, "suspected memory leak"))
        return "kmemleak";
    if (starts(line, len, "Kernel panic - not syncing"))
        return "panic";
    if (kreport_is_oops_line(line, len))
        return "oops";
    if (starts(line, len, "BUG: "))
        return "bug";
    return NULL;
}

typedef struct {
    const char *kind;
    strbuf text;
    char *header;   /* the line that named the report */
    char *location; /* RIP: function of an oops */
    int lines;
    bool backtrace; /* lockdep: its final "stack backtrace:" began */
} open_report;

static char *dup_n(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static char *make_title(const open_report *r)
{
    const char *h = r->header ? r->header : "";
    if (strcmp(r->kind, "warning") == 0) {
        /* "WARNING: CPU: 0 PID: 7 at path/file.c:12 func+0x3c/0x90 [mod]" */
        const char *at = strstr(h, " at ");
        const char *sp = at ? strchr(at + 4, ' ') : NULL;
        if (sp && sp[1])
            return xasprintf("kernel WARNING in %s", sp + 1);
        return xasprintf("kernel %s", h);
    }
    if (strcmp(r->kind, "oops") == 0) {
        if (r->location)
            return xasprintf("kernel oops in %s: %s", r->location, h);
        return xasprintf("kernel oops: %s", h);
    }
    if (starts(h, strlen(h), "BUG: "))
        h += 5; /* "BUG: KASAN: ..." -> "kernel KASAN: ..." */
    return xasprintf("kernel %s", h);
}

static void close_report(open_report *r, kreport_list *out)
{
    if (!r->kind)
        return;
    out->v = xrealloc(out->v, (out->n + 1) * sizeof(kreport));
    kreport *k = &out->v[out->n++];
    k->kind = strcmp(r->kind, "cut") == 0 ? "bug" : r->kind;
    r->kind = k->kind;
    k->title = make_title(r);
    k->text = sb_take(&r->text);
    free(r->header);
    free(r->location);
    memset(r, 0, sizeof(*r));
}

/* Has the open report r reached its end with this line (included)? */
static bool ends_with(const open_report *r, const char *line, size_t len)
{
    if (starts(line, len, "---[ end trace") || starts(line, len, "---[ end Kernel panic"))
        return true;
    const char *k = r->kind;
    if ((!strcmp(k, "kasan") || !strcmp(k, "ubsan") || !strcmp(k, "kfence")) && r->lines > 1 && is_rule(line, len))
        return true;
    bool no_marker = !strcmp(k, "hung_task") || !strcmp(k, "soft_lockup") || !strcmp(k, "hard_lockup") ||
                     !strcmp(k, "rcu_stall") || !strcmp(k, "bug") || !strcmp(k, "kmemleak") ||
                     (!strcmp(k, "lockdep") && r->backtrace);
    return no_marker && has(line, len, "</TASK>");
}

void kreport_scan(const char *text, kreport_list *out)
{
    open_report r;
    memset(&r, 0, sizeof(r));
    const char *p = text;
    while (p && *p) {
        const char *eol = strchr(p, '\n');
        size_t raw_len = eol ? (size_t)(eol - p) : strlen(p);
        size_t len = raw_len;
        const char *line = strip_time(p, &len);
        const char *kind = opens(line, len);
        if (r.kind && kind) {
            /* lines that belong to the report already open, not a new one */
            bool same = (!strcmp(r.kind, "cut") && r.lines == 1) || (!strcmp(r.kind, "oops") && !strcmp(kind, "oops")) ||
                        (!strcmp(r.kind, "panic") && strcmp(kind, "panic"));
            if (same) {
                if (!strcmp(r.kind, "cut")) {
                    r.kind = !strcmp(kind, "warning") ? "warning" : !strcmp(kind, "cut") ? "cut" : kind;
                    free(r.header);
                    r.header = dup_n(line, len);
                }
                kind = NULL;
            } else {
                close_report(&r, out);
            }
        }
        if (kind && !r.kind) {
            sb_init(&r.text);
            r.kind = kind;
            if (strcmp(kind, "cut") != 0)
                r.header = dup_n(line, len);
        }
        if (r.kind) {
            sb_add(&r.text, line, len);
            sb_add(&r.text, "\n", 1);
            r.lines++;
            if (!strcmp(r.kind, "oops") && !r.location && starts(line, len, "RIP: ")) {
                /* "RIP: 0010:func+0x1/0x2 [mod]" */
                const char *colon = memchr(line + 5, ':', len - 5);
                if (colon)
                    r.location = dup_n(colon + 1, (size_t)(line + len - colon - 1));
            }
            if (!strcmp(r.kind, "lockdep") && starts(line, len, "stack backtrace:"))
                r.backtrace = true;
            if (ends_with(&r, line, len) || r.lines >= MAX_REPORT_LINES)
                close_report(&r, out);
        }
        p = eol ? eol + 1 : NULL;
    }
    close_report(&r, out);
}

void kreport_list_free(kreport_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].title);
        free(l->v[i].text);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

char *kreport_taint_text(unsigned long long taint)
{
    static const char *const flags[] = {
        "P (proprietary module)", "F (module force-loaded)", "S (unsafe SMP)", "R (module force-unloaded)",
        "M (machine check)", "B (bad page)", "U (user request)", "D (kernel died: oops or BUG)",
        "A (ACPI table overridden)", "W (warning)", "C (staging driver)", "I (firmware workaround)",
        "O (out-of-tree module)", "E (unsigned module)", "L (soft lockup)", "K (live patched)",
        "X (auxiliary)", "T (randstruct)", "N (test module)",
    };
    strbuf b;
    sb_init(&b);
    for (unsigned i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        if (taint & (1ULL << i))
            sb_addf(&b, "%s%s", b.len ? ", " : "", flags[i]);
    if (!b.s)
        sb_adds(&b, "");
    return sb_take(&b);
}
