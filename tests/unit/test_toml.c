/*
 * test_toml.c - unit tests for host/config/toml.c.
 *
 * Run from the repository root (the corpus is found at
 * tests/unit/toml-corpus, or at $PROVIUM_TOML_CORPUS). The harness is
 * check.h: `test_toml -l` lists the cases, `test_toml arrays` runs one.
 */
#include "toml.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* A failure at line of this file (the line of a table entry, or of the
 * helper's caller). */
#define report(line, ...) check_fail(__FILE__, (line), __VA_ARGS__)

/* Prints s with non-printable bytes escaped, for failure messages. */
static const char *esc(const char *s)
{
    static char out[4][512];
    static int slot;
    char *o = out[slot++ % 4];
    size_t n = 0;
    if (!s)
        return "(null)";
    for (; *s && n + 5 < sizeof out[0]; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c < 0x7F && c != '\\')
            o[n++] = (char)c;
        else
            n += (size_t)snprintf(o + n, sizeof out[0] - n, "\\x%02X", c);
    }
    o[n] = '\0';
    return o;
}

/* Parses a copy of src held in a buffer of exactly len bytes (no NUL), so
 * ASan catches any read past the end; the copy is freed before the tree is
 * inspected, which also proves the tree does not point into the input. */
static toml_value *parse_n(const char *src, size_t len, char *err, size_t errlen)
{
    char *copy = malloc(len ? len : 1);
    if (!copy)
        abort();
    memcpy(copy, src, len);
    toml_value *v = toml_parse(copy, len, "test.toml", err, errlen);
    free(copy);
    return v;
}

static toml_value *ok_parse(int line, const char *src)
{
    char err[256];
    toml_value *v = parse_n(src, strlen(src), err, sizeof err);
    if (!v)
        report(line, "unexpected parse error: %s\n    input: %s", err, esc(src));
    else
        check_pass();
    return v;
}
#define OK(src) ok_parse(__LINE__, src)

/* Looks up "a/b/0/c": segments are table keys, or array indexes when all
 * digits. */
static const toml_value *at(const toml_value *v, const char *path)
{
    char seg[128];
    while (v && *path) {
        size_t n = strcspn(path, "/");
        if (n >= sizeof seg)
            return NULL;
        memcpy(seg, path, n);
        seg[n] = '\0';
        path += n + (path[n] == '/');
        if (toml_type_of(v) == TOML_ARRAY && n > 0 && strspn(seg, "0123456789") == n)
            v = toml_array_at(v, strtoul(seg, NULL, 10));
        else
            v = toml_get(v, seg);
    }
    return v;
}

static bool want_type(int line, const toml_value *root, const char *path, toml_type t)
{
    const toml_value *v = at(root, path);
    if (!v) {
        report(line, "%s: missing", path);
        return false;
    }
    if (toml_type_of(v) != t) {
        report(line, "%s: type %s, want %s", path, toml_type_name(toml_type_of(v)), toml_type_name(t));
        return false;
    }
    return true;
}

static void check_type(int line, const toml_value *root, const char *path, toml_type t)
{
    if (want_type(line, root, path, t))
        check_pass();
}

static void check_str(int line, const toml_value *root, const char *path, const char *want, toml_type t)
{
    if (!want_type(line, root, path, t))
        return;
    const char *got = toml_string(at(root, path));
    if (got && strcmp(got, want) == 0)
        check_pass();
    else
        report(line, "%s: got \"%s\", want \"%s\"", path, esc(got), esc(want));
}

static void check_int(int line, const toml_value *root, const char *path, int64_t want)
{
    if (!want_type(line, root, path, TOML_INT))
        return;
    int64_t got = toml_int(at(root, path));
    if (got == want)
        check_pass();
    else
        report(line, "%s: got %lld, want %lld", path, (long long)got, (long long)want);
}

static void check_float(int line, const toml_value *root, const char *path, double want)
{
    if (!want_type(line, root, path, TOML_FLOAT))
        return;
    double got = toml_float(at(root, path));
    bool same = isnan(want) ? isnan(got) : (got == want && signbit(got) == signbit(want));
    if (same)
        check_pass();
    else
        report(line, "%s: got %.17g, want %.17g", path, got, want);
}

static void check_bool(int line, const toml_value *root, const char *path, bool want)
{
    if (!want_type(line, root, path, TOML_BOOL))
        return;
    if (toml_bool(at(root, path)) == want)
        check_pass();
    else
        report(line, "%s: got %d, want %d", path, !want, want);
}

static void check_len(int line, const toml_value *root, const char *path, size_t want)
{
    const toml_value *v = at(root, path);
    size_t got = toml_type_of(v) == TOML_ARRAY ? toml_array_len(v) : toml_table_size(v);
    if (v && got == want)
        check_pass();
    else
        report(line, "%s: size %zu, want %zu%s", path, got, want, v ? "" : " (missing)");
}

/* Checks the keys of the table at path, in order; keys is '|'-separated. */
static void check_keys(int line, const toml_value *root, const char *path, const char *keys)
{
    const toml_value *t = at(root, path);
    char joined[512] = "";
    for (size_t i = 0; i < toml_table_size(t); i++) {
        if (i)
            strncat(joined, "|", sizeof joined - strlen(joined) - 1);
        strncat(joined, toml_table_key(t, i), sizeof joined - strlen(joined) - 1);
    }
    if (t && toml_type_of(t) == TOML_TABLE && strcmp(joined, keys) == 0)
        check_pass();
    else
        report(line, "%s: keys \"%s\", want \"%s\"", path, esc(joined), esc(keys));
}

static void check_pos(int line, const toml_value *root, const char *path, int l, int c)
{
    const toml_value *v = at(root, path);
    if (v && toml_line(v) == l && toml_col(v) == c)
        check_pass();
    else
        report(line, "%s: position %d:%d, want %d:%d", path, toml_line(v), toml_col(v), l, c);
}

#define TYPE(r, p, t) check_type(__LINE__, r, p, t)
#define STR(r, p, w) check_str(__LINE__, r, p, w, TOML_STRING)
#define DT(r, p, w) check_str(__LINE__, r, p, w, TOML_DATETIME)
#define INT(r, p, w) check_int(__LINE__, r, p, w)
#define FLT(r, p, w) check_float(__LINE__, r, p, w)
#define BOOL(r, p, w) check_bool(__LINE__, r, p, w)
#define LEN(r, p, w) check_len(__LINE__, r, p, w)
#define KEYS(r, p, w) check_keys(__LINE__, r, p, w)
#define POS(r, p, l, c) check_pos(__LINE__, r, p, l, c)

/* ------------------------------------------------------------------------ */
/* Valid documents                                                          */

