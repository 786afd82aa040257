/* What a test file declares, read without running it (for the
 * file_discovered event): the fixtures it names with a string literal
 * (provium:vm_fixture / lab_fixture / provium.fixture) and a file-scope
 * provium:claim{...} whose fields are literals. A small Lua tokenizer skips
 * comments and strings, so names inside them never count. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "runner.h"

static char *dup_n(const char *s, size_t n)
{
    char *r = xmalloc(n + 1);
    memcpy(r, s, n);
    r[n] = 0;
    return r;
}

typedef enum { T_END, T_NAME, T_STRING, T_NUMBER, T_PUNCT } tok_kind;

typedef struct {
    tok_kind kind;
    char *text; /* NAME/NUMBER text, STRING value, PUNCT character */
} tok;

typedef struct {
    const char *s, *end;
} lexer;

/* Length of a long bracket opener "[", "=" * n, "[" at p (0 if none); *level = n. */
static size_t long_open(const char *p, const char *end, int *level)
{
    if (p >= end || *p != '[')
        return 0;
    const char *q = p + 1;
    while (q < end && *q == '=')
        q++;
    if (q >= end || *q != '[')
        return 0;
    *level = (int)(q - p - 1);
    return (size_t)(q - p + 1);
}

/* Skips to just past the closing "]", "=" * level, "]"; returns the content. */
static char *long_body(lexer *lx, int level)
{
    const char *start = lx->s;
    for (const char *p = lx->s; p < lx->end; p++) {
        if (*p != ']')
            continue;
        const char *q = p + 1;
        int n = 0;
        while (q < lx->end && *q == '=' && n < level) {
            q++;
            n++;
        }
        if (n == level && q < lx->end && *q == ']') {
            lx->s = q + 1;
            return dup_n(start, (size_t)(p - start));
        }
    }
    lx->s = lx->end;
    return dup_n(start, (size_t)(lx->end - start));
}

static tok next_tok(lexer *lx)
{
    for (;;) {
        while (lx->s < lx->end && isspace((unsigned char)*lx->s))
            lx->s++;
        if (lx->end - lx->s >= 2 && lx->s[0] == '-' && lx->s[1] == '-') {
            lx->s += 2;
            int level;
            size_t open = long_open(lx->s, lx->end, &level);
            if (open) {
                lx->s += open;
                free(long_body(lx, level));
            } else {
                while (lx->s < lx->end && *lx->s != '\n')
                    lx->s++;
            }
            continue;
        }
        break;
    }
    if (lx->s >= lx->end)
        return (tok){T_END, NULL};
    const char *p = lx->s;
    int level;
    size_t open = long_open(p, lx->end, &level);
    if (open) {
        lx->s += open;
        return (tok){T_STRING, long_body(lx, level)};
    }
    if (*p == '"' || *p == '\'') {
        char q = *p++;
        strbuf b;
        sb_init(&b);
        while (p < lx->end && *p != q && *p != '\n') {
            if (*p == '\\' && p + 1 < lx->end)
                p++; /* the escaped character itself; good enough for names */
            sb_add(&b, p, 1);
            p++;
        }
        lx->s = p < lx->end ? p + 1 : p;
        return (tok){T_STRING, sb_take(&b)};
    }
    if (isalpha((unsigned char)*p) || *p == '_') {
        while (p < lx->end && (isalnum((unsigned char)*p) || *p == '_'))
            p++;
        tok t = {T_NAME, dup_n(lx->s, (size_t)(p - lx->s))};
        lx->s = p;
        return t;
    }
    if (isdigit((unsigned char)*p)) {
        while (p < lx->end && (isalnum((unsigned char)*p) || *p == '.' || *p == '_'))
            p++;
        tok t = {T_NUMBER, dup_n(lx->s, (size_t)(p - lx->s))};
        lx->s = p;
        return t;
    }
    lx->s = p + 1;
    return (tok){T_PUNCT, dup_n(p, 1)};
}

static bool is(const tok *t, tok_kind k, const char *text)
{
    return t->kind == k && (!text || strcmp(t->text, text) == 0);
}

