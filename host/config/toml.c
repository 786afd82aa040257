/*
 * toml.c - a small TOML 1.0 parser for Provium's configuration files.
 *
 * Design notes
 *  - The whole document is parsed into a tree of toml_value nodes owned by
 *    the root table; toml_free(root) releases everything.
 *  - The input is a (pointer, length) pair that need not be NUL-terminated,
 *    so every read goes through peek_at(), which returns -1 past the end.
 *  - Errors are reported once, at the first problem, as "file:line:col: msg".
 *    Columns count Unicode code points, matching what an editor shows.
 *  - Containers carry their nesting depth; anything deeper than
 *    TOML_MAX_DEPTH is rejected, which bounds the recursion of the parser,
 *    of freeze() and of toml_free() no matter what the input is.
 *  - Numbers go through strtod(), which honours LC_NUMERIC: callers that
 *    call setlocale() must keep LC_NUMERIC at "C" while parsing.
 */
#include "toml.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOML_MAX_DEPTH 64              /* nested tables/arrays, root = 0 */
#define TOML_MAX_FILE (64u << 20)      /* toml_parse_file refuses bigger files */
#define INDEX_MIN 16                   /* tables this large get a hash index */

/* Table/array flags that implement TOML's "define each table once" rules. */
enum {
    F_HEADER = 1u << 0, /* table defined explicitly by [a] or [[a]] */
    F_DOTTED = 1u << 1, /* table created (or extended) through dotted keys */
    F_FROZEN = 1u << 2, /* inline table, or a table inside one: closed */
    F_AOT = 1u << 3,    /* array created by [[a]]: later [[a]] append to it */
};

struct toml_value {
    toml_type type;
    unsigned flags;
    int line, col;
    int depth;
    union {
        struct {
            char **keys;
            toml_value **vals;
            size_t len, cap;
            size_t *index; /* open addressing, slots hold position+1 */
            size_t icap;
        } tab;
        struct {
            toml_value **items;
            size_t len, cap;
        } arr;
        char *str;
        int64_t i;
        double f;
        bool b;
    } u;
};

typedef struct {
    const unsigned char *s;
    size_t len, pos;
    size_t start;          /* first byte after an optional UTF-8 BOM */
    const char *file;
    char *err;
    size_t errlen;
    bool failed;
    size_t lc_pos;         /* cache for linecol(): position ... */
    long lc_line, lc_col;  /* ... and its line and column */
    toml_value *root;
    toml_value *cur;       /* table that key/value lines go into */
} parser;

/* A growable byte buffer, always NUL-terminated once non-empty. */
typedef struct {
    char *p;
    size_t len, cap;
} buf;

/* One component of a dotted key, with its source position for errors. */
typedef struct {
    char *name;
    size_t pos;
} keypart;

typedef struct {
    keypart *parts;
    size_t n, cap;
} keypath;

static toml_value *parse_value(parser *p, int depth);

/* ------------------------------------------------------------------------ */
/* Input access and positions                                               */

static int peek_at(const parser *p, size_t off)
{
    size_t i = p->pos + off;
    return i < p->len ? p->s[i] : -1;
}