TEST(comments_and_keys)
{
    toml_value *r = OK("# a comment line\n"
                       "   # indented comment with unicode \xC3\xA9 and\ttab\n"
                       "\n"
                       "key = \"value\" # trailing comment\n"
                       "bare_key-1 = 1\n"
                       "1234 = \"digits as a key\"\n"
                       "\"quoted key\" = 2\n"
                       "'literal \\key' = 3\n"
                       "\"\" = 4\n"
                       "\"\\u00e9t\\u00e9\" = 5\n"
                       "\t  spaced\t=\t6  \n"
                       "last=7");
    if (!r)
        return;
    KEYS(r, "", "key|bare_key-1|1234|quoted key|literal \\key||\xC3\xA9t\xC3\xA9|spaced|last");
    STR(r, "key", "value");
    INT(r, "bare_key-1", 1);
    STR(r, "1234", "digits as a key");
    INT(r, "quoted key", 2);
    INT(r, "literal \\key", 3);
    CHECK_EQ_INT(toml_int(toml_get(r, "")), 4); /* at("") would be the root */
    INT(r, "\xC3\xA9t\xC3\xA9", 5);
    INT(r, "spaced", 6);
    INT(r, "last", 7);
    CHECK(toml_type_of(r) == TOML_TABLE);
    CHECK(toml_get(r, "missing") == NULL);
    CHECK(toml_table_key(r, 99) == NULL);
    CHECK(toml_table_value(r, 99) == NULL);
    CHECK(toml_table_value(r, 0) == toml_get(r, "key"));
    toml_free(r);
}

TEST(dotted_keys)
{
    toml_value *r = OK("name = \"Orange\"\n"
                       "physical.color = \"orange\"\n"
                       "physical.shape = \"round\"\n"
                       "site.\"google.com\" = true\n"
                       "a . b . c = 1\n"
                       "a.b.d = 2\n"
                       "a.'x y'.z = 3\n"
                       "3.14159 = \"pi\"\n"
                       "[fruit]\n"
                       "apple.color = \"red\"\n"
                       "apple.taste.sweet = true\n"
                       "[fruit.apple.texture]\n"
                       "smooth = true\n");
    if (!r)
        return;
    KEYS(r, "", "name|physical|site|a|3|fruit");
    TYPE(r, "physical", TOML_TABLE);
    KEYS(r, "physical", "color|shape");
    STR(r, "physical/color", "orange");
    BOOL(r, "site/google.com", true);
    KEYS(r, "a", "b|x y");
    KEYS(r, "a/b", "c|d");
    INT(r, "a/b/c", 1);
    INT(r, "a/b/d", 2);
    INT(r, "a/x y/z", 3);
    STR(r, "3/14159", "pi");
    KEYS(r, "fruit/apple", "color|taste|texture");
    BOOL(r, "fruit/apple/taste/sweet", true);
    BOOL(r, "fruit/apple/texture/smooth", true);
    toml_free(r);
}

TEST(tables)
{
    toml_value *r = OK("top = 0\n"
                       "[table-1]\n"
                       "key1 = \"some string\"\n"
                       "key2 = 123\n"
                       "\n"
                       "[table-2]\n"
                       "key1 = \"another string\"\n"
                       "[dog.\"tater.man\"]\n"
                       "type.name = \"pug\"\n"
                       "[ j . \"k\" . 'l' ]\n"
                       "[x.y.z.w] # implicit x, x.y, x.y.z\n"
                       "[x] # defining a super-table afterwards is fine\n"
                       "v = 1\n"
                       "[empty]\n"
                       "[x.y.other]\n");
    if (!r)
        return;
    KEYS(r, "", "top|table-1|table-2|dog|j|x|empty");
    KEYS(r, "table-1", "key1|key2");
    INT(r, "table-1/key2", 123);
    STR(r, "table-2/key1", "another string");
    STR(r, "dog/tater.man/type/name", "pug");
    TYPE(r, "j/k/l", TOML_TABLE);
    KEYS(r, "x", "y|v");
    KEYS(r, "x/y", "z|other");
    TYPE(r, "x/y/z/w", TOML_TABLE);
    LEN(r, "empty", 0);
    POS(r, "table-1", 2, 1);
    POS(r, "x", 12, 1); /* an implicit table takes the position of its [header] */
    POS(r, "table-1/key2", 4, 8);
    toml_free(r);
}

TEST(array_of_tables)
{
    toml_value *r = OK("[[products]]\n"
                       "name = \"Hammer\"\n"
                       "sku = 738594937\n"
                       "\n"
                       "[[products]]  # empty table within the array\n"
                       "\n"
                       "[[products]]\n"
                       "name = \"Nail\"\n"
                       "color = \"gray\"\n"
                       "\n"
                       "[[fruits]]\n"
                       "name = \"apple\"\n"
                       "[fruits.physical]\n"
                       "color = \"red\"\n"
                       "[[fruits.varieties]]\n"
                       "name = \"red delicious\"\n"
                       "[[fruits.varieties]]\n"
                       "name = \"granny smith\"\n"
                       "[[fruits]]\n"
                       "name = \"banana\"\n"
                       "[[fruits.varieties]]\n"
                       "name = \"plantain\"\n"
                       "[[ a . b ]]\n"
                       "c.d = 1\n");
    if (!r)
        return;
    TYPE(r, "products", TOML_ARRAY);
    LEN(r, "products", 3);
    STR(r, "products/0/name", "Hammer");
    INT(r, "products/0/sku", 738594937);
    LEN(r, "products/1", 0);
    KEYS(r, "products/2", "name|color");
    LEN(r, "fruits", 2);
    STR(r, "fruits/0/physical/color", "red");
    LEN(r, "fruits/0/varieties", 2);
    STR(r, "fruits/0/varieties/1/name", "granny smith");
    STR(r, "fruits/1/name", "banana");
    LEN(r, "fruits/1/varieties", 1);
    STR(r, "fruits/1/varieties/0/name", "plantain");
    INT(r, "a/b/0/c/d", 1);
    POS(r, "products/2", 7, 1);
    toml_free(r);
}

TEST(basic_strings)
{
    toml_value *r = OK("esc = \"\\b\\t\\n\\f\\r\\\"\\\\\"\n"
                       "quote = \"I'm a string. \\\"You can quote me\\\". Name\\tJos\\u00E9\\nLocation\\tSF.\"\n"
                       "u2 = \"\\u00e9\"\n"
                       "u3 = \"\\u20AC\"\n"
                       "u4 = \"\\U0001F600\"\n"
                       "u1 = \"\\u0041\\U00000042\"\n"
                       "del = \"\\u007f\"\n"
                       "max = \"\\U0010FFFF\"\n"
                       "raw = \"h\xC3\xA9llo \xE2\x82\xAC\"\n"
                       "tab = \"a\tb\"\n"
                       "empty = \"\"\n"
                       "hash = \"# not a comment\" # a comment\n");
    if (!r)
        return;
    STR(r, "esc", "\b\t\n\f\r\"\\");
    STR(r, "quote", "I'm a string. \"You can quote me\". Name\tJos\xC3\xA9\nLocation\tSF.");
    STR(r, "u2", "\xC3\xA9");
    STR(r, "u3", "\xE2\x82\xAC");
    STR(r, "u4", "\xF0\x9F\x98\x80");
    STR(r, "u1", "AB");
    STR(r, "del", "\x7F");
    STR(r, "max", "\xF4\x8F\xBF\xBF");
    STR(r, "raw", "h\xC3\xA9llo \xE2\x82\xAC");
    STR(r, "tab", "a\tb");
    STR(r, "empty", "");
    STR(r, "hash", "# not a comment");
    toml_free(r);
}

