/* KTAP v1 parser; see ktap.h. */
#include "ktap.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KTAP_MAX_DEPTH 16

static void *xmem(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p)
        abort();
    return p;
}

static char *dupn(const char *s, size_t n)
{
    char *d = xmem(n + 1);
    memcpy(d, s, n);
    /* a NUL inside would silently cut the name: show it */
    for (size_t i = 0; i < n; i++)
        if (!d[i])
            d[i] = '?';
    return d;
}

typedef struct {
    char *s;
    size_t len, cap;
} buf;

static void buf_add(buf *b, const char *s, size_t n)
{
    if (b->len + n + 2 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n + 2)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p)
            abort();
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

/* one line of diagnostics: lines joined by \n */
static void buf_line(buf *b, const char *s, size_t n)
{
    if (b->len)
        buf_add(b, "\n", 1);
    buf_add(b, s, n);
}

static char *buf_take(buf *b)
{
    char *s = b->s;
    b->s = NULL;
    b->len = b->cap = 0;
    return s;
}

typedef struct {
    const char *s;
    size_t n;
} span;

typedef struct {
    span *lines;
    size_t nlines, i;
    span prefix[KTAP_MAX_DEPTH];
    bool found;
} parser;

static bool starts(span l, const char *p, size_t n) { return l.n >= n && memcmp(l.s, p, n) == 0; }
static bool starts_lit(span l, const char *p) { return starts(l, p, strlen(p)); }
static span after(span l, size_t k) { return (span){l.s + k, l.n - k}; }

static span trim(span l)
{
    while (l.n && isspace((unsigned char)l.s[0]))
        l = after(l, 1);
    while (l.n && isspace((unsigned char)l.s[l.n - 1]))
        l.n--;
    return l;
}

/* "[    1.234567] " (printk time) at the start of a line */
static span strip_time(span l)
{
    if (!l.n || l.s[0] != '[')
        return l;
    size_t k = 1;
    bool digit = false, dot = false;
    while (k < l.n && (l.s[k] == ' ' || isdigit((unsigned char)l.s[k]) || l.s[k] == '.')) {
        digit |= isdigit((unsigned char)l.s[k]) != 0;
        dot |= l.s[k] == '.';
        k++;
    }
    if (k >= l.n || l.s[k] != ']' || !digit || !dot)
        return l;
    k++;
    if (k < l.n && l.s[k] == ' ')
        k++;
    return after(l, k);
}

static bool parse_long(span *l, long *out)
{
    size_t k = 0;
    long v = 0;
    while (k < l->n && isdigit((unsigned char)l->s[k])) {
        if (v < 1000000000L)
            v = v * 10 + (l->s[k] - '0');
        k++;
    }
    if (!k)
        return false;
    *out = v;
    *l = after(*l, k);
    return true;
}

static bool is_version(span l, int *v)
{
    span r;
    if (starts_lit(l, "KTAP version "))
        r = after(l, 13);
    else if (starts_lit(l, "TAP version "))
        r = after(l, 12);
    else
        return false;
    long n = 0;
    if (!parse_long(&r, &n))
        return false;
    if (v)
        *v = (int)n;
    return true;
}

static bool is_plan(span l, long *n, span *comment)
{
    if (!starts_lit(l, "1.."))
        return false;
    span r = after(l, 3);
    long v;
    if (!parse_long(&r, &v))
        return false;
    r = trim(r);
    if (r.n && r.s[0] != '#')
        return false;
    if (n)
        *n = v;
    if (comment)
        *comment = r.n ? trim(after(r, 1)) : r;
    return true;
}

static bool is_result(span l)
{
    span r;
    if (starts_lit(l, "not ok"))
        r = after(l, 6);
    else if (starts_lit(l, "ok"))
        r = after(l, 2);
    else
        return false;
    return r.n == 0 || isspace((unsigned char)r.s[0]);
}

static bool is_subtest(span l) { return starts_lit(l, "# Subtest:"); }
static bool is_bail(span l) { return starts_lit(l, "Bail out!"); }

