/*
 * test_util.c - unit tests for host/util/util.c: size and duration parsing,
 * path helpers (path_absolute, path_join, path_dirname), tail_lines, the
 * string buffer, whole-file I/O, mkdir_p/rm_rf and sha256_hex.
 * Prints "FAIL [case] ..." for each failed check and "N passed, N failed".
 */
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

#define KiB 1024LL
#define MiB (1024LL * 1024)
#define GiB (1024LL * 1024 * 1024)

TEST(parse_size)
{
    static const struct {
        const char *in;
        int64_t want;
    } cases[] = {
        {"512M", 512 * MiB},
        {"2G", 2 * GiB},
        {"1024", 1024},
        {"1.5G", 3 * GiB / 2},
        {"0", 0},
        {"1", 1},
        {"4k", 4 * KiB},
        {"4K", 4 * KiB},
        {"64m", 64 * MiB},
        {"1g", GiB},
        {"1T", 1024 * GiB},
        {"512MiB", 512 * MiB},
        {"512MB", 512 * MiB},
        {"2Gi", 2 * GiB},
        {"0.5K", 512},
        {"", -1},
        {"abc", -1},
        {"-1", -1},
        {"-1G", -1},
        {"12X", -1},
        {"12MX", -1},
        {"M", -1},
        {"G1", -1},
        {"1.5.5G", -1},
        {"12 M", -1},
        {"12M ", -1},
        {"nan", -1},
        {"inf", -1},
        {"1e30", -1}, /* does not fit an int64 */
        {"9000000T", -1}, /* 9.9e18 bytes: over the int64 range */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        set_case("parse_size(\"%s\")", cases[i].in);
        int64_t got = parse_size(cases[i].in);
        CHECKF(got == cases[i].want, "got %lld, expected %lld", (long long)got, (long long)cases[i].want);
    }
    set_case("parse_size(NULL)");
    CHECK_EQ_INT(parse_size(NULL), -1);
}