TEST(literal_strings)
{
    toml_value *r = OK("winpath  = 'C:\\Users\\nodejs\\templates'\n"
                       "winpath2 = '\\\\ServerX\\admin$\\system32\\'\n"
                       "quoted   = 'Tom \"Dubs\" Preston-Werner'\n"
                       "regex    = '<\\i\\c*\\s*>'\n"
                       "empty = ''\n"
                       "tab = 'a\tb'\n");
    if (!r)
        return;
    STR(r, "winpath", "C:\\Users\\nodejs\\templates");
    STR(r, "winpath2", "\\\\ServerX\\admin$\\system32\\");
    STR(r, "quoted", "Tom \"Dubs\" Preston-Werner");
    STR(r, "regex", "<\\i\\c*\\s*>");
    STR(r, "empty", "");
    STR(r, "tab", "a\tb");
    toml_free(r);
}

TEST(multiline_strings)
{
    toml_value *r = OK("str1 = \"\"\"\n"
                       "Roses are red\n"
                       "Violets are blue\"\"\"\n"
                       "str2 = \"\"\"\n"
                       "\n"
                       "two newlines: only the first is trimmed\"\"\"\n"
                       "str3 = \"\"\"\\\n"
                       "       The quick brown \\\n"
                       "       fox jumps over \\\n"
                       "\n"
                       "         the lazy dog.\\\n"
                       "       \"\"\"\n"
                       "ws = \"\"\"a \\   \t\n"
                       "   b\"\"\"\n"
                       "q1 = \"\"\"Here are two quotation marks: \"\". Simple enough.\"\"\"\n"
                       "q2 = \"\"\"Here are three quotation marks: \"\"\\\".\"\"\"\n"
                       "q3 = \"\"\"\"This,\" she said, \"is just a pointless statement.\"\"\"\"\n"
                       "q4 = \"\"\"two at the end\"\"\"\"\"\n"
                       "escapes = \"\"\"tab\\there\\u00E9\\n\"\"\"\n"
                       "keepws = \"\"\"  indented\n"
                       "\tline  \"\"\"\n"
                       "empty = \"\"\"\"\"\"\n"
                       "lit1 = '''I [dw]on't need \\d{2} apples'''\n"
                       "lit2 = '''\n"
                       "The first newline is\n"
                       "trimmed in raw strings.\n"
                       "   All other whitespace\n"
                       "   is preserved. \\\n"
                       "'''\n"
                       "lit3 = ''''That,' she said, 'she said.''''\n"
                       "lit4 = '''quotes \"\"\" inside'''\n"
                       "lit5 = ''''''\n"
                       "lit6 = '''two at the end'''''\n");
    if (!r)
        return;
    STR(r, "str1", "Roses are red\nViolets are blue");
    STR(r, "str2", "\ntwo newlines: only the first is trimmed");
    STR(r, "str3", "The quick brown fox jumps over the lazy dog.");
    STR(r, "ws", "a b");
    STR(r, "q1", "Here are two quotation marks: \"\". Simple enough.");
    STR(r, "q2", "Here are three quotation marks: \"\"\".");
    STR(r, "q3", "\"This,\" she said, \"is just a pointless statement.\"");
    STR(r, "q4", "two at the end\"\"");
    STR(r, "escapes", "tab\there\xC3\xA9\n");
    STR(r, "keepws", "  indented\n\tline  ");
    STR(r, "empty", "");
    STR(r, "lit1", "I [dw]on't need \\d{2} apples");
    STR(r, "lit2", "The first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved. \\\n");
    STR(r, "lit3", "'That,' she said, 'she said.'");
    STR(r, "lit4", "quotes \"\"\" inside");
    STR(r, "lit5", "");
    STR(r, "lit6", "two at the end''");
    toml_free(r);

    /* CRLF line endings: the newline after the delimiter is trimmed and
     * CRLF inside the string is normalised to LF. */
    r = OK("a = \"\"\"\r\nline1\r\nline2\"\"\"\r\n"
           "b = '''\r\nx\r\n'''\r\n"
           "c = \"\"\"join \\\r\n   me\"\"\"\r\n");
    if (r) {
        STR(r, "a", "line1\nline2");
        STR(r, "b", "x\n");
        STR(r, "c", "join me");
        toml_free(r);
    }
}

TEST(integers)
{
    toml_value *r = OK("int1 = +99\n"
                       "int2 = 42\n"
                       "int3 = 0\n"
                       "int4 = -17\n"
                       "int5 = 1_000\n"
                       "int6 = 5_349_221\n"
                       "int7 = 53_49_221\n"
                       "int8 = 1_2_3_4_5\n"
                       "zero_pos = +0\n"
                       "zero_neg = -0\n"
                       "hex1 = 0xDEADBEEF\n"
                       "hex2 = 0xdeadbeef\n"
                       "hex3 = 0xdead_beef\n"
                       "hex4 = 0x00ff\n"
                       "oct1 = 0o01234567\n"
                       "oct2 = 0o755\n"
                       "bin1 = 0b11010110\n"
                       "bin2 = 0b1_0000_0000\n"
                       "max = 9223372036854775807\n"
                       "min = -9223372036854775808\n"
                       "hexmax = 0x7FFF_FFFF_FFFF_FFFF\n"
                       "octmax = 0o777777777777777777777\n"
                       "binmax = 0b111111111111111111111111111111111111111111111111111111111111111\n");
    if (!r)
        return;
    INT(r, "int1", 99);
    INT(r, "int2", 42);
    INT(r, "int3", 0);
    INT(r, "int4", -17);
    INT(r, "int5", 1000);
    INT(r, "int6", 5349221);
    INT(r, "int7", 5349221);
    INT(r, "int8", 12345);
    INT(r, "zero_pos", 0);
    INT(r, "zero_neg", 0);
    INT(r, "hex1", 0xDEADBEEF);
    INT(r, "hex2", 0xDEADBEEF);
    INT(r, "hex3", 0xDEADBEEF);
    INT(r, "hex4", 255);
    INT(r, "oct1", 01234567);
    INT(r, "oct2", 0755);
    INT(r, "bin1", 214);
    INT(r, "bin2", 256);
    INT(r, "max", INT64_MAX);
    INT(r, "min", INT64_MIN);
    INT(r, "hexmax", INT64_MAX);
    INT(r, "octmax", INT64_MAX);
    INT(r, "binmax", INT64_MAX);
    CHECK(toml_float(toml_get(r, "int2")) == 42.0); /* ints convert to double */
    CHECK(toml_float(toml_get(r, "min")) == -9223372036854775808.0);
    toml_free(r);
}

