/* What a test file declares, read without running it (for the
 * file_discovered event): the fixtures it names with a string literal
 * (provium:vm_fixture / lab_fixture / provium.fixture) and a file-scope
 * provium:claim{...} whose fields are literals. The host's one Lua
 * tokenizer (host/fixtures/lua_scan.c) skips comments and strings, so names
 * inside them never count. */
#include <stdlib.h>
#include <string.h>

#include "../fixtures/lua_scan.h"
#include "../util/util.h"
#include "runner.h"

typedef lua_token tok;

static bool is(const tok *t, lua_tok_kind k, const char *text) { return lua_tok_is(t, k, text); }

/* NUMBER ('*' NUMBER)* or a size STRING at toks[*i]; -1 when not a literal. */
static double literal_value(const tok *toks, size_t n, size_t *i, bool size)
{
    if (*i < n && toks[*i].kind == LUA_TOK_STRING && size) {
        int64_t v = parse_size(toks[(*i)++].str);
        return v < 0 ? -1 : (double)v;
    }
    double v = 1;
    for (;;) {
        if (*i >= n || toks[*i].kind != LUA_TOK_NUMBER)
            return -1;
        char num[64];
        const tok *t = &toks[(*i)++];
        if (t->n >= sizeof(num))
            return -1;
        memcpy(num, t->s, t->n);
        num[t->n] = 0;
        v *= strtod(num, NULL);
        if (*i < n && is(&toks[*i], LUA_TOK_OP, "*"))
            (*i)++;
        else
            return v;
    }
}

/* The fields of the table constructor at toks[i] ("{"): true when all are literals. */
static bool claim_fields(const tok *toks, size_t n, size_t i, file_decl *d)
{
    if (i >= n || !is(&toks[i], LUA_TOK_OP, "{"))
        return false;
    i++;
    int64_t mem = 0;
    double cpus = 0;
    while (i < n && !is(&toks[i], LUA_TOK_OP, "}")) {
        if (toks[i].kind != LUA_TOK_NAME || i + 1 >= n || !is(&toks[i + 1], LUA_TOK_OP, "="))
            return false;
        const tok *key = &toks[i];
        i += 2;
        bool is_mem = is(key, LUA_TOK_NAME, "memory") || is(key, LUA_TOK_NAME, "memory_bytes");
        double v = literal_value(toks, n, &i, is_mem);
        if (v < 0)
            return false;
        if (is_mem)
            mem = (int64_t)v;
        else if (is(key, LUA_TOK_NAME, "cpus"))
            cpus = v;
        else
            return false;
        if (i < n && (is(&toks[i], LUA_TOK_OP, ",") || is(&toks[i], LUA_TOK_OP, ";")))
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
    lua_tokens tk;
    lua_tokenize(src, len, &tk);
    const tok *toks = tk.toks;
    size_t n = tk.n;
    int depth = 0; /* blocks: function/if/do/repeat open, end/until close */
    for (size_t i = 0; i < n; i++) {
        const tok *t = &toks[i];
        if (is(t, LUA_TOK_NAME, "function") || is(t, LUA_TOK_NAME, "if") || is(t, LUA_TOK_NAME, "do") ||
            is(t, LUA_TOK_NAME, "repeat"))
            depth++;
        else if ((is(t, LUA_TOK_NAME, "end") || is(t, LUA_TOK_NAME, "until")) && depth > 0)
            depth--;
        /* provium . or : NAME */
        if (!is(t, LUA_TOK_NAME, "provium") || i + 2 >= n ||
            !(is(&toks[i + 1], LUA_TOK_OP, ".") || is(&toks[i + 1], LUA_TOK_OP, ":")) ||
            toks[i + 2].kind != LUA_TOK_NAME)
            continue;
        const tok *fn = &toks[i + 2];
        size_t a = i + 3;
        bool paren = a < n && is(&toks[a], LUA_TOK_OP, "(");
        if (paren)
            a++;
        if (is(fn, LUA_TOK_NAME, "vm_fixture") || is(fn, LUA_TOK_NAME, "lab_fixture") ||
            is(fn, LUA_TOK_NAME, "fixture")) {
            if (a < n && toks[a].kind == LUA_TOK_STRING && strlen(toks[a].str) == toks[a].strn)
                add_fixture(d, toks[a].str);
        } else if (is(fn, LUA_TOK_NAME, "claim") && depth == 0 && !d->has_claim &&
                   is(&toks[i + 1], LUA_TOK_OP, ":")) {
            claim_fields(toks, n, a, d);
        }
    }
    lua_tokens_free(&tk);
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