static int peek(const parser *p)
{
    return peek_at(p, 0);
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static bool at_newline(const parser *p)
{
    return peek(p) == '\n' || (peek(p) == '\r' && peek_at(p, 1) == '\n');
}

static void eat_newline(parser *p)
{
    p->pos += peek(p) == '\r' ? 2 : 1;
}

static int clamp_int(long v)
{
    return v > 0x7fffffffL ? 0x7fffffff : (int)v;
}

/* Converts a byte offset into a 1-based line and column (in code points).
 * Positions are requested mostly in increasing order, so we walk forward
 * from the previous answer instead of rescanning from the start. */
static void linecol(parser *p, size_t pos, int *line, int *col)
{
    if (pos > p->len)
        pos = p->len;
    if (pos < p->start)
        pos = p->start;
    if (pos < p->lc_pos) {
        for (size_t i = pos; i < p->lc_pos; i++)
            if (p->s[i] == '\n')
                p->lc_line--;
        size_t bol = pos;
        while (bol > p->start && p->s[bol - 1] != '\n')
            bol--;
        p->lc_pos = bol;
        p->lc_col = 1;
    }
    for (size_t i = p->lc_pos; i < pos; i++) {
        if (p->s[i] == '\n') {
            p->lc_line++;
            p->lc_col = 1;
        } else if ((p->s[i] & 0xC0) != 0x80) {
            p->lc_col++;
        }
    }
    p->lc_pos = pos;
    *line = clamp_int(p->lc_line);
    *col = clamp_int(p->lc_col);
}

/* Records the first error only: later failures are consequences of it. */
__attribute__((format(printf, 3, 4)))
static void fail(parser *p, size_t pos, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = true;
    if (!p->err || p->errlen == 0)
        return;
    int line, col;
    linecol(p, pos, &line, &col);
    int n = snprintf(p->err, p->errlen, "%s:%d:%d: ", p->file, line, col);
    if (n < 0 || (size_t)n >= p->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

/* Decodes one UTF-8 sequence; returns its length, or 0 when it is malformed,
 * truncated, overlong, a surrogate or beyond U+10FFFF. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t len;
    uint32_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        len = 2;
        c &= 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        c &= 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        c &= 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

static size_t utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Names the character at pos for an error message. */
static const char *describe(const parser *p, size_t pos, char *out, size_t outlen)
{
    if (pos >= p->len)
        return "end of file";
    unsigned char c = p->s[pos];
    uint32_t cp;
    if (c == '\n' || (c == '\r' && pos + 1 < p->len && p->s[pos + 1] == '\n'))
        return "end of line";
    if (c == '\'')
        return "\"'\"";
    if (c > 0x20 && c < 0x7F)
        snprintf(out, outlen, "'%c'", c);
    else if (c == ' ')
        return "space";
    else if (utf8_decode(p->s + pos, p->len - pos, &cp))
        snprintf(out, outlen, "character U+%04X", (unsigned)cp);
    else
        snprintf(out, outlen, "invalid UTF-8 byte 0x%02X", c);
    return out;
}

/* Renders key components 0..upto for messages: joined with '.', control
 * characters replaced, and truncated so a hostile key cannot flood err. */
static const char *show_key(const keypath *k, size_t upto, char *out, size_t outlen)
{
    size_t o = 0, room = outlen - 4; /* keep space for "..." and the NUL */
    bool cut = false;
    for (size_t i = 0; i <= upto && i < k->n && !cut; i++) {
        if (i > 0 && !(cut = o >= room))
            out[o++] = '.';
        for (const unsigned char *s = (const unsigned char *)k->parts[i].name; *s && !cut; s++) {
            if (!(cut = o >= room))
                out[o++] = (*s < 0x20 || *s == 0x7F) ? '?' : (char)*s;
        }
    }
    if (cut) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

/* ------------------------------------------------------------------------ */
/* Buffers and values                                                       */

static bool buf_push(parser *p, buf *b, const char *src, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 32;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            fail(p, p->pos, "out of memory");
            return false;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
    b->p[b->len] = '\0';
    return true;
}

static bool buf_putc(parser *p, buf *b, char c)
{
    return buf_push(p, b, &c, 1);
}

/* Hands the buffer's string to the caller ("" for an empty buffer). */
static char *buf_take(parser *p, buf *b)
{
    char *s = b->p ? b->p : calloc(1, 1);
    if (!s)
        fail(p, p->pos, "out of memory");
    b->p = NULL;
    b->len = b->cap = 0;
    return s;
}

static char *dup_str(parser *p, const char *str, size_t pos)
{
    size_t n = strlen(str) + 1;
    char *s = malloc(n);
    if (!s)
        fail(p, pos, "out of memory");
    else
        memcpy(s, str, n);
    return s;
}

static char *dup_range(parser *p, size_t from, size_t to)
{
    char *s = malloc(to - from + 1);
    if (!s) {
        fail(p, from, "out of memory");
        return NULL;
    }
    memcpy(s, p->s + from, to - from);
    s[to - from] = '\0';
    return s;
}

static toml_value *new_value(parser *p, toml_type type, size_t pos)
{
    toml_value *v = calloc(1, sizeof *v);
    if (!v) {
        fail(p, pos, "out of memory");
        return NULL;
    }
    v->type = type;
    linecol(p, pos, &v->line, &v->col);
    return v;
}

/* Tables and arrays: the depth check here is what bounds all recursion. */
static toml_value *new_container(parser *p, toml_type type, int depth, size_t pos)
{
    if (depth > TOML_MAX_DEPTH) {
        fail(p, pos, "nesting too deep (more than %d levels of tables/arrays)", TOML_MAX_DEPTH);
        return NULL;
    }
    toml_value *v = new_value(p, type, pos);
    if (v)
        v->depth = depth;
    return v;
}

void toml_free(toml_value *v)
{
    if (!v)
        return;
    switch (v->type) {
    case TOML_TABLE:
        for (size_t i = 0; i < v->u.tab.len; i++) {
            free(v->u.tab.keys[i]);
            toml_free(v->u.tab.vals[i]);
        }
        free(v->u.tab.keys);
        free(v->u.tab.vals);
        free(v->u.tab.index);
        break;
    case TOML_ARRAY:
        for (size_t i = 0; i < v->u.arr.len; i++)
            toml_free(v->u.arr.items[i]);
        free(v->u.arr.items);
        break;
    case TOML_STRING:
    case TOML_DATETIME:
        free(v->u.str);
        break;
    default:
        break;
    }
    free(v);
}

/* FNV-1a: tiny and good enough for config keys. */
static size_t hash_key(const char *k)
{
    uint64_t h = 14695981039346656037ull;
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 1099511628211ull;
    return (size_t)h;
}

static void index_put(toml_value *t, size_t i)
{
    size_t mask = t->u.tab.icap - 1;
    size_t h = hash_key(t->u.tab.keys[i]) & mask;
    while (t->u.tab.index[h])
        h = (h + 1) & mask;
    t->u.tab.index[h] = i + 1;
}

/* Big tables get a hash index so that a file with many keys is not
 * quadratic; small ones (the common case) are searched linearly. */
static bool index_update(parser *p, toml_value *t)
{
    size_t len = t->u.tab.len;
    if (len < INDEX_MIN)
        return true;
    if (t->u.tab.icap >= 2 * len) {
        index_put(t, len - 1);
        return true;
    }
    size_t cap = 64;
    while (cap < 4 * len)
        cap *= 2;
    size_t *idx = calloc(cap, sizeof *idx);
    if (!idx) {
        fail(p, p->pos, "out of memory");
        return false;
    }
    free(t->u.tab.index);
    t->u.tab.index = idx;
    t->u.tab.icap = cap;
    for (size_t i = 0; i < len; i++)
        index_put(t, i);
    return true;
}

static toml_value *table_find(const toml_value *t, const char *key)
{
    if (t->u.tab.index) {
        size_t mask = t->u.tab.icap - 1;
        for (size_t h = hash_key(key) & mask; t->u.tab.index[h]; h = (h + 1) & mask) {
            size_t i = t->u.tab.index[h] - 1;
            if (strcmp(t->u.tab.keys[i], key) == 0)
                return t->u.tab.vals[i];
        }
        return NULL;
    }
    for (size_t i = 0; i < t->u.tab.len; i++)
        if (strcmp(t->u.tab.keys[i], key) == 0)
            return t->u.tab.vals[i];
    return NULL;
}

/* Takes ownership of key and v, even on failure (so callers never leak). */
static bool table_insert(parser *p, toml_value *t, char *key, toml_value *v)
{
    if (t->u.tab.len == t->u.tab.cap) {
        size_t cap = t->u.tab.cap ? 2 * t->u.tab.cap : 8;
        char **keys = realloc(t->u.tab.keys, cap * sizeof *keys);
        if (keys)
            t->u.tab.keys = keys;
        toml_value **vals = keys ? realloc(t->u.tab.vals, cap * sizeof *vals) : NULL;
        if (vals)
            t->u.tab.vals = vals;
        if (!keys || !vals) {
            free(key);
            toml_free(v);
            fail(p, p->pos, "out of memory");
            return false;
        }
        t->u.tab.cap = cap;
    }
    t->u.tab.keys[t->u.tab.len] = key;
    t->u.tab.vals[t->u.tab.len] = v;
    t->u.tab.len++;
    return index_update(p, t);
}

/* Takes ownership of v, even on failure. */
static bool array_push(parser *p, toml_value *a, toml_value *v)
{
    if (a->u.arr.len == a->u.arr.cap) {
        size_t cap = a->u.arr.cap ? 2 * a->u.arr.cap : 8;
        toml_value **items = realloc(a->u.arr.items, cap * sizeof *items);
        if (!items) {
            toml_free(v);
            fail(p, p->pos, "out of memory");
            return false;
        }
        a->u.arr.items = items;
        a->u.arr.cap = cap;
    }
    a->u.arr.items[a->u.arr.len++] = v;
    return true;
}

/* Marks an inline table and the sub-tables its dotted keys created as
 * closed: TOML forbids adding keys to an inline table after the fact. */
static void freeze(toml_value *t)
{
    t->flags |= F_FROZEN;
    for (size_t i = 0; i < t->u.tab.len; i++) {
        toml_value *c = t->u.tab.vals[i];
        if (c->type == TOML_TABLE && !(c->flags & F_FROZEN))
            freeze(c);
    }
}

/* ------------------------------------------------------------------------ */
/* Whitespace and comments                                                  */

static void skip_ws(parser *p)
{
    while (peek(p) == ' ' || peek(p) == '\t')
        p->pos++;
}

static bool is_control(int c)
{
    return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7F;
}

/* Consumes one non-ASCII character after checking it is valid UTF-8. */
static bool take_utf8(parser *p, buf *out)
{
    uint32_t cp;
    size_t n = utf8_decode(p->s + p->pos, p->len - p->pos, &cp);
    if (!n) {
        fail(p, p->pos, "invalid UTF-8 byte 0x%02X", p->s[p->pos]);
        return false;
    }
    if (out && !buf_push(p, out, (const char *)p->s + p->pos, n))
        return false;
    p->pos += n;
    return true;
}

/* At '#': consumes the comment up to (not including) the end of line.
 * Comments may hold any text except control characters. */
static bool skip_comment(parser *p)
{
    p->pos++;
    for (;;) {
        int c = peek(p);
        if (c == -1 || at_newline(p))
            return true;
        if (c >= 0x80) {
            if (!take_utf8(p, NULL))
                return false;
        } else if (is_control(c)) {
            fail(p, p->pos, "control character U+%04X is not allowed in a comment", (unsigned)c);
            return false;
        } else {
            p->pos++;
        }
    }
}

/* After a key/value pair or a header only a comment may follow on the line. */
static bool expect_eol(parser *p, const char *after)
{
    char tmp[40];
    skip_ws(p);
    if (peek(p) == '#' && !skip_comment(p))
        return false;
    if (peek(p) == -1)
        return true;
    if (at_newline(p)) {
        eat_newline(p);
        return true;
    }
    fail(p, p->pos, "unexpected %s%s%s; expected end of line", describe(p, p->pos, tmp, sizeof tmp),
         after ? " after " : "", after ? after : "");
    return false;
}

/* Inside arrays, newlines and comments count as whitespace. */
static bool skip_array_space(parser *p)
{
    for (;;) {
        skip_ws(p);
        if (at_newline(p))
            eat_newline(p);
        else if (peek(p) == '#') {
            if (!skip_comment(p))
                return false;
        } else
            return true;
    }
}

/* ------------------------------------------------------------------------ */
/* Strings                                                                  */

/* Copies one literal character of a string body, enforcing UTF-8 and the
 * ban on control characters (multi-line strings may contain newlines,
 * CRLF is normalised to LF). */
static bool string_char(parser *p, buf *out, bool multiline)
{
    int c = peek(p);
    if (c >= 0x80)
        return take_utf8(p, out);
    if (multiline && at_newline(p)) {
        eat_newline(p);
        return buf_putc(p, out, '\n');
    }
    if (is_control(c)) {
        fail(p, p->pos, "control character U+%04X is not allowed in a string (use an escape)", (unsigned)c);
        return false;
    }
    p->pos++;
    return buf_putc(p, out, (char)c);
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* \uXXXX or \UXXXXXXXX at pos: must name a Unicode scalar value other than
 * U+0000 (strings are handed out NUL-terminated). */
static bool parse_unicode_escape(parser *p, buf *out, int ndigits)
{
    size_t at = p->pos;
    int letter = peek_at(p, 1);
    uint32_t cp = 0;
    for (int i = 0; i < ndigits; i++) {
        int d = hex_value(peek_at(p, 2 + (size_t)i));
        if (d < 0) {
            fail(p, at, "invalid escape: \\%c needs %d hex digits", letter, ndigits);
            return false;
        }
        cp = cp * 16 + (uint32_t)d;
    }
    if (cp == 0) {
        fail(p, at, "invalid escape: U+0000 (NUL) is not allowed in strings");
        return false;
    }
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        fail(p, at, "invalid escape: U+%X is not a Unicode scalar value", (unsigned)cp);
        return false;
    }
    char enc[4];
    p->pos += 2 + (size_t)ndigits;
    return buf_push(p, out, enc, utf8_encode(cp, enc));
}

/* In a multi-line basic string a backslash that is the last thing on its
 * line (trailing blanks allowed) swallows all following whitespace and
 * newlines.  Returns false (without error) if this is not such a backslash. */
static bool line_ending_backslash(parser *p)
{
    size_t i = p->pos + 1;
    while (i < p->len && (p->s[i] == ' ' || p->s[i] == '\t'))
        i++;
    bool nl = i < p->len && (p->s[i] == '\n' || (p->s[i] == '\r' && i + 1 < p->len && p->s[i + 1] == '\n'));
    if (!nl)
        return false;
    p->pos = i;
    for (;;) {
        if (peek(p) == ' ' || peek(p) == '\t')
            p->pos++;
        else if (at_newline(p))
            eat_newline(p);
        else
            return true;
    }
}

/* At a backslash inside a basic string. */
static bool parse_escape(parser *p, buf *out, bool multiline)
{
    size_t at = p->pos;
    int e = peek_at(p, 1);
    const char *simple = "b\bt\tn\nf\fr\r\"\"\\\\";
    for (const char *s = simple; *s; s += 2) {
        if (e == *s) {
            p->pos += 2;
            return buf_putc(p, out, s[1]);
        }
    }
    if (e == 'u')
        return parse_unicode_escape(p, out, 4);
    if (e == 'U')
        return parse_unicode_escape(p, out, 8);
    if (multiline && line_ending_backslash(p))
        return true;
    if (e > 0x20 && e < 0x7F)
        fail(p, at, "invalid escape sequence '\\%c'", e);
    else
        fail(p, at, "invalid escape sequence (backslash followed by %s)", e == -1 ? "end of file" : "a non-printable character");
    return false;
}

/* "basic" or 'literal' string on one line; q is the quote character. */
static bool parse_single_line(parser *p, buf *out, int q)
{
    size_t open = p->pos++;
    for (;;) {
        int c = peek(p);
        if (c == -1 || at_newline(p)) {
            fail(p, open, "unterminated string");
            return false;
        }
        if (c == q) {
            p->pos++;
            return true;
        }
        if (c == '\\' && q == '"') {
            if (!parse_escape(p, out, false))
                return false;
        } else if (!string_char(p, out, false)) {
            return false;
        }
    }
}

/* """multi-line basic""" or '''multi-line literal'''.  A newline directly
 * after the opening delimiter is dropped; up to two quote characters may
 * directly precede the closing delimiter ("""a"""""  is  a""). */
static bool parse_multi_line(parser *p, buf *out, int q)
{
    size_t open = p->pos;
    p->pos += 3;
    if (at_newline(p))
        eat_newline(p);
    for (;;) {
        int c = peek(p);
        if (c == -1) {
            fail(p, open, "unterminated multi-line string");
            return false;
        }
        if (c == q) {
            size_t run = 0;
            while (peek_at(p, run) == q)
                run++;
            if (run >= 3) {
                size_t extra = run - 3 > 2 ? 2 : run - 3;
                for (size_t i = 0; i < extra; i++)
                    if (!buf_putc(p, out, (char)q))
                        return false;
                p->pos += 3 + extra;
                return true;
            }
            for (size_t i = 0; i < run; i++)
                if (!buf_putc(p, out, (char)q))
                    return false;
            p->pos += run;
        } else if (c == '\\' && q == '"') {
            if (!parse_escape(p, out, true))
                return false;
        } else if (!string_char(p, out, true)) {
            return false;
        }
    }
}

/* Any of the four string forms; multi-line ones are refused for keys. */
static bool parse_string(parser *p, buf *out, bool allow_multi)
{
    int q = peek(p);
    if (peek_at(p, 1) == q && peek_at(p, 2) == q) {
        if (!allow_multi) {
            fail(p, p->pos, "multi-line strings cannot be used as keys");
            return false;
        }
        return parse_multi_line(p, out, q);
    }
    return parse_single_line(p, out, q);
}

static toml_value *parse_string_value(parser *p)
{
    size_t start = p->pos;
    buf b = {0};
    if (!parse_string(p, &b, true)) {
        free(b.p);
        return NULL;
    }
    toml_value *v = new_value(p, TOML_STRING, start);
    char *s = v ? buf_take(p, &b) : NULL;
    if (!s) {
        free(b.p);
        free(v);
        return NULL;
    }
    v->u.str = s;
    return v;
}

/* ------------------------------------------------------------------------ */
/* Keys                                                                     */

static bool is_bare_key_char(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '_' || c == '-';
}

static void keypath_free(keypath *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->parts[i].name);
    free(k->parts);
    k->parts = NULL;
    k->n = k->cap = 0;
}

static bool keypath_add(parser *p, keypath *k, char *name, size_t pos)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 4;
        keypart *parts = realloc(k->parts, cap * sizeof *parts);
        if (!parts) {
            free(name);
            fail(p, pos, "out of memory");
            return false;
        }
        k->parts = parts;
        k->cap = cap;
    }
    k->parts[k->n].name = name;
    k->parts[k->n].pos = pos;
    k->n++;
    return true;
}

/* One bare or quoted key component. */
static bool parse_simple_key(parser *p, keypath *k)
{
    size_t start = p->pos;
    int c = peek(p);
    char *name;
    if (c == '"' || c == '\'') {
        buf b = {0};
        if (!parse_string(p, &b, false)) {
            free(b.p);
            return false;
        }
        name = buf_take(p, &b);
    } else if (is_bare_key_char(c)) {
        while (is_bare_key_char(peek(p)))
            p->pos++;
        name = dup_range(p, start, p->pos);
    } else {
        char tmp[40];
        fail(p, start, "expected a key, found %s", describe(p, start, tmp, sizeof tmp));
        return false;
    }
    return name && keypath_add(p, k, name, start);
}

/* key, or key.key.key with optional blanks around the dots.  The number of
 * components is capped: each one is a level of table nesting anyway. */
static bool parse_key(parser *p, keypath *k)
{
    for (;;) {
        skip_ws(p);
        if (!parse_simple_key(p, k))
            return false;
        if (k->n > TOML_MAX_DEPTH) {
            fail(p, k->parts[k->n - 1].pos, "key has too many dotted parts (max %d)", TOML_MAX_DEPTH);
            return false;
        }
        skip_ws(p);
        if (peek(p) != '.')
            return true;
        p->pos++;
    }
}

/* ------------------------------------------------------------------------ */
/* Numbers, booleans and date-times                                         */

static bool is_token_char(int c)
{
    return is_bare_key_char(c) || c == '+' || c == '.';
}

/* t[0..n) must be digits of the base, with single underscores only
 * between two digits. */
static bool valid_digits(const char *t, size_t n, int base)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (t[i] == '_') {
            if (i == 0 || i == n - 1 || t[i + 1] == '_')
                return false;
        } else {
            int d = hex_value((unsigned char)t[i]);
            if (d < 0 || d >= base)
                return false;
        }
    }
    return true;
}