TEST(floats)
{
    toml_value *r = OK("flt1 = +1.0\n"
                       "flt2 = 3.1415\n"
                       "flt3 = -0.01\n"
                       "flt4 = 5e+22\n"
                       "flt5 = 1e06\n"
                       "flt6 = -2E-2\n"
                       "flt7 = 6.626e-34\n"
                       "flt8 = 224_617.445_991_228\n"
                       "flt9 = 1_0e1_0\n"
                       "zero = 0.0\n"
                       "pzero = +0.0\n"
                       "nzero = -0.0\n"
                       "zexp = 0e0\n"
                       "frac0 = 0.000_1\n"
                       "sf1 = inf\n"
                       "sf2 = +inf\n"
                       "sf3 = -inf\n"
                       "sf4 = nan\n"
                       "sf5 = +nan\n"
                       "sf6 = -nan\n"
                       "tiny = 1e-400\n"
                       "big = 1.7976931348623157e308\n");
    if (!r)
        return;
    FLT(r, "flt1", 1.0);
    FLT(r, "flt2", 3.1415);
    FLT(r, "flt3", -0.01);
    FLT(r, "flt4", 5e22);
    FLT(r, "flt5", 1e6);
    FLT(r, "flt6", -0.02);
    FLT(r, "flt7", 6.626e-34);
    FLT(r, "flt8", 224617.445991228);
    FLT(r, "flt9", 10e10);
    FLT(r, "zero", 0.0);
    FLT(r, "pzero", 0.0);
    FLT(r, "nzero", -0.0);
    FLT(r, "zexp", 0.0);
    FLT(r, "frac0", 0.0001);
    FLT(r, "sf1", INFINITY);
    FLT(r, "sf2", INFINITY);
    FLT(r, "sf3", -INFINITY);
    FLT(r, "sf4", NAN);
    FLT(r, "sf5", NAN);
    FLT(r, "sf6", NAN);
    FLT(r, "tiny", 0.0);
    FLT(r, "big", 1.7976931348623157e308);
    CHECK_EQ_INT(toml_int(toml_get(r, "flt1")), 0); /* no silent float->int */
    toml_free(r);
}

TEST(booleans_and_datetimes)
{
    toml_value *r = OK("t = true\n"
                       "f = false\n"
                       "odt1 = 1979-05-27T07:32:00Z\n"
                       "odt2 = 1979-05-27T00:32:00-07:00\n"
                       "odt3 = 1979-05-27T00:32:00.999999+05:30\n"
                       "odt4 = 1979-05-27 07:32:00Z\n"
                       "ldt1 = 1979-05-27T07:32:00\n"
                       "ldt2 = 1979-05-27t00:32:00.5z\n"
                       "ld1 = 1979-05-27\n"
                       "lt1 = 07:32:00\n"
                       "lt2 = 00:32:00.999999\n"
                       "arr = [1979-05-27, 07:32:00 ,2000-01-01 00:00:00]\n"
                       "date_then_comment = 2024-02-29 # not a time\n"
                       "leap400 = 2000-02-29\n");
    if (!r)
        return;
    BOOL(r, "t", true);
    BOOL(r, "f", false);
    DT(r, "odt1", "1979-05-27T07:32:00Z");
    DT(r, "odt2", "1979-05-27T00:32:00-07:00");
    DT(r, "odt3", "1979-05-27T00:32:00.999999+05:30");
    DT(r, "odt4", "1979-05-27 07:32:00Z");
    DT(r, "ldt1", "1979-05-27T07:32:00");
    DT(r, "ldt2", "1979-05-27t00:32:00.5z");
    DT(r, "ld1", "1979-05-27");
    DT(r, "lt1", "07:32:00");
    DT(r, "lt2", "00:32:00.999999");
    DT(r, "arr/0", "1979-05-27");
    DT(r, "arr/1", "07:32:00");
    DT(r, "arr/2", "2000-01-01 00:00:00");
    DT(r, "date_then_comment", "2024-02-29");
    DT(r, "leap400", "2000-02-29");
    CHECK(toml_bool(toml_get(r, "odt1")) == false);
    toml_free(r);
}

TEST(arrays)
{
    toml_value *r = OK("integers = [ 1, 2, 3 ]\n"
                       "colors = [ \"red\", 'yellow', \"\"\"green\"\"\" ]\n"
                       "nested = [ [ 1, 2 ], [\"a\", \"b\", \"c\"] ]\n"
                       "mixed = [ 0.1, \"x\", true, { a = 1 }, [], 1979-05-27 ]\n"
                       "empty = []\n"
                       "spaced = [ # comment right after the bracket\n"
                       "\n"
                       "  # only comments and newlines\n"
                       "]\n"
                       "multi = [\n"
                       "  1, # one\n"
                       "  2  # two\n"
                       "  ,\n"
                       "  3, # trailing comma next\n"
                       "]\n"
                       "contributors = [\n"
                       "  \"Foo Bar <foo@example.com>\",\n"
                       "  { name = \"Baz Qux\", email = \"bazqux@example.com\", url = \"https://example.com/bazqux\" }\n"
                       "]\n"
                       "crlf = [\r\n 1,\r\n 2\r\n]\n");
    if (!r)
        return;
    LEN(r, "integers", 3);
    INT(r, "integers/2", 3);
    STR(r, "colors/1", "yellow");
    STR(r, "colors/2", "green");
    LEN(r, "nested", 2);
    INT(r, "nested/0/1", 2);
    STR(r, "nested/1/2", "c");
    LEN(r, "mixed", 6);
    FLT(r, "mixed/0", 0.1);
    STR(r, "mixed/1", "x");
    BOOL(r, "mixed/2", true);
    INT(r, "mixed/3/a", 1);
    TYPE(r, "mixed/4", TOML_ARRAY);
    DT(r, "mixed/5", "1979-05-27");
    LEN(r, "empty", 0);
    LEN(r, "spaced", 0);
    LEN(r, "multi", 3);
    INT(r, "multi/1", 2);
    STR(r, "contributors/1/email", "bazqux@example.com");
    LEN(r, "crlf", 2);
    POS(r, "multi/2", 14, 3);
    CHECK(toml_array_at(toml_get(r, "integers"), 3) == NULL);
    CHECK_EQ_INT(toml_array_len(toml_get(r, "colors/0")), 0);
    toml_free(r);
}

TEST(inline_tables)
{
    toml_value *r = OK("name = { first = \"Tom\", last = \"Preston-Werner\" }\n"
                       "point = {x=1,y=2}\n"
                       "animal = { type.name = \"pug\", type.size = 'small' }\n"
                       "empty = {}\n"
                       "spaced = {   }\n"
                       "nested = { a = { b = { c = 1 } }, d = [ 1,\n 2 ] }\n"
                       "ml = { s = \"\"\"two\nlines\"\"\" }\n"
                       "[tbl]\n"
                       "sub = { k = 1 }\n"
                       "[tbl.other] # sibling of the inline table is fine\n");
    if (!r)
        return;
    KEYS(r, "name", "first|last");
    STR(r, "name/last", "Preston-Werner");
    INT(r, "point/y", 2);
    KEYS(r, "animal/type", "name|size");
    STR(r, "animal/type/size", "small");
    LEN(r, "empty", 0);
    LEN(r, "spaced", 0);
    INT(r, "nested/a/b/c", 1);
    INT(r, "nested/d/1", 2);
    STR(r, "ml/s", "two\nlines");
    INT(r, "tbl/sub/k", 1);
    POS(r, "nested/a", 6, 16);
    toml_free(r);
}