/* a line that means something at its level */
static bool structural(span l)
{
    return is_version(l, NULL) || is_plan(l, NULL, NULL) || is_result(l) || is_subtest(l) || is_bail(l);
}

/* How many bytes of rest open a nested level: leading blanks before a
 * structural line, or "# " before a version line (run_kselftest.sh). */
static size_t nested_extension(span rest)
{
    size_t k = 0;
    while (k < rest.n && (rest.s[k] == ' ' || rest.s[k] == '\t'))
        k++;
    if (k > 0 && k < rest.n && structural(after(rest, k)))
        return k;
    if (starts_lit(rest, "# ") && is_version(after(rest, 2), NULL))
        return 2;
    return 0;
}

/* room for one more element in an array of n of cap */
static void *grow(void *v, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return v;
    size_t c = *cap ? *cap * 2 : 8;
    void *p = realloc(v, c * size);
    if (!p)
        abort();
    *cap = c;
    return p;
}

static ktap_node *add_kid(ktap_node *owner)
{
    owner->kids = grow(owner->kids, owner->nkids, &owner->cap, sizeof(ktap_node));
    ktap_node *n = &owner->kids[owner->nkids++];
    memset(n, 0, sizeof(*n));
    n->number = -1;
    n->plan = -1;
    return n;
}

static ktap_directive directive_of(span c, span *reason)
{
    static const struct {
        const char *word;
        ktap_directive d;
    } words[] = {{"SKIP", KTAP_DIR_SKIP},   {"TODO", KTAP_DIR_TODO},       {"XFAIL", KTAP_DIR_XFAIL},
                 {"TIMEOUT", KTAP_DIR_TIMEOUT}, {"SKIPPED", KTAP_DIR_SKIP}};
    size_t w = 0;
    while (w < c.n && isalpha((unsigned char)c.s[w]))
        w++;
    for (size_t i = sizeof(words) / sizeof(words[0]); i-- > 0;) {
        size_t n = strlen(words[i].word);
        if (w == n && strncasecmp(c.s, words[i].word, n) == 0) {
            *reason = trim(after(c, n));
            return words[i].d;
        }
    }
    *reason = c;
    return KTAP_DIR_OTHER;
}

/* "ok 1 - name # SKIP why" into node */
static void fill_result(ktap_node *node, span l)
{
    node->has_result = true;
    node->ok = !starts_lit(l, "not ok");
    span r = trim(after(l, node->ok ? 2 : 6));
    long num;
    if (parse_long(&r, &num))
        node->number = num;
    r = trim(r);
    if (starts_lit(r, "- "))
        r = trim(after(r, 2));
    else if (r.n == 1 && r.s[0] == '-')
        r = after(r, 1);
    /* the comment starts at the first '#' at the start or after a blank
     * that is not escaped */
    size_t hash = r.n;
    for (size_t k = 0; k < r.n; k++) {
        if (r.s[k] == '#' && (k == 0 || ((r.s[k - 1] == ' ' || r.s[k - 1] == '\t')))) {
            hash = k;
            break;
        }
    }
    span desc = trim((span){r.s, hash});
    if (desc.n) {
        free(node->name);
        node->name = dupn(desc.s, desc.n);
    }
    if (hash < r.n) {
        span c = trim(after(r, hash + 1)), reason;
        node->directive = c.n ? directive_of(c, &reason) : KTAP_DIR_NONE;
        if (node->directive != KTAP_DIR_NONE && reason.n)
            node->directive_text = dupn(reason.s, reason.n);
        /* kselftest's "ok 3 # SKIP CLOCK_TAI": the reason names the test */
        if (!desc.n && node->directive == KTAP_DIR_SKIP && reason.n && !node->name)
            node->name = dupn(reason.s, reason.n);
    }
}

/* Is l a line that belongs to an ancestor of depth (ends this level)? */
static bool ancestor_line(parser *p, span l, int depth)
{
    for (int d = depth - 1; d >= 0; d--)
        if (starts(l, p->prefix[d].s, p->prefix[d].n) && structural(after(l, p->prefix[d].n)))
            return true;
    return false;
}