/* Accumulates validated digits into *out; false if the value exceeds limit. */
static bool accumulate(const char *t, size_t n, unsigned base, uint64_t limit, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] == '_')
            continue;
        uint64_t d = (uint64_t)hex_value((unsigned char)t[i]);
        if (v > (limit - d) / base)
            return false;
        v = v * base + d;
    }
    *out = v;
    return true;
}

#define TOKFMT "'%.*s%s'"
#define TOKARG(t, n) (int)((n) > 40 ? 40 : (n)), (t), ((n) > 40 ? "..." : "")

static toml_value *make_int(parser *p, size_t start, int64_t i)
{
    toml_value *v = new_value(p, TOML_INT, start);
    if (v)
        v->u.i = i;
    return v;
}

static toml_value *make_float(parser *p, size_t start, double f)
{
    toml_value *v = new_value(p, TOML_FLOAT, start);
    if (v)
        v->u.f = f;
    return v;
}

/* 0x.., 0o.., 0b..: unsigned digits that must fit in int64_t. */
static toml_value *parse_prefixed_int(parser *p, size_t start, const char *t, size_t n)
{
    unsigned base = t[1] == 'x' ? 16 : t[1] == 'o' ? 8 : 2;
    const char *name = base == 16 ? "hexadecimal" : base == 8 ? "octal" : "binary";
    uint64_t u;
    if (!valid_digits(t + 2, n - 2, (int)base)) {
        fail(p, start, "invalid %s integer " TOKFMT, name, TOKARG(t, n));
        return NULL;
    }
    if (!accumulate(t + 2, n - 2, base, INT64_MAX, &u)) {
        fail(p, start, "integer " TOKFMT " does not fit in 64 bits", TOKARG(t, n));
        return NULL;
    }
    return make_int(p, start, (int64_t)u);
}