TEST(layout)
{
    toml_value *r = OK("");
    if (r) {
        LEN(r, "", 0);
        toml_free(r);
    }
    r = OK("# only a comment");
    if (r) {
        LEN(r, "", 0);
        toml_free(r);
    }
    r = OK("\n\n   \t\n\r\n");
    if (r)
        toml_free(r);
    r = OK("\xEF\xBB\xBF" "a = 1\r\n[t]\r\nb = \"x\" # c\r\nc = 'y'");
    if (r) {
        INT(r, "a", 1);
        STR(r, "t/b", "x");
        STR(r, "t/c", "y");
        POS(r, "a", 1, 5); /* the BOM does not count as a column */
        toml_free(r);
    }
    /* Columns count code points, not bytes. */
    r = OK("s = \"\xC3\xA9\"\nt = [\"\xE2\x82\xAC\xC3\xA9\", 1]\n");
    if (r) {
        POS(r, "t/1", 2, 12);
        toml_free(r);
    }
}

/* Tables with many keys use a hash index; lookups and duplicate detection
 * must keep working across the switch-over and rehashes. */
TEST(many_keys)
{
    size_t cap = 64 * 1024, n = 0;
    char *src = malloc(cap);
    for (int i = 0; i < 2000; i++)
        n += (size_t)snprintf(src + n, cap - n, "key%d = %d\n", i, i);
    char err[256];
    toml_value *r = parse_n(src, n, err, sizeof err);
    CHECK(r != NULL);
    if (r) {
        LEN(r, "", 2000);
        bool all = true;
        for (int i = 0; i < 2000; i++) {
            char k[32];
            snprintf(k, sizeof k, "key%d", i);
            all = all && toml_int(toml_get(r, k)) == i && strcmp(toml_table_key(r, (size_t)i), k) == 0;
        }
        CHECK(all);
        CHECK(toml_get(r, "key2000") == NULL);
        toml_free(r);
    }
    n += (size_t)snprintf(src + n, cap - n, "key1234 = 0\n");
    r = parse_n(src, n, err, sizeof err);
    CHECK(r == NULL && strstr(err, "test.toml:2001:1: duplicate key 'key1234'") == err);
    toml_free(r);
    free(src);
}

/* Nesting is capped at 64 levels so hostile input cannot exhaust the stack. */
TEST(depth_limit)
{
    char src[4096], err[256];
    for (int depth = 64; depth <= 65; depth++) {
        size_t n = (size_t)snprintf(src, sizeof src, "a = ");
        for (int i = 0; i < depth; i++)
            src[n++] = '[';
        for (int i = 0; i < depth; i++)
            src[n++] = ']';
        toml_value *r = parse_n(src, n, err, sizeof err);
        if (depth == 64)
            CHECK(r != NULL);
        else
            CHECK(r == NULL && strstr(err, "test.toml:1:69: nesting too deep") == err);
        toml_free(r);

        n = (size_t)snprintf(src, sizeof src, "a = ");
        for (int i = 0; i < depth; i++)
            n += (size_t)snprintf(src + n, sizeof src - n, "{b = ");
        n += (size_t)snprintf(src + n, sizeof src - n, "1");
        for (int i = 0; i < depth; i++)
            src[n++] = '}';
        r = parse_n(src, n, err, sizeof err);
        CHECK(depth == 64 ? r != NULL : r == NULL);
        toml_free(r);

        n = (size_t)snprintf(src, sizeof src, "[");
        for (int i = 0; i < depth; i++)
            n += (size_t)snprintf(src + n, sizeof src - n, "%st", i ? "." : "");
        n += (size_t)snprintf(src + n, sizeof src - n, "]\nx = 1\n");
        r = parse_n(src, n, err, sizeof err);
        CHECK(depth == 64 ? r != NULL : r == NULL);
        toml_free(r);
    }
    /* A megabyte of '[' fails quickly instead of recursing. */
    size_t big = 1 << 20;
    char *deep = malloc(big);
    memcpy(deep, "a = ", 4);
    memset(deep + 4, '[', big - 4);
    toml_value *r = parse_n(deep, big, err, sizeof err);
    CHECK(r == NULL && strstr(err, "nesting too deep") != NULL);
    memset(deep + 4, '{', big - 4);
    r = parse_n(deep, big, err, sizeof err);
    CHECK(r == NULL);
    free(deep);
}

TEST(api_edges)
{
    char err[64];
    /* Error buffers: NULL, size 1, and too small for the whole message. */
    CHECK(toml_parse("a = ", 4, "f", NULL, 0) == NULL);
    err[0] = 'x';
    CHECK(toml_parse("a = ", 4, "f", err, 1) == NULL && err[0] == '\0');
    CHECK(toml_parse("a = ", 4, "f", err, 8) == NULL && strcmp(err, "f:1:5: ") == 0);
    CHECK(toml_parse("a = ", 4, NULL, err, sizeof err) == NULL && strncmp(err, "<input>:1:5:", 12) == 0);
    /* The length is honoured: what follows it is ignored. */
    toml_value *r = toml_parse("a = 1garbage", 5, "f", err, sizeof err);
    CHECK(r && toml_int(toml_get(r, "a")) == 1);
    toml_free(r);
    r = toml_parse(NULL, 0, "f", err, sizeof err);
    CHECK(r && toml_table_size(r) == 0);
    toml_free(r);
    toml_free(NULL);

    /* Accessors tolerate NULL and the wrong type. */
    CHECK(toml_get(NULL, "a") == NULL);
    CHECK(toml_table_size(NULL) == 0 && toml_array_len(NULL) == 0);
    CHECK(toml_array_at(NULL, 0) == NULL && toml_table_key(NULL, 0) == NULL);
    CHECK(toml_string(NULL) == NULL && toml_int(NULL) == 0 && toml_float(NULL) == 0.0 && !toml_bool(NULL));
    CHECK(toml_line(NULL) == 0 && toml_col(NULL) == 0);
    r = OK("s = 'x'\nn = 5");
    if (r) {
        CHECK(toml_get(toml_get(r, "s"), "x") == NULL);
        CHECK_EQ_INT(toml_int(toml_get(r, "s")), 0);
        CHECK(toml_string(toml_get(r, "n")) == NULL);
        CHECK_EQ_INT(toml_table_size(toml_get(r, "s")), 0);
        CHECK(toml_line(r) == 1 && toml_col(r) == 1);
        toml_free(r);
    }
    CHECK_EQ_STR(toml_type_name(TOML_TABLE), "table");
    CHECK_EQ_STR(toml_type_name(TOML_ARRAY), "array");
    CHECK_EQ_STR(toml_type_name(TOML_STRING), "string");
    CHECK_EQ_STR(toml_type_name(TOML_INT), "integer");
    CHECK_EQ_STR(toml_type_name(TOML_FLOAT), "float");
    CHECK_EQ_STR(toml_type_name(TOML_BOOL), "boolean");
    CHECK_EQ_STR(toml_type_name(TOML_DATETIME), "datetime");

    /* File errors are "path: strerror". */
    char ferr[256];
    CHECK(toml_parse_file("/nonexistent/provium.toml", ferr, sizeof ferr) == NULL);
    CHECK_EQ_STR(ferr, "/nonexistent/provium.toml: No such file or directory");
    CHECK(toml_parse_file("/", ferr, sizeof ferr) == NULL);
    CHECK_EQ_STR(ferr, "/: Is a directory");
}