static span line_at(parser *p, size_t i) { return strip_time(p->lines[i]); }

static void parse_level(parser *p, ktap_node *owner, int depth)
{
    buf diag = {0};
    ktap_node *pending = NULL; /* a subtest waiting for its result line; reset before owner->kids can move */
    char *next_name = NULL;    /* "# Subtest: x" seen at this level for the next subtest */
    span pre = p->prefix[depth];
    while (p->i < p->nlines) {
        span l = line_at(p, p->i);
        if (!starts(l, pre.s, pre.n)) {
            if (depth > 0 && ancestor_line(p, l, depth))
                break;
            p->i++;
            continue;
        }
        span rest = after(l, pre.n);
        size_t ext = nested_extension(rest);
        if (ext && depth + 1 < KTAP_MAX_DEPTH) {
            ktap_node *kid = add_kid(owner);
            kid->name = next_name;
            next_name = NULL;
            p->prefix[depth + 1] = (span){l.s, pre.n + ext};
            parse_level(p, kid, depth + 1);
            /* only kid->kids grew meanwhile, so owner->kids did not move */
            pending = kid;
            if (diag.len) {
                /* what came before the subtest opened belongs to it */
                buf d2 = {0};
                buf_add(&d2, diag.s, diag.len);
                if (pending->diag)
                    buf_line(&d2, pending->diag, strlen(pending->diag));
                free(pending->diag);
                pending->diag = buf_take(&d2);
                free(buf_take(&diag));
            }
            continue;
        }
        int v;
        long n;
        span comment;
        p->i++;
        if (is_version(rest, &v)) {
            p->found = true;
            owner->version = v;
        } else if (is_plan(rest, &n, &comment)) {
            p->found = true;
            owner->plan = owner->plan < 0 ? n : owner->plan + n;
            span reason;
            if (n == 0 && comment.n && directive_of(comment, &reason) == KTAP_DIR_SKIP && !owner->plan_skip)
                owner->plan_skip = dupn(reason.s, reason.n);
        } else if (is_subtest(rest)) {
            span name = trim(after(rest, 10));
            if (depth > 0 && owner->nkids == 0 && !owner->name) {
                owner->name = dupn(name.s, name.n);
            } else {
                free(next_name);
                next_name = dupn(name.s, name.n);
            }
        } else if (is_result(rest)) {
            p->found = true;
            ktap_node *node;
            if (pending && !pending->has_result)
                node = pending;
            else
                node = add_kid(owner);
            pending = NULL;
            fill_result(node, rest);
            if (!node->name && next_name) {
                node->name = next_name;
                next_name = NULL;
            }
            if (diag.len) {
                if (node->diag) {
                    buf d2 = {0};
                    buf_add(&d2, node->diag, strlen(node->diag));
                    buf_line(&d2, diag.s, diag.len);
                    free(node->diag);
                    node->diag = buf_take(&d2);
                    free(buf_take(&diag));
                } else {
                    node->diag = buf_take(&diag);
                }
            }
        } else if (is_bail(rest)) {
            p->found = true;
            span reason = trim(after(rest, 9));
            owner->bailed = true;
            if (!owner->bail_reason)
                owner->bail_reason = dupn(reason.s, reason.n);
        } else {
            span t = rest;
            if (starts_lit(t, "# "))
                t = after(t, 2);
            else if (starts_lit(t, "#"))
                t = after(t, 1);
            while (t.n && (t.s[t.n - 1] == '\r' || t.s[t.n - 1] == ' '))
                t.n--;
            if (t.n || diag.len)
                buf_line(&diag, t.s, t.n);
        }
    }
    free(next_name);
    if (diag.len) {
        free(owner->trailer);
        owner->trailer = buf_take(&diag);
    }
    free(diag.s);
}