/* strtod on a copy without underscores (they were validated already). */
static toml_value *convert_float(parser *p, size_t start, const char *t, size_t n)
{
    char *copy = malloc(n + 1);
    if (!copy) {
        fail(p, start, "out of memory");
        return NULL;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (t[i] != '_')
            copy[m++] = t[i];
    copy[m] = '\0';
    char *end;
    double d = strtod(copy, &end);
    bool ok = *end == '\0';
    free(copy);
    if (!ok || isinf(d)) {
        fail(p, start, ok ? "float " TOKFMT " is out of range" : "invalid float " TOKFMT, TOKARG(t, n));
        return NULL;
    }
    return make_float(p, start, d);
}

/* [+-] int [. frac] [e [+-] exp] with TOML's underscore and zero rules. */
static toml_value *parse_decimal(parser *p, size_t start, const char *t, size_t n, size_t i, bool neg)
{
    size_t j = i;
    while (j < n && t[j] != '.' && t[j] != 'e' && t[j] != 'E')
        j++;
    if (!valid_digits(t + i, j - i, 10)) {
        fail(p, start, "invalid number " TOKFMT, TOKARG(t, n));
        return NULL;
    }
    if (t[i] == '0' && j - i > 1) {
        fail(p, start, "leading zeros are not allowed in " TOKFMT, TOKARG(t, n));
        return NULL;
    }
    bool is_float = false;
    if (j < n && t[j] == '.') {
        size_t k = ++j;
        while (j < n && t[j] != 'e' && t[j] != 'E')
            j++;
        if (!valid_digits(t + k, j - k, 10)) {
            fail(p, start, "invalid float " TOKFMT " (need digits after '.')", TOKARG(t, n));
            return NULL;
        }
        is_float = true;
    }
    if (j < n) { /* at 'e' or 'E' */
        size_t k = j + 1;
        if (k < n && (t[k] == '+' || t[k] == '-'))
            k++;
        if (!valid_digits(t + k, n - k, 10)) {
            fail(p, start, "invalid float " TOKFMT " (bad exponent)", TOKARG(t, n));
            return NULL;
        }
        is_float = true;
    }
    if (is_float)
        return convert_float(p, start, t, n);
    uint64_t u;
    if (!accumulate(t + i, n - i, 10, neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, &u)) {
        fail(p, start, "integer " TOKFMT " does not fit in 64 bits", TOKARG(t, n));
        return NULL;
    }
    /* -(2^63) has no positive int64_t counterpart, so it is special-cased. */
    if (neg)
        return make_int(p, start, u > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)u);
    return make_int(p, start, (int64_t)u);
}