/* ------------------------------------------------------------------------ */
/* Invalid documents: parsing must fail at the given line:col.              */

struct bad {
    const char *src;
    size_t len;
    const char *pos;
    const char *msg; /* substring the message must contain */
    int line;
};
#define BAD(s, p, m) {s, sizeof(s) - 1, p, m, __LINE__}

static const struct bad bad_cases[] = {
    /* duplicate keys */
    BAD("a = 1\na = 2", "2:1", "duplicate key 'a'"),
    BAD("a = 1\n\"a\" = 2", "2:1", "duplicate key"),
    BAD("a = 1\n'a' = 2", "2:1", "duplicate key"),
    BAD("a.b = 1\na.b = 2", "2:3", "duplicate key 'a.b'"),
    BAD("a.b = 1\na = 2", "2:1", "duplicate key"),
    BAD("p = {x = 1, x = 2}", "1:13", "duplicate key"),
    BAD("[t]\nk = 1\nk = 2", "3:1", "duplicate key"),
    BAD("[[a]]\nk = 1\nk = 2", "3:1", "duplicate key"),
    /* tables defined twice */
    BAD("[a]\n[a]", "2:2", "already defined"),
    BAD("[a]\nx = 1\n[b]\n[a]", "4:2", "already defined"),
    BAD("[a.b]\n[a.b]", "2:4", "already defined"),
    BAD("[a]\nb = 1\n[a.b]", "3:4", "non-table"),
    BAD("[a]\nb = 1\n[a.b.c]", "3:4", "already defined as integer"),
    BAD("a.b = 1\n[a]", "2:2", "dotted keys"),
    BAD("[fruit]\napple.color = 'red'\n[fruit.apple]", "3:8", "dotted keys"),
    BAD("[fruit]\napple.taste.sweet = true\n[fruit.apple.taste]", "3:14", "dotted keys"),
    BAD("[a.b]\nx = 1\n[a]\nb.y = 2", "4:1", "[header]"),
    BAD("[[a]]\n[a]", "2:2", "array of tables"),
    BAD("a = []\n[[a]]", "2:3", "static array"),
    BAD("a = [1]\n[a.b]", "2:2", "static array"),
    BAD("[a]\n[[a]]", "2:3", "already defined as table"),
    BAD("a = 1\na.b = 2", "2:1", "already defined as integer"),
    BAD("a = 'x'\n[a]", "2:2", "non-table"),
    BAD("a = [1]\n[a]", "2:2", "static array"),
    /* inline tables cannot be extended */
    BAD("a = {b = 1}\na.c = 2", "2:1", "inline table"),
    BAD("a = {b = 1}\n[a]", "2:2", "inline table"),
    BAD("a = {b = 1}\n[a.c]", "2:2", "inline table"),
    BAD("a = {b = {c = 1}}\n[a.b.d]", "2:2", "inline table"),
    BAD("a = {b.c = 1}\n[a.b.d]", "2:2", "inline table"),
    BAD("a = {b = {}, b.c = 1}", "1:14", "inline table"),
    BAD("a = [{b = 1}]\n[[a]]", "2:3", "static array"),
    BAD("a = {b = 1,}", "1:12", "trailing comma"),
    BAD("a = {b = 1,\nc = 2}", "1:12", "newlines"),
    BAD("a = {\n}", "1:6", "newlines"),
    BAD("a = {b = 1 c = 2}", "1:12", "expected ',' or '}'"),
    BAD("a = {b = 1", "1:5", "unterminated inline table"),
    BAD("a = {,}", "1:6", "expected a key"),
    /* bad escapes */
    BAD("s = \"\\x41\"", "1:6", "invalid escape sequence '\\x'"),
    BAD("s = \"\\e\"", "1:6", "invalid escape"),
    BAD("s = \"ab\\ \"", "1:8", "invalid escape"),
    BAD("s = \"\\u12\"", "1:6", "4 hex digits"),
    BAD("s = \"\\U0001F60\"", "1:6", "8 hex digits"),
    BAD("s = \"\\uD800\"", "1:6", "not a Unicode scalar value"),
    BAD("s = \"\\uDFFF\"", "1:6", "not a Unicode scalar value"),
    BAD("s = \"\\U00110000\"", "1:6", "not a Unicode scalar value"),
    BAD("s = \"\\u0000\"", "1:6", "NUL"),
    BAD("s = \"\\U00000000\"", "1:6", "NUL"),
    BAD("s = \"\"\"\n\\ x\"\"\"", "2:1", "invalid escape"),
    BAD("s = \"\"\"ok \\z\"\"\"", "1:11", "invalid escape"),
    BAD("\"\\q\" = 1", "1:2", "invalid escape"),
    /* unterminated strings */
    BAD("s = \"abc", "1:5", "unterminated string"),
    BAD("s = \"abc\nx = 1", "1:5", "unterminated string"),
    BAD("s = 'abc", "1:5", "unterminated string"),
    BAD("s = 'abc\r\n", "1:5", "unterminated string"),
    BAD("s = \"\"\"abc\n\n", "1:5", "unterminated multi-line string"),
    BAD("x = 1\ns = '''abc''", "2:5", "unterminated multi-line string"),
    BAD("s = \"abc\\\"", "1:5", "unterminated string"),
    BAD("\"key = 1", "1:1", "unterminated string"),
    BAD("s = \"\\", "1:6", "invalid escape"),
    /* leading zeros */
    BAD("a = 01", "1:5", "leading zeros"),
    BAD("a = -01", "1:5", "leading zeros"),
    BAD("a = +00", "1:5", "leading zeros"),
    BAD("a = 00.5", "1:5", "leading zeros"),
    BAD("a = 01e2", "1:5", "leading zeros"),
    BAD("x = [1, 02]", "1:9", "leading zeros"),
    /* integer overflow */
    BAD("a = 9223372036854775808", "1:5", "64 bits"),
    BAD("a = -9223372036854775809", "1:5", "64 bits"),
    BAD("a = 99999999999999999999999", "1:5", "64 bits"),
    BAD("a = 0x8000000000000000", "1:5", "64 bits"),
    BAD("a = 0o1000000000000000000000", "1:5", "64 bits"),
    BAD("a = 0b1000000000000000000000000000000000000000000000000000000000000000", "1:5", "64 bits"),
    BAD("a = 1e999", "1:5", "out of range"),
    /* malformed numbers and values */
    BAD("a = 1__0", "1:5", "invalid number"),
    BAD("a = _1", "1:5", "invalid value"),
    BAD("a = 1_", "1:5", "invalid number"),
    BAD("a = 0_1", "1:5", "leading zeros"),
    BAD("a = 1.", "1:5", "invalid float"),
    BAD("a = .5", "1:5", "invalid value"),
    BAD("a = 1.e5", "1:5", "invalid float"),
    BAD("a = 1.5_", "1:5", "invalid float"),
    BAD("a = 1e", "1:5", "bad exponent"),
    BAD("a = 1e+", "1:5", "bad exponent"),
    BAD("a = 1e5.5", "1:5", "bad exponent"),
    BAD("a = 1.2.3", "1:5", "invalid float"),
    BAD("a = 0X1F", "1:5", "invalid number"),
    BAD("a = 0x", "1:5", "invalid number"),
    BAD("a = 0xG", "1:5", "invalid hexadecimal"),
    BAD("a = 0b102", "1:5", "invalid binary"),
    BAD("a = 0o8", "1:5", "invalid octal"),
    BAD("a = 0x_1", "1:5", "invalid hexadecimal"),
    BAD("a = -0x1", "1:5", "sign"),
    BAD("a = +0b1", "1:5", "sign"),
    BAD("a = 1-2", "1:5", "invalid number"),
    BAD("a = Inf", "1:5", "invalid value"),
    BAD("a = NaN", "1:5", "invalid value"),
    BAD("a = infinity", "1:5", "invalid value"),
    BAD("a = ++1", "1:5", "invalid value"),
    BAD("a = yes", "1:5", "strings must be quoted"),
    BAD("a = TRUE", "1:5", "invalid value"),
    BAD("a = truee", "1:5", "invalid value"),
    BAD("a = ", "1:5", "expected a value"),
    BAD("a =\nb = 1", "1:4", "expected a value"),
    BAD("a = # comment", "1:5", "expected a value"),
    BAD("a = @", "1:5", "expected a value, found '@'"),
    /* dates and times */
    BAD("d = 1979-13-27", "1:5", "invalid date/time"),
    BAD("d = 1979-05-32", "1:5", "invalid date/time"),
    BAD("d = 2023-02-29", "1:5", "invalid date/time"),
    BAD("d = 1900-02-29T00:00:00Z", "1:5", "invalid date/time"),
    BAD("d = 2024-04-31", "1:5", "invalid date/time"),
    BAD("d = 1979-05-27T25:00:00", "1:5", "invalid date/time"),
    BAD("d = 1979-05-27T07:32", "1:5", "invalid date/time"),
    BAD("d = 1979-05-27T07:32:00+7", "1:5", "invalid date/time"),
    BAD("d = 1979-5-27", "1:5", "invalid date/time"),
    BAD("t = 07:32", "1:5", "invalid date/time"),
    BAD("t = 07:32:00.", "1:5", "invalid date/time"),
    BAD("d = 1979-05-27X", "1:15", "unexpected 'X'"),
    /* invalid characters */
    BAD("a = 1\n@b = 2", "2:1", "expected a key, found '@'"),
    BAD("\x7f = 1", "1:1", "U+007F"),
    BAD("a = 1\n\x01", "2:1", "U+0001"),
    BAD("a = 1\rb = 2", "1:6", "U+000D"),
    BAD("\r", "1:1", "U+000D"),
    BAD("k\xC3\xA9y = 1", "1:2", "expected '='"),
    BAD("\"\xC3\xA9\xC3\xA9\" = \"\xE2\x82\xAC\" x", "1:12", "unexpected 'x' after value"),
    BAD("\xC3\xA9 = 1", "1:1", "U+00E9"),
    BAD("a = 1\n\xff", "2:1", "invalid UTF-8"),
    BAD("s = \"\xff\"", "1:6", "invalid UTF-8"),
    BAD("s = 'ok \xC3\x28'", "1:9", "invalid UTF-8"),
    BAD("s = \"\xED\xA0\x80\"", "1:6", "invalid UTF-8"),      /* encoded surrogate */
    BAD("s = \"\xC0\xAF\"", "1:6", "invalid UTF-8"),          /* overlong '/' */
    BAD("s = \"\xF4\x90\x80\x80\"", "1:6", "invalid UTF-8"),  /* > U+10FFFF */
    BAD("s = \"\xE2\x82\"", "1:6", "invalid UTF-8"),          /* truncated */
    BAD("# caf\xC3\xA9 \xC3\x28", "1:8", "invalid UTF-8"),
    BAD("a = 1 # bell\x07", "1:13", "control character U+0007"),
    BAD("# cr\rhere", "1:5", "control character U+000D"),
    BAD("# nul\x00", "1:6", "control character U+0000"),
    /* control characters in strings */
    BAD("s = \"a\x01" "b\"", "1:7", "control character U+0001"),
    BAD("s = 'a\x1f'", "1:7", "control character U+001F"),
    BAD("s = \"a\x7f\"", "1:7", "control character U+007F"),
    BAD("s = \"a\x00\"", "1:7", "control character U+0000"),
    BAD("s = \"\"\"a\x08\"\"\"", "1:9", "control character U+0008"),
    BAD("s = '''a\rb'''", "1:9", "control character U+000D"),
    BAD("s = \"\"\"a\x1b[0m\"\"\"", "1:9", "control character U+001B"),
    BAD("s = \"a\rb\"", "1:7", "control character U+000D"),
    /* missing '=' */
    BAD("name \"x\"", "1:6", "expected '=' after key"),
    BAD("[provium]\nx = 1\nkernel  \"bzImage\"", "3:9", "expected '=' after key"),
    BAD("key", "1:4", "expected '=' after key"),
    BAD("a.b\nc = 1", "1:4", "expected '=' after key"),
    BAD("a b = 1", "1:3", "expected '=' after key"),
    BAD("a: 1", "1:2", "expected '=' after key"),
    BAD("a == 1", "1:4", "expected a value, found '='"),
    /* malformed keys and headers */
    BAD("= 1", "1:1", "expected a key, found '='"),
    BAD("a. = 1", "1:4", "expected a key"),
    BAD(".a = 1", "1:1", "expected a key"),
    BAD("a..b = 1", "1:3", "expected a key"),
    BAD("\"\"\"k\"\"\" = 1", "1:1", "multi-line strings cannot be used as keys"),
    BAD("'''k''' = 1", "1:1", "multi-line strings cannot be used as keys"),
    BAD("[]", "1:2", "expected a key"),
    BAD("[a", "1:3", "expected ']'"),
    BAD("[a\nb = 1]", "1:3", "expected ']'"),
    BAD("[a.]", "1:4", "expected a key"),
    BAD("[[a]", "1:5", "expected ']]'"),
    BAD("[[a] ]", "1:5", "expected ']]'"),
    BAD("[ [a]]", "1:3", "expected a key"),
    BAD("[a b]", "1:4", "expected ']'"),
    BAD("[a]]", "1:4", "unexpected ']'"),
    /* trailing garbage after a value or header */
    BAD("a = 1 2", "1:7", "unexpected '2' after value"),
    BAD("a = \"x\" y", "1:9", "unexpected 'y' after value"),
    BAD("a = true false", "1:10", "after value"),
    BAD("a = [1] ]", "1:9", "after value"),
    BAD("a = 1,", "1:6", "after value"),
    BAD("a = 1 b = 2", "1:7", "after value"),
    BAD("a = {} x", "1:8", "after value"),
    BAD("a = '''x''''''", "1:14", "after value"),
    BAD("a = \"\"\"x\"\"\"\"\"\"", "1:14", "after value"),
    BAD("a = 'x''y'", "1:8", "after value"),
    BAD("[a] b = 1", "1:5", "after table header"),
    BAD("[[a]] x", "1:7", "after table header"),
    /* arrays */
    BAD("a = [1 2]", "1:8", "expected ',' or ']'"),
    BAD("a = [,]", "1:6", "expected a value, found ','"),
    BAD("a = [1,,2]", "1:8", "expected a value, found ','"),
    BAD("a = [1, 2", "1:5", "unterminated array"),
    BAD("a = [1,\n2,\n", "1:5", "unterminated array"),
    BAD("a = [\n1\nb = 2]", "3:1", "expected ',' or ']'"),
    BAD("a = [1 # c\x01\n]", "1:11", "control character"),
    /* limits */
    BAD("a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.A.B.C.D.E.F."
        "G.H.I.J.K.L.M.N.O.P.Q.R.S.T.U.V.W.X.Y.Z.0.1.2.3.4.5.6.7.8.9.a.b.c = 1",
        "1:129", "too many dotted parts"),
};