/* NUMBER ('*' NUMBER)* or a size STRING at toks[*i]; -1 when not a literal. */
static double literal_value(const tok *toks, size_t n, size_t *i, bool size)
{
    if (*i < n && toks[*i].kind == T_STRING && size) {
        int64_t v = parse_size(toks[(*i)++].text);
        return v < 0 ? -1 : (double)v;
    }
    double v = 1;
    for (;;) {
        if (*i >= n || toks[*i].kind != T_NUMBER)
            return -1;
        v *= strtod(toks[(*i)++].text, NULL);
        if (*i < n && is(&toks[*i], T_PUNCT, "*"))
            (*i)++;
        else
            return v;
    }
}

/* The fields of the table constructor at toks[i] ("{"): true when all are literals. */
static bool claim_fields(const tok *toks, size_t n, size_t i, file_decl *d)
{
    if (i >= n || !is(&toks[i], T_PUNCT, "{"))
        return false;
    i++;
    int64_t mem = 0;
    double cpus = 0;
    while (i < n && !is(&toks[i], T_PUNCT, "}")) {
        if (toks[i].kind != T_NAME || i + 1 >= n || !is(&toks[i + 1], T_PUNCT, "="))
            return false;
        const char *key = toks[i].text;
        i += 2;
        bool is_mem = strcmp(key, "memory") == 0 || strcmp(key, "memory_bytes") == 0;
        double v = literal_value(toks, n, &i, is_mem);
        if (v < 0)
            return false;
        if (is_mem)
            mem = (int64_t)v;
        else if (strcmp(key, "cpus") == 0)
            cpus = v;
        else
            return false;
        if (i < n && (is(&toks[i], T_PUNCT, ",") || is(&toks[i], T_PUNCT, ";")))
            i++;
    }
    d->has_claim = true;
    d->claim_mem = mem;
    d->claim_cpus = cpus;
    return true;
}

static void add_fixture(file_decl *d, const char *name)
{
    for (size_t i = 0; i < d->nfixtures; i++)
        if (strcmp(d->fixtures[i], name) == 0)
            return;
    d->fixtures = xrealloc(d->fixtures, (d->nfixtures + 1) * sizeof(char *));
    d->fixtures[d->nfixtures++] = xstrdup(name);
}

void scan_source_decl(const char *src, size_t len, file_decl *d)
{
    memset(d, 0, sizeof(*d));
    lexer lx = {src, src + len};
    tok *toks = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        tok t = next_tok(&lx);
        if (t.kind == T_END)
            break;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            toks = xrealloc(toks, cap * sizeof(tok));
        }
        toks[n++] = t;
    }
    int depth = 0; /* blocks: function/if/do/repeat open, end/until close */
    for (size_t i = 0; i < n; i++) {
        const tok *t = &toks[i];
        if (t->kind == T_NAME) {
            if (!strcmp(t->text, "function") || !strcmp(t->text, "if") || !strcmp(t->text, "do") ||
                !strcmp(t->text, "repeat"))
                depth++;
            else if ((!strcmp(t->text, "end") || !strcmp(t->text, "until")) && depth > 0)
                depth--;
        }
        /* provium . or : NAME */
        if (!is(t, T_NAME, "provium") || i + 2 >= n ||
            !(is(&toks[i + 1], T_PUNCT, ".") || is(&toks[i + 1], T_PUNCT, ":")) || toks[i + 2].kind != T_NAME)
            continue;
        const char *fn = toks[i + 2].text;
        size_t a = i + 3;
        bool paren = a < n && is(&toks[a], T_PUNCT, "(");
        if (paren)
            a++;
        if (!strcmp(fn, "vm_fixture") || !strcmp(fn, "lab_fixture") || !strcmp(fn, "fixture")) {
            if (a < n && toks[a].kind == T_STRING)
                add_fixture(d, toks[a].text);
        } else if (!strcmp(fn, "claim") && depth == 0 && !d->has_claim && is(&toks[i + 1], T_PUNCT, ":")) {
            claim_fields(toks, n, a, d);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(toks[i].text);
    free(toks);
}

int scan_file_decl(const char *path, file_decl *d)
{
    size_t len;
    char *src = read_whole_file(path, &len);
    if (!src) {
        memset(d, 0, sizeof(*d));
        return -1;
    }
    scan_source_decl(src, len, d);
    free(src);
    return 0;
}

void file_decl_free(file_decl *d)
{
    for (size_t i = 0; i < d->nfixtures; i++)
        free(d->fixtures[i]);
    free(d->fixtures);
    memset(d, 0, sizeof(*d));
}