static toml_value *parse_number(parser *p, size_t start, size_t n)
{
    const char *t = (const char *)p->s + start;
    size_t i = (t[0] == '+' || t[0] == '-') ? 1 : 0;
    bool neg = t[0] == '-';
    if (n - i == 3 && memcmp(t + i, "inf", 3) == 0)
        return make_float(p, start, neg ? -INFINITY : INFINITY);
    if (n - i == 3 && memcmp(t + i, "nan", 3) == 0)
        return make_float(p, start, neg ? -NAN : NAN);
    if (n - i > 2 && t[i] == '0' && (t[i + 1] == 'x' || t[i + 1] == 'o' || t[i + 1] == 'b')) {
        if (i) {
            fail(p, start, "a sign is not allowed on hexadecimal, octal or binary integers");
            return NULL;
        }
        return parse_prefixed_int(p, start, t, n);
    }
    if (i >= n || !is_digit(t[i])) {
        fail(p, start, "invalid value " TOKFMT " (strings must be quoted)", TOKARG(t, n));
        return NULL;
    }
    return parse_decimal(p, start, t, n, i, neg);
}

/* Booleans and numbers: take the maximal run of token characters, then
 * decide what it is, so that "truex" or "12abc" are rejected whole. */
static toml_value *parse_bare_value(parser *p)
{
    size_t start = p->pos;
    while (is_token_char(peek(p)))
        p->pos++;
    size_t n = p->pos - start;
    const char *t = (const char *)p->s + start;
    if ((n == 4 && memcmp(t, "true", 4) == 0) || (n == 5 && memcmp(t, "false", 5) == 0)) {
        toml_value *v = new_value(p, TOML_BOOL, start);
        if (v)
            v->u.b = n == 4;
        return v;
    }
    return parse_number(p, start, n);
}

/* Reads exactly n digits into *out. */
static bool take_digits(parser *p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        int c = peek(p);
        if (!is_digit(c))
            return false;
        v = v * 10 + (c - '0');
        p->pos++;
    }
    *out = v;
    return true;
}