TEST(invalid)
{
    char err[512], prefix[64];
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad *b = &bad_cases[i];
        set_case("%s", esc(b->src));
        toml_value *r = parse_n(b->src, b->len, err, sizeof err);
        snprintf(prefix, sizeof prefix, "test.toml:%s: ", b->pos);
        if (r) {
            report(b->line, "parsed successfully, expected error at %s", b->pos);
            toml_free(r);
        } else if (strncmp(err, prefix, strlen(prefix)) != 0) {
            report(b->line, "wrong position: got \"%s\", want %s", esc(err), b->pos);
        } else if (b->msg && !strstr(err, b->msg)) {
            report(b->line, "wrong message: got \"%s\", want \"%s\"", esc(err), b->msg);
        } else {
            check_pass();
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Corpus                                                                   */

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted list of the *.toml files in dir (NULL-terminated); NULL on error. */
static char **list_toml(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    size_t n = 0, cap = 16;
    char **names = malloc(cap * sizeof *names);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".toml") != 0)
            continue;
        if (n + 1 >= cap)
            names = realloc(names, (cap *= 2) * sizeof *names);
        names[n] = malloc(strlen(dir) + len + 2);
        sprintf(names[n++], "%s/%s", dir, e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_names);
    names[n] = NULL;
    *count = n;
    return names;
}