ktap_node *ktap_parse(const char *text, size_t len)
{
    parser p = {0};
    size_t cap = 0;
    const char *s = text ? text : "";
    const char *end = s + (text ? len : 0);
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
        p.lines = grow(p.lines, p.nlines, &cap, sizeof(span));
        size_t m = n;
        if (m && s[m - 1] == '\r')
            m--;
        p.lines[p.nlines++] = (span){s, m};
        s += n + (nl ? 1 : 0);
    }
    ktap_node *root = xmem(sizeof(*root));
    root->number = -1;
    root->plan = -1;
    p.prefix[0] = (span){"", 0};
    while (p.i < p.nlines)
        parse_level(&p, root, 0);
    free(p.lines);
    root->found = p.found;
    return root;
}

bool ktap_found(const ktap_node *root) { return root && root->found; }

static void node_free(ktap_node *n)
{
    for (size_t i = 0; i < n->nkids; i++)
        node_free(&n->kids[i]);
    free(n->kids);
    free(n->name);
    free(n->directive_text);
    free(n->diag);
    free(n->trailer);
    free(n->plan_skip);
    free(n->bail_reason);
}

void ktap_free(ktap_node *root)
{
    if (!root)
        return;
    node_free(root);
    free(root);
}

/* ---------------------------------------------------------------- flatten */

static void add_case(ktap_cases *out, const char *name, ktap_status st, const char *msg, const char *diag)
{
    out->v = grow(out->v, out->n, &out->cap, sizeof(ktap_case));
    ktap_case *c = &out->v[out->n++];
    c->name = dupn(name, strlen(name));
    c->status = st;
    c->message = msg ? dupn(msg, strlen(msg)) : NULL;
    c->diag = diag && *diag ? dupn(diag, strlen(diag)) : NULL;
}

static char *join(const char *a, const char *b)
{
    if (!a || !*a)
        return dupn(b, strlen(b));
    size_t na = strlen(a), nb = strlen(b);
    char *s = xmem(na + nb + 4);
    memcpy(s, a, na);
    memcpy(s + na, " / ", 3);
    memcpy(s + na + 3, b, nb);
    return s;
}

static char *node_label(const ktap_node *n)
{
    if (n->name && *n->name)
        return dupn(n->name, strlen(n->name));
    char tmp[40];
    if (n->number >= 0)
        snprintf(tmp, sizeof(tmp), "test %ld", n->number);
    else
        snprintf(tmp, sizeof(tmp), "(unnamed)");
    return dupn(tmp, strlen(tmp));
}

static const char *dir_name(ktap_directive d)
{
    switch (d) {
    case KTAP_DIR_SKIP:
        return "SKIP";
    case KTAP_DIR_TODO:
        return "TODO";
    case KTAP_DIR_XFAIL:
        return "XFAIL";
    case KTAP_DIR_TIMEOUT:
        return "TIMEOUT";
    default:
        return "";
    }
}

static ktap_status node_status(const ktap_node *n)
{
    if (n->directive == KTAP_DIR_SKIP)
        return KTAP_SKIP;
    if (n->directive == KTAP_DIR_TODO)
        return n->ok ? KTAP_PASS : KTAP_TODO;
    if (!n->has_result)
        return KTAP_FAIL;
    if (n->directive == KTAP_DIR_TIMEOUT)
        return KTAP_FAIL;
    return n->ok ? KTAP_PASS : KTAP_FAIL;
}

/* "not ok 3 name # exit=1" -> "KTAP: not ok 3 name # exit=1" style message */
static char *result_message(const ktap_node *n, ktap_status st)
{
    char *label = node_label(n);
    const char *dn = dir_name(n->directive);
    const char *dt = n->directive_text ? n->directive_text : "";
    size_t len = strlen(label) + strlen(dn) + strlen(dt) + 64;
    char *m = xmem(len);
    if (st == KTAP_PASS && n->directive != KTAP_DIR_XFAIL && n->directive != KTAP_DIR_TODO) {
        free(label);
        free(m);
        return NULL;
    }
    if (!n->has_result)
        snprintf(m, len, "no result line for '%s' (it crashed, hung or its output was cut)", label);
    else if (st == KTAP_SKIP)
        snprintf(m, len, "%s", *dt ? dt : "skipped");
    else if (st != KTAP_FAIL)
        snprintf(m, len, "%s%s%s", dn, *dt ? " " : "", dt);
    else
        snprintf(m, len, "not ok %ld %s%s%s%s%s", n->number, label, *dn || *dt ? " # " : "", dn, *dn && *dt ? " " : "",
                 dt);
    free(label);
    return m;
}