static bool take_char(parser *p, int c)
{
    if (peek(p) != c)
        return false;
    p->pos++;
    return true;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

static bool scan_date(parser *p)
{
    int y = 0, m = 0, d = 0;
    return take_digits(p, 4, &y) && take_char(p, '-') && take_digits(p, 2, &m) && take_char(p, '-') &&
           take_digits(p, 2, &d) && m >= 1 && m <= 12 && d >= 1 && d <= days_in_month(y, m);
}

/* HH:MM:SS[.fraction]  (seconds are mandatory in TOML 1.0; 60 = leap second) */
static bool scan_time(parser *p)
{
    int h = 0, m = 0, s = 0;
    if (!(take_digits(p, 2, &h) && take_char(p, ':') && take_digits(p, 2, &m) && take_char(p, ':') &&
          take_digits(p, 2, &s) && h <= 23 && m <= 59 && s <= 60))
        return false;
    if (take_char(p, '.')) {
        if (!is_digit(peek(p)))
            return false;
        while (is_digit(peek(p)))
            p->pos++;
    }
    return true;
}

/* Optional Z or +HH:MM / -HH:MM after a date-time. */
static bool scan_offset(parser *p)
{
    int h = 0, m = 0;
    if (take_char(p, 'Z') || take_char(p, 'z'))
        return true;
    if (peek(p) != '+' && peek(p) != '-')
        return true;
    p->pos++;
    return take_digits(p, 2, &h) && take_char(p, ':') && take_digits(p, 2, &m) && h <= 23 && m <= 59;
}

static bool looks_like_datetime(const parser *p)
{
    bool date = is_digit(peek_at(p, 0)) && is_digit(peek_at(p, 1)) && is_digit(peek_at(p, 2)) &&
                is_digit(peek_at(p, 3)) && peek_at(p, 4) == '-';
    bool time = is_digit(peek_at(p, 0)) && is_digit(peek_at(p, 1)) && peek_at(p, 2) == ':';
    return date || time;
}

/* Offset/local date-times, local dates and local times are kept as their
 * source text in a TOML_DATETIME value after a structural check. */
static toml_value *parse_datetime(parser *p)
{
    size_t start = p->pos;
    bool ok;
    if (peek_at(p, 2) == ':') {
        ok = scan_time(p);
    } else {
        ok = scan_date(p);
        int sep = peek(p);
        if (ok && (sep == 'T' || sep == 't' || (sep == ' ' && is_digit(peek_at(p, 1))))) {
            p->pos++;
            ok = scan_time(p) && scan_offset(p);
        }
    }
    if (!ok) {
        while (is_token_char(peek(p)) || peek(p) == ':')
            p->pos++;
        fail(p, start, "invalid date/time " TOKFMT, TOKARG((const char *)p->s + start, p->pos - start));
        return NULL;
    }
    toml_value *v = new_value(p, TOML_DATETIME, start);
    if (v && !(v->u.str = dup_range(p, start, p->pos))) {
        free(v);
        return NULL;
    }
    return v;
}

/* ------------------------------------------------------------------------ */
/* Arrays, inline tables and key/value pairs                                */

static toml_value *parse_array(parser *p, int depth)
{
    char tmp[40];
    size_t open = p->pos;
    toml_value *a = new_container(p, TOML_ARRAY, depth, open);
    if (!a)
        return NULL;
    p->pos++;
    for (;;) {
        if (!skip_array_space(p))
            goto fail;
        if (peek(p) == ']')
            break;
        if (peek(p) == -1) {
            fail(p, open, "unterminated array");
            goto fail;
        }
        toml_value *v = parse_value(p, depth + 1);
        if (!v || !array_push(p, a, v))
            goto fail;
        if (!skip_array_space(p))
            goto fail;
        if (peek(p) == ',') {
            p->pos++;
            continue;
        }
        if (peek(p) == ']')
            break;
        if (peek(p) == -1)
            fail(p, open, "unterminated array");
        else
            fail(p, p->pos, "expected ',' or ']' after array element, found %s", describe(p, p->pos, tmp, sizeof tmp));
        goto fail;
    }
    p->pos++;
    return a;
fail:
    toml_free(a);
    return NULL;
}

static bool parse_keyval(parser *p, toml_value *t);

/* { key = value, ... } on a single line, no trailing comma (TOML 1.0). */
static toml_value *parse_inline_table(parser *p, int depth)
{
    char tmp[40];
    size_t open = p->pos;
    toml_value *t = new_container(p, TOML_TABLE, depth, open);
    if (!t)
        return NULL;
    p->pos++;
    skip_ws(p);
    if (peek(p) == '}') {
        p->pos++;
        freeze(t);
        return t;
    }
    for (;;) {
        skip_ws(p);
        if (at_newline(p)) {
            fail(p, p->pos, "newlines are not allowed inside an inline table");
            goto fail;
        }
        if (!parse_keyval(p, t))
            goto fail;
        skip_ws(p);
        int c = peek(p);
        if (c == '}')
            break;
        if (c == ',') {
            p->pos++;
            skip_ws(p);
            if (peek(p) == '}') {
                fail(p, p->pos, "trailing comma is not allowed in an inline table");
                goto fail;
            }
            continue;
        }
        if (c == -1)
            fail(p, open, "unterminated inline table");
        else if (at_newline(p))
            fail(p, p->pos, "newlines are not allowed inside an inline table");
        else
            fail(p, p->pos, "expected ',' or '}' in inline table, found %s", describe(p, p->pos, tmp, sizeof tmp));
        goto fail;
    }
    p->pos++;
    freeze(t);
    return t;
fail:
    toml_free(t);
    return NULL;
}

static toml_value *parse_value(parser *p, int depth)
{
    char tmp[40];
    int c = peek(p);
    if (c == '"' || c == '\'')
        return parse_string_value(p);
    if (c == '[')
        return parse_array(p, depth);
    if (c == '{')
        return parse_inline_table(p, depth);
    if (is_digit(c) && looks_like_datetime(p))
        return parse_datetime(p);
    if (is_token_char(c))
        return parse_bare_value(p);
    fail(p, p->pos, "expected a value, found %s", describe(p, p->pos, tmp, sizeof tmp));
    return NULL;
}

/* Adds an empty table called part->name to t, with the given flags. */
static toml_value *add_table(parser *p, toml_value *t, keypart *part, unsigned flags, size_t pos)
{
    toml_value *n = new_container(p, TOML_TABLE, t->depth + 1, pos);
    if (!n)
        return NULL;
    char *key = dup_str(p, part->name, pos);
    if (!key) {
        free(n);
        return NULL;
    }
    n->flags = flags;
    return table_insert(p, t, key, n) ? n : NULL;
}

/* Walks one component of a dotted key on the left of '='.  Dotted keys may
 * create tables and extend ones they created, but may not reopen a table
 * defined by a [header], an inline table, or anything that is not a table. */
static toml_value *dotted_step(parser *p, toml_value *t, const keypath *k, size_t i)
{
    char name[128];
    keypart *part = &k->parts[i];
    toml_value *v = table_find(t, part->name);
    if (!v)
        return add_table(p, t, part, F_DOTTED, part->pos);
    if (v->type != TOML_TABLE) {
        fail(p, part->pos, "cannot add keys to '%s': it is already defined as %s", show_key(k, i, name, sizeof name),
             toml_type_name(v->type));
        return NULL;
    }
    if (v->flags & F_FROZEN) {
        fail(p, part->pos, "cannot add keys to inline table '%s'", show_key(k, i, name, sizeof name));
        return NULL;
    }
    if (v->flags & F_HEADER) {
        fail(p, part->pos, "cannot add keys to table '%s' with dotted keys: it is defined by a [header]",
             show_key(k, i, name, sizeof name));
        return NULL;
    }
    v->flags |= F_DOTTED;
    return v;
}

/* key = value into table t. */
static bool parse_keyval(parser *p, toml_value *t)
{
    char name[128];
    keypath k = {0};
    bool ok = parse_key(p, &k);
    if (ok && peek(p) != '=') {
        fail(p, p->pos, "expected '=' after key");
        ok = false;
    }
    if (ok) {
        p->pos++;
        skip_ws(p);
    }
    for (size_t i = 0; ok && i + 1 < k.n; i++)
        ok = (t = dotted_step(p, t, &k, i)) != NULL;
    if (ok && table_find(t, k.parts[k.n - 1].name)) {
        fail(p, k.parts[k.n - 1].pos, "duplicate key '%s'", show_key(&k, k.n - 1, name, sizeof name));
        ok = false;
    }
    if (ok) {
        toml_value *v = parse_value(p, t->depth + 1);
        ok = v && table_insert(p, t, k.parts[k.n - 1].name, v);
        if (v)
            k.parts[k.n - 1].name = NULL; /* now owned by the table */
    }
    keypath_free(&k);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* [table] and [[array.of.tables]] headers                                  */

/* Walks an intermediate component of a header: missing tables are created
 * implicitly (they may still be defined later), and an array of tables
 * stands for its most recent element. */
static toml_value *header_step(parser *p, toml_value *t, const keypath *k, size_t i)
{
    char name[128];
    keypart *part = &k->parts[i];
    toml_value *v = table_find(t, part->name);
    if (!v)
        return add_table(p, t, part, 0, part->pos);
    if (v->type == TOML_TABLE && !(v->flags & F_FROZEN))
        return v;
    if (v->type == TOML_ARRAY && (v->flags & F_AOT))
        return v->u.arr.items[v->u.arr.len - 1];
    if (v->type == TOML_TABLE)
        fail(p, part->pos, "cannot extend inline table '%s'", show_key(k, i, name, sizeof name));
    else
        fail(p, part->pos, "cannot use '%s' as a table: it is already defined as %s", show_key(k, i, name, sizeof name),
             v->type == TOML_ARRAY ? "a static array" : toml_type_name(v->type));
    return NULL;
}

/* [a.b]: the last component must be new, or an implicitly created table. */
static toml_value *define_table(parser *p, toml_value *t, const keypath *k, size_t open)
{
    char name[128];
    size_t i = k->n - 1;
    keypart *part = &k->parts[i];
    toml_value *v = table_find(t, part->name);
    if (!v)
        return add_table(p, t, part, F_HEADER, open);
    const char *why = NULL;
    if (v->type == TOML_ARRAY)
        why = v->flags & F_AOT ? "it is an array of tables" : "it is already defined as a static array";
    else if (v->type != TOML_TABLE)
        why = "it is already defined as a non-table value";
    else if (v->flags & F_FROZEN)
        why = "it is an inline table";
    else if (v->flags & F_HEADER)
        why = "it is already defined";
    else if (v->flags & F_DOTTED)
        why = "it is already defined by dotted keys";
    if (why) {
        fail(p, part->pos, "cannot define table [%s]: %s", show_key(k, i, name, sizeof name), why);
        return NULL;
    }
    v->flags |= F_HEADER;
    linecol(p, open, &v->line, &v->col);
    return v;
}

/* [[a.b]]: creates the array on first use, then appends a fresh table. */
static toml_value *append_table(parser *p, toml_value *t, const keypath *k, size_t open)
{
    char name[128];
    size_t i = k->n - 1;
    keypart *part = &k->parts[i];
    toml_value *a = table_find(t, part->name);
    if (!a) {
        char *key = dup_str(p, part->name, open);
        a = new_container(p, TOML_ARRAY, t->depth + 1, open);
        if (!a || !key) {
            free(a);
            free(key);
            fail(p, open, "out of memory");
            return NULL;
        }
        a->flags = F_AOT;
        if (!table_insert(p, t, key, a))
            return NULL;
    } else if (a->type != TOML_ARRAY || !(a->flags & F_AOT)) {
        fail(p, part->pos, "cannot define array of tables [[%s]]: it is already defined as %s",
             show_key(k, i, name, sizeof name), a->type == TOML_ARRAY ? "a static array" : toml_type_name(a->type));
        return NULL;
    }
    toml_value *elem = new_container(p, TOML_TABLE, a->depth + 1, open);
    if (!elem)
        return NULL;
    elem->flags = F_HEADER;
    return array_push(p, a, elem) ? elem : NULL;
}

static bool parse_header(parser *p)
{
    size_t open = p->pos;
    bool aot = peek_at(p, 1) == '[';
    keypath k = {0};
    char tmp[40];
    p->pos += aot ? 2 : 1;
    bool ok = parse_key(p, &k);
    if (ok && (peek(p) != ']' || (aot && peek_at(p, 1) != ']'))) {
        size_t at = p->pos + (peek(p) == ']'); /* "[[a]" is missing the second ']' */
        fail(p, at, "expected '%s' to close the header, found %s", aot ? "]]" : "]", describe(p, at, tmp, sizeof tmp));
        ok = false;
    }
    if (ok)
        p->pos += aot ? 2 : 1;
    toml_value *t = p->root;
    for (size_t i = 0; ok && i + 1 < k.n; i++)
        ok = (t = header_step(p, t, &k, i)) != NULL;
    if (ok)
        ok = (t = aot ? append_table(p, t, &k, open) : define_table(p, t, &k, open)) != NULL;
    if (ok)
        p->cur = t;
    keypath_free(&k);
    return ok && expect_eol(p, "table header");
}

/* ------------------------------------------------------------------------ */
/* Document                                                                 */

static bool parse_document(parser *p)
{
    for (;;) {
        skip_ws(p);
        int c = peek(p);
        if (c == -1)
            return true;
        if (c == '[') {
            if (!parse_header(p))
                return false;
        } else if (c == '#' || c == '\n' || c == '\r') {
            if (!expect_eol(p, NULL))
                return false;
        } else if (!parse_keyval(p, p->cur) || !expect_eol(p, "value")) {
            return false;
        }
    }
}

toml_value *toml_parse(const char *text, size_t len, const char *filename, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    parser P = {0}, *p = &P;
    p->s = (const unsigned char *)(text ? text : "");
    p->len = text ? len : 0;
    p->file = filename ? filename : "<input>";
    p->err = err;
    p->errlen = errlen;
    p->lc_line = p->lc_col = 1;
    /* A UTF-8 byte order mark is harmless; editors on Windows add one. */
    if (p->len >= 3 && memcmp(p->s, "\xEF\xBB\xBF", 3) == 0)
        p->start = p->pos = p->lc_pos = 3;
    p->root = p->cur = new_container(p, TOML_TABLE, 0, p->pos);
    if (!p->root)
        return NULL;
    if (parse_document(p))
        return p->root;
    if (!p->failed) /* every error path calls fail(); this is a safety net */
        fail(p, p->pos, "parse error");
    toml_free(p->root);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Files                                                                    */

static void io_error(const char *path, int errnum, char *err, size_t errlen)
{
    if (err && errlen)
        snprintf(err, errlen, "%s: %s", path, strerror(errnum));
}

/* Reads the whole stream; works for pipes and /proc files whose size is
 * not known in advance. */
static char *read_all(FILE *f, size_t *len, int *errnum)
{
    size_t cap = 4096, n = 0;
    char *data = malloc(cap);
    if (!data) {
        *errnum = ENOMEM;
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            char *d = cap >= TOML_MAX_FILE ? NULL : realloc(data, cap * 2);
            if (!d) {
                *errnum = cap >= TOML_MAX_FILE ? EFBIG : ENOMEM;
                free(data);
                return NULL;
            }
            data = d;
            cap *= 2;
        }
        size_t got = fread(data + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                *errnum = errno ? errno : EIO;
                free(data);
                return NULL;
            }
            break;
        }
    }
    *len = n;
    return data;
}

toml_value *toml_parse_file(const char *path, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    errno = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        io_error(path, errno, err, errlen);
        return NULL;
    }
    size_t len = 0;
    int errnum = 0;
    errno = 0;
    char *data = read_all(f, &len, &errnum);
    fclose(f);
    if (!data) {
        io_error(path, errnum, err, errlen);
        return NULL;
    }
    toml_value *root = toml_parse(data, len, path, err, errlen);
    free(data);
    return root;
}