TEST(parse_duration)
{
    static const struct {
        const char *in;
        int64_t want;
    } cases[] = {
        {"500ms", 500},
        {"5s", 5000},
        {"2m", 120000},
        {"1h", 3600000},
        {"1.5", 1500},
        {"0.5s", 500},
        {"30", 30000},
        {"0", 0},
        {"0ms", 0},
        {"1.5h", 5400000},
        {"0.25m", 15000},
        {"1.0004s", 1000}, /* rounds to the nearest millisecond */
        {"1.0006s", 1001},
        {"", -1},
        {"abc", -1},
        {"-1", -1},
        {"-5s", -1},
        {"5x", -1},
        {"5 s", -1},
        {"5S", -1},
        {"5sec", -1},
        {"ms", -1},
        {"s", -1},
        {"5ms5", -1},
        {"1d", -1},
        {"nan", -1},
        {"inf", -1},
        {"1e30s", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        set_case("parse_duration_ms(\"%s\")", cases[i].in);
        int64_t got = parse_duration_ms(cases[i].in);
        CHECKF(got == cases[i].want, "got %lld, expected %lld", (long long)got, (long long)cases[i].want);
    }
    set_case("parse_duration_ms(NULL)");
    CHECK_EQ_INT(parse_duration_ms(NULL), -1);
}

static void expect_str(int line, char *got, const char *want)
{
    check_(got && strcmp(got, want) == 0, __FILE__, line, "got \"%s\", expected \"%s\"", got ? got : "(null)", want);
    free(got);
}

TEST(path_absolute)
{
    static const struct {
        const char *in, *want;
    } abs_cases[] = {
        {"/", "/"},
        {"/a/b/c", "/a/b/c"},
        {"/a/b/c/", "/a/b/c"},
        {"//a///b//", "/a/b"},
        {"/a/./b/.", "/a/b"},
        {"/a/b/../c", "/a/c"},
        {"/a/b/../../c", "/c"},
        {"/..", "/"},
        {"/../../x", "/x"},
        {"/a/../..", "/"},
        {"/a/b/..", "/a"},
        {"/./.", "/"},
        {"/a/..b/c", "/a/..b/c"},
        {"/a/.b/c", "/a/.b/c"},
        {"/a/.../c", "/a/.../c"},
    };
    for (size_t i = 0; i < sizeof(abs_cases) / sizeof(abs_cases[0]); i++) {
        set_case("path_absolute(\"%s\")", abs_cases[i].in);
        expect_str(__LINE__, path_absolute(abs_cases[i].in), abs_cases[i].want);
    }

    /* relative paths resolve against the working directory */
    char tmpl[] = "/tmp/provium-test-util-XXXXXX";
    char old[PATH_MAX];
    if (!CHECK(getcwd(old, sizeof(old)) != NULL) || !CHECK(mkdtemp(tmpl) != NULL))
        return;
    char sub[PATH_MAX];
    snprintf(sub, sizeof(sub), "%s/sub", tmpl);
    CHECK_EQ_INT(mkdir(sub, 0755), 0);
    if (!CHECK_EQ_INT(chdir(sub), 0))
        return;
    char cwd[PATH_MAX];
    CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
    char want[PATH_MAX + 64];
    set_case("path_absolute of relative paths in %s", cwd);
    snprintf(want, sizeof(want), "%s/x/y", cwd);
    expect_str(__LINE__, path_absolute("x/y"), want);
    expect_str(__LINE__, path_absolute("./x//y/"), want);
    expect_str(__LINE__, path_absolute("x/z/../y"), want);
    expect_str(__LINE__, path_absolute("."), cwd);
    expect_str(__LINE__, path_absolute(".."), tmpl);
    snprintf(want, sizeof(want), "%s/sibling", tmpl);
    expect_str(__LINE__, path_absolute("../sibling"), want);
    expect_str(__LINE__, path_absolute("does/not/../../../sibling"), want);
    CHECK_EQ_INT(chdir(old), 0);
    rm_rf(tmpl);
    set_case("rm_rf removed the temp tree");
    CHECK(!file_exists(tmpl));
}

TEST(path_join_dirname)
{
    set_case("path_join");
    expect_str(__LINE__, path_join("/base/dir", "rel/file"), "/base/dir/rel/file");
    expect_str(__LINE__, path_join("/base/dir", "/abs/file"), "/abs/file");
    expect_str(__LINE__, path_join("/base", "../x"), "/base/../x");
    expect_str(__LINE__, path_join("relbase", "x"), "relbase/x");

    set_case("path_join with ~/");
    const char *home = getenv("HOME");
    char *saved = home ? strdup(home) : NULL;
    setenv("HOME", "/home/tester", 1);
    expect_str(__LINE__, path_join("/base", "~/images/k"), "/home/tester/images/k");
    expect_str(__LINE__, path_join("/base", "~user/x"), "/base/~user/x"); /* only "~/" is expanded */
    expect_str(__LINE__, path_join("/base", "~"), "/base/~");
    unsetenv("HOME");
    expect_str(__LINE__, path_join("/base", "~/x"), "/base/~/x"); /* no HOME: taken literally */
    if (saved) {
        setenv("HOME", saved, 1);
        free(saved);
    }

    set_case("path_dirname");
    expect_str(__LINE__, path_dirname("/a/b/c.toml"), "/a/b");
    expect_str(__LINE__, path_dirname("/c.toml"), "/");
    expect_str(__LINE__, path_dirname("c.toml"), ".");
    expect_str(__LINE__, path_dirname("a/c.toml"), "a");
}

TEST(tail_lines)
{
    static const struct {
        const char *text;
        int n;
        const char *want;
    } cases[] = {
        {"a\nb\nc\n", 2, "b\nc\n"},
        {"a\nb\nc\n", 1, "c\n"},
        {"a\nb\nc\n", 3, "a\nb\nc\n"},
        {"a\nb\nc\n", 10, "a\nb\nc\n"},
        {"a\nb\nc", 2, "b\nc"},
        {"a\nb\nc", 1, "c"},
        {"single line", 1, "single line"},
        {"single line\n", 5, "single line\n"},
        {"\n\n\n", 2, "\n\n"},
        {"x\n\ny\n", 2, "\ny\n"},
        {"", 3, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        set_case("tail_lines(case %zu, n=%d)", i, cases[i].n);
        const char *got = tail_lines(cases[i].text, strlen(cases[i].text), cases[i].n);
        CHECKF(got && strcmp(got, cases[i].want) == 0, "got \"%s\", expected \"%s\"", got ? got : "(null)",
               cases[i].want);
        if (*cases[i].text)
            CHECKF(got >= cases[i].text && got <= cases[i].text + strlen(cases[i].text),
                   "result does not point into the text");
    }
    set_case("tail_lines honours len (text without NUL terminator)");
    char buf[8] = {'a', '\n', 'b', '\n', 'c', 'Z', 'Z', 'Z'};
    const char *got = tail_lines(buf, 4, 1);
    CHECK(got == buf + 2);
    set_case("tail_lines(NULL)");
    got = tail_lines(NULL, 0, 3);
    CHECK(got && *got == 0);
}

TEST(strbuf)
{
    set_case("strbuf");
    strbuf b;
    sb_init(&b);
    CHECK_EQ_INT(b.len, 0);
    sb_adds(&b, "hello");
    sb_add(&b, ", \0x", 4);
    CHECK(b.len == 9 && memcmp(b.s, "hello, \0x", 9) == 0 && b.s[9] == 0);
    sb_addf(&b, "%d-%s", 42, "z");
    CHECK(b.len == 13 && memcmp(b.s + 9, "42-z", 5) == 0);
    /* longer than sb_addf's stack buffer */
    char big[1000];
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    sb_addf(&b, "[%s]", big);
    CHECK(b.len == 13 + 1001 && b.s[13] == '[' && b.s[b.len - 1] == ']' && b.s[b.len] == 0);
    char *s = sb_take(&b);
    CHECK(s && strlen(s) == 7); /* "hello, " then the embedded NUL byte */
    CHECK(b.s == NULL && b.len == 0);
    free(s);
    s = sb_take(&b);
    CHECK(s && *s == 0);
    free(s);
    s = xasprintf("%s:%05d", "x", 42);
    CHECK_EQ_STR(s, "x:00042");
    free(s);
}

TEST(files)
{
    char tmpl[] = "/tmp/provium-test-util-XXXXXX";
    if (!CHECK(mkdtemp(tmpl) != NULL))
        return;
    char path[PATH_MAX];

    set_case("mkdir_p");
    snprintf(path, sizeof(path), "%s/a/b/c", tmpl);
    CHECK(mkdir_p(path, 0755) == 0 && is_dir(path));
    CHECK_EQ_INT(mkdir_p(path, 0755), 0); /* exists already */
    snprintf(path, sizeof(path), "%s/a/b/c/", tmpl);
    CHECK_EQ_INT(mkdir_p(path, 0755), 0);

    set_case("write_whole_file / read_whole_file");
    unsigned char data[70000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 7 + (i >> 8));
    snprintf(path, sizeof(path), "%s/a/b/blob", tmpl);
    CHECK_EQ_INT(write_whole_file(path, data, sizeof(data), 0600), 0);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == (off_t)sizeof(data));
    size_t len = 0;
    char *got = read_whole_file(path, &len);
    CHECK(got && len == sizeof(data) && memcmp(got, data, len) == 0 && got[len] == 0);
    free(got);
    CHECK(file_exists(path) && !is_dir(path));
    CHECK_EQ_INT(write_whole_file(path, "", 0, 0600), 0);
    got = read_whole_file(path, &len);
    CHECK(got && len == 0 && *got == 0);
    free(got);

    set_case("read_whole_file of a missing file");
    snprintf(path, sizeof(path), "%s/missing", tmpl);
    errno = 0;
    CHECK(read_whole_file(path, &len) == NULL && errno == ENOENT);
    CHECK(!file_exists(path));
    snprintf(path, sizeof(path), "%s/no/such/dir/f", tmpl);
    CHECK_EQ_INT(write_whole_file(path, "x", 1, 0644), -1);

    set_case("rm_rf");
    CHECK_EQ_INT(rm_rf(tmpl), 0);
    CHECK(!file_exists(tmpl));
}

TEST(sha256)
{
    set_case("sha256_hex");
    char out[65];
    sha256_hex("abc", 3, out);
    CHECKF(strcmp(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0, "got %s", out);
    sha256_hex("", 0, out);
    CHECKF(strcmp(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0, "got %s", out);
}

TEST(cache_root)
{
    set_case("cache_root from PROVIUM_CACHE_DIR");
    setenv("PROVIUM_CACHE_DIR", "/tmp/provium-cache-test", 1);
    const char *r = cache_root();
    CHECK(r && strcmp(r, "/tmp/provium-cache-test") == 0);
    unsetenv("PROVIUM_CACHE_DIR");
    CHECK(cache_root() == r); /* computed once */
}

CHECK_MAIN()