static void free_list(char **names)
{
    for (size_t i = 0; names && names[i]; i++)
        free(names[i]);
    free(names);
}

/* Touches every node through the public API (and counts them). */
static size_t walk(const toml_value *v)
{
    size_t n = 1;
    CHECK(toml_line(v) >= 1 && toml_col(v) >= 1);
    switch (toml_type_of(v)) {
    case TOML_TABLE:
        for (size_t i = 0; i < toml_table_size(v); i++) {
            CHECK(toml_get(v, toml_table_key(v, i)) == toml_table_value(v, i));
            n += walk(toml_table_value(v, i));
        }
        break;
    case TOML_ARRAY:
        for (size_t i = 0; i < toml_array_len(v); i++)
            n += walk(toml_array_at(v, i));
        break;
    case TOML_STRING:
    case TOML_DATETIME:
        CHECK(toml_string(v) != NULL);
        break;
    default:
        break;
    }
    return n;
}

static void check_provium_corpus(const char *dir)
{
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/valid/provium.toml", dir);
    set_case("%s", path);
    toml_value *r = toml_parse_file(path, err, sizeof err);
    if (!r) {
        report(__LINE__, "%s", err);
        return;
    }
    KEYS(r, "", "provium|profile|profiles");
    STR(r, "provium/roots/1", "examples");
    STR(r, "provium/cache_max_size", "20G");
    STR(r, "profile/minimal/kernel", "../kernel/out/bzImage");
    STR(r, "profile/minimal/append", "loglevel=7");
    STR(r, "profiles/default/cmdline", "console=ttyS0 quiet");
    STR(r, "profiles/default/modules/0", "virtio_console");
    POS(r, "profiles/default/guest_os", 16, 12);
    toml_free(r);
}

static void check_corpus(const char *dir)
{
    char sub[512], err[512];
    size_t n;

    snprintf(sub, sizeof sub, "%s/valid", dir);
    char **valid = list_toml(sub, &n);
    set_case("%s", sub);
    if (!valid || n < 12)
        report(__LINE__, "expected at least 12 valid corpus files in %s, found %zu", sub, valid ? n : 0);
    for (size_t i = 0; valid && valid[i]; i++) {
        set_case("%s", valid[i]);
        toml_value *r = toml_parse_file(valid[i], err, sizeof err);
        if (!r) {
            report(__LINE__, "valid file rejected: %s", err);
            continue;
        }
        check_pass();
        CHECK(walk(r) >= 1);
        toml_free(r);
    }
    free_list(valid);
    check_provium_corpus(dir);

    snprintf(sub, sizeof sub, "%s/invalid", dir);
    char **invalid = list_toml(sub, &n);
    set_case("%s", sub);
    if (!invalid || n < 25)
        report(__LINE__, "expected at least 25 invalid corpus files in %s, found %zu", sub, invalid ? n : 0);
    for (size_t i = 0; invalid && invalid[i]; i++) {
        set_case("%s", invalid[i]);
        FILE *f = fopen(invalid[i], "rb");
        char first[128] = "", want[600];
        int line = 0, col = 0;
        if (!f || !fgets(first, sizeof first, f) || sscanf(first, "# expect: %d:%d", &line, &col) != 2) {
            report(__LINE__, "missing '# expect: LINE:COL' on the first line");
            if (f)
                fclose(f);
            continue;
        }
        fclose(f);
        toml_value *r = toml_parse_file(invalid[i], err, sizeof err);
        snprintf(want, sizeof want, "%s:%d:%d: ", invalid[i], line, col);
        if (r) {
            report(__LINE__, "invalid file accepted");
            toml_free(r);
        } else if (strncmp(err, want, strlen(want)) != 0) {
            report(__LINE__, "got \"%s\", want position %d:%d", esc(err), line, col);
        } else {
            check_pass();
        }
    }
    free_list(invalid);
}

/* The corpus directory is $PROVIUM_TOML_CORPUS, or tests/unit/toml-corpus
 * when the binary runs from the repository root. */
TEST(corpus)
{
    const char *dir = getenv("PROVIUM_TOML_CORPUS");
    check_corpus(dir && *dir ? dir : "tests/unit/toml-corpus");
}

CHECK_MAIN()