/* ------------------------------------------------------------------------ */
/* Accessors: all tolerate NULL and wrong types, returning empty results.   */

toml_type toml_type_of(const toml_value *v)
{
    return v ? v->type : TOML_TABLE;
}

const char *toml_type_name(toml_type t)
{
    switch (t) {
    case TOML_TABLE: return "table";
    case TOML_ARRAY: return "array";
    case TOML_STRING: return "string";
    case TOML_INT: return "integer";
    case TOML_FLOAT: return "float";
    case TOML_BOOL: return "boolean";
    case TOML_DATETIME: return "datetime";
    }
    return "unknown";
}

int toml_line(const toml_value *v)
{
    return v ? v->line : 0;
}

int toml_col(const toml_value *v)
{
    return v ? v->col : 0;
}

size_t toml_table_size(const toml_value *t)
{
    return t && t->type == TOML_TABLE ? t->u.tab.len : 0;
}

const char *toml_table_key(const toml_value *t, size_t i)
{
    return i < toml_table_size(t) ? t->u.tab.keys[i] : NULL;
}

const toml_value *toml_table_value(const toml_value *t, size_t i)
{
    return i < toml_table_size(t) ? t->u.tab.vals[i] : NULL;
}

const toml_value *toml_get(const toml_value *t, const char *key)
{
    return t && key && t->type == TOML_TABLE ? table_find(t, key) : NULL;
}

size_t toml_array_len(const toml_value *a)
{
    return a && a->type == TOML_ARRAY ? a->u.arr.len : 0;
}

const toml_value *toml_array_at(const toml_value *a, size_t i)
{
    return i < toml_array_len(a) ? a->u.arr.items[i] : NULL;
}

const char *toml_string(const toml_value *v)
{
    return v && (v->type == TOML_STRING || v->type == TOML_DATETIME) ? v->u.str : NULL;
}

int64_t toml_int(const toml_value *v)
{
    return v && v->type == TOML_INT ? v->u.i : 0;
}

double toml_float(const toml_value *v)
{
    if (v && v->type == TOML_FLOAT)
        return v->u.f;
    return v && v->type == TOML_INT ? (double)v->u.i : 0.0;
}

bool toml_bool(const toml_value *v)
{
    return v && v->type == TOML_BOOL && v->u.b;
}