static size_t count_failed(const ktap_cases *out, size_t from)
{
    size_t k = 0;
    for (size_t i = from; i < out->n; i++)
        k += out->v[i].status == KTAP_FAIL;
    return k;
}

/* plan and bail-out problems of a level, as cases of their own */
static void level_problems(const ktap_node *n, const char *path, ktap_cases *out)
{
    char msg[160];
    /* "1..0" is a finished empty document: KUnit prints one at boot when no
     * suite is built in, and the suites of modules loaded later follow it
     * on the console without a header of their own */
    if (n->plan > 0 && (size_t)n->plan != n->nkids) {
        snprintf(msg, sizeof(msg), "planned %ld tests (1..%ld), %zu reported", n->plan, n->plan, n->nkids);
        char *name = join(path, "(plan)");
        add_case(out, name, KTAP_FAIL, msg, n->trailer);
        free(name);
    }
    if (n->bailed) {
        char *name = join(path, "(bail out)");
        const char *r = n->bail_reason && *n->bail_reason ? n->bail_reason : "no reason given";
        size_t len = strlen(r) + 16;
        char *m = xmem(len);
        snprintf(m, len, "Bail out! %s", r);
        add_case(out, name, KTAP_FAIL, m, n->trailer);
        free(m);
        free(name);
    }
}

static void flatten_node(const ktap_node *n, const char *parent, ktap_cases *out, int depth)
{
    char *label = node_label(n);
    char *path = join(parent, label);
    free(label);
    ktap_status st = node_status(n);
    if (n->nkids == 0) {
        if (n->plan == 0 && n->plan_skip && st != KTAP_FAIL)
            add_case(out, path, KTAP_SKIP, n->plan_skip, n->diag);
        else {
            char *m = result_message(n, st);
            add_case(out, path, st, m, n->diag);
            free(m);
        }
        level_problems(n, path, out);
        free(path);
        return;
    }
    size_t before = out->n;
    for (size_t i = 0; i < n->nkids; i++)
        flatten_node(&n->kids[i], path, out, depth + 1);
    level_problems(n, path, out);
    if (st == KTAP_FAIL && count_failed(out, before) == 0) {
        char *m = result_message(n, KTAP_FAIL);
        const char *extra = n->has_result ? " although none of its cases failed" : "";
        size_t len = strlen(m) + strlen(extra) + 1;
        char *mm = xmem(len);
        snprintf(mm, len, "%s%s", m, extra);
        add_case(out, path, KTAP_FAIL, mm, n->diag ? n->diag : n->trailer);
        free(mm);
        free(m);
    }
    free(path);
}

void ktap_flatten(const ktap_node *root, const char *suite, ktap_cases *out)
{
    if (!root)
        return;
    for (size_t i = 0; i < root->nkids; i++)
        flatten_node(&root->kids[i], suite, out, 0);
    const char *base = suite && *suite ? suite : "";
    if (root->plan == 0 && root->plan_skip && root->nkids == 0)
        add_case(out, *base ? base : "(all)", KTAP_SKIP, root->plan_skip, root->trailer);
    level_problems(root, base, out);
}

void ktap_cases_free(ktap_cases *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].name);
        free(c->v[i].message);
        free(c->v[i].diag);
    }
    free(c->v);
    c->v = NULL;
    c->n = c->cap = 0;
}

const char *ktap_status_name(ktap_status s)
{
    switch (s) {
    case KTAP_PASS:
        return "passed";
    case KTAP_FAIL:
        return "failed";
    case KTAP_SKIP:
        return "skipped";
    default:
        return "todo";
    }
}
